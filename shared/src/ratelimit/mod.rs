//! The rate limiter port: atomic checks of several limits at once (e.g. Mercado Livre's
//! global and per-account budgets), shared by every instance through Upstash Redis.
//!
//! Algorithm: GCRA, one key per limit holding its theoretical arrival time (TAT). A
//! [`Rule`] of `limit` per `period` with a `burst` admits at most `limit` requests in any
//! window of length `period`: the sustained rate is `(limit - burst) / period` and up to
//! `burst` may come back to back, so `rate × period + burst = limit`.
//!
//! The caller's clock is an argument (milliseconds since the Unix epoch): the same inputs
//! give the same decisions on every adapter, and tests control time.

pub mod cached;
#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
pub mod fallback;
pub mod gcra;
pub mod memory;
pub mod redis;
pub mod upstash;

use std::time::Duration;

/// One limit: at most `limit` requests in any window of `period`, `burst` of them at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Rule {
    /// A rule; `burst` is clamped to 1..limit so the sustained rate stays positive.
    pub fn new(limit: u32, period: Duration, burst: u32) -> Self {
        let limit = limit.max(2);
        Self {
            limit,
            period,
            burst: burst.clamp(1, limit - 1),
        }
    }

    /// GCRA's emission interval: the time one request "costs", in milliseconds.
    pub fn emission_interval_ms(&self) -> i64 {
        let period_ms = i64::try_from(self.period.as_millis()).unwrap_or(i64::MAX);
        (period_ms / i64::from(self.limit - self.burst)).max(1)
    }

    /// GCRA's tolerance: how far ahead of now the TAT may run and still admit, in ms.
    pub fn tolerance_ms(&self) -> i64 {
        self.emission_interval_ms() * i64::from(self.burst - 1)
    }
}

/// One limit to check: the key it is counted under and its rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub rule: Rule,
}

/// A limit's state after a check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitStatus {
    pub key: String,
    pub limit: u32,
    /// Requests that would still be admitted right now.
    pub remaining: u32,
    /// Until the limit is back to its full burst.
    pub reset_after: Duration,
}

/// The outcome of a check: admitted (every limit consumed one) or denied (none consumed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Zero when allowed; else how long until every limit would admit.
    pub retry_after: Duration,
    /// One per check, in order.
    pub limits: Vec<LimitStatus>,
}

#[derive(Debug, thiserror::Error)]
pub enum LimiterError {
    #[error("limiter unavailable: {0}")]
    Unavailable(String),
    #[error("limiter refused the request: {0}")]
    Rejected(String),
}

pub type LimiterResult<T> = Result<T, LimiterError>;

#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Consumes one request from every limit of `checks` if all of them admit it, else
    /// from none; atomically across every instance sharing the limiter.
    async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict>;

    /// Denies `key` until `until_ms` (an upstream 429's Retry-After), whatever its rule.
    async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()>;
}
