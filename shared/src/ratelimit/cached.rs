//! A denial cache in front of a limiter: a key denied (or blocked) until some instant is
//! answered from memory until then, with no round trip. Only denials are cached: an
//! admission always asks the inner limiter, which alone knows what other instances used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::gcra::millis;
use super::{Check, LimitStatus, Limiter, LimiterResult, Verdict};

/// Below this many entries the cache is never swept.
const SWEEP_FROM: usize = 1024;

pub struct CachedLimiter {
    inner: Arc<dyn Limiter>,
    state: Mutex<State>,
}

/// What this instance last learnt of a key, in the caller's clock.
#[derive(Clone, Copy, Debug)]
struct Seen {
    /// Denied until then (0 when not denied).
    denied_until_ms: i64,
    remaining: u32,
    reset_at_ms: i64,
}

struct State {
    keys: HashMap<String, Seen>,
    sweep_at: usize,
}

impl CachedLimiter {
    pub fn new(inner: Arc<dyn Limiter>) -> Self {
        Self {
            inner,
            state: Mutex::new(State {
                keys: HashMap::new(),
                sweep_at: SWEEP_FROM,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The answer for `checks` if one of their keys is known to be denied at `now_ms`.
    fn cached_denial(&self, checks: &[Check], now_ms: i64) -> Option<Verdict> {
        let state = self.state();
        let seen: Vec<Option<Seen>> = checks
            .iter()
            .map(|check| state.keys.get(&check.key).copied())
            .collect();
        let retry_after_ms = seen
            .iter()
            .flatten()
            .map(|seen| seen.denied_until_ms - now_ms)
            .filter(|wait| *wait > 0)
            .max()?;
        // The other limits are reported as last seen (at their full burst once reset).
        let limits = checks
            .iter()
            .zip(&seen)
            .map(|(check, seen)| {
                let (remaining, reset_after_ms) = match seen {
                    Some(seen) if seen.denied_until_ms > now_ms => (0, seen.reset_at_ms - now_ms),
                    Some(seen) if seen.reset_at_ms > now_ms => {
                        (seen.remaining, seen.reset_at_ms - now_ms)
                    }
                    _ => (check.rule.burst, 0),
                };
                LimitStatus {
                    key: check.key.clone(),
                    limit: check.rule.limit,
                    remaining,
                    reset_after: millis(reset_after_ms),
                }
            })
            .collect();
        Some(Verdict {
            allowed: false,
            retry_after: millis(retry_after_ms),
            limits,
        })
    }

    fn remember(&self, checks: &[Check], verdict: &Verdict, now_ms: i64) {
        let retry_after_ms = duration_ms(verdict.retry_after);
        // In a denial nothing was consumed, so a limit with nothing remaining is one that
        // denies. With one such limit the verdict's retry_after is its own; with several
        // it is the latest of theirs, and each one's own is reset_after - tolerance (exact
        // for GCRA, early for a block marker: an early expiry only costs a round trip).
        let denying = verdict
            .limits
            .iter()
            .filter(|status| status.remaining == 0)
            .count();
        let mut state = self.state();
        sweep(&mut state, now_ms);
        for (check, status) in checks.iter().zip(&verdict.limits) {
            let reset_at_ms = now_ms.saturating_add(duration_ms(status.reset_after));
            let denied_until_ms = if verdict.allowed || status.remaining > 0 {
                0
            } else if denying == 1 {
                now_ms.saturating_add(retry_after_ms)
            } else {
                let own = duration_ms(status.reset_after) - check.rule.tolerance_ms();
                now_ms.saturating_add(own.clamp(0, retry_after_ms))
            };
            let entry = state.keys.entry(check.key.clone()).or_insert(Seen {
                denied_until_ms: 0,
                remaining: status.remaining,
                reset_at_ms,
            });
            // A block this instance set may outlast what the inner limiter reports.
            entry.denied_until_ms = entry.denied_until_ms.max(denied_until_ms);
            entry.remaining = status.remaining;
            entry.reset_at_ms = reset_at_ms;
        }
    }
}

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn sweep(state: &mut State, now_ms: i64) {
    if state.keys.len() < state.sweep_at {
        return;
    }
    state
        .keys
        .retain(|_, seen| seen.denied_until_ms > now_ms || seen.reset_at_ms > now_ms);
    state.sweep_at = (state.keys.len() * 2).max(SWEEP_FROM);
}

#[async_trait::async_trait]
impl Limiter for CachedLimiter {
    async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
        if let Some(verdict) = self.cached_denial(checks, now_ms) {
            return Ok(verdict);
        }
        let verdict = self.inner.check(checks, now_ms).await?;
        self.remember(checks, &verdict, now_ms);
        Ok(verdict)
    }

    async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
        {
            let mut state = self.state();
            sweep(&mut state, now_ms);
            let entry = state.keys.entry(key.to_owned()).or_insert(Seen {
                denied_until_ms: 0,
                remaining: 0,
                reset_at_ms: until_ms,
            });
            entry.denied_until_ms = entry.denied_until_ms.max(until_ms);
            entry.reset_at_ms = entry.reset_at_ms.max(until_ms);
        }
        self.inner.block_until(key, until_ms, now_ms).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::Rule;
    use super::super::memory::MemoryLimiter;
    use super::*;

    /// Counts the checks that reach the inner limiter.
    #[derive(Default)]
    struct Counting {
        inner: MemoryLimiter,
        checks: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Limiter for Counting {
        async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            self.inner.check(checks, now_ms).await
        }

        async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
            self.inner.block_until(key, until_ms, now_ms).await
        }
    }

    fn check(key: &str, limit: u32, burst: u32) -> Check {
        Check {
            key: key.into(),
            rule: Rule::new(limit, Duration::from_secs(1), burst),
        }
    }

    #[tokio::test]
    async fn the_cached_limiter_passes_the_conformance_suite() {
        let limiter = CachedLimiter::new(Arc::new(MemoryLimiter::new()));
        super::super::conformance::run_all(&limiter).await;
    }

    #[tokio::test]
    async fn a_denied_key_is_answered_from_memory_until_its_retry_after() {
        let inner = Arc::new(Counting::default());
        let limiter = CachedLimiter::new(inner.clone());
        // 3 per second, burst 2: interval 1000 ms, tolerance 1000 ms.
        let checks = [check("global", 1000, 10), check("account", 3, 2)];
        for _ in 0..2 {
            assert!(limiter.check(&checks, 0).await.unwrap().allowed);
        }
        let denied = limiter.check(&checks, 0).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Duration::from_millis(1000));
        assert_eq!(inner.checks.load(Ordering::SeqCst), 3);

        let cached = limiter.check(&checks, 400).await.unwrap();
        assert_eq!(inner.checks.load(Ordering::SeqCst), 3, "no round trip");
        assert!(!cached.allowed);
        assert_eq!(cached.retry_after, Duration::from_millis(600));
        assert_eq!(cached.limits[1].remaining, 0);
        assert_eq!(cached.limits[1].reset_after, Duration::from_millis(1600));
        // The global limit's last state (8 left, reset at 2 ms) has run out: full again.
        assert_eq!(denied.limits[0].remaining, 8);
        assert_eq!(cached.limits[0].remaining, 10);

        // Another account shares the global limit, which was not denied: it asks.
        assert!(
            limiter
                .check(&[check("global", 1000, 10), check("other", 3, 2)], 400)
                .await
                .unwrap()
                .allowed
        );
        assert_eq!(inner.checks.load(Ordering::SeqCst), 4);

        assert!(limiter.check(&checks, 1000).await.unwrap().allowed);
        assert_eq!(inner.checks.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn with_several_denials_each_key_is_cached_for_its_own_wait() {
        let inner = Arc::new(Counting::default());
        let limiter = CachedLimiter::new(inner.clone());
        // a: interval 1000 ms, b: interval 250 ms, neither with any tolerance.
        let a = check("a", 2, 1);
        let b = Check {
            key: "b".into(),
            rule: Rule::new(5, Duration::from_secs(1), 1),
        };
        assert!(
            limiter
                .check(&[a.clone(), b.clone()], 0)
                .await
                .unwrap()
                .allowed
        );
        let denied = limiter.check(&[a.clone(), b.clone()], 0).await.unwrap();
        assert_eq!(denied.retry_after, Duration::from_millis(1000));
        // b alone is free again at 250 ms: the cache must not hold it to a's 1000.
        let b_alone = limiter.check(std::slice::from_ref(&b), 250).await.unwrap();
        assert!(b_alone.allowed);
        assert_eq!(inner.checks.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_block_is_answered_from_memory_at_once() {
        let inner = Arc::new(Counting::default());
        let limiter = CachedLimiter::new(inner.clone());
        limiter.block_until("account", 5_000, 0).await.unwrap();
        let verdict = limiter.check(&[check("account", 3, 2)], 100).await.unwrap();
        assert!(!verdict.allowed);
        assert_eq!(verdict.retry_after, Duration::from_millis(4_900));
        assert_eq!(inner.checks.load(Ordering::SeqCst), 0);
        assert!(
            limiter
                .check(&[check("account", 3, 2)], 5_000)
                .await
                .unwrap()
                .allowed
        );
    }
}
