//! The shared limiter: one GCRA script on Redis (through Upstash's REST API) decides every
//! check for every instance. One check is one round trip.

use std::time::Duration;

use serde_json::Value;

use super::gcra::{self, BLOCK_SCRIPT, CHECK_SCRIPT};
use super::upstash::{Script, Upstash, UpstashError};
use super::{Check, Limiter, LimiterResult, Rule, Verdict};

/// The limit [`RedisLimiter::probe`] checks: no budget's key starts with `health:`.
pub const HEALTH_KEY: &str = "health:limiter";

#[derive(Clone, Debug)]
pub struct RedisLimiter {
    upstash: Upstash,
    check_script: Script,
    block_script: Script,
}

impl RedisLimiter {
    pub fn new(upstash: Upstash) -> Self {
        Self {
            upstash,
            check_script: Script::new(CHECK_SCRIPT),
            block_script: Script::new(BLOCK_SCRIPT),
        }
    }

    /// The check without the port's error mapping (tests tell an unauthorized token apart).
    pub async fn try_check(&self, checks: &[Check], now_ms: i64) -> Result<Verdict, UpstashError> {
        if checks.is_empty() {
            return Ok(gcra::verdict(checks, true, 0, &[]));
        }
        let mut keys = Vec::with_capacity(checks.len() * 2);
        let mut args = Vec::with_capacity(1 + checks.len() * 2);
        args.push(now_ms.to_string());
        for check in checks {
            keys.push(gcra::tat_key(&check.key));
            keys.push(gcra::block_key(&check.key));
            args.push(check.rule.emission_interval_ms().to_string());
            args.push(check.rule.tolerance_ms().to_string());
        }
        let reply = self.upstash.eval(&self.check_script, &keys, &args).await?;
        let numbers = integers(&reply, 2 + 2 * checks.len())?;
        let limits: Vec<(i64, i64)> = numbers[2..]
            .chunks_exact(2)
            .map(|pair| (pair[0], pair[1]))
            .collect();
        Ok(gcra::verdict(checks, numbers[0] == 1, numbers[1], &limits))
    }

    /// A check of [`HEALTH_KEY`], for GET /health: the script runs and writes as every check
    /// does, so a read-only token or an exhausted quota fails it (PING passes both).
    pub async fn probe(&self, now_ms: i64) -> Result<(), UpstashError> {
        self.try_check(&[health_check()], now_ms).await.map(drop)
    }
}

/// The probe's limit: 500 probes at once pass, and its key lives at most a second.
fn health_check() -> Check {
    Check {
        key: HEALTH_KEY.to_owned(),
        rule: Rule::new(1000, Duration::from_secs(1), 500),
    }
}

/// The script's reply: exactly `count` integers.
fn integers(reply: &Value, count: usize) -> Result<Vec<i64>, UpstashError> {
    let malformed = || {
        UpstashError::Protocol(format!(
            "the limiter script's reply is not {count} integers"
        ))
    };
    let Value::Array(items) = reply else {
        return Err(malformed());
    };
    if items.len() != count {
        return Err(malformed());
    }
    items
        .iter()
        .map(|item| item.as_i64().ok_or_else(malformed))
        .collect()
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
        Ok(self.try_check(checks, now_ms).await?)
    }

    async fn block_until(&self, key: &str, until_ms: i64, now_ms: i64) -> LimiterResult<()> {
        self.upstash
            .eval(
                &self.block_script,
                &[gcra::block_key(key)],
                &[until_ms.to_string(), now_ms.to_string()],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_probe_passes_and_its_key_expires_within_a_second() {
        let check = health_check();
        let mut stored = gcra::Stored::default();
        for _ in 0..500 {
            let decision = gcra::evaluate(std::slice::from_ref(&check), &[stored], 0);
            assert!(decision.allowed);
            let (tat, ttl) = decision.writes[0];
            assert!(ttl <= 1_000, "{ttl}");
            stored.tat_ms = Some(tat);
        }
    }

    #[test]
    fn a_reply_must_be_the_expected_integers() {
        assert_eq!(
            integers(&serde_json::json!([1, 0, 4, 200]), 4).unwrap(),
            vec![1, 0, 4, 200]
        );
        assert!(integers(&serde_json::json!([1, 0, 4]), 4).is_err());
        assert!(integers(&serde_json::json!([1, 0, "4", 200]), 4).is_err());
        assert!(integers(&serde_json::json!("OK"), 4).is_err());
    }
}
