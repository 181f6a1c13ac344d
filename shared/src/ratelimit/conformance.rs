//! The limiter port's conformance suite: what every [`Limiter`] must decide, on a clock the
//! suite controls, as plain async functions that panic naming the broken rule.
//!
//! Every check uses keys of its own (random names), so the suite can share a Redis with
//! other suites and with itself.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Check, Limiter, Rule, Verdict};

/// An arbitrary instant (ms since the epoch) the suite's clocks start from.
const T0: i64 = 1_700_000_000_000;

pub async fn run_all(limiter: &dyn Limiter) {
    a_burst_then_a_denial_with_the_exact_retry_after(limiter).await;
    a_limit_refills_over_time(limiter).await;
    a_denial_by_one_limit_consumes_nothing_from_the_others(limiter).await;
    a_denial_waits_for_the_slowest_limit(limiter).await;
    a_block_is_honoured_then_released(limiter).await;
    keys_are_independent(limiter).await;
    no_window_of_the_period_admits_more_than_the_limit(limiter).await;
    expiry_of_a_key_does_not_change_decisions(limiter).await;
}

fn key(name: &str) -> String {
    format!("conformance:{name}:{}", uuid::Uuid::new_v4())
}

fn check(key: &str, limit: u32, period_ms: u64, burst: u32) -> Check {
    Check {
        key: key.to_owned(),
        rule: Rule::new(limit, Duration::from_millis(period_ms), burst),
    }
}

async fn run(limiter: &dyn Limiter, checks: &[Check], now_ms: i64) -> Verdict {
    match limiter.check(checks, now_ms).await {
        Ok(verdict) => verdict,
        Err(error) => panic!("check of {checks:?} at {now_ms} failed: {error}"),
    }
}

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// (allowed, retry_after ms, [(remaining, reset_after ms)]) for compact assertions.
fn summary(verdict: &Verdict) -> (bool, u128, Vec<(u32, u128)>) {
    (
        verdict.allowed,
        verdict.retry_after.as_millis(),
        verdict
            .limits
            .iter()
            .map(|status| (status.remaining, status.reset_after.as_millis()))
            .collect(),
    )
}

pub async fn a_burst_then_a_denial_with_the_exact_retry_after(limiter: &dyn Limiter) {
    // 10 per 10 s, burst 4: interval 10000/6 = 1666 ms, tolerance 3 × 1666 = 4998 ms.
    let limit = check(&key("burst"), 10, 10_000, 4);
    let expected = [(3, 1666), (2, 3332), (1, 4998), (0, 6664)];
    for (i, (remaining, reset)) in expected.into_iter().enumerate() {
        let verdict = run(limiter, std::slice::from_ref(&limit), T0).await;
        assert_eq!(
            summary(&verdict),
            (true, 0, vec![(remaining, reset)]),
            "request {} of a burst of 4",
            i + 1
        );
        assert_eq!(verdict.limits[0].limit, 10);
        assert_eq!(verdict.limits[0].key, limit.key);
    }
    let denied = run(limiter, std::slice::from_ref(&limit), T0).await;
    assert_eq!(
        summary(&denied),
        (false, 1666, vec![(0, 6664)]),
        "the 5th request of a burst of 4 is denied for exactly one interval"
    );
    let still = run(limiter, std::slice::from_ref(&limit), T0 + 1665).await;
    assert_eq!(
        summary(&still),
        (false, 1, vec![(0, 4999)]),
        "a denial consumes nothing: 1 ms before the retry_after it is still denied"
    );
    let admitted = run(limiter, std::slice::from_ref(&limit), T0 + 1666).await;
    assert_eq!(
        summary(&admitted),
        (true, 0, vec![(0, 6664)]),
        "admitted exactly at the retry_after"
    );
}

pub async fn a_limit_refills_over_time(limiter: &dyn Limiter) {
    // 3 per 3 s, burst 2: interval 3000 ms, tolerance 3000 ms.
    let limit = check(&key("refill"), 3, 3_000, 2);
    let one = std::slice::from_ref(&limit);
    assert!(run(limiter, one, T0).await.allowed);
    assert!(run(limiter, one, T0).await.allowed);
    assert!(!run(limiter, one, T0).await.allowed);
    // One interval later: one more.
    assert_eq!(
        summary(&run(limiter, one, T0 + 3000).await),
        (true, 0, vec![(0, 6000)])
    );
    assert_eq!(
        summary(&run(limiter, one, T0 + 3000).await),
        (false, 3000, vec![(0, 6000)])
    );
    // Past the reset: the whole burst again.
    assert_eq!(
        summary(&run(limiter, one, T0 + 9000).await),
        (true, 0, vec![(1, 3000)]),
        "a limit back at rest has its full burst"
    );
    assert!(run(limiter, one, T0 + 9000).await.allowed);
    assert!(!run(limiter, one, T0 + 9000).await.allowed);
}

pub async fn a_denial_by_one_limit_consumes_nothing_from_the_others(limiter: &dyn Limiter) {
    // Global: 100 per 100 s, burst 10 (interval 1111, tolerance 9999).
    // Account: 3 per 3 s, burst 2 (interval 3000, tolerance 3000).
    let global = check(&key("global"), 100, 100_000, 10);
    let account = check(&key("account"), 3, 3_000, 2);
    let both = [global.clone(), account.clone()];
    assert!(run(limiter, &both, T0).await.allowed);
    assert!(run(limiter, &both, T0).await.allowed);
    for _ in 0..5 {
        let denied = run(limiter, &both, T0).await;
        assert_eq!(
            summary(&denied),
            (false, 3000, vec![(8, 2222), (0, 6000)]),
            "the account denies; the global limit reports what it still has, untouched"
        );
    }
    assert_eq!(
        summary(&run(limiter, std::slice::from_ref(&global), T0).await),
        (true, 0, vec![(7, 3333)]),
        "the denials consumed nothing from the global limit"
    );
    // And the other way round: the global limit denies, the account keeps its burst.
    let tight = check(&key("tight-global"), 2, 2_000, 1);
    let fresh = check(&key("fresh-account"), 3, 3_000, 2);
    assert!(run(limiter, std::slice::from_ref(&tight), T0).await.allowed);
    let denied = run(limiter, &[tight.clone(), fresh.clone()], T0).await;
    assert_eq!(summary(&denied), (false, 2000, vec![(0, 2000), (2, 0)]));
    assert_eq!(
        summary(&run(limiter, std::slice::from_ref(&fresh), T0).await),
        (true, 0, vec![(1, 3000)]),
        "the account was not consumed by a check the global limit denied"
    );
}

pub async fn a_denial_waits_for_the_slowest_limit(limiter: &dyn Limiter) {
    // a: interval 1000 ms, b: interval 250 ms, both without tolerance.
    let a = check(&key("slow"), 2, 1_000, 1);
    let b = check(&key("fast"), 5, 1_000, 1);
    let both = [a, b];
    assert!(run(limiter, &both, T0).await.allowed);
    assert_eq!(
        summary(&run(limiter, &both, T0).await),
        (false, 1000, vec![(0, 1000), (0, 250)])
    );
    assert_eq!(
        summary(&run(limiter, &both, T0 + 250).await),
        (false, 750, vec![(0, 750), (1, 0)])
    );
    assert!(run(limiter, &both, T0 + 1000).await.allowed);
}

pub async fn a_block_is_honoured_then_released(limiter: &dyn Limiter) {
    let blocked = check(&key("blocked"), 3, 3_000, 2);
    let other = check(&key("unblocked"), 3, 3_000, 2);
    let block = |until: i64, now: i64| {
        let key = blocked.key.clone();
        async move {
            if let Err(error) = limiter.block_until(&key, until, now).await {
                panic!("block_until {key} failed: {error}");
            }
        }
    };
    block(T0 + 5_000, T0).await;
    // A shorter block (a later, smaller Retry-After) does not shorten it.
    block(T0 + 1_000, T0).await;
    let one = std::slice::from_ref(&blocked);
    assert_eq!(
        summary(&run(limiter, one, T0 + 100).await),
        (false, 4_900, vec![(0, 4_900)]),
        "a blocked key is denied until the block ends, whatever its rule"
    );
    let with_other = run(limiter, &[other.clone(), blocked.clone()], T0 + 100).await;
    assert_eq!(
        summary(&with_other),
        (false, 4_900, vec![(2, 0), (0, 4_900)])
    );
    assert_eq!(
        summary(&run(limiter, std::slice::from_ref(&other), T0 + 100).await),
        (true, 0, vec![(1, 3_000)]),
        "a block holds its own key only, and its denials consumed nothing"
    );
    assert_eq!(
        summary(&run(limiter, one, T0 + 4_999).await),
        (false, 1, vec![(0, 1)])
    );
    assert_eq!(
        summary(&run(limiter, one, T0 + 5_000).await),
        (true, 0, vec![(1, 3_000)]),
        "released at its end with the whole burst (the block consumed nothing)"
    );
    // A block in the past is no block.
    block(T0 + 4_000, T0 + 5_000).await;
    assert!(run(limiter, one, T0 + 5_000).await.allowed);
}

pub async fn keys_are_independent(limiter: &dyn Limiter) {
    let a = check(&key("a"), 3, 3_000, 2);
    let b = check(&key("b"), 3, 3_000, 2);
    for _ in 0..2 {
        assert!(run(limiter, std::slice::from_ref(&a), T0).await.allowed);
    }
    assert!(!run(limiter, std::slice::from_ref(&a), T0).await.allowed);
    assert_eq!(
        summary(&run(limiter, std::slice::from_ref(&b), T0).await),
        (true, 0, vec![(1, 3_000)]),
        "a spent key leaves another key's burst whole"
    );
}

pub async fn no_window_of_the_period_admits_more_than_the_limit(limiter: &dyn Limiter) {
    // 20 per 10 s, burst 5: hammered every 50 ms for a minute.
    let period = 10_000;
    let limit = check(&key("window"), 20, period as u64, 5);
    let mut admitted = Vec::new();
    let mut now = T0;
    while now < T0 + 60_000 {
        if run(limiter, std::slice::from_ref(&limit), now)
            .await
            .allowed
        {
            admitted.push(now);
        }
        now += 50;
    }
    for (i, start) in admitted.iter().enumerate() {
        let within = admitted[i..]
            .iter()
            .take_while(|t| **t <= start + period)
            .count();
        assert!(
            within <= 20,
            "{within} admitted in the {period} ms from {start}: over the limit of 20"
        );
    }
    // Sustained rate 15 per 10 s plus the burst: the limit is not undersold either.
    assert!(
        admitted.len() >= 5 + 6 * 15 - 1,
        "only {} admitted in a minute",
        admitted.len()
    );
}

pub async fn expiry_of_a_key_does_not_change_decisions(limiter: &dyn Limiter) {
    // Real time here, so that Redis really expires the key (3 per 300 ms, burst 2: the
    // key lives 600 ms after two requests).
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as i64)
    };
    let spent = check(&key("expiring"), 3, 300, 2);
    let start = now();
    assert!(
        run(limiter, std::slice::from_ref(&spent), start)
            .await
            .allowed
    );
    assert!(
        run(limiter, std::slice::from_ref(&spent), start)
            .await
            .allowed
    );
    tokio::time::sleep(ms(700)).await;
    let later = start + 700;
    let fresh = check(&key("never-used"), 3, 300, 2);
    assert_eq!(
        summary(&run(limiter, std::slice::from_ref(&spent), later).await),
        summary(&run(limiter, std::slice::from_ref(&fresh), later).await),
        "an expired key decides as a key never used"
    );
    // Before expiry, a key whose TAT is past decides as a fresh one too.
    let rested = check(&key("rested"), 3, 300, 2);
    assert!(
        run(limiter, std::slice::from_ref(&rested), T0)
            .await
            .allowed
    );
    let fresh = check(&key("never-used"), 3, 300, 2);
    assert_eq!(
        summary(&run(limiter, std::slice::from_ref(&rested), T0 + 600).await),
        summary(&run(limiter, std::slice::from_ref(&fresh), T0 + 600).await),
    );
}
