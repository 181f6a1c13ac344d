//! The Mercado Livre API client's settings, and the retry and circuit-breaker policies
//! it follows (their behaviour lives with the client, in `crate::upstream`).

use std::time::Duration;

use super::ConfigError;
use super::vars::Vars;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MercadoLivreSettings {
    /// The API base: https://api.mercadolibre.com, or a sandbox locally and in tests.
    pub api_url: reqwest::Url,
    /// The authorization host of the sellers' country (https://auth.mercadolivre.com.br).
    pub auth_url: reqwest::Url,
    /// Each attempt's limit, from connecting to the last byte of the answer.
    pub call_timeout: Duration,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
}

/// How failed calls are retried: exponential backoff with full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 disables retries.
    pub max_attempts: u32,
    /// The first retry waits up to this long; each later one up to twice the previous.
    pub base_delay: Duration,
    /// No retry waits longer than this.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// When the circuit breaker opens, how long it stays open, and when it closes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failure_threshold: u32,
    pub open_for: Duration,
    pub success_threshold: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            success_threshold: 3,
        }
    }
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<MercadoLivreSettings, ConfigError> {
    let retry = RetryPolicy {
        max_attempts: vars.count("MERCADOLIVRE_MAX_ATTEMPTS", 3)?,
        base_delay: vars.millis("MERCADOLIVRE_RETRY_BASE_MS", 200)?,
        max_delay: vars.millis("MERCADOLIVRE_RETRY_MAX_MS", 5000)?,
    };
    if retry.max_delay < retry.base_delay {
        return Err(ConfigError::Invalid {
            name: "MERCADOLIVRE_RETRY_MAX_MS",
            reason: "must be at least MERCADOLIVRE_RETRY_BASE_MS".into(),
        });
    }
    Ok(MercadoLivreSettings {
        api_url: vars.base_url("MERCADOLIVRE_API_URL", "https://api.mercadolibre.com")?,
        auth_url: vars.base_url("MERCADOLIVRE_AUTH_URL", "https://auth.mercadolivre.com.br")?,
        call_timeout: vars.millis("MERCADOLIVRE_TIMEOUT_MS", 5000)?,
        retry,
        breaker: BreakerPolicy {
            failure_threshold: vars.count("MERCADOLIVRE_BREAKER_FAILURES", 5)?,
            open_for: vars.millis("MERCADOLIVRE_BREAKER_OPEN_MS", 30_000)?,
            success_threshold: vars.count("MERCADOLIVRE_BREAKER_SUCCESSES", 3)?,
        },
    })
}
