//! GCRA's arithmetic, in integer milliseconds: the Rust twin of `gcra.lua`, so the embedded
//! adapter decides exactly as the Redis script does. Also the key layout and the reply
//! shape both adapters share.

use std::time::Duration;

use super::{Check, LimitStatus, Verdict};

/// Every key the limiter writes starts with this: a change of layout or meaning gets a new
/// version, so old keys are never misread (they expire on their own).
pub const KEY_PREFIX: &str = "rl:v1:";

/// The Lua script of a check: see its header for the KEYS/ARGV layout.
pub const CHECK_SCRIPT: &str = include_str!("gcra.lua");

/// The Lua script of `block_until`.
pub const BLOCK_SCRIPT: &str = include_str!("block.lua");

/// The key holding a limit's theoretical arrival time.
pub fn tat_key(key: &str) -> String {
    format!("{KEY_PREFIX}tat:{key}")
}

/// The key holding a limit's block marker (the instant it is blocked until).
pub fn block_key(key: &str) -> String {
    format!("{KEY_PREFIX}block:{key}")
}

/// What the store holds for one limit, as read at `now_ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub tat_ms: Option<i64>,
    pub blocked_until_ms: Option<i64>,
}

/// A check's decision, in the shape the script returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub retry_after_ms: i64,
    /// Per limit: (remaining, reset_after_ms).
    pub limits: Vec<(i64, i64)>,
    /// Per limit, when allowed: the new TAT and how long its key must live (ms).
    pub writes: Vec<(i64, i64)>,
}

struct Limit {
    tat: i64,
    interval: i64,
    ahead: i64,
    /// Some(spare after consuming) when this limit admits; else (retry, reset).
    admits: Result<i64, (i64, i64)>,
}

/// Decides a check of `checks` against what is stored for each of them, exactly as
/// `gcra.lua` does.
pub fn evaluate(checks: &[Check], stored: &[Stored], now_ms: i64) -> Decision {
    let limits: Vec<Limit> = checks
        .iter()
        .zip(stored)
        .map(|(check, stored)| {
            let interval = check.rule.emission_interval_ms();
            let tolerance = check.rule.tolerance_ms();
            let tat = stored.tat_ms.unwrap_or(now_ms).max(now_ms);
            let blocked_for = stored
                .blocked_until_ms
                .unwrap_or(now_ms)
                .saturating_sub(now_ms);
            let ahead = tat - now_ms;
            let admits = if blocked_for > 0 {
                Err((blocked_for, ahead.max(blocked_for)))
            } else if ahead > tolerance {
                Err((ahead - tolerance, ahead))
            } else {
                Ok((tolerance - ahead) / interval)
            };
            Limit {
                tat,
                interval,
                ahead,
                admits,
            }
        })
        .collect();

    let allowed = limits.iter().all(|limit| limit.admits.is_ok());
    let retry_after_ms = limits
        .iter()
        .filter_map(|limit| limit.admits.err().map(|(retry, _)| retry))
        .max()
        .unwrap_or(0);
    let reply = limits
        .iter()
        .map(|limit| match (allowed, limit.admits) {
            (true, Ok(spare)) => (spare, limit.ahead + limit.interval),
            (false, Ok(spare)) => (spare + 1, limit.ahead),
            (_, Err((_, reset))) => (0, reset),
        })
        .collect();
    let writes = if allowed {
        limits
            .iter()
            .map(|limit| {
                (
                    limit.tat.saturating_add(limit.interval),
                    limit.ahead + limit.interval,
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    Decision {
        allowed,
        retry_after_ms,
        limits: reply,
        writes,
    }
}

/// The port's verdict for `checks` from a decision's numbers (the script's reply or
/// [`evaluate`]'s).
pub fn verdict(
    checks: &[Check],
    allowed: bool,
    retry_after_ms: i64,
    limits: &[(i64, i64)],
) -> Verdict {
    Verdict {
        allowed,
        retry_after: millis(retry_after_ms),
        limits: checks
            .iter()
            .zip(limits)
            .map(|(check, &(remaining, reset_after_ms))| LimitStatus {
                key: check.key.clone(),
                limit: check.rule.limit,
                remaining: u32::try_from(remaining.max(0)).unwrap_or(u32::MAX),
                reset_after: millis(reset_after_ms),
            })
            .collect(),
    }
}

pub fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Rule;

    fn check(limit: u32, period_ms: u64, burst: u32) -> Check {
        Check {
            key: "k".into(),
            rule: Rule::new(limit, Duration::from_millis(period_ms), burst),
        }
    }

    #[test]
    fn a_fresh_limit_admits_and_reports_the_rest_of_its_burst() {
        // 10 per 1000 ms, burst 5: interval 200 ms, tolerance 800 ms.
        let decision = evaluate(&[check(10, 1000, 5)], &[Stored::default()], 1_000);
        assert!(decision.allowed);
        assert_eq!(decision.limits, vec![(4, 200)]);
        assert_eq!(decision.writes, vec![(1_200, 200)]);
    }

    #[test]
    fn a_denial_says_exactly_when_to_retry_and_writes_nothing() {
        let stored = Stored {
            tat_ms: Some(2_000),
            blocked_until_ms: None,
        };
        let decision = evaluate(&[check(10, 1000, 5)], &[stored], 1_000);
        assert!(!decision.allowed);
        assert_eq!(decision.retry_after_ms, 200);
        assert_eq!(decision.limits, vec![(0, 1_000)]);
        assert!(decision.writes.is_empty());
    }

    #[test]
    fn the_script_and_the_rust_twin_share_the_key_layout() {
        assert!(CHECK_SCRIPT.contains("KEYS[2 * i - 1]"));
        assert_eq!(tat_key("a"), "rl:v1:tat:a");
        assert_eq!(block_key("a"), "rl:v1:block:a");
    }

    #[test]
    fn the_scripts_ask_upstash_to_lock_only_their_keys() {
        // Upstash rejects a script with the flag that touches a key not passed in KEYS.
        let call = regex_lite::Regex::new(r"redis\.call\('\w+', ([^,)]+)").unwrap();
        for script in [CHECK_SCRIPT, BLOCK_SCRIPT] {
            assert!(
                script.starts_with("#!lua flags=allow-key-locking\n"),
                "{script}"
            );
            let keys: Vec<&str> = call
                .captures_iter(script)
                .map(|call| call.get(1).unwrap().as_str())
                .collect();
            assert!(!keys.is_empty());
            assert!(keys.iter().all(|key| key.starts_with("KEYS[")), "{keys:?}");
        }
    }
}
