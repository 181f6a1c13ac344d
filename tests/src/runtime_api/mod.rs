//! An in-process emulator of the AWS Lambda Runtime API (2018-06-01) and a harness that
//! runs a built function binary under it, the way the Lambda service runs `bootstrap`.
//!
//! ```no_run
//! # async fn health() -> Result<(), sellerhub_tests::runtime_api::HarnessError> {
//! use std::time::Duration;
//! use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, function_binary};
//!
//! let binary = function_binary("health", false);
//! let mut function = FunctionProcess::spawn(&binary, &[("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")]).await?;
//! let event = apigw_rest_event("GET", "/health", "/health", &[], &[], None);
//! let invocation = function.invoke(event, Duration::from_secs(10)).await?;
//! assert_eq!(invocation.status_code(), Some(200), "{invocation:?}\n{}", function.output());
//! let init = function.init_duration(); // spawn → first GET /next
//! let rss_kib = function.peak_rss_kib(); // VmHWM
//! # let _ = (init, rss_kib);
//! # Ok(())
//! # }
//! ```
//!
//! Emulated endpoints (<https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html>):
//! `GET /2018-06-01/runtime/invocation/next` (long poll), `POST …/invocation/{id}/response`
//! (buffered, or streamed with `Lambda-Runtime-Function-Response-Mode: streaming`, chunked
//! body and error trailers), `POST …/invocation/{id}/error` and `POST …/init/error`.
//!
//! Every wait is bounded: [`RuntimeApi::invoke`], [`FunctionProcess::wait_ready`] and
//! [`FunctionProcess::invoke`] take a timeout, and the process harness notices an exited
//! child within milliseconds instead of waiting for the timeout.

mod build;
mod emulator;
mod event;
mod process;

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

pub use build::{function_binary, try_function_binary, workspace_root};
pub use emulator::RuntimeApi;
pub use event::{API_ID, STAGE, apigw_rest_event};
pub use process::FunctionProcess;

/// Region and account the emulator (and [`apigw_rest_event`]) pretend to run in.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// Everything that can go wrong in the harness. The `Display` text carries the tail of the
/// function's output when there is a process, so a failing assertion explains itself.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("building package `{package}` failed: {detail}")]
    Build { package: String, detail: String },
    #[error("timed out after {after:?} waiting for {what}{}", logs_section(.logs))]
    Timeout {
        what: &'static str,
        after: Duration,
        logs: String,
    },
    #[error("the function reported an init error ({error}){}", logs_section(.logs))]
    InitError { error: FunctionError, logs: String },
    #[error("the function process exited ({status}) before {during}{}", logs_section(.logs))]
    ProcessExited {
        status: String,
        during: &'static str,
        logs: String,
    },
    #[error("runtime API emulator: {0}")]
    Emulator(String),
}

fn logs_section(logs: &str) -> String {
    if logs.is_empty() {
        String::new()
    } else {
        format!("\n--- function output (tail) ---\n{logs}")
    }
}

/// An error a function reported through `/invocation/{id}/error`, `/init/error` or a
/// streaming error trailer.
#[derive(Clone, Debug, PartialEq)]
pub struct FunctionError {
    /// The `Lambda-Runtime-Function-Error-Type` header (`lambda_runtime` sends `unhandled`
    /// for invocation errors and `Runtime.InitError` for init errors).
    pub error_type: Option<String>,
    /// The body, normally `{"errorType": …, "errorMessage": …}`; non-JSON text becomes a
    /// JSON string.
    pub payload: Value,
}

impl FunctionError {
    /// `errorType` of the payload.
    pub fn kind(&self) -> Option<&str> {
        self.payload.get("errorType").and_then(Value::as_str)
    }

    /// `errorMessage` of the payload.
    pub fn message(&self) -> Option<&str> {
        self.payload.get("errorMessage").and_then(Value::as_str)
    }
}

impl std::fmt::Display for FunctionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header = self.error_type.as_deref().unwrap_or("-");
        write!(f, "{header}: {}", self.payload)
    }
}

/// What the function sent back for one invocation.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// A buffered `/response` body (for lambda_http: the API Gateway proxy response
    /// `{statusCode, headers, multiValueHeaders, body, isBase64Encoded}`). A body that is not
    /// JSON is kept as a JSON string.
    Response(Value),
    /// A streamed `/response` (`Lambda-Runtime-Function-Response-Mode: streaming`).
    Streamed(StreamedResponse),
    /// An `/error` report.
    Error(FunctionError),
}

/// A streamed response as the Runtime API received it.
#[derive(Clone, Debug)]
pub struct StreamedResponse {
    pub content_type: Option<String>,
    /// For `application/vnd.awslambda.http-integration-response`: the JSON prelude
    /// (`statusCode`, `headers`, `cookies`) that precedes the 8-NUL delimiter.
    pub prelude: Option<Value>,
    /// The body after the prelude (or the whole stream when there is no prelude).
    pub body: Bytes,
    /// A mid-stream error reported in the `Lambda-Runtime-Function-Error-*` trailers.
    pub error: Option<FunctionError>,
}

/// The result of one invocation.
#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub outcome: Outcome,
    /// From the `invoke` call to the result being posted (includes any wait for the
    /// function to poll `/next`, i.e. its init on a cold invocation).
    pub latency: Duration,
    /// From `/next` handing the event to the function to the result being posted.
    pub duration: Duration,
}

impl Invocation {
    /// The buffered response JSON, if the function answered with one.
    pub fn response(&self) -> Option<&Value> {
        match &self.outcome {
            Outcome::Response(value) => Some(value),
            _ => None,
        }
    }

    /// The error the function reported (an `/error` call or a streaming error trailer).
    pub fn error(&self) -> Option<&FunctionError> {
        match &self.outcome {
            Outcome::Error(error) => Some(error),
            Outcome::Streamed(streamed) => streamed.error.as_ref(),
            Outcome::Response(_) => None,
        }
    }

    /// The HTTP status of a proxy (or streamed HTTP integration) response.
    pub fn status_code(&self) -> Option<u16> {
        self.http_response()?
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
    }

    /// A response header (case-insensitive; `headers` first, then `multiValueHeaders`).
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.http_response()?;
        let find = |map: &Value| -> Option<Value> {
            map.as_object()?
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        if let Some(found) = value.get("headers").and_then(find) {
            return found.as_str().map(str::to_owned);
        }
        let found = value.get("multiValueHeaders").and_then(find)?;
        found.as_array()?.first()?.as_str().map(str::to_owned)
    }

    /// Every value of a response header (case-insensitive): `multiValueHeaders`' when the
    /// response has them, else the one of `headers`.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        let Some(value) = self.http_response() else {
            return Vec::new();
        };
        let find = |map: &Value| -> Option<Value> {
            map.as_object()?
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
        };
        if let Some(values) = value.get("multiValueHeaders").and_then(find) {
            return values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect();
        }
        self.header(name).into_iter().collect()
    }

    /// The HTTP body: the proxy response's `body` (base64-decoded when `isBase64Encoded`)
    /// or the streamed body. `None` for an error outcome or a body that is absent.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match &self.outcome {
            Outcome::Response(value) => {
                let body = value.get("body")?.as_str()?;
                if value.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                    BASE64.decode(body).ok()
                } else {
                    Some(body.as_bytes().to_vec())
                }
            }
            Outcome::Streamed(streamed) => Some(streamed.body.to_vec()),
            Outcome::Error(_) => None,
        }
    }

    /// [`Self::body_bytes`] as (lossy) UTF-8.
    pub fn body_text(&self) -> Option<String> {
        self.body_bytes()
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// [`Self::body_bytes`] parsed as JSON.
    pub fn body_json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body_bytes()?).ok()
    }

    /// The proxy response, or the prelude of a streamed HTTP integration response.
    fn http_response(&self) -> Option<&Value> {
        match &self.outcome {
            Outcome::Response(value) => Some(value),
            Outcome::Streamed(StreamedResponse {
                prelude: Some(prelude),
                ..
            }) => Some(prelude),
            _ => None,
        }
    }
}

/// A streamed response's body as it arrives: give [`LiveBody::channel`]'s sender to
/// [`RuntimeApi::invoke_streaming`] (or [`FunctionProcess::invoke_streaming`]) and read
/// here while the invocation runs.
pub struct LiveBody {
    chunks: tokio::sync::mpsc::UnboundedReceiver<Bytes>,
    raw: Vec<u8>,
}

impl LiveBody {
    pub fn channel() -> (tokio::sync::mpsc::UnboundedSender<Bytes>, LiveBody) {
        let (sender, chunks) = tokio::sync::mpsc::unbounded_channel();
        let body = LiveBody {
            chunks,
            raw: Vec::new(),
        };
        (sender, body)
    }

    /// The body so far (after the HTTP integration prelude, when there is one) as text.
    pub fn text(&self) -> String {
        const DELIMITER: [u8; 8] = [0; 8];
        let body = match self.raw.windows(8).position(|window| window == DELIMITER) {
            Some(at) => &self.raw[at + DELIMITER.len()..],
            // The prelude (JSON) is still arriving: no body yet.
            None if self.raw.first() == Some(&b'{') => &[],
            None => &self.raw[..],
        };
        String::from_utf8_lossy(body).into_owned()
    }

    /// Waits (at most `timeout`) until the body contains `needle`; the body so far.
    pub async fn until(&mut self, needle: &str, timeout: Duration) -> Result<String, HarnessError> {
        let waited = tokio::time::timeout(timeout, async {
            while !self.text().contains(needle) {
                match self.chunks.recv().await {
                    Some(chunk) => self.raw.extend_from_slice(&chunk),
                    None => return Err(HarnessError::Emulator("the stream ended".into())),
                }
            }
            Ok(self.text())
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(HarnessError::Timeout {
                what: "a streamed chunk",
                after: timeout,
                logs: self.text(),
            })
        })
    }
}

/// Standard base64, padded or not: lambda_http and lambda_runtime pad, other runtimes may not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `len` (at most 32) random hex digits.
fn random_hex(len: usize) -> String {
    let mut hex = uuid::Uuid::new_v4().simple().to_string();
    hex.truncate(len);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(value: Value) -> Invocation {
        Invocation {
            request_id: "r".into(),
            outcome: Outcome::Response(value),
            latency: Duration::ZERO,
            duration: Duration::ZERO,
        }
    }

    #[test]
    fn base64_body_padded_or_not() {
        for body in ["aGVsbG8=", "aGVsbG8"] {
            let invocation = response(json!({"body": body, "isBase64Encoded": true}));
            assert_eq!(invocation.body_bytes().unwrap(), b"hello");
        }
        let empty = response(json!({"body": "", "isBase64Encoded": true}));
        assert_eq!(empty.body_bytes().unwrap(), b"");
        let invalid = response(json!({"body": "a=b", "isBase64Encoded": true}));
        assert!(invalid.body_bytes().is_none());
        let plain = response(json!({"body": "aGVsbG8=", "isBase64Encoded": false}));
        assert_eq!(plain.body_text().as_deref(), Some("aGVsbG8="));
    }

    #[test]
    fn headers_from_single_then_multi_value_maps() {
        let invocation = response(json!({
            "statusCode": 404,
            "headers": {"Content-Type": "text/plain"},
            "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]}
        }));
        assert_eq!(invocation.status_code(), Some(404));
        assert_eq!(
            invocation.header("content-type").as_deref(),
            Some("text/plain")
        );
        assert_eq!(invocation.header("Set-Cookie").as_deref(), Some("a=1"));
        assert_eq!(invocation.header("x-missing"), None);
    }

    #[test]
    fn random_hex_is_hex_of_the_asked_length() {
        for len in [6, 24, 32] {
            let hex = random_hex(len);
            assert_eq!(hex.len(), len);
            assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }
}
