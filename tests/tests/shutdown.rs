//! The local runner stopping, over real processes. On SIGTERM or SIGINT it takes no new
//! connection, lets the request in flight and the batch being worked on finish (for at
//! most the worker's timeout), then exits 0. Killed with SIGKILL in the middle of a
//! batch and started again, it loses no webhook and applies none twice.
//!
//! What is in flight is known, not guessed: the runner's upstreams (Mercado Livre, the
//! Upstash limiter) are a [`Gate`] that holds every request until the test opens it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use sellerhub_tests::local_runner::LocalRunner;
use shared::adapters::Adapters;
use shared::auth::GrantCipher;
use shared::config::{Config, Profile};
use shared::embedded_db::EmbeddedDb;
use shared::inbox::keys;
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::queue::{Queue, QueueStats};
use shared::services::Services;
use shared::store::embedded::EmbeddedStore;
use shared::store::{Query, SortKey, Store};
use shared::webhooks::receipts::Receipts;
use tokio::sync::{mpsc, watch};

const APP: &str = "2069392825111111";
const SELLER: u64 = 468_424_240;
/// Questions notified in the batch tests: more than one batch of 10.
const QUESTIONS: u64 = 25;

/// An HTTP server that holds every request until [`Gate::open`], then answers it with
/// `answer`; each request's path is reported on `arrived` as it comes in.
struct Gate {
    url: String,
    arrived: mpsc::UnboundedReceiver<String>,
    open: watch::Sender<bool>,
}

impl Gate {
    async fn start(answer: fn(&str) -> Response) -> Gate {
        let (arrived_tx, arrived) = mpsc::unbounded_channel();
        let (open, opened) = watch::channel(false);
        let app = axum::Router::new().fallback(move |request: Request| {
            let arrived = arrived_tx.clone();
            let mut opened = opened.clone();
            async move {
                let path = request.uri().path().to_owned();
                let _ = arrived.send(path.clone());
                let _ = opened.wait_for(|open| *open).await;
                answer(&path)
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Gate { url, arrived, open }
    }

    /// Waits until `count` requests are being held.
    async fn held(&mut self, count: usize) -> Vec<String> {
        let mut paths = Vec::new();
        while paths.len() < count {
            let path = tokio::time::timeout(Duration::from_secs(60), self.arrived.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} requests arrived: {paths:?}", paths.len()))
                .expect("the gate is serving");
            paths.push(path);
        }
        paths
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

/// Mercado Livre's GET /questions/{id}: the fixture question, with that id.
fn question(path: &str) -> Response {
    let id = path.rsplit('/').next().unwrap_or_default();
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/mercadolivre/question-13190540261.json"
    ))
    .unwrap()
    .replace("13190540261", id);
    ([("content-type", "application/json")], body).into_response()
}

/// Upstash, unavailable: the limiter answers from its fallback.
fn unavailable(_: &str) -> Response {
    (http::StatusCode::SERVICE_UNAVAILABLE, "{}").into_response()
}

/// The variables of a runner whose Mercado Livre is `api_url`, with a budget no test
/// here exhausts and the grant key `key`.
fn mercadolivre_env(api_url: &str, key: &str, worker_timeout_ms: &str) -> Vec<(String, String)> {
    [
        ("MERCADOLIVRE_API_URL", api_url),
        ("MERCADOLIVRE_CLIENT_ID", APP),
        ("MERCADOLIVRE_CLIENT_SECRET", "secret"),
        (
            "MERCADOLIVRE_REDIRECT_URI",
            "http://127.0.0.1:9/auth/callback",
        ),
        ("MERCADOLIVRE_TIMEOUT_MS", "60000"),
        ("RATE_LIMIT_ML_GLOBAL_PER_HOUR", "36000000"),
        ("RATE_LIMIT_ML_GLOBAL_BURST", "1000000"),
        ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", "36000000"),
        ("RATE_LIMIT_ML_ACCOUNT_BURST", "1000000"),
        ("GRANT_ENCRYPTION_KEY", key),
        ("WEBHOOK_WORKER_TIMEOUT_MS", worker_timeout_ms),
        ("HEALTH_CACHE_MS", "0"),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .collect()
}

fn start(dir: &Path, env: &[(String, String)]) -> LocalRunner {
    let env: Vec<(&str, &str)> = env
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    LocalRunner::start(dir, &env)
}

/// Seller [`SELLER`] connected in the store under `dir` (before any runner opens it):
/// their tenant.
async fn connected_seller(dir: &Path, key: &str) -> String {
    let config = Config::from_vars(Profile::Local, |name| {
        (name == "GRANT_ENCRYPTION_KEY").then(|| key.to_owned())
    })
    .unwrap();
    let db = EmbeddedDb::open(dir).unwrap();
    let services = Services::new(
        config,
        Adapters {
            store: Arc::new(EmbeddedStore::open(db.clone()).unwrap()),
            webhook_queue: Arc::new(EmbeddedQueue::open(db, WEBHOOK_QUEUE).unwrap()),
        },
    );
    shared::testkit::connected_seller(&services, SELLER).await
}

/// Mercado Livre notifies question `1000 + n`, for each n below [`QUESTIONS`].
async fn notify_questions(runner: &LocalRunner) {
    let client = reqwest::Client::new();
    for n in 0..QUESTIONS {
        let notification = serde_json::json!({
            "_id": format!("shutdown-{n}"),
            "resource": format!("/questions/{}", 1000 + n),
            "user_id": SELLER,
            "topic": "questions",
            "application_id": APP.parse::<u64>().unwrap(),
            "attempts": 1,
            "sent": "2026-11-20T14:02:11.482Z",
            "received": "2026-11-20T14:02:11.341Z",
        });
        let response = client
            .post(runner.url("/webhooks/mercadolivre"))
            .json(&notification)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// The questions' notifications accepted by a runner without workers, so they are all
/// on the queue when the next runner's consumers start: each takes a full batch.
async fn enqueue_questions(dir: &Path, env: &[(String, String)]) {
    let mut env = env.to_vec();
    env.push(("LOCAL_WORKERS".into(), "false".into()));
    let runner = start(dir, &env);
    notify_questions(&runner).await;
    assert!(runner.terminate().success());
    assert_eq!(stored_queue(dir).await.visible, QUESTIONS);
}

/// The webhook queue's counts, from /health.
async fn queue_counts(runner: &LocalRunner) -> serde_json::Value {
    let body: serde_json::Value = reqwest::get(runner.url("/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["checks"]["queue"].clone()
}

/// Waits until the runner's worker has emptied the webhook queue.
async fn drained(runner: &LocalRunner) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let queue = queue_counts(runner).await;
        if queue["visible"] == 0 && queue["in_flight"] == 0 && queue["delayed"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain: {queue}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the store and the queues under `dir` hold once the runner has stopped: every
/// question notified is applied exactly once, and no message is left anywhere.
async fn assert_each_question_applied_once(dir: &Path, tenant: &str) {
    let db = EmbeddedDb::open(dir).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db.clone()).unwrap());
    let receipts = Receipts::new(Arc::clone(&store));
    for n in 0..QUESTIONS {
        let question = store.get(&keys::question(tenant, 1000 + n)).await.unwrap();
        assert!(question.is_some(), "question {} is missing", 1000 + n);
        assert!(
            receipts
                .is_completed(&format!("mercadolivre:shutdown-{n}"))
                .await
                .unwrap(),
            "notification {n} has no completed receipt"
        );
    }
    let count = |query: Query| {
        let store = Arc::clone(&store);
        async move {
            let mut items = 0;
            let mut query = query.limit(100);
            loop {
                let page = store.query(query.clone()).await.unwrap();
                items += page.items.len();
                match page.next {
                    Some(next) => query = query.after(Some(next)),
                    None => return items,
                }
            }
        }
    };
    let notifications = count(Query::partition(keys::notification(tenant, "").pk)).await;
    let events = count(
        Query::partition(format!("TENANT#{tenant}")).sort(SortKey::BeginsWith("EVENT#".into())),
    )
    .await;
    assert_eq!(
        (notifications, events),
        (QUESTIONS as usize, QUESTIONS as usize),
        "one question.new notification and event per question, none twice"
    );
    let queue =
        EmbeddedQueue::open_with_dead_letters(db, WEBHOOK_QUEUE, WEBHOOK_DEAD_LETTER_QUEUE, 5)
            .unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (
            stats.visible,
            stats.in_flight,
            stats.delayed,
            stats.dead_letters
        ),
        (0, 0, 0, Some(0)),
        "{stats:?}"
    );
}

/// The queue's counts under `dir` (the runner stopped).
async fn stored_queue(dir: &Path) -> QueueStats {
    let db = EmbeddedDb::open(dir).unwrap();
    EmbeddedQueue::open_with_dead_letters(db, WEBHOOK_QUEUE, WEBHOOK_DEAD_LETTER_QUEUE, 5)
        .unwrap()
        .stats()
        .await
        .unwrap()
}

/// Whether a new connection to `address` is refused, trying until `within` has passed.
async fn refuses_connections(address: SocketAddr, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(address).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn address(runner: &LocalRunner) -> SocketAddr {
    runner
        .base_url
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_takes_no_new_connection_and_finishes_the_request_in_flight_then_exits_0() {
    let mut upstash = Gate::start(unavailable).await;
    let dir = tempfile::tempdir().unwrap();
    let runner = start(
        dir.path(),
        &[
            ("UPSTASH_REDIS_REST_URL", upstash.url.as_str()),
            ("UPSTASH_REDIS_REST_TOKEN", "token"),
            // The check waits for the gate, however long the test holds it.
            ("UPSTASH_TIMEOUT_MS", "120000"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    // A login checks its rate limit on Upstash first: held there, it is in flight.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = tokio::spawn(client.get(runner.url("/auth/login")).send());
    upstash.held(1).await;

    runner.signal("TERM");
    assert!(
        runner.wait_for_log("shutting down", Duration::from_secs(10)),
        "{}",
        runner.log().join("\n")
    );
    assert!(
        refuses_connections(address(&runner), Duration::from_secs(10)).await,
        "new connections are still taken after SIGTERM"
    );
    assert!(!login.is_finished(), "the login is still in flight");

    upstash.open();
    let answered = login
        .await
        .unwrap()
        .expect("the login in flight is answered");
    // The limiter unavailable, the fallback admits it: on to the sandbox's consent page.
    assert_eq!(answered.status(), 302);
    let status = runner.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_is_bounded_by_the_worker_timeout() {
    let mut upstash = Gate::start(unavailable).await;
    let dir = tempfile::tempdir().unwrap();
    let runner = start(
        dir.path(),
        &[
            ("UPSTASH_REDIS_REST_URL", upstash.url.as_str()),
            ("UPSTASH_REDIS_REST_TOKEN", "token"),
            ("UPSTASH_TIMEOUT_MS", "120000"),
            ("WEBHOOK_WORKER_TIMEOUT_MS", "1000"),
        ]
        .map(|(name, value)| (name.to_owned(), value.to_owned())),
    );
    let login = tokio::spawn(reqwest::get(runner.url("/auth/login")));
    upstash.held(1).await;

    // SIGINT (Ctrl-C) stops it as SIGTERM does. The request is never let through: the
    // runner stops anyway once the grace period is over.
    runner.signal("INT");
    assert!(runner.wait_for_log("cut off", Duration::from_secs(20)));
    let log = runner.log().join("\n");
    let status = runner.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        login.await.unwrap().is_err(),
        "the request cut off gets no answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_running_batch_finish_and_settle() {
    let mut mercadolivre = Gate::start(question).await;
    let key = GrantCipher::generate_key("k1");
    let dir = tempfile::tempdir().unwrap();
    let tenant = connected_seller(dir.path(), key.expose_secret()).await;
    let env = mercadolivre_env(&mercadolivre.url, key.expose_secret(), "30000");
    enqueue_questions(dir.path(), &env).await;
    let runner = start(dir.path(), &env);
    // Both consumers' first batches are at Mercado Livre: 2 x 10 calls held.
    mercadolivre.held(20).await;

    runner.signal("TERM");
    assert!(
        runner.wait_for_log("shutting down", Duration::from_secs(10)),
        "{}",
        runner.log().join("\n")
    );
    mercadolivre.open();
    let status = runner.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(0), "{}", dir.path().display());

    // The two batches were applied and deleted; what no batch had taken yet is waiting.
    let stats = stored_queue(dir.path()).await;
    assert_eq!(stats.in_flight, 0, "a batch was left unsettled: {stats:?}");
    assert_eq!(stats.visible, QUESTIONS - 20, "{stats:?}");

    // Started again, the runner works off the rest; each question once.
    let runner = start(dir.path(), &env);
    drained(&runner).await;
    assert!(runner.terminate().success());
    assert_each_question_applied_once(dir.path(), &tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_killed_mid_batch_and_started_again_loses_nothing_and_applies_nothing_twice() {
    let mut mercadolivre = Gate::start(question).await;
    let key = GrantCipher::generate_key("k1");
    let dir = tempfile::tempdir().unwrap();
    let tenant = connected_seller(dir.path(), key.expose_secret()).await;
    // A short worker timeout: the batches the kill leaves received come back (after 6x
    // it) soon enough for a test.
    let env = mercadolivre_env(&mercadolivre.url, key.expose_secret(), "2000");
    enqueue_questions(dir.path(), &env).await;
    let runner = start(dir.path(), &env);
    // Two batches in the middle of their work: their Mercado Livre calls are held.
    mercadolivre.held(20).await;
    runner.kill();

    let stats = stored_queue(dir.path()).await;
    assert_eq!(
        (stats.in_flight, stats.visible),
        (20, QUESTIONS - 20),
        "killed with two batches received and not settled: {stats:?}"
    );

    mercadolivre.open();
    let runner = start(dir.path(), &env);
    drained(&runner).await;
    assert!(runner.terminate().success());
    assert_each_question_applied_once(dir.path(), &tenant).await;
}
