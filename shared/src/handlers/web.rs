//! `web`: the seller's inbox page — GET / and its static assets (GET /assets/{name}),
//! served by the API itself so the session cookie is same-origin. Plain HTML, CSS and
//! JavaScript under `shared/web/`, compiled into the binary: no build step, nothing
//! fetched at run time. The page calls the API with relative URLs, so it works under an
//! API Gateway stage (`/prod/`) as it does at the local runner's root.
//!
//! Every response carries a strict Content-Security-Policy (scripts, styles and images
//! from this origin only: no inline script or style, no `eval`, no DOM sink taking a
//! string — Trusted Types with no policy), `frame-ancestors 'none'` against clickjacking,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::config::ConfigError;
use crate::http::{ApiError, path_param, public_path, resource_path};
use crate::services::Services;

/// The page's policy: everything from this origin only, and only what the page uses.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; \
     base-uri 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
     trusted-types 'none'";

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../web/index.html"),
};

/// The assets, by the name in `/assets/{name}`.
const ASSETS: &[(&str, Asset)] = &[
    (
        "app.js",
        Asset {
            content_type: "text/javascript; charset=utf-8",
            body: include_str!("../../web/app.js"),
        },
    ),
    (
        "app.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../../web/app.css"),
        },
    ),
    (
        "icon.svg",
        Asset {
            content_type: "image/svg+xml",
            body: include_str!("../../web/icon.svg"),
        },
    ),
];

#[derive(Clone, Copy)]
struct Asset {
    content_type: &'static str,
    body: &'static str,
}

pub struct Web;

impl HttpHandler for Web {
    const FUNCTION: &'static str = "web";

    /// Needs nothing: no configuration, no store, no secret.
    fn build(_services: &Services) -> Result<Self, ConfigError> {
        Ok(Web)
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        if request.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        match resource_path(&request).as_str() {
            "/" => index(&request),
            "/assets/{name}" => {
                let name = path_param(&request, "name")?;
                let asset = ASSETS
                    .iter()
                    .find(|(known, _)| *known == name)
                    .map(|(_, asset)| *asset)
                    .ok_or(ApiError::NotFound)?;
                respond(StatusCode::OK, asset)
            }
            _ => Err(ApiError::NotFound),
        }
    }
}

/// The page; asked for without its trailing slash (`https://…/prod`), a redirect to it
/// with one first, or its relative URLs would resolve outside the stage.
fn index(request: &Request) -> Result<Response<Body>, ApiError> {
    let path = public_path(request);
    if path.ends_with('/') {
        return respond(StatusCode::OK, INDEX);
    }
    let location = match request.uri().query() {
        Some(query) => format!("{path}/?{query}"),
        None => format!("{path}/"),
    };
    Response::builder()
        .status(StatusCode::PERMANENT_REDIRECT)
        .header(LOCATION, location)
        .header(CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .map_err(|error| ApiError::Internal(format!("redirect: {error}")))
}

fn respond(status: StatusCode, asset: Asset) -> Result<Response<Body>, ApiError> {
    let mut response = Response::builder()
        .status(status)
        .header(CONTENT_TYPE, asset.content_type)
        // Revalidated on every load: a new deploy is seen at once (the files are small).
        .header(CACHE_CONTROL, "no-cache")
        .body(Body::Text(asset.body.to_owned()))
        .map_err(|error| ApiError::Internal(format!("web response: {error}")))?;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // frame-ancestors' older twin, for browsers that predate CSP 2.
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    Ok(response)
}
