//! The embedded limiter: GCRA in process memory, deciding exactly as the Redis script does
//! (see [`super::gcra`]). The local runner's default, and the engine of the fallback.
//! Limits are per process: never the production limiter on its own.

use std::collections::HashMap;
use std::sync::Mutex;

use super::gcra::{self, Stored};
use super::{Check, Limiter, LimiterResult, Verdict};

/// Below this many entries the maps are never swept.
const SWEEP_FROM: usize = 1024;

#[derive(Debug, Default)]
pub struct MemoryLimiter {
    state: Mutex<State>,
}

/// Like the Redis keys: each entry lives until the instant its key would expire.
#[derive(Debug)]
struct State {
    tats: HashMap<String, i64>,
    blocks: HashMap<String, i64>,
    sweep_at: usize,
}

impl Default for State {
    fn default() -> Self {
        Self {
            tats: HashMap::new(),
            blocks: HashMap::new(),
            sweep_at: SWEEP_FROM,
        }
    }
}

impl State {
    /// Drops what Redis would have expired by `now_ms`, once the maps have grown enough
    /// for it to matter (amortised: the threshold doubles with what stays).
    fn sweep(&mut self, now_ms: i64) {
        if self.tats.len() + self.blocks.len() < self.sweep_at {
            return;
        }
        self.tats.retain(|_, tat| *tat > now_ms);
        self.blocks.retain(|_, until| *until > now_ms);
        self.sweep_at = ((self.tats.len() + self.blocks.len()) * 2).max(SWEEP_FROM);
    }

    fn stored(&self, key: &str, now_ms: i64) -> Stored {
        Stored {
            tat_ms: self.tats.get(key).copied().filter(|tat| *tat > now_ms),
            blocked_until_ms: self
                .blocks
                .get(key)
                .copied()
                .filter(|until| *until > now_ms),
        }
    }
}

impl MemoryLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent (each write is
        // one insert), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`Limiter::check`] without the future: the decision is immediate.
    pub fn check_now(&self, checks: &[Check], now_ms: i64) -> Verdict {
        let mut state = self.state();
        state.sweep(now_ms);
        let stored: Vec<Stored> = checks
            .iter()
            .map(|check| state.stored(&check.key, now_ms))
            .collect();
        let decision = gcra::evaluate(checks, &stored, now_ms);
        for (check, (tat, _ttl)) in checks.iter().zip(&decision.writes) {
            state.tats.insert(check.key.clone(), *tat);
        }
        gcra::verdict(
            checks,
            decision.allowed,
            decision.retry_after_ms,
            &decision.limits,
        )
    }

    /// [`Limiter::block_until`] without the future.
    pub fn block_now(&self, key: &str, until_ms: i64, now_ms: i64) {
        let mut state = self.state();
        state.sweep(now_ms);
        let current = state.stored(key, now_ms).blocked_until_ms.unwrap_or(now_ms);
        if until_ms > now_ms && until_ms > current {
            state.blocks.insert(key.to_owned(), until_ms);
        }
    }
}

#[async_trait::async_trait]
impl Limiter for MemoryLimiter {
    async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
        Ok(self.check_now(checks, now_ms))
    }

    async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
        self.block_now(key, until_ms, now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_limiter_passes_the_conformance_suite() {
        super::super::conformance::run_all(&MemoryLimiter::new()).await;
    }

    #[test]
    fn expired_entries_are_swept_once_the_maps_grow() {
        let limiter = MemoryLimiter::new();
        let rule = super::super::Rule::new(10, std::time::Duration::from_secs(1), 2);
        for i in 0..SWEEP_FROM {
            let check = Check {
                key: format!("k{i}"),
                rule,
            };
            limiter.check_now(&[check], 0);
        }
        // Every TAT above is 100 ms ahead of 0: all expired at 10 s.
        limiter.check_now(&[], 10_000);
        let state = limiter.state();
        assert!(state.tats.is_empty(), "{} entries left", state.tats.len());
        assert_eq!(state.sweep_at, SWEEP_FROM);
    }
}
