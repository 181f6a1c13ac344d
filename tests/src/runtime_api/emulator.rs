//! [`RuntimeApi`]: the Runtime API server and its axum handlers.

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use base64::Engine as _;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    ACCOUNT_ID, BASE64, FunctionError, HarnessError, Invocation, Outcome, REGION, StreamedResponse,
    lock, random_hex,
};

const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const RESPONSE_PATH: &str = "/2018-06-01/runtime/invocation/{id}/response";
const ERROR_PATH: &str = "/2018-06-01/runtime/invocation/{id}/error";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";

const ERROR_TYPE_HEADER: &str = "lambda-runtime-function-error-type";
const ERROR_BODY_TRAILER: &str = "lambda-runtime-function-error-body";
const RESPONSE_MODE_HEADER: &str = "lambda-runtime-function-response-mode";
const HTTP_INTEGRATION_CONTENT_TYPE: &str = "application/vnd.awslambda.http-integration-response";

/// Lifecycle facts the emulator observed.
#[derive(Clone, Default)]
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
    chunks: Option<mpsc::UnboundedSender<Bytes>>,
}

struct InFlight {
    reply: oneshot::Sender<Completion>,
    delivered_at: Instant,
    /// Where each chunk of a streamed response goes as it arrives, if anywhere.
    chunks: Option<mpsc::UnboundedSender<Bytes>>,
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
        self.invoke_with(event, timeout, None).await
    }

    /// [`Self::invoke`], also sending each chunk of a streamed response to `chunks` as it
    /// arrives (the HTTP integration prelude included; [`super::LiveBody`] reads them).
    pub async fn invoke_streaming(
        &self,
        event: Value,
        timeout: Duration,
        chunks: mpsc::UnboundedSender<Bytes>,
    ) -> Result<Invocation, HarnessError> {
        self.invoke_with(event, timeout, Some(chunks)).await
    }

    pub(super) async fn invoke_with(
        &self,
        event: Value,
        timeout: Duration,
        chunks: Option<mpsc::UnboundedSender<Bytes>>,
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
                chunks,
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
                chunks: pending.chunks,
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

/// Reads a whole request body, including chunked bodies and their trailers, sending each
/// chunk to `chunks` as it arrives.
async fn read_body(
    mut body: Body,
    chunks: Option<&mpsc::UnboundedSender<Bytes>>,
) -> Result<(Vec<u8>, Option<HeaderMap>), axum::Error> {
    let mut data = Vec::new();
    let mut trailers: Option<HeaderMap> = None;
    while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        match frame?.into_data() {
            Ok(chunk) => {
                if let Some(chunks) = chunks {
                    let _ = chunks.send(chunk.clone());
                }
                data.extend_from_slice(&chunk);
            }
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
    let streaming = header_string(&headers, RESPONSE_MODE_HEADER)
        .is_some_and(|mode| mode.eq_ignore_ascii_case("streaming"));
    let chunks = streaming
        .then(|| {
            lock(&shared.inflight)
                .get(&request_id)
                .and_then(|inflight| inflight.chunks.clone())
        })
        .flatten();
    let (data, trailers) = match read_body(body, chunks.as_ref()).await {
        Ok(read) => read,
        Err(error) => return bad_body(error),
    };
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
    const DELIMITER: [u8; 8] = [0; 8];
    let content_type = header_string(headers, header::CONTENT_TYPE.as_str());
    let integration = content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(HTTP_INTEGRATION_CONTENT_TYPE));
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
            .map(|b| match BASE64.decode(&b) {
                Ok(raw) => json_or_text(&raw),
                Err(_) => Value::String(b),
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
    let (data, _) = match read_body(body, None).await {
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
    let (data, _) = match read_body(body, None).await {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn integration_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(HTTP_INTEGRATION_CONTENT_TYPE),
        );
        headers
    }

    #[test]
    fn streamed_prelude_split() {
        let mut data = br#"{"statusCode":201,"headers":{"content-type":"text/plain"}}"#.to_vec();
        data.extend_from_slice(&[0; 8]);
        data.extend_from_slice(b"hello");
        let streamed = parse_streamed(&integration_headers(), data, None);
        assert_eq!(streamed.prelude.as_ref().unwrap()["statusCode"], 201);
        assert_eq!(&streamed.body[..], b"hello");
        assert!(streamed.error.is_none());
    }

    #[test]
    fn streamed_error_trailers() {
        let diagnostic = r#"{"errorType":"Boom","errorMessage":"mid-stream"}"#;
        let mut trailers = HeaderMap::new();
        trailers.insert(ERROR_TYPE_HEADER, HeaderValue::from_static("Boom"));
        trailers.insert(
            ERROR_BODY_TRAILER,
            HeaderValue::from_str(&base64::prelude::BASE64_STANDARD.encode(diagnostic)).unwrap(),
        );
        let streamed = parse_streamed(&HeaderMap::new(), b"partial".to_vec(), Some(&trailers));
        assert!(streamed.prelude.is_none());
        assert_eq!(&streamed.body[..], b"partial");
        let error = streamed.error.unwrap();
        assert_eq!(error.error_type.as_deref(), Some("Boom"));
        assert_eq!(error.message(), Some("mid-stream"));

        trailers.insert(ERROR_BODY_TRAILER, HeaderValue::from_static("not base64!"));
        let streamed = parse_streamed(&HeaderMap::new(), Vec::new(), Some(&trailers));
        assert_eq!(streamed.error.unwrap().payload, "not base64!");
    }
}
