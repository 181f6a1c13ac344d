//! SSE bench: the local runner holding many GET /v1/events streams with heartbeats, and
//! the time from a webhook accepted to its event received on those streams.
//!
//! Starts the local runner (`--runner`, default `target/runner/local`, the `runner`
//! profile) on loopback with a fresh DATA_DIR, its workers on, heartbeats every
//! `--heartbeat-ms`, then:
//!
//! 1. signs in `--tenants` sellers through its sandbox and links a WhatsApp number to each;
//! 2. opens `--streams` streams, spread evenly over the tenants, and holds them
//!    `--hold-secs`: the streams still open, the heartbeats each got, and the runner's RSS
//!    (VmRSS at the end, VmHWM) and CPU over the hold, from /proc;
//! 3. sends `--messages` signed WhatsApp messages (POST /webhooks/meta), one every
//!    `--interval-ms`, to the tenants in turn. Each message becomes an event of its tenant
//!    (through the queue, the worker and the inbox), which every open stream of that tenant
//!    receives. Latency: from the webhook's 200 to the event's arrival, on each of those
//!    streams; p50, p90, p99 and max over all of them;
//! 4. checks every stream got each of its tenant's events exactly once.
//!
//! ```text
//! cargo build --profile runner -p local --bin local
//! cargo run -p sellerhub-tests --release --bin sse_bench -- [--streams 1000] [--tenants 10]
//!     [--hold-secs 35] [--heartbeat-ms 5000] [--messages 300] [--interval-ms 20]
//!     [--runner PATH] [--check]
//! ```
//!
//! The bench client (this process) runs on the same machine as the runner: its CPU is
//! reported too. `--check` exits 1 when the latency p99 is over 50 ms (the goal), a stream
//! closed early, or an event was missed or received twice.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::runtime_api::workspace_root;
use sellerhub_tests::sandbox_login::sign_in;
use sellerhub_tests::sse::{Block, SseStream};
use sellerhub_tests::whatsapp;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

const META_SECRET: &str = "sse-bench-meta-app-secret";
const GOAL_P99: Duration = Duration::from_millis(50);
/// How long the streams may take to receive the last events once all were sent.
const DRAIN: Duration = Duration::from_secs(30);

struct Args {
    streams: usize,
    tenants: usize,
    hold: Duration,
    heartbeat_ms: u64,
    messages: usize,
    interval: Duration,
    runner: PathBuf,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        streams: 1000,
        tenants: 10,
        hold: Duration::from_secs(35),
        heartbeat_ms: 5000,
        messages: 300,
        interval: Duration::from_millis(20),
        runner: workspace_root().join("target/runner/local"),
        check: false,
    };
    let mut words = std::env::args().skip(1);
    while let Some(word) = words.next() {
        if word == "--check" {
            args.check = true;
            continue;
        }
        let value = words.next().ok_or(format!("{word} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("{word} {value}: {e}"))
        };
        match word.as_str() {
            "--streams" => args.streams = number()? as usize,
            "--tenants" => args.tenants = number()? as usize,
            "--hold-secs" => args.hold = Duration::from_secs(number()?),
            "--heartbeat-ms" => args.heartbeat_ms = number()?,
            "--messages" => args.messages = number()? as usize,
            "--interval-ms" => args.interval = Duration::from_millis(number()?),
            "--runner" => args.runner = PathBuf::from(value),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.tenants == 0 || args.streams < args.tenants || args.tenants > 20 {
        return Err(
            "1 to 20 tenants (the login limit: 20 a minute), at least one stream each".into(),
        );
    }
    Ok(args)
}

/// What one stream saw.
struct StreamReport {
    tenant: usize,
    heartbeats: usize,
    /// (message number, when its event arrived)
    arrivals: Vec<(usize, Instant)>,
    /// The stream ended before the bench stopped it.
    ended: bool,
}

/// CPU time of a process (user + system), from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Duration {
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name may hold spaces: fields count from after its ')'.
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A /proc/<pid>/status figure in MiB.
fn memory_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with(field))?;
            line[field.len()..]
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// Follows one stream until `stop`, noting its heartbeats and when each event arrives.
async fn follow(
    mut stream: SseStream,
    tenant: usize,
    arrived: Arc<AtomicUsize>,
    mut stop: watch::Receiver<bool>,
) -> StreamReport {
    let mut report = StreamReport {
        tenant,
        heartbeats: 0,
        arrivals: Vec::new(),
        ended: false,
    };
    loop {
        let block = tokio::select! {
            block = stream.next_block(Duration::from_secs(3600)) => block,
            _ = stop.wait_for(|stop| *stop) => return report,
        };
        let at = Instant::now();
        match block {
            Some(Block::Event(event)) => {
                let number = event.data["data"]["text"]
                    .as_str()
                    .and_then(|text| text.strip_prefix("bench:"))
                    .and_then(|n| n.parse().ok());
                if let Some(number) = number {
                    report.arrivals.push((number, at));
                    arrived.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Block::Comment(_)) => report.heartbeats += 1,
            Some(Block::Fields) => {}
            None => {
                report.ended = true;
                return report;
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("sse_bench: {error}");
            return ExitCode::from(2);
        }
    };
    if !args.runner.is_file() {
        eprintln!(
            "sse_bench: no runner at {} (cargo build --profile runner -p local --bin local)",
            args.runner.display()
        );
        return ExitCode::from(2);
    }
    let data = tempfile::tempdir().expect("a data directory");
    let heartbeat = args.heartbeat_ms.to_string();
    let runner = LocalRunner::start_binary(
        &args.runner,
        data.path(),
        &[
            ("META_APP_SECRET", META_SECRET),
            ("EVENTS_HEARTBEAT_MS", heartbeat.as_str()),
            // The sellers sign in back to back, two Mercado Livre calls each: more than
            // the sign-in share (0.1) of the default burst (100) lets through at once.
            ("RATE_LIMIT_ML_GLOBAL_BURST", "1000"),
        ],
    );
    let pid = runner.pid();
    println!(
        "== SSE: the local runner ({}, pid {pid}) holding {} streams of {} tenants, heartbeat every {} ms",
        args.runner.display(),
        args.streams,
        args.tenants,
        args.heartbeat_ms
    );

    // 1. Sellers, each with a WhatsApp number.
    let mut tokens = Vec::new();
    let mut phones = Vec::new();
    for tenant in 0..args.tenants {
        // Each from an address of its own: logins are limited per client address.
        let address = std::net::Ipv4Addr::new(127, 0, 1, 1 + tenant as u8);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(std::net::IpAddr::V4(address))
            .build()
            .expect("an HTTP client");
        let token = sign_in(&runner, &client, 700_000_000 + tenant as u64).await;
        let phone = format!("1065403522{tenant:05}");
        let linked = client
            .put(runner.url("/v1/channels/whatsapp"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "phone_number_id": phone }))
            .send()
            .await
            .expect("PUT /v1/channels/whatsapp");
        assert_eq!(linked.status(), 201, "linking {phone}");
        tokens.push(token);
        phones.push(phone);
    }

    // 2. The streams, opened a few at a time, then held.
    let client = reqwest::Client::new();
    let (stop, stopped) = watch::channel(false);
    let arrived = Arc::new(AtomicUsize::new(0));
    let opening = Arc::new(Semaphore::new(32));
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut streams = JoinSet::new();
    let started = Instant::now();
    for n in 0..args.streams {
        let tenant = n % args.tenants;
        let (client, url, token) = (
            client.clone(),
            runner.url("/v1/events"),
            tokens[tenant].clone(),
        );
        let (opening, opened, stopped) = (Arc::clone(&opening), opened_tx.clone(), stopped.clone());
        let arrived = Arc::clone(&arrived);
        streams.spawn(async move {
            let permit = opening.acquire_owned().await.expect("the semaphore");
            let mut stream = SseStream::open(&client, &url, &token, None)
                .await
                .unwrap_or_else(|(status, body)| panic!("opening stream {n}: {status} {body}"));
            // The opening (retry hint, starting id) has come: the stream is subscribed.
            let opening = stream.next_block(Duration::from_secs(60)).await;
            assert_eq!(opening, Some(Block::Fields), "stream {n}'s opening");
            drop(permit);
            let _ = opened.send(());
            follow(stream, tenant, arrived, stopped).await
        });
    }
    drop(opened_tx);
    let mut open = 0;
    while open < args.streams && opened_rx.recv().await.is_some() {
        open += 1;
    }
    println!(
        "streams open          : {open} (in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let cpu_before = cpu_time(pid);
    let own_before = cpu_time(std::process::id());
    tokio::time::sleep(args.hold).await;
    let hold_cpu = cpu_time(pid).saturating_sub(cpu_before);
    let own_cpu = cpu_time(std::process::id()).saturating_sub(own_before);
    let rss = memory_mib(pid, "VmRSS:");
    println!(
        "held                  : {} s; runner RSS {rss:.1} MiB (peak so far {:.1} MiB), CPU {:.3} cores; bench client CPU {:.3} cores",
        args.hold.as_secs(),
        memory_mib(pid, "VmHWM:"),
        hold_cpu.as_secs_f64() / args.hold.as_secs_f64(),
        own_cpu.as_secs_f64() / args.hold.as_secs_f64(),
    );

    // 3. Webhooks, one every interval, each accepted before the next.
    let accepted: Arc<Mutex<HashMap<usize, Instant>>> = Arc::default();
    let cpu_before = cpu_time(pid);
    let sending_started = Instant::now();
    let mut ticks = tokio::time::interval(args.interval);
    for number in 0..args.messages {
        ticks.tick().await;
        let tenant = number % args.tenants;
        let body = whatsapp::message(
            &phones[tenant],
            &format!("55119{number:08}"),
            &format!("wamid.bench.{number}"),
            &format!("bench:{number}"),
        );
        let response = whatsapp::post(&client, &runner.base_url, body, META_SECRET)
            .await
            .expect("POST /webhooks/meta");
        let at = Instant::now();
        assert_eq!(response.status(), 200, "webhook {number}");
        accepted.lock().unwrap().insert(number, at);
    }
    let sending = sending_started.elapsed();

    // 4. Until every stream got its tenant's events (or DRAIN passed), then stop.
    let per_tenant: Vec<usize> = (0..args.tenants)
        .map(|tenant| {
            (0..args.messages)
                .filter(|n| n % args.tenants == tenant)
                .count()
        })
        .collect();
    let expected_arrivals: usize = (0..args.streams)
        .map(|n| per_tenant[n % args.tenants])
        .sum();
    let drain_until = Instant::now() + DRAIN;
    while arrived.load(Ordering::Relaxed) < expected_arrivals && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let send_cpu = cpu_time(pid).saturating_sub(cpu_before);
    let send_wall = sending_started.elapsed();
    let _ = stop.send(true);
    let reports: Vec<StreamReport> = streams.join_all().await;
    let hwm = memory_mib(pid, "VmHWM:");
    drop(runner);

    let accepted = accepted.lock().unwrap().clone();
    let mut latencies = Vec::with_capacity(expected_arrivals);
    let (mut missing, mut repeated, mut ended) = (0usize, 0usize, 0usize);
    let mut heartbeats: Vec<usize> = Vec::new();
    for report in &reports {
        heartbeats.push(report.heartbeats);
        ended += usize::from(report.ended);
        let mut got = BTreeMap::new();
        for (number, at) in &report.arrivals {
            *got.entry(*number).or_insert(0usize) += 1;
            if let Some(accepted_at) = accepted.get(number) {
                latencies.push(at.saturating_duration_since(*accepted_at));
            }
        }
        let expected: BTreeSet<usize> = (0..args.messages)
            .filter(|n| n % args.tenants == report.tenant)
            .collect();
        missing += expected.iter().filter(|n| !got.contains_key(n)).count();
        repeated += got.values().filter(|count| **count > 1).count();
        repeated += got.keys().filter(|n| !expected.contains(n)).count();
    }
    heartbeats.sort_unstable();
    latencies.sort_unstable();
    println!(
        "heartbeats per stream : min {}, median {}, max {} over the whole run",
        heartbeats.first().unwrap_or(&0),
        heartbeats.get(heartbeats.len() / 2).unwrap_or(&0),
        heartbeats.last().unwrap_or(&0)
    );
    println!(
        "webhooks              : {} accepted in {:.1} s ({:.0}/s); runner CPU {:.3} cores while sending and draining",
        accepted.len(),
        sending.as_secs_f64(),
        accepted.len() as f64 / sending.as_secs_f64(),
        send_cpu.as_secs_f64() / send_wall.as_secs_f64()
    );
    println!(
        "events received       : {} of {expected_arrivals} (missing {missing}, repeated or foreign {repeated}); streams closed early: {ended}",
        latencies.len()
    );
    let p99 = percentile(&latencies, 0.99);
    println!(
        "accepted -> received  : p50 {}, p90 {}, p99 {}, max {} (goal p99 <= {}: {})",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.90)),
        ms(p99),
        ms(latencies.last().copied().unwrap_or_default()),
        ms(GOAL_P99),
        if p99 <= GOAL_P99 { "met" } else { "NOT met" }
    );
    println!("runner peak RSS       : {hwm:.1} MiB (VmHWM)");
    let failed = p99 > GOAL_P99 || missing > 0 || repeated > 0 || ended > 0 || open < args.streams;
    if args.check && failed {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
