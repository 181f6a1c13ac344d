//! When the shared limiter is unreachable or slow, answer from a per-instance limiter
//! holding a conservative share of each budget: never every request let through, never
//! every request denied. Each fallback answer is logged and counted (EMF
//! `LimiterFallback`); the primary is asked again once `retry_primary_after` has passed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::memory::MemoryLimiter;
use super::{Check, Limiter, LimiterError, LimiterResult, Rule, Verdict};
use crate::telemetry::emf;

/// The metric counting checks answered by the fallback.
pub const METRIC: &str = "LimiterFallback";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FallbackSettings {
    /// Each budget's share this instance may use on its own, in (0, 1].
    pub share: f64,
    /// How long the primary may take to answer a check.
    pub timeout: Duration,
    /// After a failure, how long checks go straight to the fallback.
    pub retry_primary_after: Duration,
}

/// Where metrics go: [`emf::emit`] (stdout), or a test's capture.
pub type MetricSink = Box<dyn Fn(&[(&str, &str)], &[emf::Metric]) + Send + Sync>;

pub struct FallbackLimiter {
    primary: Arc<dyn Limiter>,
    local: MemoryLimiter,
    settings: FallbackSettings,
    metrics: MetricSink,
    /// Set while the primary is considered down: when to ask it again.
    retry_primary_at: Mutex<Option<Instant>>,
}

/// `rule` cut down to `share` of its limit and burst (rounded up: at least one request).
pub fn share_of(rule: Rule, share: f64) -> Rule {
    // The epsilon keeps a product such as 100 × 0.07 (7.000000000000001) from rounding up.
    let scale = |value: u32| {
        (f64::from(value) * share - 1e-9)
            .ceil()
            .clamp(1.0, f64::from(value)) as u32
    };
    Rule::new(scale(rule.limit), rule.period, scale(rule.burst))
}

impl FallbackLimiter {
    pub fn new(primary: Arc<dyn Limiter>, settings: FallbackSettings) -> Self {
        Self {
            primary,
            local: MemoryLimiter::new(),
            settings,
            metrics: Box::new(emf::emit),
            retry_primary_at: Mutex::new(None),
        }
    }

    /// Sends the metrics to `sink` instead of stdout.
    pub fn with_metric_sink(
        mut self,
        sink: impl Fn(&[(&str, &str)], &[emf::Metric]) + Send + Sync + 'static,
    ) -> Self {
        self.metrics = Box::new(sink);
        self
    }

    /// Whether checks are answered by the fallback: from a failure of the primary until it
    /// answers again.
    pub fn in_fallback(&self) -> bool {
        self.retry_primary_at().is_some()
    }

    fn retry_primary_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.retry_primary_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the primary should be asked now.
    fn primary_due(&self) -> bool {
        self.retry_primary_at()
            .is_none_or(|retry_at| Instant::now() >= retry_at)
    }

    fn primary_failed(&self, operation: &'static str, error: &LimiterError) {
        let mut retry_at = self.retry_primary_at();
        let newly = retry_at.is_none();
        *retry_at = Some(Instant::now() + self.settings.retry_primary_after);
        tracing::warn!(
            operation,
            error = %error,
            newly_down = newly,
            "rate limiter unavailable: answering from the per-instance fallback"
        );
    }

    fn primary_answered(&self) {
        if self.retry_primary_at().take().is_some() {
            tracing::info!("rate limiter available again: fallback off");
        }
    }

    async fn primary<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = LimiterResult<T>>,
    ) -> Option<T> {
        if !self.primary_due() {
            return None;
        }
        let outcome = match tokio::time::timeout(self.settings.timeout, call).await {
            Ok(outcome) => outcome,
            Err(_) => Err(LimiterError::Unavailable(format!(
                "no answer within {} ms",
                self.settings.timeout.as_millis()
            ))),
        };
        match outcome {
            Ok(value) => {
                self.primary_answered();
                Some(value)
            }
            Err(error) => {
                self.primary_failed(operation, &error);
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl Limiter for FallbackLimiter {
    async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
        if let Some(verdict) = self
            .primary("check", self.primary.check(checks, now_ms))
            .await
        {
            return Ok(verdict);
        }
        let shares: Vec<Check> = checks
            .iter()
            .map(|check| Check {
                key: check.key.clone(),
                rule: share_of(check.rule, self.settings.share),
            })
            .collect();
        let mut verdict = self.local.check_now(&shares, now_ms);
        // Callers (RateLimit headers) see the real budgets' sizes.
        for (status, check) in verdict.limits.iter_mut().zip(checks) {
            status.limit = check.rule.limit;
        }
        (self.metrics)(&[], &[emf::Metric::count(METRIC, 1.0)]);
        Ok(verdict)
    }

    async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
        // Kept locally as well, so a block outlives a later outage.
        self.local.block_now(key, until_ms, now_ms);
        self.primary(
            "block_until",
            self.primary.block_until(key, until_ms, now_ms),
        )
        .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A primary that fails while `down` is set, else answers from memory.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        inner: MemoryLimiter,
    }

    #[async_trait::async_trait]
    impl Limiter for Flaky {
        async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
            if self.down.load(Ordering::SeqCst) {
                return Err(LimiterError::Unavailable("down".into()));
            }
            self.inner.check(checks, now_ms).await
        }

        async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
            if self.down.load(Ordering::SeqCst) {
                return Err(LimiterError::Unavailable("down".into()));
            }
            self.inner.block_until(key, until_ms, now_ms).await
        }
    }

    fn quiet(limiter: FallbackLimiter) -> FallbackLimiter {
        limiter.with_metric_sink(|_, _| {})
    }

    fn settings() -> FallbackSettings {
        FallbackSettings {
            share: 0.1,
            timeout: Duration::from_millis(200),
            retry_primary_after: Duration::ZERO,
        }
    }

    fn hourly(key: &str, limit: u32, burst: u32) -> Check {
        Check {
            key: key.into(),
            rule: Rule::new(limit, Duration::from_secs(3600), burst),
        }
    }

    #[test]
    fn a_share_keeps_at_least_one_request_and_a_positive_rate() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            share_of(Rule::new(2000, hour, 100), 0.1),
            Rule::new(200, hour, 10)
        );
        assert_eq!(
            share_of(Rule::new(500, hour, 20), 0.1),
            Rule::new(50, hour, 2)
        );
        assert_eq!(share_of(Rule::new(100, hour, 20), 0.07).limit, 7);
        let tiny = share_of(Rule::new(3, hour, 1), 0.01);
        assert_eq!((tiny.limit, tiny.burst), (2, 1));
    }

    #[tokio::test]
    async fn the_fallback_limiter_passes_the_conformance_suite_while_the_primary_answers() {
        let limiter = FallbackLimiter::new(Arc::new(MemoryLimiter::new()), settings());
        super::super::conformance::run_all(&limiter).await;
    }

    #[tokio::test]
    async fn a_down_primary_leaves_a_share_of_the_budget_and_comes_back() {
        let primary = Arc::new(Flaky::default());
        let counted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = counted.clone();
        let limiter = FallbackLimiter::new(primary.clone(), settings()).with_metric_sink(
            move |_, metrics| {
                assert_eq!(metrics[0].name, METRIC);
                count.fetch_add(1, Ordering::SeqCst);
            },
        );
        let checks = [hourly("global", 2000, 100), hourly("account", 500, 20)];
        assert!(limiter.check(&checks, 0).await.unwrap().allowed);
        assert!(!limiter.in_fallback());

        primary.down.store(true, Ordering::SeqCst);
        let mut admitted = 0;
        for _ in 0..100 {
            let verdict = limiter.check(&checks, 0).await.unwrap();
            assert_eq!(verdict.limits[0].limit, 2000);
            admitted += usize::from(verdict.allowed);
        }
        // The account's share: burst 2 of 50/h. Not everything, not nothing.
        assert_eq!(admitted, 2);
        assert!(limiter.in_fallback());
        assert_eq!(
            counted.load(Ordering::SeqCst),
            100,
            "every fallback answer is counted"
        );

        primary.down.store(false, Ordering::SeqCst);
        let verdict = limiter.check(&checks, 0).await.unwrap();
        assert!(verdict.allowed, "the primary decides again");
        assert_eq!(verdict.limits[1].remaining, 18);
        assert!(!limiter.in_fallback());
    }

    #[tokio::test]
    async fn a_slow_primary_counts_as_down() {
        struct Slow;
        #[async_trait::async_trait]
        impl Limiter for Slow {
            async fn check(&self, _: &[Check], _: i64) -> LimiterResult<Verdict> {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(LimiterError::Unavailable("never".into()))
            }
            async fn block_until(&self, _: &str, _: i64, _: i64) -> LimiterResult<()> {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }
        let limiter = quiet(FallbackLimiter::new(Arc::new(Slow), settings()));
        let started = Instant::now();
        let verdict = limiter.check(&[hourly("k", 500, 20)], 0).await.unwrap();
        assert!(verdict.allowed);
        assert!(started.elapsed() < Duration::from_secs(2));
        limiter.block_until("k", 10_000, 0).await.unwrap();
        assert!(
            !limiter
                .check(&[hourly("k", 500, 20)], 1)
                .await
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn a_block_reaches_both_limiters() {
        let primary = Arc::new(Flaky::default());
        let limiter = quiet(FallbackLimiter::new(primary.clone(), settings()));
        limiter.block_until("account", 60_000, 0).await.unwrap();
        assert!(
            !primary
                .inner
                .check_now(&[hourly("account", 500, 20)], 1)
                .allowed
        );
        primary.down.store(true, Ordering::SeqCst);
        let verdict = limiter
            .check(&[hourly("account", 500, 20)], 1)
            .await
            .unwrap();
        assert!(!verdict.allowed);
        assert_eq!(verdict.retry_after, Duration::from_millis(59_999));
    }
}
