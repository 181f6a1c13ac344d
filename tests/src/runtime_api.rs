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

use std::collections::HashMap;
use std::fmt::Write as _;
use std::future::{Future, poll_fn};
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot, watch};

const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const RESPONSE_PATH: &str = "/2018-06-01/runtime/invocation/{id}/response";
const ERROR_PATH: &str = "/2018-06-01/runtime/invocation/{id}/error";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";
const ERROR_BODY_TRAILER: &str = "lambda-runtime-function-error-body";
const RESPONSE_MODE_HEADER: &str = "lambda-runtime-function-response-mode";
const HTTP_INTEGRATION_CONTENT_TYPE: &str = "application/vnd.awslambda.http-integration-response";

/// Region and account the emulator (and [`apigw_rest_event`]) pretend to run in.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT_ID: &str = "123456789012";

/// How long the tail of a function's output kept in an error message is.
const LOG_TAIL: usize = 4096;

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
        let value = match &self.outcome {
            Outcome::Response(value) => value,
            Outcome::Streamed(StreamedResponse {
                prelude: Some(prelude),
                ..
            }) => prelude,
            _ => return None,
        };
        value
            .get("statusCode")
            .and_then(Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
    }

    /// A response header (case-insensitive; `headers` first, then `multiValueHeaders`).
    pub fn header(&self, name: &str) -> Option<String> {
        let value = match &self.outcome {
            Outcome::Response(value) => value,
            Outcome::Streamed(StreamedResponse {
                prelude: Some(prelude),
                ..
            }) => prelude,
            _ => return None,
        };
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

    /// The HTTP body: the proxy response's `body` (base64-decoded when `isBase64Encoded`)
    /// or the streamed body. `None` for an error outcome or a body that is absent.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match &self.outcome {
            Outcome::Response(value) => {
                let body = value.get("body")?.as_str()?;
                if value.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
                    base64_decode(body)
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
}

/// Lifecycle facts the emulator observed.
#[derive(Clone, Debug, Default)]
struct Lifecycle {
    first_poll: Option<Instant>,
    polls: u64,
    init_error: Option<FunctionError>,
}

struct Pending {
    request_id: String,
    event: Bytes,
    deadline_ms: u128,
    reply: oneshot::Sender<Completion>,
}

struct InFlight {
    reply: oneshot::Sender<Completion>,
    delivered_at: Instant,
}

struct Completion {
    outcome: Outcome,
    delivered_at: Instant,
    completed_at: Instant,
}

struct Shared {
    function_arn: String,
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    inflight: Mutex<HashMap<String, InFlight>>,
    lifecycle: watch::Sender<Lifecycle>,
    shutdown: watch::Receiver<bool>,
    unexpected: Mutex<Vec<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The emulator: an axum server on `127.0.0.1:<ephemeral>` speaking the Runtime API to one
/// function process. Dropping it stops the server and releases any long-polling `/next`.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    queue: mpsc::UnboundedSender<Pending>,
    shutdown: watch::Sender<bool>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for RuntimeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeApi")
            .field("addr", &self.addr)
            .field("function_arn", &self.shared.function_arn)
            .finish_non_exhaustive()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Starts an emulator for a function called `sellerhub-function`.
    pub async fn start() -> Result<RuntimeApi, HarnessError> {
        Self::start_for("sellerhub-function").await
    }

    /// Starts an emulator whose invocations carry the ARN of `function_name`.
    pub async fn start_for(function_name: &str) -> Result<RuntimeApi, HarnessError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|source| HarnessError::Io {
                context: "binding the Runtime API emulator to 127.0.0.1".into(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| HarnessError::Io {
            context: "reading the emulator's address".into(),
            source,
        })?;
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            function_arn: format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"),
            queue: tokio::sync::Mutex::new(queue_rx),
            inflight: Mutex::new(HashMap::new()),
            lifecycle: watch::Sender::new(Lifecycle::default()),
            shutdown: shutdown_rx,
            unexpected: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route(NEXT_PATH, get(next_invocation))
            .route(RESPONSE_PATH, post(invocation_response))
            .route(ERROR_PATH, post(invocation_error))
            .route(INIT_ERROR_PATH, post(init_error))
            .fallback(unexpected_request)
            .with_state(shared.clone());
        // No Nagle: streamed chunks and small responses must not wait for delayed ACKs,
        // or they would distort the latencies the harness measures.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            addr,
            shared,
            queue: queue_tx,
            shutdown: shutdown_tx,
            server,
        })
    }

    /// `host:port`, the value for `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The ARN sent as `Lambda-Runtime-Invoked-Function-Arn`.
    pub fn function_arn(&self) -> &str {
        &self.shared.function_arn
    }

    /// When the function first called `GET /next` (the end of its init phase).
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.lifecycle.borrow().first_poll
    }

    /// How many times the function has called `GET /next`.
    pub fn polls(&self) -> u64 {
        self.shared.lifecycle.borrow().polls
    }

    /// The error posted to `/init/error`, if any.
    pub fn init_error(&self) -> Option<FunctionError> {
        self.shared.lifecycle.borrow().init_error.clone()
    }

    /// Requests to paths the emulator does not serve (`METHOD path`), e.g. the extensions
    /// API or SnapStart's `/restore/next`.
    pub fn unexpected_requests(&self) -> Vec<String> {
        lock(&self.shared.unexpected).clone()
    }

    /// Waits until the function polls `/next` for the first time; returns that instant.
    /// Fails at once if the function reports an init error.
    pub async fn wait_first_poll(&self, timeout: Duration) -> Result<Instant, HarnessError> {
        let mut lifecycle = self.shared.lifecycle.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            lifecycle.wait_for(|l| l.first_poll.is_some() || l.init_error.is_some()),
        )
        .await;
        let state = match waited {
            Err(_) => {
                return Err(HarnessError::Timeout {
                    what: "the function's first GET /next",
                    after: timeout,
                    logs: String::new(),
                });
            }
            // The sender lives in `self.shared`: it cannot be dropped while we borrow it.
            Ok(Err(_)) => return Err(HarnessError::Emulator("lifecycle channel closed".into())),
            Ok(Ok(state)) => state.clone(),
        };
        if let Some(error) = state.init_error {
            return Err(HarnessError::InitError {
                error,
                logs: String::new(),
            });
        }
        state
            .first_poll
            .ok_or_else(|| HarnessError::Emulator("first poll vanished".into()))
    }

    /// Queues `event` for the function and waits (at most `timeout`, which also becomes the
    /// invocation's `Lambda-Runtime-Deadline-Ms`) for its response or error. An init error
    /// reported meanwhile ends the wait with [`HarnessError::InitError`].
    pub async fn invoke(
        &self,
        event: Value,
        timeout: Duration,
    ) -> Result<Invocation, HarnessError> {
        let started = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = serde_json::to_vec(&event)
            .map_err(|e| HarnessError::Emulator(format!("serializing the event: {e}")))?;
        let (reply, completion) = oneshot::channel();
        self.queue
            .send(Pending {
                request_id: request_id.clone(),
                event: Bytes::from(event),
                deadline_ms: epoch_millis() + timeout.as_millis(),
                reply,
            })
            .map_err(|_| HarnessError::Emulator("the emulator's queue is closed".into()))?;

        let mut lifecycle = self.shared.lifecycle.subscribe();
        let waited = tokio::time::timeout(timeout, async {
            tokio::select! {
                biased;
                done = completion => done.map_err(|_| HarnessError::Emulator("the emulator dropped the invocation".into())),
                state = lifecycle.wait_for(|l| l.init_error.is_some()) => {
                    let error = state.ok().and_then(|s| s.init_error.clone());
                    Err(match error {
                        Some(error) => HarnessError::InitError { error, logs: String::new() },
                        None => HarnessError::Emulator("lifecycle channel closed".into()),
                    })
                }
            }
        })
        .await;
        let completion = match waited {
            Ok(result) => result,
            Err(_) => Err(HarnessError::Timeout {
                what: "the invocation's response",
                after: timeout,
                logs: String::new(),
            }),
        };
        let completion = match completion {
            Ok(completion) => completion,
            Err(error) => {
                // A response that arrives later is then rejected like an unknown id.
                lock(&self.shared.inflight).remove(&request_id);
                return Err(error);
            }
        };
        Ok(Invocation {
            request_id,
            outcome: completion.outcome,
            latency: completion.completed_at.saturating_duration_since(started),
            duration: completion
                .completed_at
                .saturating_duration_since(completion.delivered_at),
        })
    }
}

fn epoch_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

fn accepted() -> Response {
    json_response(StatusCode::ACCEPTED, json!({"status": "OK"}))
}

fn random_hex(len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}

/// An X-Ray trace header, as Lambda sends it.
fn trace_id() -> String {
    let epoch_secs = epoch_millis() / 1000;
    format!(
        "Root=1-{epoch_secs:08x}-{};Parent={};Sampled=0;Lineage=1:{}:0",
        random_hex(24),
        random_hex(16),
        random_hex(8)
    )
}

async fn next_invocation(State(shared): State<Arc<Shared>>) -> Response {
    let now = Instant::now();
    shared.lifecycle.send_modify(|l| {
        l.polls += 1;
        l.first_poll.get_or_insert(now);
    });
    let mut shutdown = shared.shutdown.clone();
    loop {
        let pending = {
            let mut queue = shared.queue.lock().await;
            tokio::select! {
                pending = queue.recv() => pending,
                _ = shutdown.wait_for(|stop| *stop) => None,
            }
        };
        let Some(pending) = pending else {
            return json_response(
                StatusCode::GONE,
                json!({"errorType": "EmulatorShutdown", "errorMessage": "the emulator is shutting down"}),
            );
        };
        if pending.reply.is_closed() {
            // The invoke() that queued it gave up (timeout): never deliver it.
            continue;
        }
        lock(&shared.inflight).insert(
            pending.request_id.clone(),
            InFlight {
                reply: pending.reply,
                delivered_at: Instant::now(),
            },
        );
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        put("lambda-runtime-aws-request-id", pending.request_id);
        put(
            "lambda-runtime-deadline-ms",
            pending.deadline_ms.to_string(),
        );
        put(
            "lambda-runtime-invoked-function-arn",
            shared.function_arn.clone(),
        );
        put("lambda-runtime-trace-id", trace_id());
        put("content-type", "application/json".into());
        return (StatusCode::OK, headers, pending.event).into_response();
    }
}

/// Reads a whole request body, including chunked bodies and their trailers.
async fn read_body(mut body: Body) -> Result<(Vec<u8>, Option<HeaderMap>), axum::Error> {
    let mut data = Vec::new();
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame?.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => {
                if let Ok(map) = frame.into_trailers() {
                    trailers.get_or_insert_with(HeaderMap::new).extend(map);
                }
            }
        }
    }
    Ok((data, trailers))
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn json_or_text(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

fn complete(shared: &Shared, request_id: &str, outcome: Outcome) -> Response {
    let Some(inflight) = lock(&shared.inflight).remove(request_id) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            json!({"errorType": "InvalidRequestID", "errorMessage": format!("unknown or already completed request id {request_id}")}),
        );
    };
    let _ = inflight.reply.send(Completion {
        outcome,
        delivered_at: inflight.delivered_at,
        completed_at: Instant::now(),
    });
    accepted()
}

fn bad_body(error: axum::Error) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        json!({"errorType": "InvalidBody", "errorMessage": error.to_string()}),
    )
}

async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (data, trailers) = match read_body(body).await {
        Ok(read) => read,
        Err(error) => return bad_body(error),
    };
    let streaming = header_string(&headers, RESPONSE_MODE_HEADER)
        .is_some_and(|mode| mode.eq_ignore_ascii_case("streaming"));
    let outcome = if streaming {
        Outcome::Streamed(parse_streamed(&headers, data, trailers.as_ref()))
    } else {
        Outcome::Response(json_or_text(&data))
    };
    complete(&shared, &request_id, outcome)
}

fn parse_streamed(
    headers: &HeaderMap,
    data: Vec<u8>,
    trailers: Option<&HeaderMap>,
) -> StreamedResponse {
    let content_type = header_string(headers, header::CONTENT_TYPE.as_str());
    let integration = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(HTTP_INTEGRATION_CONTENT_TYPE));
    const DELIMITER: [u8; 8] = [0; 8];
    let split = integration
        .then(|| data.windows(DELIMITER.len()).position(|w| w == DELIMITER))
        .flatten();
    let (prelude, body) = match split {
        Some(at) => (
            Some(json_or_text(&data[..at])),
            Bytes::copy_from_slice(&data[at + DELIMITER.len()..]),
        ),
        None => (None, Bytes::from(data)),
    };
    let error = trailers.and_then(|t| {
        let error_type = header_string(t, ERROR_TYPE_HEADER);
        let error_body = header_string(t, ERROR_BODY_TRAILER);
        if error_type.is_none() && error_body.is_none() {
            return None;
        }
        // The trailer body is base64 of the JSON diagnostic.
        let payload = error_body
            .map(|b| {
                base64_decode(&b)
                    .map(|raw| json_or_text(&raw))
                    .unwrap_or(Value::String(b))
            })
            .unwrap_or(Value::Null);
        Some(FunctionError {
            error_type,
            payload,
        })
    });
    StreamedResponse {
        content_type,
        prelude,
        body,
        error,
    }
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    UrlPath(request_id): UrlPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (data, _) = match read_body(body).await {
        Ok(read) => read,
        Err(error) => return bad_body(error),
    };
    let error = FunctionError {
        error_type: header_string(&headers, ERROR_TYPE_HEADER),
        payload: json_or_text(&data),
    };
    complete(&shared, &request_id, Outcome::Error(error))
}

async fn init_error(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Body) -> Response {
    let (data, _) = match read_body(body).await {
        Ok(read) => read,
        Err(error) => return bad_body(error),
    };
    let error = FunctionError {
        error_type: header_string(&headers, ERROR_TYPE_HEADER),
        payload: json_or_text(&data),
    };
    shared.lifecycle.send_modify(|l| {
        l.init_error.get_or_insert(error);
    });
    accepted()
}

async fn unexpected_request(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
) -> Response {
    let line = format!("{} {}", request.method(), request.uri());
    lock(&shared.unexpected).push(line.clone());
    json_response(
        StatusCode::NOT_FOUND,
        json!({"errorType": "NotFound", "errorMessage": format!("the emulator does not serve {line}")}),
    )
}

// ------------------------------------------------------------------------------------------
// The function process
// ------------------------------------------------------------------------------------------

/// A captured pipe: the bytes so far, and whether the pipe reached end of file.
#[derive(Clone)]
struct OutputBuffer {
    bytes: Arc<Mutex<Vec<u8>>>,
    eof: watch::Receiver<bool>,
}

impl OutputBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.bytes)).into_owned()
    }
}

/// Copies `pipe` into a buffer on a thread of its own until end of file.
fn drain(mut pipe: impl Read + Send + 'static) -> OutputBuffer {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (eof_tx, eof) = watch::channel(false);
    let buffer = bytes.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&buffer).extend_from_slice(&chunk[..n]),
            }
        }
        let _ = eof_tx.send(true);
    });
    OutputBuffer { bytes, eof }
}

/// A function binary running under its own [`RuntimeApi`], like one Lambda sandbox.
///
/// The child gets a clean environment: `PATH`, the variables Lambda sets for a
/// `provided.al2023` function (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`,
/// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128`, `AWS_LAMBDA_FUNCTION_VERSION=$LATEST`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, `_HANDLER=bootstrap`, `LAMBDA_TASK_ROOT`, log group/stream, `TZ`,
/// dummy credentials as Lambda always provides credentials in the environment), then the
/// caller's `env`, which wins. Stdout and stderr are captured. The child is killed on drop.
pub struct FunctionProcess {
    api: RuntimeApi,
    child: Child,
    binary: PathBuf,
    spawned_at: Instant,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
}

impl std::fmt::Debug for FunctionProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionProcess")
            .field("binary", &self.binary)
            .field("pid", &self.child.id())
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FunctionProcess {
    /// Starts an emulator and spawns `binary` against it. Returns as soon as the process
    /// exists; use [`Self::wait_ready`] or just [`Self::invoke`].
    pub async fn spawn(
        binary: impl AsRef<Path>,
        env: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        // Absolute, as the child runs in the task root (its own directory).
        let binary = std::fs::canonicalize(binary.as_ref()).map_err(|source| HarnessError::Io {
            context: format!("locating {}", binary.as_ref().display()),
            source,
        })?;
        let file_name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".into());
        let function_name = env
            .iter()
            .rev()
            .find(|(key, _)| *key == "AWS_LAMBDA_FUNCTION_NAME")
            .map(|(_, value)| (*value).to_owned())
            .unwrap_or(file_name);
        let api = RuntimeApi::start_for(&function_name).await?;
        let task_root = binary
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let log_stream = format!("2025/01/01/[$LATEST]{}", random_hex(32));

        let mut command = Command::new(&binary);
        command
            .env_clear()
            .current_dir(&task_root)
            .env("PATH", path)
            .env("LANG", "en_US.UTF-8")
            .env("TZ", ":UTC")
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", &function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_SESSION_TOKEN", "harness-session-token")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("LAMBDA_RUNTIME_DIR", &task_root)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let spawned_at = Instant::now();
        let mut child = command.spawn().map_err(|source| HarnessError::Io {
            context: format!("spawning {}", binary.display()),
            source,
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Emulator(
                "the child's output pipes are missing".into(),
            ));
        };
        let (stdout, stderr) = (drain(stdout), drain(stderr));
        Ok(FunctionProcess {
            api,
            child,
            binary,
            spawned_at,
            stdout,
            stderr,
        })
    }

    /// The emulator this process talks to.
    pub fn api(&self) -> &RuntimeApi {
        &self.api
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Init time: spawn → first `GET /next`, once the function has polled.
    pub fn init_duration(&self) -> Option<Duration> {
        self.api
            .first_poll()
            .map(|at| at.saturating_duration_since(self.spawned_at))
    }

    /// Waits for the end of init (first `GET /next`) and returns the init time. Fails fast
    /// when the process exits or reports an init error.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, HarnessError> {
        let result = {
            let Self { api, child, .. } = self;
            race_exit(child, "its first GET /next", api.wait_first_poll(timeout)).await
        };
        match result {
            Ok(first_poll) => Ok(first_poll.saturating_duration_since(self.spawned_at)),
            Err(error) => Err(self.with_logs(error).await),
        }
    }

    /// Invokes the function with `event` (see [`RuntimeApi::invoke`]); a cold function is
    /// given the same `timeout` to finish init. Fails fast when the process exits.
    pub async fn invoke(
        &mut self,
        event: Value,
        timeout: Duration,
    ) -> Result<Invocation, HarnessError> {
        let result = {
            let Self { api, child, .. } = self;
            race_exit(
                child,
                "answering the invocation",
                api.invoke(event, timeout),
            )
            .await
        };
        match result {
            Ok(invocation) => Ok(invocation),
            Err(error) => Err(self.with_logs(error).await),
        }
    }

    /// Peak resident set size (`VmHWM` in /proc/<pid>/status) in KiB, while the process runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    /// Current resident set size (`VmRSS`) in KiB, while the process runs.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process now (also done on drop) and returns its exit status; the captured
    /// output is complete afterwards (waits at most 1 s for the pipes to close).
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.settle_output(Duration::from_secs(1)).await;
        status
    }

    /// Waits (bounded) until both output pipes reached end of file, i.e. everything the
    /// exited process wrote has been captured.
    async fn settle_output(&self, timeout: Duration) {
        let mut stdout_eof = self.stdout.eof.clone();
        let mut stderr_eof = self.stderr.eof.clone();
        let _ = tokio::time::timeout(timeout, async {
            let _ = stdout_eof.wait_for(|eof| *eof).await;
            let _ = stderr_eof.wait_for(|eof| *eof).await;
        })
        .await;
    }

    /// Everything the function wrote to stdout so far (Lambda ships stdout and stderr to
    /// CloudWatch Logs alike; tracing JSON logs go to stdout).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Everything the function wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Stdout then stderr, labelled.
    pub fn output(&self) -> String {
        format!("[stdout]\n{}\n[stderr]\n{}", self.stdout(), self.stderr())
    }

    fn logs_tail(&self) -> String {
        let output = self.output();
        match output.char_indices().nth_back(LOG_TAIL) {
            Some((at, _)) => format!("…{}", &output[at..]),
            None => output,
        }
    }

    /// Adds the output tail to an error (and turns an exit after `/init/error` into an
    /// init error). After an exit, first lets the output pipes drain.
    async fn with_logs(&self, error: HarnessError) -> HarnessError {
        if matches!(
            error,
            HarnessError::ProcessExited { .. } | HarnessError::InitError { .. }
        ) {
            self.settle_output(Duration::from_secs(1)).await;
        }
        let logs = self.logs_tail();
        match error {
            HarnessError::ProcessExited { status, during, .. } => match self.api.init_error() {
                Some(error) => HarnessError::InitError { error, logs },
                None => HarnessError::ProcessExited {
                    status,
                    during,
                    logs,
                },
            },
            HarnessError::InitError { error, .. } => HarnessError::InitError { error, logs },
            HarnessError::Timeout { what, after, .. } => {
                HarnessError::Timeout { what, after, logs }
            }
            other => other,
        }
    }
}

/// Runs `work` while watching the child: an exit ends the wait at once.
async fn race_exit<T>(
    child: &mut Child,
    during: &'static str,
    work: impl Future<Output = Result<T, HarnessError>>,
) -> Result<T, HarnessError> {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            result = &mut work => return result,
            _ = tick.tick() => {
                let exited = child.try_wait().map_err(|source| HarnessError::Io {
                    context: "waiting for the function process".into(),
                    source,
                })?;
                if let Some(status) = exited {
                    return Err(HarnessError::ProcessExited {
                        status: status.to_string(),
                        during,
                        logs: String::new(),
                    });
                }
            }
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

// ------------------------------------------------------------------------------------------
// Building function binaries
// ------------------------------------------------------------------------------------------

/// The workspace root (the tests crate's parent directory).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Builds package `name` (`cargo build -p <name> [--release]`, so `cargo test` alone works)
/// and returns the path of its binary. Panics with cargo's error when the build fails.
pub fn function_binary(name: &str, release: bool) -> PathBuf {
    match try_function_binary(name, release) {
        Ok(path) => path,
        Err(error) => panic!("{error}"),
    }
}

/// [`function_binary`] returning the error instead of panicking. Each (package, profile)
/// is built once per test process.
pub fn try_function_binary(name: &str, release: bool) -> Result<PathBuf, HarnessError> {
    static BUILT: OnceLock<Mutex<HashMap<(String, bool), PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    // Held across the build: concurrent tests wanting the same binary wait for one build.
    let mut built = lock(built);
    if let Some(path) = built.get(&(name.to_owned(), release)) {
        return Ok(path.clone());
    }
    let root = workspace_root();
    let mut command = Command::new(env!("CARGO"));
    command.current_dir(&root).args([
        "build",
        "--message-format=json-render-diagnostics",
        "-p",
        name,
    ]);
    if release {
        command.arg("--release");
    }
    // Progress and diagnostics go to our stderr; artifact messages come on stdout.
    command.stdout(Stdio::piped()).stderr(Stdio::inherit());
    let output = command.output().map_err(|source| HarnessError::Io {
        context: format!("running {} build -p {name}", env!("CARGO")),
        source,
    })?;
    if !output.status.success() {
        return Err(HarnessError::Build {
            package: name.into(),
            detail: format!(
                "cargo build exited with {} (its errors are above)",
                output.status
            ),
        });
    }
    let mut executables = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bin = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"));
        if let (true, Some(executable)) = (is_bin, message["executable"].as_str()) {
            let target = message["target"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            executables.push((target, PathBuf::from(executable)));
        }
    }
    let path = match executables.iter().find(|(target, _)| target == name) {
        Some((_, path)) => path.clone(),
        None if executables.len() == 1 => executables[0].1.clone(),
        None => {
            let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(dir) => root.join(dir),
                None => root.join("target"),
            };
            target_dir
                .join(if release { "release" } else { "debug" })
                .join(name)
        }
    };
    if !path.is_file() {
        return Err(HarnessError::Build {
            package: name.into(),
            detail: format!("no binary at {}", path.display()),
        });
    }
    built.insert((name.to_owned(), release), path.clone());
    Ok(path)
}

// ------------------------------------------------------------------------------------------
// API Gateway REST API (v1) proxy events
// ------------------------------------------------------------------------------------------

/// The fake REST API's id (also in `Host` and `domainName`).
pub const API_ID: &str = "a1b2c3d4e5";
/// The stage every event comes through. Note: lambda_http prefixes the request URI's path
/// with it (`/prod/health`) unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set;
/// `RequestExt::raw_http_path()` is always the path without the stage.
pub const STAGE: &str = "prod";

/// A REST API (v1) Lambda proxy integration event as API Gateway sends it (regional
/// endpoint, no authorizer), in the documented shape:
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html#api-gateway-simple-proxy-for-lambda-input-format>.
///
/// * `path` is the request path without the stage or query (`/v1/notifications/n1/read`);
///   `resource` the resource template (`/v1/notifications/{id}/read`); path parameters are
///   extracted from it (`{proxy+}` takes the rest of the path).
/// * `headers` override the defaults (Accept, Host, User-Agent, X-Amzn-Trace-Id,
///   X-Forwarded-For/Port/Proto) case-insensitively; a name repeated goes to
///   `multiValueHeaders` with every value and to `headers` with the last, as API Gateway does.
///   `requestContext.identity.sourceIp` is the last `X-Forwarded-For` entry.
/// * `query` values are decoded values; repeated keys work like repeated headers.
pub fn apigw_rest_event(
    method: &str,
    path: &str,
    resource: &str,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let method = method.to_ascii_uppercase();
    let now_ms = epoch_millis();
    let host = format!("{API_ID}.execute-api.{REGION}.amazonaws.com");
    let trace = format!("Root=1-{:08x}-{}", now_ms / 1000, random_hex(24));

    // Ordered list of (name, values); caller headers replace defaults of the same name.
    let defaults: [(&str, String); 7] = [
        ("Accept", "*/*".into()),
        ("Host", host.clone()),
        ("User-Agent", "sellerhub-tests/1.0".into()),
        ("X-Amzn-Trace-Id", trace),
        ("X-Forwarded-For", "203.0.113.10".into()),
        ("X-Forwarded-Port", "443".into()),
        ("X-Forwarded-Proto", "https".into()),
    ];
    let mut header_list: Vec<(String, Vec<String>)> = defaults
        .iter()
        .filter(|(name, _)| !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)))
        .map(|(name, value)| ((*name).to_owned(), vec![value.clone()]))
        .collect();
    for (name, value) in headers {
        match header_list
            .iter_mut()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
        {
            Some((_, values)) => values.push((*value).to_owned()),
            None => header_list.push(((*name).to_owned(), vec![(*value).to_owned()])),
        }
    }
    let single_headers: Map<String, Value> = header_list
        .iter()
        .map(|(name, values)| (name.clone(), json!(values.last())))
        .collect();
    let multi_headers: Map<String, Value> = header_list
        .iter()
        .map(|(name, values)| (name.clone(), json!(values)))
        .collect();
    let header_value = |wanted: &str| -> Option<&str> {
        header_list
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .and_then(|(_, values)| values.last())
            .map(String::as_str)
    };
    let source_ip = header_value("X-Forwarded-For")
        .and_then(|xff| xff.rsplit(',').next())
        .map(str::trim)
        .unwrap_or("203.0.113.10")
        .to_owned();
    let user_agent = header_value("User-Agent").map(str::to_owned);

    let mut query_list: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in query {
        match query_list.iter_mut().find(|(existing, _)| existing == key) {
            Some((_, values)) => values.push((*value).to_owned()),
            None => query_list.push(((*key).to_owned(), vec![(*value).to_owned()])),
        }
    }
    let (single_query, multi_query) = if query_list.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (
            Value::Object(
                query_list
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v.last())))
                    .collect(),
            ),
            Value::Object(
                query_list
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect(),
            ),
        )
    };
    let path_parameters = match path_parameters(resource, path) {
        Some(params) if !params.is_empty() => Value::Object(params),
        _ => Value::Null,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let extended_request_id = format!("{}=", &random_hex(15));

    json!({
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "resourceId": random_hex(6),
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": extended_request_id,
            "requestTime": format_request_time(now_ms),
            "path": format!("/{STAGE}{path}"),
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_ID,
            "requestTimeEpoch": u64::try_from(now_ms).unwrap_or(u64::MAX),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": null,
                "accountId": null,
                "cognitoIdentityId": null,
                "caller": null,
                "sourceIp": source_ip,
                "principalOrgId": null,
                "accessKey": null,
                "cognitoAuthenticationType": null,
                "cognitoAuthenticationProvider": null,
                "userArn": null,
                "userAgent": user_agent,
                "user": null
            },
            "domainName": host,
            "apiId": API_ID
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Matches `path` against a resource template; `None` when it does not match.
fn path_parameters(resource: &str, path: &str) -> Option<Map<String, Value>> {
    let mut params = Map::new();
    let template: Vec<&str> = resource.trim_start_matches('/').split('/').collect();
    let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, segment) in template.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            let rest = actual.get(i..)?.join("/");
            params.insert(name.to_owned(), Value::String(rest));
            return Some(params);
        }
        let value = actual.get(i)?;
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                params.insert(name.to_owned(), Value::String((*value).to_owned()));
            }
            None if segment == value => {}
            None => return None,
        }
    }
    (template.len() == actual.len()).then_some(params)
}

/// `dd/Mon/yyyy:HH:mm:ss +0000`, API Gateway's `requestTime`.
fn format_request_time(epoch_ms: u128) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = i64::try_from(epoch_ms / 1000).unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    let mut out = String::new();
    let _ = write!(
        out,
        "{day:02}/{month_name}/{year}:{:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

/// Standard base64 (with or without padding); `None` on invalid input.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' | b'-' => Some(62),
            b'/' | b'_' => Some(63),
            _ => None,
        }
    }
    let digits: Vec<u8> = input.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let digits = match digits.iter().position(|&c| c == b'=') {
        Some(at) if digits[at..].iter().all(|&c| c == b'=') => &digits[..at],
        Some(_) => return None,
        None => &digits[..],
    };
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= value(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayProxyRequest;
    use lambda_http::RequestExt;
    use lambda_http::request::LambdaRequest;

    fn sample() -> Value {
        apigw_rest_event(
            "post",
            "/v1/notifications/n-42/read",
            "/v1/notifications/{id}/read",
            &[
                ("content-type", "application/json"),
                ("Cookie", "a=1"),
                ("Cookie", "b=2"),
                ("X-Forwarded-For", "198.51.100.7, 192.0.2.55"),
            ],
            &[("limit", "20"), ("tag", "x"), ("tag", "y z")],
            Some(r#"{"ok":true}"#),
        )
    }

    #[test]
    fn rest_event_deserializes_as_apigw_proxy_request() {
        let event: ApiGatewayProxyRequest = serde_json::from_value(sample()).unwrap();
        assert_eq!(event.http_method, http::Method::POST);
        assert_eq!(event.path.as_deref(), Some("/v1/notifications/n-42/read"));
        assert_eq!(
            event.resource.as_deref(),
            Some("/v1/notifications/{id}/read")
        );
        assert_eq!(
            event.path_parameters.get("id").map(String::as_str),
            Some("n-42")
        );
        assert_eq!(event.headers["content-type"], "application/json");
        assert_eq!(event.headers["cookie"], "b=2");
        assert_eq!(
            event.multi_value_headers.get_all("cookie").iter().count(),
            2
        );
        assert_eq!(event.query_string_parameters.first("limit"), Some("20"));
        assert_eq!(
            event.multi_value_query_string_parameters.all("tag"),
            Some(vec!["x", "y z"])
        );
        let ctx = &event.request_context;
        assert_eq!(ctx.stage.as_deref(), Some(STAGE));
        assert_eq!(
            ctx.path.as_deref(),
            Some("/prod/v1/notifications/n-42/read")
        );
        assert_eq!(
            ctx.resource_path.as_deref(),
            Some("/v1/notifications/{id}/read")
        );
        assert_eq!(ctx.http_method, http::Method::POST);
        assert_eq!(ctx.account_id.as_deref(), Some(ACCOUNT_ID));
        assert_eq!(ctx.apiid.as_deref(), Some(API_ID));
        assert_eq!(ctx.identity.source_ip.as_deref(), Some("192.0.2.55"));
        assert_eq!(
            ctx.identity.user_agent.as_deref(),
            Some("sellerhub-tests/1.0")
        );
        assert!(ctx.request_time_epoch > 1_600_000_000_000);
        assert_eq!(event.body.as_deref(), Some(r#"{"ok":true}"#));
        assert!(!event.is_base64_encoded);
    }

    #[test]
    fn rest_event_is_what_lambda_http_hands_a_handler() {
        let raw = serde_json::to_string(&sample()).unwrap();
        let lambda_request: LambdaRequest = serde_json::from_str(&raw).unwrap();
        assert!(matches!(lambda_request, LambdaRequest::ApiGatewayV1(_)));
        let request: lambda_http::Request = lambda_request.into();
        assert_eq!(request.method(), http::Method::POST);
        // lambda_http puts the stage in front of the path unless
        // AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH is set; the raw path has no stage.
        assert_eq!(request.uri().path(), "/prod/v1/notifications/n-42/read");
        assert_eq!(request.raw_http_path(), "/v1/notifications/n-42/read");
        assert_eq!(
            request.uri().host(),
            Some(format!("{API_ID}.execute-api.{REGION}.amazonaws.com").as_str())
        );
        assert_eq!(request.path_parameters().first("id"), Some("n-42"));
        assert_eq!(
            request.query_string_parameters().all("tag"),
            Some(vec!["x", "y z"])
        );
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.body().as_ref(), br#"{"ok":true}"#);
    }

    #[test]
    fn event_without_query_or_parameters_uses_nulls_like_api_gateway() {
        let event = apigw_rest_event("GET", "/health", "/health", &[], &[], None);
        assert_eq!(event["queryStringParameters"], Value::Null);
        assert_eq!(event["multiValueQueryStringParameters"], Value::Null);
        assert_eq!(event["pathParameters"], Value::Null);
        assert_eq!(event["body"], Value::Null);
        assert_eq!(event["requestContext"]["path"], "/prod/health");
        let parsed: ApiGatewayProxyRequest = serde_json::from_value(event).unwrap();
        assert!(parsed.path_parameters.is_empty());
    }

    #[test]
    fn greedy_path_parameter() {
        let params = path_parameters("/files/{proxy+}", "/files/a/b/c").unwrap();
        assert_eq!(params["proxy"], "a/b/c");
        assert!(path_parameters("/v1/me", "/v1/other").is_none());
        assert!(path_parameters("/v1/{id}", "/v1/a/b").is_none());
    }

    #[test]
    fn request_time_format() {
        // The example in AWS's docs: 1583349317135 = 04/Mar/2020:19:15:17 +0000.
        assert_eq!(
            format_request_time(1_583_349_317_135),
            "04/Mar/2020:19:15:17 +0000"
        );
        assert_eq!(format_request_time(0), "01/Jan/1970:00:00:00 +0000");
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64_decode("").unwrap(), b"");
        assert!(base64_decode("a=b").is_none());
    }

    #[test]
    fn streamed_prelude_split() {
        let mut data = br#"{"statusCode":201,"headers":{"content-type":"text/plain"}}"#.to_vec();
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(b"hello");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(HTTP_INTEGRATION_CONTENT_TYPE),
        );
        let streamed = parse_streamed(&headers, data, None);
        assert_eq!(streamed.prelude.as_ref().unwrap()["statusCode"], 201);
        assert_eq!(&streamed.body[..], b"hello");
        assert!(streamed.error.is_none());
    }
}
