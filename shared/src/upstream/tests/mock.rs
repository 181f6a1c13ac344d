//! Test doubles: a scripted Mercado Livre on 127.0.0.1 and a recording limiter.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;

use crate::ratelimit::{Check, LimitStatus, Limiter, LimiterError, LimiterResult, Verdict};

#[derive(Clone, Debug)]
pub enum Reply {
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Answers `status` with the request's Authorization header in the error message.
    EchoAuthorization(u16),
    /// Never answers.
    Hang,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Reply::Status {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.to_owned(),
        }
    }

    pub fn with_header(status: u16, name: &'static str, value: &str) -> Self {
        Reply::Status {
            status,
            headers: vec![(name, value.to_owned())],
            body: String::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub accept: Option<String>,
    pub body: Vec<u8>,
}

/// Answers each request with the next scripted reply, then with the fallback.
pub struct MockApi {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
}

impl MockApi {
    pub async fn start() -> (Arc<Self>, String) {
        let mock = Arc::new(Self {
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(Reply::json(200, "{}")),
            requests: Mutex::new(Vec::new()),
        });
        let router = axum::Router::new()
            .fallback(answer)
            .with_state(mock.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (mock, format!("http://{address}"))
    }

    pub fn then(&self, reply: Reply) -> &Self {
        self.script.lock().unwrap().push_back(reply);
        self
    }

    pub fn always(&self, reply: Reply) {
        *self.fallback.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn answer(State(mock): State<Arc<MockApi>>, request: axum::extract::Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let authorization = header("authorization");
    let content_type = header("content-type");
    let accept = header("accept");
    mock.requests.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        target: parts
            .uri
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default(),
        authorization: authorization.clone(),
        content_type,
        accept,
        body: body.to_vec(),
    });
    let reply = mock
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or_else(|| mock.fallback.lock().unwrap().clone());
    let (status, headers, body) = match reply {
        Reply::Hang => std::future::pending().await,
        Reply::Status {
            status,
            headers,
            body,
        } => (status, headers, body),
        Reply::EchoAuthorization(status) => {
            let message = format!(
                "bad request sent with {}",
                authorization.unwrap_or_default()
            );
            let body =
                serde_json::json!({"message": message, "error": "bad_request", "status": status});
            (status, vec![], body.to_string())
        }
    };
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(axum::body::Body::from(body)).unwrap()
}

/// A limiter that records what it is asked and answers as told.
#[derive(Default)]
pub struct RecordingLimiter {
    deny_for: Mutex<Option<Duration>>,
    broken: Mutex<bool>,
    pub checks: Mutex<Vec<(Vec<Check>, i64)>>,
    pub blocks: Mutex<Vec<(String, i64, i64)>>,
}

impl RecordingLimiter {
    pub fn deny_for(&self, retry_after: Duration) {
        *self.deny_for.lock().unwrap() = Some(retry_after);
    }

    pub fn break_down(&self) {
        *self.broken.lock().unwrap() = true;
    }

    pub fn check_count(&self) -> usize {
        self.checks.lock().unwrap().len()
    }
}

#[async_trait::async_trait]
impl Limiter for RecordingLimiter {
    async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
        self.checks.lock().unwrap().push((checks.to_vec(), now_ms));
        if *self.broken.lock().unwrap() {
            return Err(LimiterError::Unavailable("connection refused".into()));
        }
        let denied = *self.deny_for.lock().unwrap();
        Ok(Verdict {
            allowed: denied.is_none(),
            retry_after: denied.unwrap_or_default(),
            limits: checks
                .iter()
                .map(|check| LimitStatus {
                    key: check.key.clone(),
                    limit: check.rule.limit,
                    remaining: if denied.is_some() {
                        0
                    } else {
                        check.rule.burst - 1
                    },
                    reset_after: denied.unwrap_or_default(),
                })
                .collect(),
        })
    }

    async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
        self.blocks
            .lock()
            .unwrap()
            .push((key.to_owned(), until_ms, now_ms));
        Ok(())
    }
}
