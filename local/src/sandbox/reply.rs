//! The three kinds of answer the sandbox gives: JSON in Mercado Livre's shape, HTML pages,
//! and redirects back to the app. None of them may be cached: they carry codes, tokens or
//! one-time consent pages.

use axum::response::{IntoResponse, Response};
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_FRAME_OPTIONS,
};
use http::{HeaderValue, StatusCode};
use serde::Serialize;

use super::page;

const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// No script can run on the pages, and no other site can frame the consent page to trick
/// a click on "Authorize".
const PAGE_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'";

pub(super) fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
                (CACHE_CONTROL, NO_STORE),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Mercado Livre's error body: `{"message", "error", "status", "cause": []}`.
pub(super) fn error(status: StatusCode, error: &str, message: &str) -> Response {
    #[derive(Serialize)]
    struct ErrorBody<'a> {
        message: &'a str,
        error: &'a str,
        status: u16,
        cause: [(); 0],
    }
    let body = ErrorBody {
        message,
        error,
        status: status.as_u16(),
        cause: [],
    };
    json(status, &body)
}

pub(super) fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, NO_STORE),
            (
                CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_POLICY),
            ),
            (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        body,
    )
        .into_response()
}

/// An error page for a request that cannot be sent back to the app.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    html(status, page::error(status, message))
}

/// 302 to the app's redirect URI with `params` added to its query.
pub(super) fn redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    match HeaderValue::try_from(format!("{redirect_uri}{separator}{query}")) {
        Ok(location) => (
            StatusCode::FOUND,
            [(LOCATION, location), (CACHE_CONTROL, NO_STORE)],
        )
            .into_response(),
        Err(_) => error_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The registered redirect_uri cannot be sent in a Location header.",
        ),
    }
}
