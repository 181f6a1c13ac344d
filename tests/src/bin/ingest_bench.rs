//! Ingest bench: the two webhook ingest handlers in process, excluding the SQS call
//! (DESIGN.md's budget: p99 ≤ 1 ms).
//!
//! - webhook-meta (`WebhookMeta`, POST /webhooks/meta) on the Node/BullMQ peer's body
//!   (`tests/fixtures/bench/meta-whatsapp-text.json`, a byte-for-byte copy of
//!   `../shared/peers/node-bullmq/body.json`), signed with `X-Hub-Signature-256`;
//! - webhook-mercadolivre (`WebhookMercadoLivre`, POST /webhooks/mercadolivre) on
//!   `shared/fixtures/mercadolivre/notification-questions.json` (application_id
//!   2069392825111111 is the handler's MERCADOLIVRE_CLIENT_ID).
//!
//! "Excluding the SQS call": the handlers get a [`Queue`] that does nothing but count the
//! messages it is sent, so the figures are the handler's own work — signature check,
//! parsing, one envelope per change, its log line and EMF metric line — without a network
//! round trip. Requests are built beforehand as API Gateway delivers them (a request
//! context with request id and resource path, the body as bytes); each `handle()` is timed
//! alone, one after the other, on a current-thread runtime, after a warm-up. Each response
//! must be 200 and the queue must have counted one message per change, or the bench fails.
//!
//! Also timed, for reference: the same call inside `shared::http::serve`, as the Lambda
//! binary runs it (its invocation span and the "request served" log line).
//!
//! Logging is the Lambda binaries' (`shared::telemetry::init`; LOG_LEVEL applies): log
//! and EMF lines go to stdout, one each per request, so send stdout to /dev/null or a file.
//! The report goes to stderr. Figures are medians over `rounds` rounds of `requests`
//! requests per handler.
//!
//! ```text
//! cargo run -p sellerhub-tests --release --bin ingest_bench -- [rounds=5] [requests=20000] [--check] >/dev/null
//! cargo run -p sellerhub-tests --release --bin ingest_bench -- queue-stats <DATA_DIR>
//! ```
//!
//! `--check` exits 1 when a handler's median p99 is over the budget. `queue-stats` prints
//! the depths of the local runner's embedded webhook queue and its dead-letter queue in
//! DATA_DIR as one JSON line (the runner must be stopped: the database is one process's).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use shared::clock::SystemClock;
use shared::embedded_db::EmbeddedDb;
use shared::handlers::HttpHandler;
use shared::handlers::webhook_mercadolivre::WebhookMercadoLivre;
use shared::handlers::webhook_meta::WebhookMeta;
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::queue::{OutMessage, Queue, QueueError, QueueResult, QueueStats, ReceivedMessage};

const BUDGET_P99: Duration = Duration::from_millis(1);
const MAX_ROUNDS: usize = 100;
const MAX_REQUESTS: usize = 1_000_000;
const WARM_UP: usize = 2_000;

/// The peer's body and the secret its `sign.js` uses by default (any secret would do).
const META_BODY: &[u8] = include_bytes!("../../fixtures/bench/meta-whatsapp-text.json");
const META_APP_SECRET: &str = "peer-bench-app-secret";
const META_PATH: &str = "/webhooks/meta";
const MERCADOLIVRE_BODY: &[u8] =
    include_bytes!("../../../shared/fixtures/mercadolivre/notification-questions.json");
const MERCADOLIVRE_CLIENT_ID: &str = "2069392825111111";
const MERCADOLIVRE_PATH: &str = "/webhooks/mercadolivre";

/// A queue that only counts what it is sent: what "excluding the SQS call" leaves out.
#[derive(Default)]
struct CountingQueue {
    messages: AtomicU64,
}

impl CountingQueue {
    fn count(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }
}

#[async_trait::async_trait]
impl Queue for CountingQueue {
    async fn send_batch(&self, messages: Vec<OutMessage>) -> QueueResult<Vec<String>> {
        self.messages
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        Ok(vec![String::new(); messages.len()])
    }

    async fn receive(
        &self,
        _max: usize,
        _visibility_timeout: Duration,
        _wait: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        Ok(Vec::new())
    }

    async fn delete(&self, _receipt_handle: &str) -> QueueResult<()> {
        Err(QueueError::InvalidReceipt)
    }

    async fn change_visibility(
        &self,
        _receipt_handle: &str,
        _timeout: Duration,
    ) -> QueueResult<()> {
        Err(QueueError::InvalidReceipt)
    }

    async fn stats(&self) -> QueueResult<QueueStats> {
        Ok(QueueStats {
            visible: self.count(),
            ..QueueStats::default()
        })
    }

    fn dead_letters(&self) -> Option<&dyn Queue> {
        None
    }
}

/// One handler under test: how to make its requests and call it.
struct Subject {
    name: &'static str,
    path: &'static str,
    body: &'static [u8],
    headers: Vec<(&'static str, String)>,
    queue: Arc<CountingQueue>,
    handler: Handler,
}

enum Handler {
    Meta(WebhookMeta),
    MercadoLivre(WebhookMercadoLivre),
}

/// How a request is handed to the handler.
#[derive(Clone, Copy, PartialEq)]
enum Call {
    /// `HttpHandler::handle` alone: the budgeted figure.
    Handle,
    /// Inside `shared::http::serve`, as the Lambda binary calls it.
    Serve,
}

impl Subject {
    fn meta() -> Self {
        let queue = Arc::new(CountingQueue::default());
        let key =
            aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, META_APP_SECRET.as_bytes());
        let signature = format!(
            "sha256={}",
            hex::encode(aws_lc_rs::hmac::sign(&key, META_BODY))
        );
        Self {
            name: "webhook-meta",
            path: META_PATH,
            body: META_BODY,
            headers: vec![("x-hub-signature-256", signature)],
            handler: Handler::Meta(WebhookMeta::new(
                META_APP_SECRET.into(),
                "bench-verify-token".into(),
                queue.clone(),
                Arc::new(SystemClock),
            )),
            queue,
        }
    }

    fn mercadolivre() -> Self {
        let queue = Arc::new(CountingQueue::default());
        Self {
            name: "webhook-mercadolivre",
            path: MERCADOLIVRE_PATH,
            body: MERCADOLIVRE_BODY,
            headers: Vec::new(),
            handler: Handler::MercadoLivre(WebhookMercadoLivre::new(
                MERCADOLIVRE_CLIENT_ID.into(),
                queue.clone(),
                Arc::new(SystemClock),
            )),
            queue,
        }
    }

    /// The request API Gateway would deliver (and the local runner builds).
    fn request(&self) -> Request {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.request_id = Some(uuid::Uuid::new_v4().to_string());
        context.resource_path = Some(self.path.to_owned());
        context.http_method = Method::POST;
        context.path = Some(self.path.to_owned());
        context.stage = Some("bench".to_owned());
        context.identity.source_ip = Some("127.0.0.1".to_owned());
        let mut request = http::Request::builder()
            .method(Method::POST)
            .uri(self.path)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        request
            .body(Body::Binary(self.body.to_vec()))
            .unwrap_or_else(|error| panic!("request: {error}"))
            .with_request_context(RequestContext::ApiGatewayV1(context))
    }

    async fn call(&self, request: Request, call: Call) -> StatusCode {
        let response = match (&self.handler, call) {
            (Handler::Meta(handler), Call::Handle) => handler.handle(request).await,
            (Handler::MercadoLivre(handler), Call::Handle) => handler.handle(request).await,
            (Handler::Meta(handler), Call::Serve) => {
                Ok(shared::http::serve(request, |request| handler.handle(request)).await)
            }
            (Handler::MercadoLivre(handler), Call::Serve) => {
                Ok(shared::http::serve(request, |request| handler.handle(request)).await)
            }
        };
        match response {
            Ok(response) => response.status(),
            Err(error) => error.status(),
        }
    }

    /// Times `count` requests one after the other; every one must be accepted and queued.
    async fn measure(&self, count: usize, call: Call) -> Round {
        let requests: Vec<Request> = (0..count).map(|_| self.request()).collect();
        let queued = self.queue.count();
        let mut latencies = Vec::with_capacity(count);
        for (n, request) in requests.into_iter().enumerate() {
            let started = Instant::now();
            let status = self.call(request, call).await;
            latencies.push(started.elapsed());
            assert_eq!(status, StatusCode::OK, "{} request {n}", self.name);
        }
        // Each body holds one change: one message per request.
        assert_eq!(
            self.queue.count() - queued,
            count as u64,
            "{}: messages queued",
            self.name
        );
        Round::of(latencies)
    }
}

/// One round's figures.
#[derive(Clone, Copy)]
struct Round {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    mean: Duration,
    max: Duration,
}

impl Round {
    fn of(mut latencies: Vec<Duration>) -> Self {
        latencies.sort();
        let total: Duration = latencies.iter().sum();
        Self {
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            p999: percentile(&latencies, 0.999),
            mean: total / latencies.len() as u32,
            max: latencies[latencies.len() - 1],
        }
    }
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn micros(duration: Duration) -> String {
    format!("{:>7.1} µs", duration.as_secs_f64() * 1e6)
}

/// Prints the medians over rounds (and the spread of p99 over rounds); returns the
/// median p99.
fn report(label: &str, rounds: &[Round]) -> Duration {
    let of = |figure: fn(&Round) -> Duration| median(rounds.iter().map(figure).collect());
    let p99s = rounds.iter().map(|round| round.p99);
    let (low, high) = (p99s.clone().min(), p99s.max());
    let p99 = of(|round| round.p99);
    eprintln!(
        "{label:<44} p50 {}  p99 {}  p999 {}  mean {}  max {}   (p99 over rounds {}–{})",
        micros(of(|round| round.p50)),
        micros(p99),
        micros(of(|round| round.p999)),
        micros(of(|round| round.mean)),
        micros(of(|round| round.max)),
        micros(low.unwrap_or_default()).trim(),
        micros(high.unwrap_or_default()).trim(),
    );
    p99
}

async fn bench(rounds: usize, count: usize) -> bool {
    let subjects = [Subject::meta(), Subject::mercadolivre()];
    for subject in &subjects {
        subject.measure(WARM_UP, Call::Handle).await;
        subject.measure(WARM_UP, Call::Serve).await;
    }
    let mut figures: Vec<[Vec<Round>; 2]> = subjects.iter().map(|_| Default::default()).collect();
    for _ in 0..rounds {
        // Interleaved, so that noise on the machine falls on every figure alike.
        for (subject, figures) in subjects.iter().zip(&mut figures) {
            figures[0].push(subject.measure(count, Call::Handle).await);
            figures[1].push(subject.measure(count, Call::Serve).await);
        }
    }
    eprintln!(
        "ingest_bench: medians of {rounds} rounds × {count} sequential requests per handler, \
         after {WARM_UP} warm-up; the queue only counts (the SQS call excluded); \
         log and EMF lines to stdout{}",
        if std::io::stdout().is_terminal() {
            " (a terminal: redirect it, it slows every request)"
        } else {
            ""
        }
    );
    let mut within = true;
    for (subject, figures) in subjects.iter().zip(&figures) {
        let p99 = report(&format!("{} handle()", subject.name), &figures[0]);
        report(
            &format!("{} in http::serve (as in Lambda)", subject.name),
            &figures[1],
        );
        let verdict = if p99 <= BUDGET_P99 { "within" } else { "OVER" };
        eprintln!(
            "{:<44} {verdict} budget: p99 {} ≤ {} ms",
            format!("{} budget", subject.name),
            micros(p99).trim(),
            BUDGET_P99.as_millis()
        );
        within &= p99 <= BUDGET_P99;
    }
    within
}

/// The local runner's webhook queue depths in `data_dir`, as one JSON line.
async fn queue_stats(data_dir: &str) -> Result<String, String> {
    let dir = std::path::Path::new(data_dir);
    let file = dir.join(shared::embedded_db::FILE_NAME);
    if !file.is_file() {
        return Err(format!("no embedded database at {}", file.display()));
    }
    let db = EmbeddedDb::open(dir).map_err(|error| error.to_string())?;
    let queue = EmbeddedQueue::open_with_dead_letters(
        db,
        WEBHOOK_QUEUE,
        WEBHOOK_DEAD_LETTER_QUEUE,
        u32::MAX,
    )
    .map_err(|error| error.to_string())?;
    let stats = queue.stats().await.map_err(|error| error.to_string())?;
    let total = stats.visible + stats.in_flight + stats.delayed;
    Ok(serde_json::json!({
        "queue": WEBHOOK_QUEUE,
        "total": total,
        "visible": stats.visible,
        "in_flight": stats.in_flight,
        "delayed": stats.delayed,
        "dead_letters": stats.dead_letters.unwrap_or(0),
    })
    .to_string())
}

const USAGE: &str = "usage: ingest_bench [rounds=5] [requests=20000] [--check]\n       \
ingest_bench queue-stats <DATA_DIR>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("tokio runtime: {error}"));
    if args.first().map(String::as_str) == Some("queue-stats") {
        let [_, data_dir] = args.as_slice() else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        };
        return match runtime.block_on(queue_stats(data_dir)) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("queue-stats {data_dir}: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let mut numbers = Vec::new();
    let mut enforce = false;
    for arg in &args {
        match arg.as_str() {
            "--check" => enforce = true,
            other => match other.parse::<usize>() {
                Ok(number) => numbers.push(number),
                Err(_) => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let rounds = numbers.first().copied().unwrap_or(5).clamp(1, MAX_ROUNDS);
    let count = numbers
        .get(1)
        .copied()
        .unwrap_or(20_000)
        .clamp(1, MAX_REQUESTS);
    shared::telemetry::init("ingest_bench");
    let within = runtime.block_on(bench(rounds, count));
    if enforce && !within {
        eprintln!(
            "budget exceeded: an ingest handler's p99 is over {} ms",
            BUDGET_P99.as_millis()
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
