//! Errors as RFC 9457 problem details. [`ApiError`] is the one place an error becomes a
//! status and a body; a 5xx body never carries internal text (it is logged instead).

use std::time::Duration;

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use super::rate_limit::{RateLimitHeaders, whole_seconds};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("forbidden")]
    Forbidden,
    /// Refused for a reason the caller should read (public text).
    #[error("denied: {0}")]
    Denied(String),
    #[error("not found")]
    NotFound,
    /// The request conflicts with what is stored (public text).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Well formed, but refused for a reason the caller should read (public text), such
    /// as a provider's refusal.
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("payload too large (limit {limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("unsupported media type: expected {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("too many requests")]
    TooManyRequests {
        retry_after: Duration,
        /// The limit's state, sent as `RateLimit-*` headers when known.
        rate_limit: Option<RateLimitHeaders>,
    },
    /// A dependency is down or too slow. The text is logged, never returned.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// An upstream provider answered in a way we cannot use. The text is logged, never
    /// returned.
    #[error("bad gateway: {0}")]
    BadGateway(String),
    /// A bug or an unexpected state. The text is logged, never returned.
    #[error("internal error: {0}")]
    Internal(String),
    /// A failure whose `detail` tells the caller what to do instead of retrying (public
    /// text: "sign in again"); the `cause` is logged, never returned.
    #[error("{status}: {cause}")]
    Failed {
        status: StatusCode,
        detail: String,
        cause: String,
    },
}

/// An RFC 9457 problem details object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    pub title: &'static str,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(skip)]
    pub retry_after: Option<Duration>,
    #[serde(skip)]
    pub rate_limit: Option<RateLimitHeaders>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: Option<String>) -> Self {
        Self {
            type_uri: "about:blank",
            title,
            status: status.as_u16(),
            detail,
            instance: None,
            retry_after: None,
            rate_limit: None,
        }
    }

    /// The response, with `instance` set to the request id so a user can quote it.
    pub fn into_response(mut self, request_id: &str) -> Response<Body> {
        self.instance = Some(format!("urn:request:{request_id}"));
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut builder = Response::builder()
            .status(self.status)
            .header(http::header::CONTENT_TYPE, "application/problem+json")
            .header(http::header::CACHE_CONTROL, "no-store");
        if let Some(retry_after) = self.retry_after {
            builder = builder.header(
                http::header::RETRY_AFTER,
                whole_seconds(retry_after).max(1).to_string(),
            );
        }
        if let (Some(rate_limit), Some(headers)) = (self.rate_limit, builder.headers_mut()) {
            rate_limit.apply(headers);
        }
        builder.body(Body::Binary(body)).unwrap_or_else(|_| {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::Denied(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Failed { status, .. } => *status,
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status();
        let (title, detail) = match self {
            ApiError::BadRequest(detail) => ("Bad request", Some(detail.clone())),
            ApiError::Unauthorized => (
                "Unauthorized",
                Some("Sign in to use this endpoint.".to_owned()),
            ),
            ApiError::Forbidden => ("Forbidden", None),
            ApiError::Denied(detail) => ("Forbidden", Some(detail.clone())),
            ApiError::NotFound => ("Not found", None),
            ApiError::Conflict(detail) => ("Conflict", Some(detail.clone())),
            ApiError::Unprocessable(detail) => ("Unprocessable content", Some(detail.clone())),
            ApiError::MethodNotAllowed => ("Method not allowed", None),
            ApiError::PayloadTooLarge { limit } => (
                "Payload too large",
                Some(format!("The body must be at most {limit} bytes.")),
            ),
            ApiError::UnsupportedMediaType { expected } => {
                ("Unsupported media type", Some(format!("Send {expected}.")))
            }
            ApiError::TooManyRequests { .. } => (
                "Too many requests",
                Some("Retry after the time in Retry-After.".to_owned()),
            ),
            ApiError::Unavailable(_) => (
                "Service unavailable",
                Some("A dependency is unavailable; retry shortly.".to_owned()),
            ),
            ApiError::BadGateway(_) => (
                "Bad gateway",
                Some("An upstream provider answered unexpectedly; retry shortly.".to_owned()),
            ),
            ApiError::Internal(_) => ("Internal server error", None),
            ApiError::Failed { status, detail, .. } => (
                status.canonical_reason().unwrap_or("Error"),
                Some(detail.clone()),
            ),
        };
        let mut problem = Problem::new(status, title, detail);
        if let ApiError::TooManyRequests {
            retry_after,
            rate_limit,
        } = self
        {
            problem.retry_after = Some(*retry_after);
            problem.rate_limit = *rate_limit;
        }
        problem
    }

    /// Logs what the response leaves out: server errors with their internal text.
    pub fn log(&self) {
        match self {
            ApiError::Unavailable(_) => {
                tracing::warn!(error = %self, "request failed: dependency unavailable")
            }
            ApiError::BadGateway(_) => {
                tracing::warn!(error = %self, "request failed: upstream answer unusable")
            }
            ApiError::Internal(_) => tracing::error!(error = %self, "request failed"),
            ApiError::Failed { status, .. } if status.is_server_error() => {
                tracing::warn!(error = %self, "request failed")
            }
            _ => {}
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match error {
            // A conflict with concurrent writers: retrying may succeed.
            StoreError::Unavailable(_)
            | StoreError::ConditionFailed { .. }
            | StoreError::TransactionCancelled { .. } => {
                ApiError::Unavailable(format!("store: {error}"))
            }
            StoreError::Invalid(_) | StoreError::Corrupt(_) => {
                ApiError::Internal(format!("store: {error}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[test]
    fn a_problem_is_rfc9457_json_with_the_request_id() {
        let response = ApiError::BadRequest("field x is missing".into())
            .problem()
            .into_response("req-7");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let body = body(&response);
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["title"], "Bad request");
        assert_eq!(body["status"], 400);
        assert_eq!(body["detail"], "field x is missing");
        assert_eq!(body["instance"], "urn:request:req-7");
    }

    #[test]
    fn server_errors_never_carry_internal_text() {
        for error in [
            ApiError::Internal("table sellerhub-prod at arn:aws:dynamodb:… panicked".into()),
            ApiError::Unavailable("dispatch failure: connection refused to 10.0.0.1".into()),
            ApiError::BadGateway("mercadolivre said 10.0.0.1 arn: panicked".into()),
        ] {
            let response = error.problem().into_response("r");
            let text = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
            assert!(response.status().is_server_error());
            assert!(
                !text.contains("arn:") && !text.contains("10.0.0.1") && !text.contains("panicked"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_failure_with_advice_shows_the_advice_and_never_the_cause() {
        let response = ApiError::Failed {
            status: StatusCode::SERVICE_UNAVAILABLE,
            detail: "Sign in again at /auth/login.".into(),
            cause: "store: connection refused to 10.0.0.1".into(),
        }
        .problem()
        .into_response("r");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = body(&response);
        assert_eq!(body["title"], "Service Unavailable");
        assert_eq!(body["detail"], "Sign in again at /auth/login.");
        assert!(!body.to_string().contains("10.0.0.1"), "{body}");
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let response = ApiError::TooManyRequests {
            retry_after: Duration::from_millis(2500),
            rate_limit: None,
        }
        .problem()
        .into_response("r");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        // Rounded up: a client retrying after 2 s would still be refused.
        assert_eq!(response.headers()["retry-after"], "3");
        assert!(!response.headers().contains_key("ratelimit-limit"));
    }
}
