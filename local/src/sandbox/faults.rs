//! The fault switch: make the sandbox's API (everything a seller's access token calls,
//! `/users/me` included; not the login pages nor the token endpoint) answer 429 or a 5xx
//! for the next N calls, or until switched off.
//!
//! `POST /faults {"mode": "429" | "500" | "502" | "503" | "none", "count": N}` (JSON or a
//! form; `count` left out means "until switched off"), `GET /faults` shows the switch.
//! A 429 is Mercado Livre's documented one: `{"message":"Too Many Requests","error":
//! "too_many_requests","status":429,"cause":[]}` and no Retry-After.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::params::{BodyKind, Params};
use super::{Sandbox, page, reply};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Faults {
    /// The status to answer with; `None` is normal service.
    mode: Option<StatusCode>,
    /// How many more calls get it; `None` is every call until switched off.
    remaining: Option<u32>,
}

impl Faults {
    /// The status the next call gets instead of its answer, if any; counts it.
    fn take(&mut self) -> Option<StatusCode> {
        let mode = self.mode?;
        match &mut self.remaining {
            None => {}
            Some(0) => {
                *self = Faults::default();
                return None;
            }
            Some(remaining) => {
                *remaining -= 1;
                if *remaining == 0 {
                    *self = Faults::default();
                }
            }
        }
        Some(mode)
    }

    fn to_json(self) -> serde_json::Value {
        json!({
            "mode": self.mode.map_or("none".to_owned(), |status| status.as_u16().to_string()),
            "remaining": self.remaining,
        })
    }
}

/// The layer in front of the API routes.
pub(super) async fn inject(
    State(sandbox): State<Arc<Sandbox>>,
    request: Request,
    next: Next,
) -> Response {
    let fault = sandbox.faults().take();
    match fault {
        Some(StatusCode::TOO_MANY_REQUESTS) => {
            tracing::info!(path = %request.uri().path(), "sandbox mercadolivre: answering 429 (fault switch)");
            reply::error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                "Too Many Requests",
            )
        }
        Some(status) => {
            tracing::info!(path = %request.uri().path(), status = status.as_u16(), "sandbox mercadolivre: answering an error (fault switch)");
            reply::error(
                status,
                "internal_server_error",
                status.canonical_reason().unwrap_or("Server Error"),
            )
        }
        None => next.run(request).await,
    }
}

pub(super) async fn show(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let faults = *sandbox.faults();
    reply::json(StatusCode::OK, &faults.to_json())
}

pub(super) async fn set(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = BodyKind::of(&headers);
    let faults = match read(kind, &body) {
        Ok(faults) => faults,
        Err(message) => return refuse(kind, &message),
    };
    *sandbox.faults() = faults;
    tracing::info!(fault = %faults.to_json(), "sandbox mercadolivre: fault switch set");
    match kind {
        Some(BodyKind::Form) => reply::html(
            StatusCode::OK,
            page::result("Fault switch set", &[describe(faults)]),
        ),
        _ => reply::json(StatusCode::OK, &faults.to_json()),
    }
}

fn read(kind: Option<BodyKind>, body: &[u8]) -> Result<Faults, String> {
    let params = Params::from_body(kind, body)?;
    let mode = match params.required("mode").map_err(|error| error.to_string())? {
        "none" => None,
        "429" => Some(StatusCode::TOO_MANY_REQUESTS),
        "500" => Some(StatusCode::INTERNAL_SERVER_ERROR),
        "502" => Some(StatusCode::BAD_GATEWAY),
        "503" => Some(StatusCode::SERVICE_UNAVAILABLE),
        other => {
            return Err(format!(
                "mode {other:?} is none of \"429\", \"500\", \"502\", \"503\", \"none\""
            ));
        }
    };
    let remaining = match params
        .optional("count")
        .map_err(|error| error.to_string())?
    {
        None => None,
        Some(count) => match count.parse::<u32>() {
            Ok(count) if count > 0 => Some(count),
            _ => return Err(format!("count {count:?} is not a whole number above 0")),
        },
    };
    Ok(match mode {
        None => Faults::default(),
        Some(_) => Faults { mode, remaining },
    })
}

fn describe(faults: Faults) -> String {
    match (faults.mode, faults.remaining) {
        (None, _) => "The API answers normally.".to_owned(),
        (Some(status), Some(count)) => {
            format!("The next {count} API calls get {}.", status.as_u16())
        }
        (Some(status), None) => format!(
            "Every API call gets {} until the switch is set to none.",
            status.as_u16()
        ),
    }
}

fn refuse(kind: Option<BodyKind>, message: &str) -> Response {
    match kind {
        Some(BodyKind::Form) => reply::error_page(StatusCode::BAD_REQUEST, message),
        _ => reply::error(StatusCode::BAD_REQUEST, "bad_request", message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_answers_that_many_calls_then_switches_off() {
        let mut faults = Faults {
            mode: Some(StatusCode::TOO_MANY_REQUESTS),
            remaining: Some(2),
        };
        assert_eq!(faults.take(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(faults.take(), Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(faults.take(), None);
        assert_eq!(faults, Faults::default());

        let mut faults = Faults {
            mode: Some(StatusCode::INTERNAL_SERVER_ERROR),
            remaining: None,
        };
        for _ in 0..100 {
            assert_eq!(faults.take(), Some(StatusCode::INTERNAL_SERVER_ERROR));
        }
    }
}
