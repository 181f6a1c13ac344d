//! The rate limiter's settings: where the shared limiter is, how long it may take, the
//! Mercado Livre budgets, and the per-instance fallback.

use std::time::Duration;

use super::ConfigError;
use super::vars::Vars;

#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitSettings {
    /// UPSTASH_REDIS_REST_URL: the limiter every instance shares. Unset, the local runner
    /// limits in process (a Lambda function needs it).
    pub upstash_url: Option<reqwest::Url>,
    pub upstash_connect_timeout: Duration,
    /// One Upstash request's limit, and the time the shared limiter has to answer a check
    /// before the fallback does.
    pub upstash_timeout: Duration,
    /// Mercado Livre's global budget (2000/h) and each seller account's (500/h).
    pub mercadolivre_global: HourlyBudget,
    pub mercadolivre_account: HourlyBudget,
    /// RATE_LIMIT_ML_429_SCOPE: what a 429 from Mercado Livre blocks.
    pub mercadolivre_throttle_scope: ThrottleScope,
    /// RATE_LIMIT_ML_SIGNIN_SHARE: the part of the global budget (its hourly limit and its
    /// burst) sign-ins may spend; the rest is kept for the work done for sellers.
    pub sign_in_share: f64,
    /// The share of each budget one instance may use while Redis is unreachable.
    pub fallback_share: f64,
    /// While on the fallback, how long before asking Redis again.
    pub fallback_retry_after: Duration,
}

/// At most `limit` requests in any rolling hour, `burst` of them back to back (the rest
/// spread evenly). Validated: 2 ≤ limit, 1 ≤ burst < limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourlyBudget {
    pub limit: u32,
    pub burst: u32,
}

impl HourlyBudget {
    pub const PERIOD: Duration = Duration::from_secs(3600);
}

/// What a 429 from Mercado Livre blocks, in the limiter every instance shares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleScope {
    /// The application's budget as well as the account's: Mercado Livre limits each
    /// application too, and its 429 does not say which limit was hit.
    Application,
    /// Only the account the call was made for (nothing for a call made before the
    /// account is known).
    Account,
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<RateLimitSettings, ConfigError> {
    let fallback_share: f64 = vars.parsed("RATE_LIMIT_FALLBACK_SHARE", 0.1)?;
    if !(fallback_share > 0.0 && fallback_share <= 1.0) {
        return Err(ConfigError::Invalid {
            name: "RATE_LIMIT_FALLBACK_SHARE",
            reason: format!("{fallback_share}: must be above 0 and at most 1"),
        });
    }
    let mercadolivre_global = hourly(
        vars,
        ("RATE_LIMIT_ML_GLOBAL_PER_HOUR", 2000),
        ("RATE_LIMIT_ML_GLOBAL_BURST", 100),
    )?;
    let sign_in_share = sign_in_share(vars, mercadolivre_global)?;
    Ok(RateLimitSettings {
        upstash_url: vars.optional_url("UPSTASH_REDIS_REST_URL")?,
        upstash_connect_timeout: vars.millis("UPSTASH_CONNECT_TIMEOUT_MS", 300)?,
        upstash_timeout: vars.millis("UPSTASH_TIMEOUT_MS", 1000)?,
        // Bursts: see README's configuration table (a burst lowers the sustained rate).
        mercadolivre_global,
        mercadolivre_account: hourly(
            vars,
            ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", 500),
            ("RATE_LIMIT_ML_ACCOUNT_BURST", 20),
        )?,
        mercadolivre_throttle_scope: match vars.choice(
            "RATE_LIMIT_ML_429_SCOPE",
            "application",
            &["application", "account"],
        )? {
            "account" => ThrottleScope::Account,
            _ => ThrottleScope::Application,
        },
        sign_in_share,
        fallback_share,
        fallback_retry_after: vars.millis("RATE_LIMIT_FALLBACK_RETRY_MS", 5000)?,
    })
}

/// RATE_LIMIT_ML_SIGNIN_SHARE (default 0.1): above 0, below 0.5 (sign-ins never take
/// the larger part), and enough of `global` for one back-to-back sign-in (two calls).
fn sign_in_share<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    global: HourlyBudget,
) -> Result<f64, ConfigError> {
    const NAME: &str = "RATE_LIMIT_ML_SIGNIN_SHARE";
    let share: f64 = vars.parsed(NAME, 0.1)?;
    let invalid = |reason: String| ConfigError::Invalid { name: NAME, reason };
    if !(share > 0.0 && share < 0.5) {
        return Err(invalid(format!("{share}: must be above 0 and below 0.5")));
    }
    if f64::from(global.burst) * share < 2.0 {
        return Err(invalid(format!(
            "{share} of RATE_LIMIT_ML_GLOBAL_BURST ({}) is less than the two calls of one \
             sign-in",
            global.burst
        )));
    }
    Ok(share)
}

fn hourly<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    (limit_name, limit): (&'static str, u32),
    (burst_name, burst): (&'static str, u32),
) -> Result<HourlyBudget, ConfigError> {
    let limit: u32 = vars.parsed(limit_name, limit)?;
    if limit < 2 {
        return Err(ConfigError::Invalid {
            name: limit_name,
            reason: "must be at least 2".into(),
        });
    }
    let burst: u32 = vars.parsed(burst_name, burst)?;
    if burst == 0 || burst >= limit {
        return Err(ConfigError::Invalid {
            name: burst_name,
            reason: format!("must be from 1 to {} (below {limit_name})", limit - 1),
        });
    }
    Ok(HourlyBudget { limit, burst })
}
