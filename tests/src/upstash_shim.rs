//! An Upstash-REST-compatible shim in front of a real redis-server, so the limiter's real
//! client and real Lua script are what the tests run.
//!
//! Speaks what the client uses of Upstash: `POST /` with a command as a JSON array,
//! `POST /pipeline` with an array of commands, a Bearer token (else 401
//! `{"error":"Unauthorized"}`), `{"result": …}` answers, 400 `{"error": "<Redis's error
//! text>"}` for a malformed or failing command, and 500 when Redis cannot be reached. It
//! counts the requests it serves, for the round-trip assertions.
//!
//! Scripts: Upstash reads a first line `#!lua flags=allow-key-locking`, which redis-server
//! rejects ("Unexpected flag in script shebang"). The shim takes that line out of every
//! script before Redis sees it (EVAL, SCRIPT LOAD), records whether it was there (see
//! [`UpstashShim::scripts`]), and keeps Upstash's name for the script: the SHA-1 of the body
//! as sent, which EVALSHA uses and the shim turns into the name Redis knows.
//!
//! [`UpstashShim::set_read_only`] answers as Upstash does to a read-only token.
//!
//! `REDIS_URL` (set by `infra/test.sh`) names the Redis; without it, or when nothing
//! answers there, the helpers panic: a run meant to test real Redis must fail, never skip.

use std::collections::HashMap;
use std::net::{TcpListener as StdListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use secrecy::SecretString;
use serde_json::{Value, json};
use shared::ratelimit::upstash::UpstashConfig;
use tokio::sync::Mutex;

/// The Redis under test, from `REDIS_URL`. Panics when it is unset or nothing answers.
pub fn redis_url() -> String {
    crate::emulator::required("REDIS_URL", "redis-server")
}

struct Shared {
    token: String,
    redis: redis::Client,
    /// One multiplexed connection, replaced after Redis went away.
    connection: Mutex<Option<redis::aio::MultiplexedConnection>>,
    requests: AtomicUsize,
    /// Commands run (a pipeline's each), as Upstash bills them.
    commands: AtomicUsize,
    /// Every script sent, by the SHA-1 of its body as sent.
    scripts: std::sync::Mutex<HashMap<String, LoadedScript>>,
    read_only: AtomicBool,
}

/// The shebang line asking Upstash to lock only the script's KEYS.
const KEY_LOCKING: &str = "#!lua flags=allow-key-locking";

/// The commands a read-only token may run (of those the tests use).
const READS: [&str; 7] = ["PING", "ECHO", "GET", "MGET", "EXISTS", "TTL", "PTTL"];

/// A script the shim was sent, by EVAL or SCRIPT LOAD.
#[derive(Clone, Debug)]
pub struct LoadedScript {
    /// Its name for EVALSHA: the SHA-1 of the body as sent.
    pub sha1: String,
    /// Whether the body began with the `allow-key-locking` shebang line.
    pub key_locking: bool,
    /// Its name in Redis, which got it without that line.
    redis_sha1: String,
}

/// A running shim. Dropping it stops serving.
pub struct UpstashShim {
    url: String,
    token: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for UpstashShim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl UpstashShim {
    /// A shim in front of `REDIS_URL`.
    pub async fn start() -> Self {
        Self::start_for(&redis_url()).await
    }

    /// A shim in front of the Redis at `redis_url`, with a token of its own.
    pub async fn start_for(redis_url: &str) -> Self {
        let redis = redis::Client::open(redis_url)
            .unwrap_or_else(|error| panic!("REDIS_URL={redis_url}: {error}"));
        let token = format!("shim-token-{}", uuid::Uuid::new_v4());
        let shared = Arc::new(Shared {
            token: token.clone(),
            redis,
            connection: Mutex::new(None),
            requests: AtomicUsize::new(0),
            commands: AtomicUsize::new(0),
            scripts: std::sync::Mutex::new(HashMap::new()),
            read_only: AtomicBool::new(false),
        });
        let router = Router::new()
            .route("/", post(command))
            .route("/pipeline", post(pipeline))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("the shim cannot listen on 127.0.0.1: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("the shim's address: {error}"));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self {
            url: format!("http://{address}"),
            token,
            shared,
            server,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Requests served so far (every one: commands, pipelines, refused ones).
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Commands run so far (each of a pipeline's too): what Upstash bills.
    pub fn commands(&self) -> usize {
        self.shared.commands.load(Ordering::SeqCst)
    }

    /// Every script sent so far (EVAL, SCRIPT LOAD), once each.
    pub fn scripts(&self) -> Vec<LoadedScript> {
        let scripts = self.shared.scripts.lock().unwrap();
        scripts.values().cloned().collect()
    }

    /// While set, answers as Upstash does to a read-only token: a command that may write
    /// (EVAL and EVALSHA included) gets 400 NOPERM; PING and reads still answer.
    pub fn set_read_only(&self, read_only: bool) {
        self.shared.read_only.store(read_only, Ordering::SeqCst);
    }

    /// A client configuration for this shim, with the limiter's default timeouts.
    pub fn config(&self) -> UpstashConfig {
        self.config_with_token(&self.token)
    }

    pub fn config_with_token(&self, token: &str) -> UpstashConfig {
        UpstashConfig {
            url: self.url.clone(),
            token: SecretString::from(token.to_owned()),
            connect_timeout: Duration::from_millis(300),
            request_timeout: Duration::from_secs(1),
            tls: shared::tls::Tls::default(),
        }
    }
}

fn answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|token| token == shared.token)
}

async fn command(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if !authorized(&shared, &headers) {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
    }
    let Some(parts) = serde_json::from_slice::<Value>(&body)
        .ok()
        .as_ref()
        .and_then(parts)
    else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "ERR failed to parse command"}),
        );
    };
    match run(&shared, &parts).await {
        Ok(result) => answer(StatusCode::OK, json!({ "result": result })),
        Err(Failure::Redis(text)) => answer(StatusCode::BAD_REQUEST, json!({ "error": text })),
        Err(Failure::Down(text)) => {
            answer(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": text }))
        }
    }
}

async fn pipeline(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if !authorized(&shared, &headers) {
        return answer(StatusCode::UNAUTHORIZED, json!({"error": "Unauthorized"}));
    }
    let commands: Option<Vec<Vec<String>>> = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(commands)) => commands.iter().map(parts).collect(),
        _ => None,
    };
    let Some(commands) = commands else {
        return answer(
            StatusCode::BAD_REQUEST,
            json!({"error": "ERR failed to parse pipeline request"}),
        );
    };
    let mut results = Vec::with_capacity(commands.len());
    for parts in &commands {
        results.push(match run(&shared, parts).await {
            Ok(result) => json!({ "result": result }),
            Err(Failure::Redis(text)) => json!({ "error": text }),
            Err(Failure::Down(text)) => {
                return answer(StatusCode::INTERNAL_SERVER_ERROR, json!({ "error": text }));
            }
        });
    }
    answer(StatusCode::OK, Value::Array(results))
}

/// A command's parts: a non-empty array of strings (numbers are accepted as Upstash does).
fn parts(value: &Value) -> Option<Vec<String>> {
    let Value::Array(items) = value else {
        return None;
    };
    let parts: Option<Vec<String>> = items
        .iter()
        .map(|item| match item {
            Value::String(text) => Some(text.clone()),
            Value::Number(number) => Some(number.to_string()),
            _ => None,
        })
        .collect();
    parts.filter(|parts| !parts.is_empty())
}

enum Failure {
    /// Redis answered with an error: its text, as Upstash passes it on.
    Redis(String),
    /// Redis could not be reached.
    Down(String),
}

/// Runs a command as Upstash would: scripts without the key-locking line, which Redis rejects.
async fn run(shared: &Shared, parts: &[String]) -> Result<Value, Failure> {
    shared.commands.fetch_add(1, Ordering::SeqCst);
    let verb = parts[0].to_ascii_uppercase();
    if shared.read_only.load(Ordering::SeqCst) && !READS.contains(&verb.as_str()) {
        return Err(Failure::Redis(format!(
            "NOPERM this user has no permissions to run the '{}' command",
            verb.to_ascii_lowercase()
        )));
    }
    let mut parts = parts.to_vec();
    let script_load = verb == "SCRIPT"
        && parts
            .get(1)
            .is_some_and(|sub| sub.eq_ignore_ascii_case("LOAD"));
    // Where the script's body is, if the command carries one.
    let body_at = match verb.as_str() {
        "EVAL" => 1,
        _ if script_load => 2,
        _ => 0,
    };
    if body_at > 0 && body_at < parts.len() {
        let (script, body) = load(shared, &parts[body_at]);
        parts[body_at] = body;
        if script_load {
            query(shared, &parts).await?;
            return Ok(Value::String(script.sha1));
        }
    } else if verb == "EVALSHA"
        && parts.len() > 1
        && let Some(script) = shared.scripts.lock().unwrap().get(&parts[1])
    {
        parts[1] = script.redis_sha1.clone();
    }
    query(shared, &parts).await
}

/// Records `body` and returns what Redis must get of it: without the key-locking line (the
/// newline stays, so Redis's line numbers in errors are the file's).
fn load(shared: &Shared, body: &str) -> (LoadedScript, String) {
    let stripped = body
        .strip_prefix(KEY_LOCKING)
        .filter(|rest| rest.starts_with('\n'));
    let for_redis = stripped.unwrap_or(body).to_owned();
    let script = LoadedScript {
        sha1: sha1_smol::Sha1::from(body).digest().to_string(),
        key_locking: stripped.is_some(),
        redis_sha1: sha1_smol::Sha1::from(&for_redis).digest().to_string(),
    };
    shared
        .scripts
        .lock()
        .unwrap()
        .insert(script.sha1.clone(), script.clone());
    (script, for_redis)
}

async fn query(shared: &Shared, parts: &[String]) -> Result<Value, Failure> {
    let mut connection = {
        let mut cached = shared.connection.lock().await;
        match cached.as_ref() {
            Some(connection) => connection.clone(),
            None => {
                let config = redis::AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(1)))
                    .set_response_timeout(Some(Duration::from_secs(2)));
                let connection = shared
                    .redis
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|error| Failure::Down(format!("cannot reach Redis: {error}")))?;
                *cached = Some(connection.clone());
                connection
            }
        }
    };
    let mut command = redis::cmd(&parts[0]);
    for part in &parts[1..] {
        command.arg(part);
    }
    match command.query_async::<redis::Value>(&mut connection).await {
        Ok(value) => Ok(to_json(value)),
        Err(error) => match error.code() {
            Some(code) => Err(Failure::Redis(match error.detail() {
                Some(detail) => format!("{code} {detail}"),
                None => code.to_owned(),
            })),
            None => {
                *shared.connection.lock().await = None;
                Err(Failure::Down(format!("Redis: {error}")))
            }
        },
    }
}

fn to_json(value: redis::Value) -> Value {
    match value {
        redis::Value::Nil => Value::Null,
        redis::Value::Int(number) => json!(number),
        redis::Value::BulkString(bytes) => {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        redis::Value::SimpleString(text) => Value::String(text),
        redis::Value::Okay => Value::String("OK".into()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            Value::Array(items.into_iter().map(to_json).collect())
        }
        redis::Value::Double(number) => json!(number),
        redis::Value::Boolean(flag) => json!(i64::from(flag)),
        other => Value::String(format!("{other:?}")),
    }
}

// ------------------------------------------------------------------ a Redis of one's own

/// A redis-server this test started on a free port (for killing it), stopped on drop.
pub struct RedisProcess {
    port: u16,
    child: Option<Child>,
}

impl RedisProcess {
    /// Starts `redis-server` (on PATH: `infra/emulators.sh install`) without persistence.
    pub fn start() -> Self {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap_or_else(|error| panic!("no free port on 127.0.0.1: {error}"));
        let mut process = Self { port, child: None };
        process.restart();
        process
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it the hard way (SIGKILL): no shutdown, no goodbye to clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        self.kill();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--bind", "127.0.0.1", "--port", &port, "--save", "", "--appendonly", "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start redis-server ({error}): install it with `bash infra/emulators.sh install`")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pings(self.port) {
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not answer within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn pings(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG\r\n"
}
