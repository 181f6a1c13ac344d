//! Request/response plumbing every HTTP function shares: problem+json errors, the
//! request id, body limits and JSON responses, and [`serve`], which wraps a handler
//! with all of them — for the Lambda binary and the local runner alike.

pub mod cursor;
mod problem;
pub mod rate_limit;
mod request;
pub mod sse;
mod streaming;

use std::future::Future;

use lambda_http::{Body, Request, Response};
use tracing::Instrument;

pub use problem::{ApiError, Problem};
pub use rate_limit::{EndpointLimit, RateLimitHeaders};
pub use request::{
    RequestIds, body_bytes, client_ip, path_param, public_path, query_param, request_ids,
    resource_path,
};
pub use streaming::StreamingBody;

/// The most body any endpoint accepts unless it sets its own limit.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// A JSON response.
pub fn json<T: serde::Serialize>(
    status: http::StatusCode,
    value: &T,
) -> Result<Response<Body>, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|error| ApiError::Internal(format!("serialising a response: {error}")))?;
    Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::Binary(body))
        .map_err(|error| ApiError::Internal(error.to_string()))
}

/// `epoch_seconds` as an RFC 3339 UTC timestamp (`2026-12-01T00:00:00Z`), for response
/// bodies; empty if it is out of range.
pub fn rfc3339(epoch_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch_seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// A redirect to `location` that no cache keeps (its target is one login's).
pub fn redirect(status: http::StatusCode, location: &str) -> Result<Response<Body>, ApiError> {
    Response::builder()
        .status(status)
        .header(http::header::LOCATION, location)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .map_err(|error| ApiError::Internal(format!("redirect: {error}")))
}

/// Runs `handler` for `request` inside the invocation's log span, turns its error into a
/// problem response, and echoes the request id on every response. The response body is
/// whole ([`Body`]) or streamed ([`StreamingBody`]).
pub async fn serve<B, F, Fut>(request: Request, handler: F) -> Response<B>
where
    B: From<Body>,
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<B>, ApiError>>,
{
    let ids = request_ids(&request);
    let span = crate::telemetry::invocation_span(&ids.request_id, &ids.correlation_id);
    async move {
        let method = request.method().clone();
        let path = resource_path(&request);
        let mut response = match handler(request).await {
            Ok(response) => response,
            Err(error) => {
                error.log();
                error.problem().into_response(&ids.request_id).map(B::from)
            }
        };
        if let Ok(value) = http::HeaderValue::from_str(&ids.request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }
        tracing::info!(method = %method, path = %path, status = response.status().as_u16(), "request served");
        response
    }
    .instrument(span)
    .await
}
