//! Pipeline bench: webhooks through the real ingest handlers, the queue and the worker,
//! in process, with the store and the queue wrapped in counters (`sellerhub_tests::
//! counting`); and the storage reads of an authenticated request.
//!
//! ```text
//! cargo run -p sellerhub-tests --release --bin pipeline_bench -- worker --backend embedded|moto
//!     [--webhooks 1000] [--results FILE] [--prices infra/aws-prices.tsv]
//! cargo run -p sellerhub-tests --release --bin pipeline_bench -- reads [--requests 200] [--results FILE]
//! ```
//!
//! `worker`: a seller signs in at the sandbox provider (served on loopback, as the local
//! runner serves it) and links a WhatsApp number; then, per source, `--webhooks` / 2 signed
//! WhatsApp messages (webhook-meta) and as many question notifications of questions asked
//! in the sandbox (webhook-mercadolivre) go through their ingest handler onto the queue,
//! and the worker drains it as the event source mapping runs it (batches of 10, 2 at
//! once); each question is fetched from the sandbox. Printed per source: records/s through
//! the worker, and what each webhook cost: SQS requests, DynamoDB read/write units, Lambda
//! invocations and GB-seconds (each call's measured duration, rounded up to the ms as
//! Lambda bills, × the function's MemorySize in template.yaml), API Gateway requests,
//! Upstash commands. `embedded`: the local runner's embedded store and queue (profile
//! Local, limiter in memory). `moto`: DynamoDB and SQS on moto (MOTO_ENDPOINT) and the
//! limiter on Redis (REDIS_URL) through the Upstash REST shim, profile Lambda: the AWS
//! shape, which is also priced with `--prices` (a dated list-price table).
//!
//! Mercado Livre's hourly budget is raised for the run (RATE_LIMIT_ML_*), so the figure
//! is the worker's own capacity, not the budget's pace; the limiter is still consulted on
//! every call. `reads`: storage reads of `Authenticator::authenticate` per request (budget
//! 1, the revocation check), and of whole GET /v1/me requests.
//!
//! Results are also appended to `--results` as `key value` lines.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsBatchResponse;
use lambda_http::{Body, Request};
use secrecy::{ExposeSecret, SecretString};
use sellerhub_tests::counting::{CountingQueue, CountingStore, Counts};
use sellerhub_tests::sandbox_login::{authorization_code, serve_sandbox};
use sellerhub_tests::{moto, template, upstash_shim, whatsapp};
use shared::adapters::Adapters;
use shared::auth::GrantCipher;
use shared::auth::grants::{GrantInfo, GrantStatus, GrantTokens};
use shared::auth::login::LoginRequest;
use shared::auth::tenants::Tenants;
use shared::channels::Channels;
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, Profile};
use shared::embedded_db::EmbeddedDb;
use shared::handlers::me::Me;
use shared::handlers::webhook_mercadolivre::WebhookMercadoLivre;
use shared::handlers::webhook_meta::WebhookMeta;
use shared::handlers::webhook_worker::WebhookWorker;
use shared::handlers::{HttpHandler, QueueHandler};
use shared::queue::Queue;
use shared::queue::consumer::{ConsumerSettings, poll_once};
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::services::Services;
use shared::store::Store;
use shared::store::embedded::EmbeddedStore;

const SELLER: u64 = 468_424_240;
const CLIENT_ID: &str = "5000000000000001";
const REDIRECT_URI: &str = "http://127.0.0.1:1/auth/callback";
const PHONE: &str = "106540352242922";
const META_SECRET: &str = "pipeline-bench-meta-secret";
/// Batches worked on at once: template.yaml's MaximumConcurrency, the runner's consumers.
const CONSUMERS: usize = 2;
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq)]
enum Backend {
    Embedded,
    Moto,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Moto => "moto",
        }
    }
}

struct Args {
    command: String,
    backend: Backend,
    webhooks: usize,
    requests: usize,
    results: Option<PathBuf>,
    prices: PathBuf,
}

const USAGE: &str = "usage: pipeline_bench worker --backend embedded|moto [--webhooks 1000] \
[--results FILE] [--prices infra/aws-prices.tsv] | pipeline_bench reads [--requests 200] [--results FILE]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        command: String::new(),
        backend: Backend::Embedded,
        webhooks: 1000,
        requests: 200,
        results: None,
        prices: template::template_path().with_file_name("infra/aws-prices.tsv"),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |flag: &str| iter.next().ok_or(format!("{flag} needs a value"));
        let number = |text: String| text.parse::<usize>().map_err(|e| format!("{text}: {e}"));
        match arg.as_str() {
            "--backend" => {
                args.backend = match value("--backend")?.as_str() {
                    "embedded" => Backend::Embedded,
                    "moto" => Backend::Moto,
                    other => return Err(format!("unknown backend {other}\n{USAGE}")),
                }
            }
            "--webhooks" => args.webhooks = number(value("--webhooks")?)?.clamp(2, 100_000),
            "--requests" => args.requests = number(value("--requests")?)?.clamp(1, 100_000),
            "--results" => args.results = Some(PathBuf::from(value("--results")?)),
            "--prices" => args.prices = PathBuf::from(value("--prices")?),
            "worker" | "reads" if args.command.is_empty() => args.command = arg,
            _ => return Err(USAGE.into()),
        }
    }
    if args.command.is_empty() {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// Prints `key value` and appends it to the results file.
struct Results(Option<std::fs::File>);

impl Results {
    fn open(path: Option<&PathBuf>) -> Self {
        Results(path.map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        }))
    }

    fn put(&mut self, key: &str, value: impl std::fmt::Display) {
        if let Some(file) = &mut self.0 {
            writeln!(file, "{key} {value}").expect("write the results file");
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    shared::telemetry::emf::silence();
    let mut results = Results::open(args.results.as_ref());
    match args.command.as_str() {
        "reads" => reads(&args, &mut results).await,
        _ => worker(&args, &mut results).await,
    }
}

// ------------------------------------------------------------------ the world

struct World {
    _dir: tempfile::TempDir,
    /// The limiter's Upstash (moto), counting the commands it runs.
    upstash: Option<upstash_shim::UpstashShim>,
    sandbox_base: String,
    services: Services,
    store: Arc<CountingStore>,
    queue: Arc<CountingQueue>,
}

impl World {
    fn upstash_commands(&self) -> u64 {
        self.upstash
            .as_ref()
            .map_or(0, |shim| shim.commands() as u64)
    }
}

async fn world(backend: Backend) -> World {
    let client_secret = SecretString::from(shared::auth::random_token(32));
    let (_sandbox, sandbox_base) = serve_sandbox(local::sandbox::SandboxSettings {
        client_id: CLIENT_ID.into(),
        client_secret: client_secret.clone(),
        redirect_uri: REDIRECT_URI.into(),
        access_token_ttl: Duration::from_secs(21_600),
        notification_url: None,
    })
    .await;
    let mut vars: HashMap<&str, String> = HashMap::from([
        ("MERCADOLIVRE_API_URL", sandbox_base.clone()),
        ("MERCADOLIVRE_AUTH_URL", sandbox_base.clone()),
        ("MERCADOLIVRE_CLIENT_ID", CLIENT_ID.into()),
        (
            "MERCADOLIVRE_CLIENT_SECRET",
            client_secret.expose_secret().to_owned(),
        ),
        ("MERCADOLIVRE_REDIRECT_URI", REDIRECT_URI.into()),
        ("RATE_LIMIT_ML_GLOBAL_PER_HOUR", "360000000".into()),
        ("RATE_LIMIT_ML_GLOBAL_BURST", "10000000".into()),
        ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", "360000000".into()),
        ("RATE_LIMIT_ML_ACCOUNT_BURST", "10000000".into()),
        (
            "GRANT_ENCRYPTION_KEY",
            GrantCipher::generate_key("k1").expose_secret().to_owned(),
        ),
        ("SESSION_SIGNING_KEY", shared::auth::random_token(32)),
        ("CURSOR_SIGNING_KEY", shared::auth::random_token(32)),
        ("META_APP_SECRET", META_SECRET.into()),
        ("META_VERIFY_TOKEN", "pipeline-bench".into()),
    ]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let (profile, store, queue, upstash): (_, Arc<dyn Store>, Arc<dyn Queue>, _) = match backend {
        Backend::Embedded => {
            let db = EmbeddedDb::open(dir.path()).expect("the embedded database");
            let store = Arc::new(EmbeddedStore::open(db.clone()).expect("the embedded store"));
            let queue = EmbeddedQueue::open_with_dead_letters(
                db,
                WEBHOOK_QUEUE,
                WEBHOOK_DEAD_LETTER_QUEUE,
                5,
            )
            .expect("the embedded queue");
            (Profile::Local, store, Arc::new(queue), None)
        }
        Backend::Moto => {
            let table = moto::create_table().await;
            let (queue_url, dlq_url) = moto::create_queues(5).await;
            let shim = upstash_shim::UpstashShim::start().await;
            vars.insert("TABLE_NAME", table.clone());
            vars.insert("WEBHOOK_QUEUE_URL", queue_url.clone());
            vars.insert("WEBHOOK_DLQ_URL", dlq_url.clone());
            vars.insert("UPSTASH_REDIS_REST_URL", shim.url().to_owned());
            vars.insert("UPSTASH_REDIS_REST_TOKEN", shim.token().to_owned());
            let store = shared::store::dynamodb::DynamoStore::new(moto::dynamodb().await, table);
            let queue =
                shared::queue::sqs::SqsQueue::new(moto::sqs().await, queue_url, Some(dlq_url));
            (
                Profile::Lambda,
                Arc::new(store),
                Arc::new(queue),
                Some(shim),
            )
        }
    };
    let config = Config::from_vars(profile, |name| vars.get(name).cloned()).expect("the config");
    let store = Arc::new(CountingStore::new(store));
    let queue = Arc::new(CountingQueue::new(queue));
    let services = Services::new(
        config,
        Adapters {
            store: store.clone(),
            webhook_queue: queue.clone(),
        },
    );
    World {
        _dir: dir,
        upstash,
        sandbox_base,
        services,
        store,
        queue,
    }
}

/// The seller signs in at the sandbox (their grant stored) and links the WhatsApp number.
async fn seed(world: &World) -> String {
    let services = &world.services;
    let now = SystemClock.now_secs();
    let tenant = Tenants::new(services.store())
        .for_seller(SELLER, "LOJA", now)
        .await
        .expect("the tenant");
    let login = LoginRequest::new();
    let auth_url = &services.config().mercadolivre.auth_url;
    let code = authorization_code(&login, auth_url, CLIENT_ID, REDIRECT_URI, SELLER).await;
    let tokens = services
        .mercadolivre()
        .expect("the Mercado Livre client")
        .exchange_code(
            &services.client_credentials().expect("the credentials"),
            &code,
            login.verifier.expose_secret(),
            REDIRECT_URI,
        )
        .await
        .expect("the sandbox's tokens");
    let info = GrantInfo {
        tenant: tenant.clone(),
        seller_id: SELLER,
        nickname: "LOJA".into(),
        scopes: tokens.scopes,
        status: GrantStatus::Ok,
        expires_at: now + 21_600,
        lease_until: None,
        version: 0,
    };
    let grant = GrantTokens {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    };
    services
        .grants()
        .expect("grants")
        .connect(info, &grant)
        .await
        .expect("the grant");
    Channels::new(services.store())
        .link_whatsapp(&tenant, PHONE, now)
        .await
        .expect("the WhatsApp link");
    tenant
}

fn post(path: &str, body: String, signature: Option<String>) -> Request {
    let mut request = http::Request::builder().method("POST").uri(path);
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    request.body(Body::Text(body)).expect("a request")
}

/// `count` signed WhatsApp messages, each from its own customer.
fn meta_requests(count: usize) -> Vec<Request> {
    (0..count)
        .map(|n| {
            let body = whatsapp::message_at(
                PHONE,
                &format!("55119{:08}", n % 500),
                &format!("wamid.pipeline-{n}"),
                &format!("message {n}"),
                1_763_647_331 + n as u64,
            );
            let signature = whatsapp::signature(&body, META_SECRET);
            post("/webhooks/meta", body, Some(signature))
        })
        .collect()
}

/// `count` questions asked in the sandbox, as the notifications it would deliver.
async fn question_requests(sandbox_base: &str, count: usize) -> Vec<Request> {
    let client = reqwest::Client::new();
    let mut requests = Vec::with_capacity(count);
    for n in 0..count {
        let answer: serde_json::Value = client
            .post(format!("{sandbox_base}/questions"))
            .json(&serde_json::json!({
                "seller_id": SELLER, "item_id": "MLB3859205311",
                "text": format!("question {n}"), "deliver": false,
            }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("a question asked in the sandbox")
            .json()
            .await
            .expect("the sandbox's answer");
        let notification = answer["notification"].to_string();
        requests.push(post("/webhooks/mercadolivre", notification, None));
    }
    requests
}

// ------------------------------------------------------------------ worker

/// What one source's webhooks cost, counted.
struct Run {
    source: &'static str,
    webhooks: usize,
    records: u64,
    ingest_ms: Vec<f64>,
    batch_ms: Vec<f64>,
    /// Receives that deleted something: one DeleteMessageBatch each in AWS.
    delete_batches: u64,
    drain: Duration,
    counts: Counts,
    upstash_commands: u64,
}

async fn run_source(
    world: &World,
    source: &'static str,
    requests: Vec<Request>,
    ingest: &(dyn Fn(Request) -> futures_util::future::BoxFuture<'static, u16> + Sync),
    worker: &Arc<WebhookWorker>,
) -> Run {
    let before = world.store.counts().plus(&world.queue.counts());
    let upstash_before = world.upstash_commands();
    let webhooks = requests.len();
    let mut ingest_ms = Vec::with_capacity(webhooks);
    for request in requests {
        let started = Instant::now();
        let status = ingest(request).await;
        ingest_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            status, 200,
            "{source}: the ingest handler refused a webhook"
        );
    }
    let records = world.queue.counts().sends().1 - before.sends().1;

    let settings = ConsumerSettings {
        batch_size: shared::queue::MAX_BATCH,
        visibility_timeout: WORKER_TIMEOUT * 6,
        wait: Duration::from_millis(200),
        queue_arn: "arn:aws:sqs:us-east-1:000000000000:webhooks".into(),
        region: "us-east-1".into(),
    };
    let deleted = Arc::new(AtomicU64::new(0));
    let delete_batches = Arc::new(AtomicU64::new(0));
    let batch_ms = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..CONSUMERS {
        let (queue, worker, settings) = (world.queue.clone(), Arc::clone(worker), settings.clone());
        let (deleted, delete_batches, batch_ms) = (
            Arc::clone(&deleted),
            Arc::clone(&delete_batches),
            Arc::clone(&batch_ms),
        );
        consumers.spawn(async move {
            let handler = |event| {
                let (worker, batch_ms) = (Arc::clone(&worker), Arc::clone(&batch_ms));
                async move {
                    let started = Instant::now();
                    let deadline = SystemClock.now_ms() + WORKER_TIMEOUT.as_millis() as i64;
                    let answer = shared::lambda::process_batch(worker, event, deadline).await;
                    batch_ms
                        .lock()
                        .unwrap()
                        .push(started.elapsed().as_secs_f64() * 1000.0);
                    Ok::<SqsBatchResponse, std::convert::Infallible>(answer)
                }
            };
            while deleted.load(Ordering::SeqCst) < records {
                match poll_once(queue.as_ref(), &settings, &handler).await {
                    Ok(outcome) => {
                        deleted.fetch_add(outcome.deleted as u64, Ordering::SeqCst);
                        if outcome.deleted > 0 {
                            delete_batches.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Err(error) => {
                        eprintln!("receive failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    let limit = Duration::from_secs(600);
    while deleted.load(Ordering::SeqCst) < records {
        assert!(
            started.elapsed() < limit,
            "{source}: the worker did not drain the queue in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain = started.elapsed();
    consumers.join_all().await;
    let after = world.store.counts().plus(&world.queue.counts());
    let batch_ms = std::mem::take(&mut *batch_ms.lock().unwrap());
    Run {
        source,
        webhooks,
        records,
        ingest_ms,
        batch_ms,
        delete_batches: delete_batches.load(Ordering::SeqCst),
        drain,
        counts: after.minus(&before),
        upstash_commands: world.upstash_commands() - upstash_before,
    }
}

async fn worker(args: &Args, results: &mut Results) -> ExitCode {
    let backend = args.backend;
    let world = world(backend).await;
    seed(&world).await;
    let services = &world.services;
    let meta = Arc::new(WebhookMeta::build(services).expect("webhook-meta"));
    let questions = Arc::new(WebhookMercadoLivre::build(services).expect("webhook-mercadolivre"));
    let worker = Arc::new(WebhookWorker::build(services).expect("webhook-worker"));
    let half = args.webhooks / 2;

    let meta_ingest = move |request: Request| -> futures_util::future::BoxFuture<'static, u16> {
        let meta = Arc::clone(&meta);
        Box::pin(async move { status(meta.handle(request).await) })
    };
    let ml_ingest = move |request: Request| -> futures_util::future::BoxFuture<'static, u16> {
        let questions = Arc::clone(&questions);
        Box::pin(async move { status(questions.handle(request).await) })
    };
    let runs = vec![
        run_source(&world, "meta", meta_requests(half), &meta_ingest, &worker).await,
        run_source(
            &world,
            "mercadolivre",
            question_requests(&world.sandbox_base, half).await,
            &ml_ingest,
            &worker,
        )
        .await,
    ];
    let dead_letters = world
        .queue
        .stats()
        .await
        .ok()
        .and_then(|stats| stats.dead_letters)
        .unwrap_or(0);

    let name = backend.name();
    eprintln!(
        "== worker throughput, {name} store and queue, {} consumers × batches of 10, Mercado Livre = the sandbox provider",
        CONSUMERS
    );
    let mut total_records = 0;
    let mut total_drain = Duration::ZERO;
    for run in &runs {
        let rate = run.records as f64 / run.drain.as_secs_f64();
        total_records += run.records;
        total_drain += run.drain;
        eprintln!(
            "{:<13} {} webhooks → {} records worked in {:.2} s: {:.1} records/s ({} batches)",
            run.source,
            run.webhooks,
            run.records,
            run.drain.as_secs_f64(),
            rate,
            run.batch_ms.len()
        );
        results.put(
            &format!("worker.{name}.{}.records_per_s", run.source),
            format!("{rate:.1}"),
        );
    }
    let rate = total_records as f64 / total_drain.as_secs_f64();
    eprintln!(
        "all           {total_records} records: {rate:.1} records/s; dead letters: {dead_letters}"
    );
    results.put(
        &format!("worker.{name}.records_per_s"),
        format!("{rate:.1}"),
    );
    results.put(&format!("worker.{name}.dead_letters"), dead_letters);

    let prices = if backend == Backend::Moto {
        match Prices::read(&args.prices) {
            Ok(prices) => Some(prices),
            Err(error) => {
                eprintln!("no cost: {error}");
                results.put("cost.unmeasured", format!("\"{error}\""));
                None
            }
        }
    } else {
        None
    };
    let mut worst: Option<(f64, &str)> = None;
    for run in &runs {
        let per = per_webhook(run);
        per.print(run, name);
        per.put(results, name, run.source);
        if let Some(prices) = &prices {
            let total = per.cost(prices, results, run.source);
            if worst.is_none_or(|(cost, _)| total > cost) {
                worst = Some((total, run.source));
            }
        }
    }
    if let (Some((cost, source)), Some(prices)) = (worst, &prices) {
        results.put("cost.per_million.max", format!("{cost:.2}"));
        results.put("cost.per_million.max_source", source);
        results.put("cost.prices_date", &prices.date);
    }
    if dead_letters > 0 {
        eprintln!("FAILED: {dead_letters} dead letters in a clean run");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn status<E: std::fmt::Debug>(response: Result<http::Response<Body>, E>) -> u16 {
    match response {
        Ok(response) => response.status().as_u16(),
        Err(error) => {
            eprintln!("ingest error: {error:?}");
            0
        }
    }
}

// ------------------------------------------------------------------ per webhook, priced

/// One webhook's share of everything counted in its source's run.
struct PerWebhook {
    apigw: f64,
    ingest_invocations: f64,
    worker_invocations: f64,
    gb_s: f64,
    sqs: f64,
    read_units: f64,
    write_units: f64,
    store_reads: f64,
    store_writes: f64,
    upstash: f64,
    ingest_ms: f64,
    batch_ms: f64,
}

fn memory_mb(binary: &str) -> f64 {
    let doc = template::load();
    template::functions(&doc)
        .into_iter()
        .find(|(_, function)| template::binary_name(function) == Some(binary))
        .and_then(|(_, function)| template::function_property(&doc, function, "MemorySize"))
        .and_then(serde_norway::Value::as_f64)
        .unwrap_or_else(|| panic!("template.yaml: no MemorySize for {binary}"))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

/// GB-seconds Lambda bills for calls of these durations (each rounded up to the ms).
fn gb_seconds(durations_ms: &[f64], memory_mb: f64) -> f64 {
    durations_ms.iter().map(|ms| ms.ceil()).sum::<f64>() / 1000.0 * memory_mb / 1024.0
}

fn per_webhook(run: &Run) -> PerWebhook {
    let n = run.webhooks as f64;
    let ingest_function = match run.source {
        "meta" => "webhook-meta",
        _ => "webhook-mercadolivre",
    };
    let c = &run.counts;
    let (sends, _) = c.sends();
    let (_, receives) = c.receives();
    // As the event source mapping: receives that got messages, and one DeleteMessageBatch
    // per batch that succeeded (the consumer here deletes one by one).
    let sqs = sends + receives + run.delete_batches + c.visibility_changes();
    PerWebhook {
        apigw: 1.0,
        ingest_invocations: 1.0,
        worker_invocations: run.batch_ms.len() as f64 / n,
        gb_s: (gb_seconds(&run.ingest_ms, memory_mb(ingest_function))
            + gb_seconds(&run.batch_ms, memory_mb("webhook-worker")))
            / n,
        sqs: sqs as f64 / n,
        read_units: c.read_units() / n,
        write_units: c.write_units() as f64 / n,
        store_reads: c.store_reads() as f64 / n,
        store_writes: c.store_writes() as f64 / n,
        upstash: run.upstash_commands as f64 / n,
        ingest_ms: median(&run.ingest_ms),
        batch_ms: median(&run.batch_ms),
    }
}

impl PerWebhook {
    fn print(&self, run: &Run, backend: &str) {
        eprintln!(
            "{} per webhook ({backend}, {} webhooks): API Gateway {:.2}, Lambda {:.2} ingest + {:.3} worker invocations, \
{:.6} GB-s (ingest median {:.2} ms, batch median {:.2} ms), SQS {:.3} requests, DynamoDB {:.2} reads ({:.2} RRU) \
{:.2} writes ({:.2} WRU), Upstash {:.2} commands",
            run.source,
            run.webhooks,
            self.apigw,
            self.ingest_invocations,
            self.worker_invocations,
            self.gb_s,
            self.ingest_ms,
            self.batch_ms,
            self.sqs,
            self.store_reads,
            self.read_units,
            self.store_writes,
            self.write_units,
            self.upstash
        );
    }

    fn put(&self, results: &mut Results, backend: &str, source: &str) {
        let key = |what: &str| format!("ops.{backend}.{source}.{what}");
        results.put(&key("apigw_requests"), format!("{:.3}", self.apigw));
        results.put(
            &key("lambda_invocations"),
            format!("{:.3}", self.ingest_invocations + self.worker_invocations),
        );
        results.put(&key("gb_s"), format!("{:.7}", self.gb_s));
        results.put(&key("sqs_requests"), format!("{:.3}", self.sqs));
        results.put(&key("dynamodb_rru"), format!("{:.3}", self.read_units));
        results.put(&key("dynamodb_wru"), format!("{:.3}", self.write_units));
        results.put(&key("upstash_commands"), format!("{:.3}", self.upstash));
        results.put(&key("ingest_ms_p50"), format!("{:.2}", self.ingest_ms));
        results.put(&key("batch_ms_p50"), format!("{:.2}", self.batch_ms));
    }

    /// Prints and records the cost of a million such webhooks; returns its total.
    fn cost(&self, prices: &Prices, results: &mut Results, source: &str) -> f64 {
        let million = 1_000_000.0;
        let lines = [
            ("apigw", self.apigw * million, "api_gateway_rest_request"),
            (
                "lambda_requests",
                (self.ingest_invocations + self.worker_invocations) * million,
                "lambda_request",
            ),
            ("lambda_gb_s", self.gb_s * million, "lambda_arm64_gb_second"),
            ("sqs", self.sqs * million, "sqs_standard_request"),
            (
                "dynamodb_rru",
                self.read_units * million,
                "dynamodb_read_request_unit",
            ),
            (
                "dynamodb_wru",
                self.write_units * million,
                "dynamodb_write_request_unit",
            ),
            ("upstash", self.upstash * million, "upstash_command"),
        ];
        eprintln!(
            "cost of 1 000 000 {source} webhooks (list prices of {}):",
            prices.date
        );
        let mut total = 0.0;
        for (what, quantity, price) in lines {
            let dollars = quantity * prices.get(price);
            total += dollars;
            eprintln!(
                "  {what:<14} {quantity:>14.1} × ${:<12} = ${dollars:>8.3}",
                prices.get(price)
            );
            results.put(&format!("cost.{source}.{what}"), format!("{dollars:.3}"));
        }
        eprintln!("  total ${total:.2} per million");
        results.put(&format!("cost.{source}.total"), format!("{total:.2}"));
        total
    }
}

/// The dated list-price table: `key price` lines, and a `# date: YYYY-MM-DD` line.
struct Prices {
    date: String,
    prices: HashMap<String, f64>,
}

impl Prices {
    fn read(path: &PathBuf) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut prices = Prices {
            date: String::new(),
            prices: HashMap::new(),
        };
        for line in text.lines() {
            if let Some(date) = line.strip_prefix("# date:") {
                prices.date = date.trim().to_owned();
            }
            let mut fields = line.split('\t');
            if let (Some(key), Some(price)) = (fields.next(), fields.next())
                && !key.starts_with('#')
                && let Ok(price) = price.trim().parse::<f64>()
            {
                prices.prices.insert(key.trim().to_owned(), price);
            }
        }
        if prices.date.is_empty() {
            return Err(format!("{}: no '# date:' line", path.display()));
        }
        Ok(prices)
    }

    fn get(&self, key: &str) -> f64 {
        *self
            .prices
            .get(key)
            .unwrap_or_else(|| panic!("the price table has no {key}"))
    }
}

// ------------------------------------------------------------------ reads

async fn reads(args: &Args, results: &mut Results) -> ExitCode {
    let world = world(Backend::Embedded).await;
    let tenant = seed(&world).await;
    let services = &world.services;
    let user = shared::auth::user_id(SELLER);
    let session = services
        .sessions()
        .expect("sessions")
        .start(&user, &tenant, SystemClock.now_secs())
        .await
        .expect("a session");
    let bearer = || {
        http::Request::builder()
            .uri("/v1/me")
            .header(
                "authorization",
                format!("Bearer {}", session.token.expose_secret()),
            )
            .body(Body::Empty)
            .expect("a request")
    };
    let authenticator = services.authenticator().expect("the authenticator");
    let me = Me::build(services).expect("me");
    let (mut auth_reads, mut me_reads) = (Vec::new(), Vec::new());
    for _ in 0..args.requests {
        let before = world.store.counts().store_reads();
        authenticator
            .authenticate(&bearer())
            .await
            .expect("authenticated");
        auth_reads.push(world.store.counts().store_reads() - before);
        let before = world.store.counts().store_reads();
        let response = me.handle(bearer()).await.expect("GET /v1/me");
        assert_eq!(response.status(), 200);
        me_reads.push(world.store.counts().store_reads() - before);
    }
    auth_reads.sort_unstable();
    me_reads.sort_unstable();
    let (auth_median, auth_max) = (
        auth_reads[auth_reads.len() / 2],
        auth_reads[auth_reads.len() - 1],
    );
    let (me_median, me_max) = (me_reads[me_reads.len() / 2], me_reads[me_reads.len() - 1]);
    eprintln!(
        "== storage reads per authenticated request ({} requests, counted): authentication median {auth_median} max {auth_max} \
(budget 1: {}); whole GET /v1/me median {me_median} max {me_max} (the revocation check and the grant's status)",
        args.requests,
        if auth_max <= 1 { "ok" } else { "OVER BUDGET" }
    );
    results.put("reads.authenticate.max", auth_max);
    results.put("reads.authenticate.median", auth_median);
    results.put("reads.me.median", me_median);
    if auth_max > 1 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
