//! Nothing lost, nothing applied twice. Ten thousand webhooks (Meta messages and Mercado
//! Livre questions, a tenth of them delivered twice) go through the ingest handlers onto
//! the embedded queue, while the worker is made to fail at random: it panics before or
//! after its work, Mercado Livre answers 500, 503 or 429 or too late, and consumers are
//! killed mid-batch and replaced. Then every accepted webhook must be exactly one applied
//! change or one dead letter — counted from the store and the queues, not from logs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsMessage};
use axum::extract::Path;
use axum::response::IntoResponse;
use lambda_http::{Body, Request};
use secrecy::ExposeSecret;
use sellerhub_tests::whatsapp;
use shared::adapters::Adapters;
use shared::auth::GrantCipher;
use shared::channels::Channels;
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, ConfigError, Profile};
use shared::embedded_db::EmbeddedDb;
use shared::handlers::webhook_mercadolivre::WebhookMercadoLivre;
use shared::handlers::webhook_meta::WebhookMeta;
use shared::handlers::webhook_worker::WebhookWorker;
use shared::handlers::{HttpHandler, QueueHandler};
use shared::inbox::keys;
use shared::queue::Queue;
use shared::queue::consumer::{ConsumerSettings, poll_once};
use shared::queue::embedded::EmbeddedQueue;
use shared::services::Services;
use shared::store::embedded::EmbeddedStore;
use shared::store::{Query, Store};
use shared::webhooks::Envelope;
use shared::webhooks::receipts::Receipts;

const META_WEBHOOKS: usize = 7_000;
const QUESTION_WEBHOOKS: usize = 3_000;
const CUSTOMERS: usize = 1_000;
const SELLER: u64 = 468_424_240;
const APP: &str = "2069392825111111";
const PHONE: &str = "106540352242922";
const META_SECRET: &str = "faults-meta-app-secret";
const CONSUMERS: usize = 4;
/// Short, so that records of killed consumers and panicked attempts come back quickly;
/// each batch's deadline (when its claims lapse) is half of it, as Lambda's timeout is a
/// sixth of the queue's visibility timeout.
const VISIBILITY: Duration = Duration::from_secs(3);

const PANIC_BEFORE: f64 = 0.03;
const PANIC_AFTER: f64 = 0.02;

/// The worker, made to panic at random before or after its work.
struct Chaos(WebhookWorker);

impl QueueHandler for Chaos {
    const FUNCTION: &'static str = WebhookWorker::FUNCTION;
    type Error = <WebhookWorker as QueueHandler>::Error;

    fn build(services: &Services) -> Result<Self, ConfigError> {
        WebhookWorker::build(services).map(Chaos)
    }

    async fn process(&self, record: SqsMessage, deadline_ms: i64) -> Result<(), Self::Error> {
        if fastrand::f64() < PANIC_BEFORE {
            panic!("chaos: before the work");
        }
        let result = self.0.process(record, deadline_ms).await;
        if fastrand::f64() < PANIC_AFTER {
            panic!("chaos: after the work");
        }
        result
    }
}

/// Mercado Livre's questions API, failing at random: 10% 500, 5% 503, 2% 429 (one second
/// Retry-After), 3% answering after the client's timeout.
async fn question(Path(id): Path<u64>) -> axum::response::Response {
    let dice = fastrand::f64();
    if dice < 0.10 {
        return (http::StatusCode::INTERNAL_SERVER_ERROR, "{}").into_response();
    }
    if dice < 0.15 {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
    }
    if dice < 0.17 {
        return (
            http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            r#"{"message":"Too Many Requests","error":"too_many_requests","status":429,"cause":[]}"#,
        )
            .into_response();
    }
    if dice < 0.20 {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    let body = serde_json::json!({
        "id": id, "seller_id": SELLER, "item_id": "MLB3859205311", "status": "UNANSWERED",
        "text": format!("question {id}"), "date_created": "2026-11-20T11:02:10.000-03:00",
        "hold": false, "deleted_from_listing": false, "answer": null, "from": {"id": 1302765432u64},
    });
    ([("content-type", "application/json")], body.to_string()).into_response()
}

async fn mercadolivre() -> String {
    let app = axum::Router::new().route("/questions/{id}", axum::routing::get(question));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn meta_body(n: usize) -> String {
    let customer = format!("55119{:08}", n % CUSTOMERS);
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "5511955550000", "phone_number_id": PHONE},
            "contacts": [{"profile": {"name": format!("Customer {customer}")}, "wa_id": customer}],
            "messages": [{"from": customer, "id": format!("wamid.faults-{n}"),
                          "timestamp": (1_763_647_331 + n).to_string(), "type": "text",
                          "text": {"body": format!("message {n}")}}],
        }}]}],
    })
    .to_string()
}

fn question_body(n: usize) -> String {
    serde_json::json!({
        "_id": format!("faults-{n}"), "resource": format!("/questions/{}", 1_000_000 + n),
        "user_id": SELLER, "topic": "questions", "application_id": APP.parse::<u64>().unwrap(),
        "attempts": 1, "sent": "2026-11-20T14:02:11.482Z", "received": "2026-11-20T14:02:11.341Z",
    })
    .to_string()
}

fn post(path: &str, body: String, signature: Option<String>) -> Request {
    let mut request = http::Request::builder().method("POST").uri(path);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request.body(Body::Text(body)).unwrap()
}

fn sign(body: &str) -> String {
    whatsapp::signature(body, META_SECRET)
}

/// One consumer: polls the queue as Lambda's event source mapping does, until aborted.
async fn consume(queue: Arc<dyn Queue>, worker: Arc<Chaos>) {
    let settings = ConsumerSettings {
        batch_size: 10,
        visibility_timeout: VISIBILITY,
        wait: Duration::from_millis(200),
        queue_arn: "arn:aws:sqs:local:000000000000:webhooks".into(),
        region: "local".into(),
    };
    let deadline = i64::try_from(VISIBILITY.as_millis() / 2).unwrap();
    let handler = |event| {
        let batch = shared::lambda::process_batch(
            Arc::clone(&worker),
            event,
            SystemClock.now_ms() + deadline,
        );
        async move { Ok::<SqsBatchResponse, std::convert::Infallible>(batch.await) }
    };
    loop {
        if poll_once(queue.as_ref(), &settings, &handler)
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A message of the dead-letter queue.
#[derive(Debug)]
struct DeadLetter {
    /// Sent by the worker when it gave up (it carries the attempts), not moved by the
    /// queue's maxReceiveCount.
    by_worker: bool,
    receive_count: u32,
    body: String,
}

/// Every item of a partition (or of a gsi1 partition).
async fn all(store: &dyn Store, query: Query) -> Vec<shared::store::Item> {
    let mut items = Vec::new();
    let mut query = query.limit(1000);
    loop {
        let page = store.query(query.clone()).await.unwrap();
        items.extend(page.items);
        match page.next {
            Some(cursor) => query = query.after(Some(cursor)),
            None => return items,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_accepted_webhook_is_applied_once_or_dead_lettered_once() {
    shared::telemetry::emf::silence();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let chaos = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|message| message.starts_with("chaos"));
        if !chaos {
            default_hook(info);
        }
    }));

    let key = GrantCipher::generate_key("k1");
    let vars: HashMap<&str, String> = HashMap::from([
        ("MERCADOLIVRE_API_URL", mercadolivre().await),
        ("MERCADOLIVRE_CLIENT_ID", APP.into()),
        ("MERCADOLIVRE_CLIENT_SECRET", "secret".into()),
        ("MERCADOLIVRE_TIMEOUT_MS", "400".into()),
        ("MERCADOLIVRE_MAX_ATTEMPTS", "1".into()),
        ("MERCADOLIVRE_BREAKER_OPEN_MS", "300".into()),
        ("RATE_LIMIT_ML_GLOBAL_PER_HOUR", "36000000".into()),
        ("RATE_LIMIT_ML_GLOBAL_BURST", "1000000".into()),
        ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", "36000000".into()),
        ("RATE_LIMIT_ML_ACCOUNT_BURST", "1000000".into()),
        ("WEBHOOK_RETRY_FIRST_MS", "200".into()),
        ("WEBHOOK_DEFER_FIRST_MS", "1000".into()),
        ("WEBHOOK_DEFER_MAX_MS", "3000".into()),
        ("GRANT_ENCRYPTION_KEY", key.expose_secret().to_owned()),
        ("META_APP_SECRET", META_SECRET.into()),
        ("META_VERIFY_TOKEN", "faults".into()),
    ]);
    let config = Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = EmbeddedDb::open(dir.path()).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db.clone()).unwrap());
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open_with_dead_letters(db, "webhooks", "webhooks-dlq", 5).unwrap());
    let services = Services::new(
        config,
        Adapters {
            store: Arc::clone(&store),
            webhook_queue: Arc::clone(&queue),
        },
    );

    let now = SystemClock.now_secs();
    let tenant = shared::testkit::connected_seller(&services, SELLER).await;
    Channels::new(Arc::clone(&store))
        .link_whatsapp(&tenant, PHONE, now)
        .await
        .unwrap();

    // The consumers start first: webhooks are worked on while they arrive.
    let worker = Arc::new(Chaos::build(&services).unwrap());
    let mut consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| tokio::spawn(consume(Arc::clone(&queue), Arc::clone(&worker))))
        .collect();
    let killed = Arc::new(AtomicUsize::new(0));
    let killer = {
        let (queue, worker, killed) =
            (Arc::clone(&queue), Arc::clone(&worker), Arc::clone(&killed));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(fastrand::u64(200..600))).await;
                let victim = fastrand::usize(..consumers.len());
                consumers[victim].abort();
                killed.fetch_add(1, Ordering::SeqCst);
                consumers[victim] = tokio::spawn(consume(Arc::clone(&queue), Arc::clone(&worker)));
            }
        })
    };

    // Ingest: every webhook through its handler; a tenth delivered twice.
    let meta = Arc::new(WebhookMeta::build(&services).unwrap());
    let questions = Arc::new(WebhookMercadoLivre::build(&services).unwrap());
    let mut accepted: HashSet<String> = HashSet::new();
    let mut ingest = tokio::task::JoinSet::new();
    for n in 0..(META_WEBHOOKS + QUESTION_WEBHOOKS) {
        let deliveries = if n % 10 == 0 { 2 } else { 1 };
        let (key, handle): (String, Box<dyn Fn() -> Request + Send>) = if n < META_WEBHOOKS {
            let body = meta_body(n);
            (
                format!("meta:wamid.faults-{n}"),
                Box::new(move || post("/webhooks/meta", body.clone(), Some(sign(&body)))),
            )
        } else {
            let body = question_body(n);
            (
                format!("mercadolivre:faults-{n}"),
                Box::new(move || post("/webhooks/mercadolivre", body.clone(), None)),
            )
        };
        accepted.insert(key);
        for _ in 0..deliveries {
            let request = handle();
            let (meta, questions) = (Arc::clone(&meta), Arc::clone(&questions));
            ingest.spawn(async move {
                let response = if n < META_WEBHOOKS {
                    meta.handle(request).await
                } else {
                    questions.handle(request).await
                };
                assert_eq!(
                    response.map(|r| r.status()).ok(),
                    Some(http::StatusCode::OK)
                );
            });
            while ingest.len() >= 64 {
                ingest.join_next().await.unwrap().unwrap();
            }
        }
    }
    ingest.join_all().await;

    // Until the queue has stayed empty for a while (deferred and hidden work included).
    let started = Instant::now();
    let mut empty_since: Option<Instant> = None;
    loop {
        let stats = queue.stats().await.unwrap();
        if stats.visible + stats.in_flight + stats.delayed == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(3) {
                break;
            }
        } else {
            empty_since = None;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the queue did not drain: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    killer.abort();
    assert!(
        killed.load(Ordering::SeqCst) > 5,
        "consumers were killed along the way"
    );

    // The dead letters, by webhook.
    let dead_letters = queue.dead_letters().unwrap();
    let mut dead: HashMap<String, Vec<DeadLetter>> = HashMap::new();
    loop {
        let batch = dead_letters
            .receive(10, Duration::from_secs(600), Duration::ZERO)
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for message in batch {
            let envelope =
                Envelope::from_message(&message.body).expect("dead letters are intact envelopes");
            dead.entry(envelope.dedupe_key)
                .or_default()
                .push(DeadLetter {
                    by_worker: message
                        .attributes
                        .contains_key(shared::webhooks::deferral::DEAD_LETTER_ATTEMPTS),
                    receive_count: message.receive_count,
                    body: message.body,
                });
        }
    }

    // Each accepted webhook: applied (its receipt completed) or given up on by the worker
    // (its receipt dead, so no copy applies it), never both. A dead letter is itself sent
    // at least once: a worker killed between sending it and recording that it did sends
    // it again, an identical copy (redriving both applies the webhook once). The queue's
    // own backstop (maxReceiveCount 5) may also move a message that crashes and kills kept
    // from ever finishing: that copy was not given up on, and a twin delivery may apply
    // the webhook; redriving the copy is then a no-op (its receipt is completed).
    let receipts = Receipts::new(Arc::clone(&store));
    let mut applied: HashSet<String> = HashSet::new();
    let (mut copies, mut backstopped) = (0, 0);
    for key in &accepted {
        let done = receipts.is_completed(key).await.unwrap();
        let letters = dead.get(key).map(Vec::as_slice).unwrap_or_default();
        assert!(
            letters.windows(2).all(|pair| pair[0].body == pair[1].body),
            "{key}: different dead letters"
        );
        copies += letters.len().saturating_sub(1);
        let given_up = letters.iter().filter(|letter| letter.by_worker).count();
        assert!(
            letters
                .iter()
                .all(|letter| letter.by_worker || letter.receive_count >= 5),
            "{key}: a dead letter neither the worker nor the backstop sent: {letters:?}"
        );
        assert!(
            done != (given_up > 0) && (done || !letters.is_empty()),
            "{key}: applied {done}, dead letters {letters:?}"
        );
        if done && !letters.is_empty() {
            backstopped += 1;
        }
        if done {
            applied.insert(key.clone());
        }
    }
    assert!(
        dead.keys().all(|key| accepted.contains(key)),
        "only accepted webhooks die"
    );

    // Each applied webhook changed the inbox exactly once.
    let notifications = all(
        &*store,
        Query::partition(keys::notification(&tenant, "").pk),
    )
    .await;
    let mut changed: HashMap<String, usize> = HashMap::new();
    for notification in &notifications {
        let data = &notification.data["data"];
        let key = match notification.data["type"].as_str() {
            Some("message.new") => format!("meta:{}", data["id"].as_str().unwrap()),
            Some("question.new") => {
                let n = data["id"].as_u64().unwrap() - 1_000_000;
                format!("mercadolivre:faults-{n}")
            }
            other => panic!("unexpected notification {other:?}"),
        };
        *changed.entry(key).or_default() += 1;
    }
    let twice: Vec<_> = changed.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "applied twice: {twice:?}");
    let changed: HashSet<String> = changed.into_keys().collect();
    assert_eq!(
        changed, applied,
        "the inbox holds exactly the applied webhooks"
    );

    let total = META_WEBHOOKS + QUESTION_WEBHOOKS;
    assert_eq!(accepted.len(), total);
    let only_dead = dead.keys().filter(|key| !applied.contains(*key)).count();
    assert_eq!(applied.len() + only_dead, total, "none lost");
    assert!(
        !dead.is_empty() && applied.len() > total / 2,
        "the faults were real and the work still got done: {} applied, {} dead",
        applied.len(),
        dead.len()
    );
    println!(
        "{total} webhooks: {} applied, {} dead-lettered ({copies} repeated dead letters, \
         {backstopped} applied by a twin after the queue's backstop moved a copy), {} \
         consumers killed, drained in {:?}",
        applied.len(),
        dead.len(),
        killed.load(Ordering::SeqCst),
        started.elapsed()
    );
}
