//! Cold-start bench: spawns a function binary N times under the Runtime API emulator and
//! reports init time (spawn → first GET /next), first-invocation latency, peak RSS and
//! binary size against the budgets in DESIGN.md.
//!
//! ```text
//! cargo run -p sellerhub-tests --release --bin lambda_coldstart -- <function> [runs=20] [KEY=VALUE...]
//!     [--path /health] [--resource /health] [--method GET] [--header Name:Value]...
//!     [--body TEXT] [--timeout-secs 10] [--debug] [--binary PATH] [--check] [--moto]
//!     [--upstash] [--warm N] [--sqs-meta] [--results FILE]
//! ```
//!
//! `<function>` is a workspace package (built with `cargo build -p <function> --release`,
//! or the dev profile with `--debug`); `--binary` runs a prebuilt binary instead.
//! `--check` exits 1 when a run failed or a budget is exceeded. `--floor PATH` also starts
//! the binary at PATH (e.g. a hello-world function) before each run, with the same
//! environment, up to its first GET /next, and reports its init and each run's ratio to it:
//! paired runs, so that a machine's changing load weighs on both alike. `--moto` creates a table
//! and the webhook queues on moto (MOTO_ENDPOINT) and hands them to the function, as
//! template.yaml does in AWS; `--upstash` serves the Upstash REST protocol in front of
//! REDIS_URL and hands the function its URL and token. Each run comes from its own
//! client address (X-Forwarded-For), so per-IP limits measure the admitted path.
//!
//! `--warm N` then starts one more process and invokes it N times in a row (each from its
//! own client address): its peak RSS after them, and the warm invocations' durations.
//! `--sqs-meta` (with `--moto`) invokes with SQS events instead, as the webhook queue's
//! event source mapping does: full batches of 10 envelopes of WhatsApp messages to a
//! number linked to a tenant on moto, each message new, so each batch is real work; what a
//! batch wrote is deleted after it, so every batch meets the same table.
//! `--results FILE` appends the figures as `coldstart.<function>.<figure> value` lines.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, try_function_binary};
use shared::auth::tenants::Tenants;
use shared::channels::Channels;
use shared::clock::{Clock, SystemClock};
use shared::queue::ReceivedMessage;
use shared::queue::consumer::{ConsumerSettings, sqs_event};
use shared::store::Store;
use shared::store::dynamodb::DynamoStore;
use shared::webhooks::{Envelope, Source};

const MAX_RUNS: usize = 1000;
const BUDGET_INIT: Duration = Duration::from_millis(20);
const BUDGET_RSS_KIB: u64 = 30 * 1024;
const BUDGET_BINARY_BYTES: u64 = 8 * 1024 * 1024;

struct Args {
    function: String,
    runs: usize,
    env: Vec<(String, String)>,
    method: String,
    path: String,
    resource: Option<String>,
    headers: Vec<(String, String)>,
    body: Option<String>,
    timeout: Duration,
    release: bool,
    binary: Option<PathBuf>,
    check: bool,
    moto: bool,
    upstash: bool,
    floor: Option<PathBuf>,
    warm: usize,
    sqs_meta: bool,
    results: Option<PathBuf>,
}

const USAGE: &str = "usage: lambda_coldstart <function> [runs=20] [KEY=VALUE...] [--path /health] \
[--resource /health] [--method GET] [--header Name:Value]... [--body TEXT] [--timeout-secs 10] \
[--debug] [--binary PATH] [--check] [--moto] [--upstash] [--warm N] [--sqs-meta] [--results FILE] [--floor PATH]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        function: String::new(),
        runs: 20,
        env: Vec::new(),
        method: "GET".into(),
        path: "/health".into(),
        resource: None,
        headers: Vec::new(),
        body: None,
        timeout: Duration::from_secs(10),
        release: true,
        binary: None,
        check: false,
        moto: false,
        upstash: false,
        floor: None,
        warm: 0,
        sqs_meta: false,
        results: None,
    };
    let mut positional = Vec::new();
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        let mut value = |flag: &str| iter.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            "--path" => args.path = value("--path")?,
            "--resource" => args.resource = Some(value("--resource")?),
            "--method" => args.method = value("--method")?,
            "--body" => args.body = Some(value("--body")?),
            "--header" => {
                let header = value("--header")?;
                let (name, val) = header
                    .split_once(':')
                    .ok_or(format!("--header wants Name:Value, got {header}"))?;
                args.headers.push((name.trim().into(), val.trim().into()));
            }
            "--timeout-secs" => {
                let secs: u64 = value("--timeout-secs")?
                    .parse()
                    .map_err(|e| format!("--timeout-secs: {e}"))?;
                args.timeout = Duration::from_secs(secs.clamp(1, 120));
            }
            "--debug" => args.release = false,
            "--binary" => args.binary = Some(PathBuf::from(value("--binary")?)),
            "--check" => args.check = true,
            "--moto" => args.moto = true,
            "--upstash" => args.upstash = true,
            "--floor" => args.floor = Some(PathBuf::from(value("--floor")?)),
            "--sqs-meta" => args.sqs_meta = true,
            "--results" => args.results = Some(PathBuf::from(value("--results")?)),
            "--warm" => {
                let warm: usize = value("--warm")?
                    .parse()
                    .map_err(|e| format!("--warm: {e}"))?;
                args.warm = warm.min(100_000);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    args.function = positional.next().ok_or(USAGE)?;
    for arg in positional {
        if let Some((key, value)) = arg.split_once('=') {
            args.env.push((key.into(), value.into()));
        } else if let Ok(runs) = arg.parse::<usize>() {
            args.runs = runs.clamp(1, MAX_RUNS);
        } else {
            return Err(format!("unexpected argument {arg}\n{USAGE}"));
        }
    }
    Ok(args)
}

fn median<T: Copy + Ord>(sorted: &[T]) -> Option<T> {
    sorted.get(sorted.len() / 2).copied()
}

/// Nearest-rank percentile of a sorted slice.
fn percentile<T: Copy + Ord>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// The init of the binary at `path` (spawn → first GET /next), which is then stopped.
async fn floor_init(
    path: &std::path::Path,
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<Duration, sellerhub_tests::runtime_api::HarnessError> {
    let mut floor = FunctionProcess::spawn(path, env).await?;
    let init = floor.wait_ready(timeout).await;
    floor.kill().await;
    init
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "OVER BUDGET" }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    if args.moto {
        let table = sellerhub_tests::moto::create_table().await;
        let (queue_url, dlq_url) = sellerhub_tests::moto::create_queues(5).await;
        args.env.extend([
            (
                "AWS_ENDPOINT_URL".to_owned(),
                sellerhub_tests::moto::endpoint(),
            ),
            ("TABLE_NAME".to_owned(), table),
            ("WEBHOOK_QUEUE_URL".to_owned(), queue_url),
            ("WEBHOOK_DLQ_URL".to_owned(), dlq_url),
        ]);
    }
    // Kept alive for every run: the functions call it.
    let _upstash = if args.upstash {
        let shim = sellerhub_tests::upstash_shim::UpstashShim::start().await;
        args.env.extend([
            ("UPSTASH_REDIS_REST_URL".to_owned(), shim.url().to_owned()),
            (
                "UPSTASH_REDIS_REST_TOKEN".to_owned(),
                shim.token().to_owned(),
            ),
        ]);
        Some(shim)
    } else {
        None
    };
    let sqs_meta = args.sqs_meta;
    let mut tidy = None;
    if sqs_meta {
        let Some(table) = args
            .env
            .iter()
            .find(|(key, _)| key == "TABLE_NAME")
            .map(|(_, table)| table.clone())
        else {
            eprintln!("--sqs-meta needs --moto (a table to link the number in)");
            return ExitCode::from(2);
        };
        link_number(&table).await;
        tidy = Some(Tidy {
            keep: sellerhub_tests::moto::table_keys(&table).await,
            table,
        });
    }
    let binary = match &args.binary {
        Some(path) => path.clone(),
        None => match try_function_binary(&args.function, args.release) {
            Ok(path) => path,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        },
    };
    let binary_size = std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0);
    let resource = args.resource.clone().unwrap_or_else(|| args.path.clone());
    let headers: Vec<(&str, &str)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let env: Vec<(&str, &str)> = args
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    println!(
        "{} ({}), {} runs, {} {} (resource {}), env keys: [{}]",
        binary.display(),
        if args.binary.is_some() {
            "prebuilt"
        } else if args.release {
            "release"
        } else {
            "debug"
        },
        args.runs,
        args.method,
        args.path,
        resource,
        args.env
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );

    let mut inits = Vec::new();
    let mut first_durations = Vec::new();
    let mut first_latencies = Vec::new();
    let mut peaks = Vec::new();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = 0usize;
    let mut first_failure: Option<String> = None;
    let mut floor_inits = Vec::new();
    let mut floor_ratios = Vec::new();

    let mut events = Events {
        args: &args,
        resource: &resource,
        headers: &headers,
        sqs_meta: sqs_meta.then_some(0),
        tidy,
    };
    for run in 0..args.runs {
        let event = events.next(&format!("203.0.113.{}", 1 + run % 250));
        let floor_init = match &args.floor {
            Some(floor) => match floor_init(floor, &env, args.timeout).await {
                Ok(init) => Some(init),
                Err(error) => {
                    eprintln!("the floor {}: {error}", floor.display());
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let mut function = match FunctionProcess::spawn(&binary, &env).await {
            Ok(function) => function,
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::FAILURE;
            }
        };
        let result = async {
            let init = function.wait_ready(args.timeout).await?;
            // wait_ready first, so the invocation's latency is the warm path only.
            let invocation = function.invoke(event, args.timeout).await?;
            Ok::<_, sellerhub_tests::runtime_api::HarnessError>((init, invocation))
        }
        .await;
        match result {
            Ok((init, invocation)) => {
                if let Some(floor) = floor_init {
                    floor_inits.push(floor);
                    // Whole permille, so that the ratios sort as integers.
                    floor_ratios.push((init.as_secs_f64() / floor.as_secs_f64() * 1000.0) as u64);
                }
                inits.push(init);
                first_durations.push(invocation.duration);
                first_latencies.push(invocation.latency);
                if let Some(peak) = function.peak_rss_kib() {
                    peaks.push(peak);
                }
                let key = match (invocation.status_code(), invocation.error()) {
                    (_, Some(error)) => format!(
                        "function error {}",
                        error.kind().or(error.error_type.as_deref()).unwrap_or("?")
                    ),
                    (Some(code), None) => code.to_string(),
                    (None, None) => "no status".into(),
                };
                *outcomes.entry(key).or_default() += 1;
            }
            Err(error) => {
                failures += 1;
                let kind = match &error {
                    sellerhub_tests::runtime_api::HarnessError::Timeout { .. } => "timeout",
                    sellerhub_tests::runtime_api::HarnessError::InitError { .. } => "init error",
                    sellerhub_tests::runtime_api::HarnessError::ProcessExited { .. } => {
                        "process exited"
                    }
                    _ => "harness error",
                };
                *outcomes.entry(kind.into()).or_default() += 1;
                first_failure.get_or_insert_with(|| error.to_string());
            }
        }
        function.kill().await;
        events.tidy().await;
    }

    inits.sort();
    floor_inits.sort();
    floor_ratios.sort();
    first_durations.sort();
    first_latencies.sort();
    peaks.sort();

    println!(
        "binary size       {:.2} MiB ({binary_size} bytes) [{}; budget ≤ 8 MiB]",
        binary_size as f64 / (1024.0 * 1024.0),
        verdict(binary_size <= BUDGET_BINARY_BYTES)
    );
    let mut over_budget = binary_size > BUDGET_BINARY_BYTES;
    if let (Some(med), Some(p90), Some(min), Some(max)) = (
        median(&inits),
        percentile(&inits, 90.0),
        inits.first(),
        inits.last(),
    ) {
        println!(
            "init (spawn → first /next)  median {}  p90 {}  min {}  max {}  [{}; budget ≤ 20 ms]",
            ms(med),
            ms(p90),
            ms(*min),
            ms(*max),
            verdict(med <= BUDGET_INIT)
        );
        over_budget |= med > BUDGET_INIT;
    }
    if let (Some(floor), Some(ratio), Some(path)) =
        (median(&floor_inits), median(&floor_ratios), &args.floor)
    {
        println!(
            "floor init        median {} ({}, started just before each run); init/floor: median {:.2}×",
            ms(floor),
            path.display(),
            ratio as f64 / 1000.0
        );
    }
    if let (Some(duration), Some(latency)) = (median(&first_durations), median(&first_latencies)) {
        println!(
            "first invocation  median {} (event handed over → response), {} (invoke → response)",
            ms(duration),
            ms(latency)
        );
    }
    if let (Some(med), Some(max)) = (median(&peaks), peaks.last()) {
        println!(
            "peak RSS (VmHWM)  median {:.1} MiB  max {:.1} MiB  [{}; budget ≤ 30 MiB]",
            med as f64 / 1024.0,
            *max as f64 / 1024.0,
            verdict(*max <= BUDGET_RSS_KIB)
        );
        over_budget |= *max > BUDGET_RSS_KIB;
    }
    let mut results = Vec::new();
    if args.warm > 0 {
        match warm(&binary, &env, &mut events, &args).await {
            Ok(warm) => {
                println!(
                    "after {} warm invocations  peak RSS (VmHWM) {:.1} MiB [{}; budget ≤ 30 MiB]  duration median {}  p99 {}  mean {}  outcomes {}",
                    args.warm,
                    warm.peak_kib as f64 / 1024.0,
                    verdict(warm.peak_kib <= BUDGET_RSS_KIB),
                    ms(warm.median),
                    ms(warm.p99),
                    ms(warm.mean),
                    warm.outcomes
                );
                over_budget |= warm.peak_kib > BUDGET_RSS_KIB;
                results.extend([
                    ("warm_invocations", args.warm.to_string()),
                    (
                        "warm_rss_mib",
                        format!("{:.1}", warm.peak_kib as f64 / 1024.0),
                    ),
                    (
                        "warm_ms_p50",
                        format!("{:.3}", warm.median.as_secs_f64() * 1000.0),
                    ),
                    (
                        "warm_ms_p99",
                        format!("{:.3}", warm.p99.as_secs_f64() * 1000.0),
                    ),
                ]);
            }
            Err(error) => {
                println!("after {} warm invocations  failed: {error}", args.warm);
                failures += 1;
            }
        }
    }
    results.push(("size_bytes", binary_size.to_string()));
    if let Some(med) = median(&inits) {
        results.push(("init_ms_p50", format!("{:.3}", med.as_secs_f64() * 1000.0)));
    }
    if let Some(ratio) = median(&floor_ratios) {
        // Each run's init over the floor's just before it (paired), the median of those.
        results.push((
            "init_floor_ratio_p50",
            format!("{:.3}", ratio as f64 / 1000.0),
        ));
    }
    if let Some(med) = median(&first_durations) {
        results.push(("first_ms_p50", format!("{:.3}", med.as_secs_f64() * 1000.0)));
    }
    if let (Some(med), Some(max)) = (median(&peaks), peaks.last()) {
        results.push(("rss_mib_p50", format!("{:.1}", med as f64 / 1024.0)));
        results.push(("rss_mib_max", format!("{:.1}", *max as f64 / 1024.0)));
    }
    results.push(("failed_runs", failures.to_string()));
    if let Some(path) = &args.results
        && let Err(error) = append_results(path, &args.function, &results)
    {
        eprintln!("{}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    let seen = outcomes
        .iter()
        .map(|(k, n)| format!("{k} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("outcomes          {seen}");
    if let Some(failure) = &first_failure {
        println!(
            "{failures} of {} runs failed; the first: {failure}",
            args.runs
        );
    }
    if args.check && (failures > 0 || over_budget) {
        return ExitCode::FAILURE;
    }
    if failures >= args.runs {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn append_results(path: &Path, function: &str, results: &[(&str, String)]) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for (key, value) in results {
        writeln!(file, "coldstart.{function}.{key} {value}")?;
    }
    Ok(())
}

/// The WhatsApp number the `--sqs-meta` batches are sent to.
const PHONE: &str = "106540352242922";

/// Links [`PHONE`] to a new tenant in `table` on moto, as a seller's sign-in and link would.
async fn link_number(table: &str) {
    let store: Arc<dyn Store> = Arc::new(DynamoStore::new(
        sellerhub_tests::moto::dynamodb().await,
        table,
    ));
    let now = SystemClock.now_secs();
    let tenant = Tenants::new(Arc::clone(&store))
        .for_seller(468_424_240, "LOJA", now)
        .await
        .expect("a tenant on moto");
    Channels::new(store)
        .link_whatsapp(&tenant, PHONE, now)
        .await
        .expect("the number linked on moto");
}

/// What each invocation is sent: the API Gateway event of the arguments, or (`--sqs-meta`)
/// an SQS batch of 10 new WhatsApp messages (the number counts the messages made so far).
struct Events<'a> {
    args: &'a Args,
    resource: &'a str,
    headers: &'a [(&'a str, &'a str)],
    sqs_meta: Option<u64>,
    /// With `--sqs-meta`: the table the batches write, emptied after each.
    tidy: Option<Tidy>,
}

/// The table of the `--sqs-meta` batches and the items it held before them (the linked
/// tenant). What each batch writes is deleted after it, so that on moto every batch does
/// the same work (see `sellerhub_tests::moto::delete_all_but`): without it, 100 batches
/// made moto's TransactWriteItems take tens of seconds.
struct Tidy {
    table: String,
    keep: HashSet<(String, String)>,
}

impl Events<'_> {
    async fn tidy(&self) {
        if let Some(Tidy { table, keep }) = &self.tidy {
            sellerhub_tests::moto::delete_all_but(table, keep).await;
        }
    }

    fn next(&mut self, client_ip: &str) -> serde_json::Value {
        if let Some(made) = &mut self.sqs_meta {
            let messages: Vec<ReceivedMessage> = (0..10)
                .map(|_| {
                    *made += 1;
                    meta_record(*made)
                })
                .collect();
            let settings = ConsumerSettings {
                batch_size: 10,
                visibility_timeout: Duration::from_secs(180),
                wait: Duration::ZERO,
                queue_arn: "arn:aws:sqs:us-east-1:000000000000:webhooks".into(),
                region: "us-east-1".into(),
            };
            return serde_json::to_value(sqs_event(&messages, &settings))
                .expect("an SQS event is JSON");
        }
        let mut headers = self.headers.to_vec();
        if !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("x-forwarded-for"))
        {
            headers.push(("X-Forwarded-For", client_ip));
        }
        apigw_rest_event(
            &self.args.method,
            &self.args.path,
            self.resource,
            &headers,
            &[],
            self.args.body.as_deref(),
        )
    }
}

/// The queue message webhook-meta makes of WhatsApp message number `n`, as received.
fn meta_record(n: u64) -> ReceivedMessage {
    let body = sellerhub_tests::whatsapp::message_at(
        PHONE,
        &format!("55119{:08}", n % 500),
        &format!("wamid.coldstart-{}-{n}", std::process::id()),
        &format!("message {n}"),
        1_763_647_331 + n,
    );
    let change = shared::webhooks::meta::changes(body.as_bytes())
        .expect("a Meta body")
        .remove(0);
    let envelope = Envelope {
        source: Source::Meta,
        received_at_ms: SystemClock.now_ms(),
        dedupe_key: change.dedupe_key,
        correlation_id: format!("coldstart-{n}"),
        payload: change.payload,
        deferrals: 0,
    };
    ReceivedMessage {
        message_id: format!("m-{n}"),
        receipt_handle: format!("r-{n}"),
        body: envelope.to_message().expect("an envelope").body,
        attributes: Default::default(),
        receive_count: 1,
        sent_at_millis: SystemClock.now_ms(),
    }
}

struct Warm {
    peak_kib: u64,
    median: Duration,
    p99: Duration,
    mean: Duration,
    outcomes: String,
}

/// One more process, invoked `args.warm` times in a row.
async fn warm(
    binary: &Path,
    env: &[(&str, &str)],
    events: &mut Events<'_>,
    args: &Args,
) -> Result<Warm, sellerhub_tests::runtime_api::HarnessError> {
    let mut function = FunctionProcess::spawn(binary, env).await?;
    function.wait_ready(args.timeout).await?;
    let mut durations = Vec::with_capacity(args.warm);
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..args.warm {
        let event = events.next(&format!("198.18.{}.{}", (n / 250) % 256, 1 + n % 250));
        let invocation = function.invoke(event, args.timeout).await?;
        events.tidy().await;
        durations.push(invocation.duration);
        let key = match (invocation.status_code(), invocation.error()) {
            (_, Some(error)) => format!(
                "function error {}",
                error.kind().or(error.error_type.as_deref()).unwrap_or("?")
            ),
            (Some(code), None) => code.to_string(),
            (None, None) => "answered".into(),
        };
        *outcomes.entry(key).or_default() += 1;
    }
    let peak_kib = function.peak_rss_kib().unwrap_or(0);
    function.kill().await;
    durations.sort();
    let total: Duration = durations.iter().sum();
    Ok(Warm {
        peak_kib,
        median: median(&durations).unwrap_or_default(),
        p99: percentile(&durations, 99.0).unwrap_or_default(),
        mean: total / u32::try_from(durations.len().max(1)).unwrap_or(u32::MAX),
        outcomes: outcomes
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    })
}
