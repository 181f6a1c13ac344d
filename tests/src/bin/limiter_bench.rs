//! Limiter bench: round trips per check and check latency, against the redis-server at
//! REDIS_URL through the Upstash REST shim (the real client, the real Lua script), for
//! the denial cache, and for the embedded adapter. Each figure is the median over
//! `rounds` rounds of `checks` sequential checks (two limits each, as a Mercado Livre
//! call is checked).
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 cargo run -p sellerhub-tests --release --bin limiter_bench -- [rounds=5] [checks=1000] [--check]
//! ```
//!
//! `--check` exits 1 unless a check costs exactly 1 round trip, and a cached denial 0
//! (DESIGN.md's budget).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sellerhub_tests::upstash_shim::UpstashShim;
use shared::ratelimit::cached::CachedLimiter;
use shared::ratelimit::memory::MemoryLimiter;
use shared::ratelimit::redis::RedisLimiter;
use shared::ratelimit::upstash::Upstash;
use shared::ratelimit::{Check, Limiter, Rule};

const MAX_ROUNDS: usize = 100;
const MAX_CHECKS: usize = 100_000;
const T0: i64 = 1_700_000_000_000;

/// One round's figures for one kind of check.
struct Round {
    round_trips_per_check: f64,
    p50: Duration,
    p99: Duration,
}

fn checks(name: &str, account_rule: Rule) -> [Check; 2] {
    let id = uuid::Uuid::new_v4();
    [
        Check {
            key: format!("bench:{name}:global:{id}"),
            rule: Rule::new(100_000_000, Duration::from_secs(3600), 1_000_000),
        },
        Check {
            key: format!("bench:{name}:account:{id}"),
            rule: account_rule,
        },
    ]
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Runs `count` checks of `checks` one after the other, each `expect_allowed` or not.
async fn measure(
    limiter: &dyn Limiter,
    shim: Option<&UpstashShim>,
    checks: &[Check],
    count: usize,
    expect_allowed: bool,
) -> Round {
    let before = shim.map_or(0, UpstashShim::requests);
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let verdict = limiter
            .check(checks, T0 + i as i64)
            .await
            .unwrap_or_else(|error| panic!("check failed: {error}"));
        latencies.push(started.elapsed());
        assert_eq!(
            verdict.allowed, expect_allowed,
            "check {i}: unexpected verdict"
        );
    }
    let round_trips = shim.map_or(0, UpstashShim::requests) - before;
    latencies.sort();
    Round {
        round_trips_per_check: round_trips as f64 / count as f64,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

fn median<T: Copy + PartialOrd>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}

fn report(name: &str, rounds: &[Round], with_round_trips: bool) -> f64 {
    let round_trips = median(
        rounds
            .iter()
            .map(|round| round.round_trips_per_check)
            .collect(),
    );
    let p50 = median(rounds.iter().map(|round| round.p50).collect());
    let p99 = median(rounds.iter().map(|round| round.p99).collect());
    let trips = if with_round_trips {
        format!("round trips/check {round_trips:.2}   ")
    } else {
        String::new()
    };
    println!(
        "{name:<34} {trips}p50 {:>8.1} µs   p99 {:>8.1} µs",
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
    round_trips
}

async fn bench(rounds: usize, count: usize) -> (f64, f64) {
    let shim = UpstashShim::start().await;
    let redis = Arc::new(RedisLimiter::new(
        Upstash::new(shim.config()).unwrap_or_else(|error| panic!("Upstash client: {error}")),
    ));
    let roomy = Rule::new(100_000_000, Duration::from_secs(3600), 1_000_000);
    // Load the script and open the connection first: the bench measures warm checks.
    let warm = checks("warm", roomy);
    measure(redis.as_ref(), None, &warm, 10, true).await;

    let (mut shared, mut cached, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        shared.push(
            measure(
                redis.as_ref(),
                Some(&shim),
                &checks("shared", roomy),
                count,
                true,
            )
            .await,
        );

        let limiter = CachedLimiter::new(redis.clone());
        let spent = checks("cached", Rule::new(2, Duration::from_secs(3600), 1));
        measure(&limiter, None, &spent, 1, true).await;
        measure(&limiter, None, &spent, 1, false).await;
        cached.push(measure(&limiter, Some(&shim), &spent, count, false).await);

        let local = MemoryLimiter::new();
        memory.push(measure(&local, None, &checks("memory", roomy), count, true).await);
    }
    println!(
        "limiter_bench: medians of {rounds} rounds × {count} sequential checks of 2 limits; \
         redis-server through the Upstash REST shim on loopback"
    );
    let check_trips = report("check (Upstash shim → Redis, Lua)", &shared, true);
    let cached_trips = report("check of a cached denial", &cached, true);
    report("check on the embedded adapter", &memory, false);
    (check_trips, cached_trips)
}

fn main() -> ExitCode {
    let mut numbers = Vec::new();
    let mut enforce = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => enforce = true,
            other => match other.parse::<usize>() {
                Ok(number) => numbers.push(number),
                Err(_) => {
                    eprintln!("usage: limiter_bench [rounds=5] [checks=1000] [--check]");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let rounds = numbers.first().copied().unwrap_or(5).clamp(1, MAX_ROUNDS);
    let count = numbers.get(1).copied().unwrap_or(1000).clamp(1, MAX_CHECKS);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|error| panic!("tokio runtime: {error}"));
    let (check_trips, cached_trips) = runtime.block_on(bench(rounds, count));
    if enforce && (check_trips != 1.0 || cached_trips != 0.0) {
        eprintln!(
            "budget exceeded: {check_trips} round trips per check (budget 1), \
             {cached_trips} per cached denial (budget 0)"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
