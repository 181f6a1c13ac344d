//! Our own endpoints' rate limits: one check against the shared limiter, answered either
//! with the `RateLimit-*` headers for the successful response or with a 429 problem
//! carrying them and `Retry-After`.
//!
//! A limiter that cannot answer fails the request with 503: the limits guard sign-in
//! against brute force, so they fail secure. (A limiter with a fallback answers from it
//! and never gets here.)

use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use http::{HeaderMap, HeaderValue};

use super::ApiError;
use crate::ratelimit::{Check, Limiter, LimiterError, Rule};
use crate::telemetry::emf;

/// One endpoint limit: a rule counted under a key, in a named scope (for metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointLimit {
    pub scope: &'static str,
    pub key: String,
    pub rule: Rule,
}

impl EndpointLimit {
    /// `GET`/`POST /auth/login`: 20 a minute per client, 5 of them back to back. A client
    /// is an IPv4 address or an IPv6 /64 (one host usually holds a whole /64).
    pub fn login(client_ip: &str) -> Self {
        Self {
            scope: "login",
            key: format!("login:ip:{}", client_network(client_ip)),
            rule: Rule::new(20, Duration::from_secs(60), 5),
        }
    }

    /// A tenant's writes: 100 a minute, 25 of them back to back.
    pub fn writes(tenant: &str) -> Self {
        Self {
            scope: "writes",
            key: format!("writes:tenant:{tenant}"),
            rule: Rule::new(100, Duration::from_secs(60), 25),
        }
    }
}

/// What one client counts as: the IPv4 address, or the IPv6 address's /64 (an
/// IPv4-mapped IPv6 address is its IPv4 address). Anything else is taken as it is.
fn client_network(client_ip: &str) -> String {
    match client_ip.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(ip)) => {
            let network = Ipv6Addr::from_bits(ip.to_bits() & !u128::from(u64::MAX));
            format!("{network}/64")
        }
        Ok(IpAddr::V4(ip)) => ip.to_string(),
        Err(_) => client_ip.to_owned(),
    }
}

/// The IETF `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: u32,
    pub remaining: u32,
    /// Until the full quota is available again; sent in whole seconds, rounded up.
    pub reset: Duration,
}

impl RateLimitHeaders {
    /// Adds the three fields to `headers`.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in [
            ("ratelimit-limit", u64::from(self.limit)),
            ("ratelimit-remaining", u64::from(self.remaining)),
            ("ratelimit-reset", whole_seconds(self.reset)),
        ] {
            headers.insert(name, HeaderValue::from(value));
        }
    }
}

/// Seconds, rounded up: a client waiting this long is never early.
pub fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// Counts one request against `limit` at `now_ms`: the headers for the response if it
/// is admitted, else a 429 (or a 503 when the limiter cannot answer).
pub async fn enforce(
    limiter: &dyn Limiter,
    limit: &EndpointLimit,
    now_ms: i64,
) -> Result<RateLimitHeaders, ApiError> {
    let check = Check {
        key: limit.key.clone(),
        rule: limit.rule,
    };
    let verdict = limiter
        .check(std::slice::from_ref(&check), now_ms)
        .await
        .map_err(|error| match error {
            LimiterError::Unavailable(_) => {
                ApiError::Unavailable(format!("rate limiter ({}): {error}", limit.scope))
            }
            LimiterError::Rejected(_) => {
                ApiError::Internal(format!("rate limiter ({}): {error}", limit.scope))
            }
        })?;
    let status = verdict.limits.first();
    let headers = RateLimitHeaders {
        limit: limit.rule.limit,
        remaining: status.map_or(0, |status| status.remaining),
        reset: status.map_or(verdict.retry_after, |status| status.reset_after),
    };
    if verdict.allowed {
        return Ok(headers);
    }
    emf::emit(
        &[("Scope", limit.scope)],
        &[emf::Metric::count("RateLimited", 1.0)],
    );
    Err(ApiError::TooManyRequests {
        retry_after: verdict.retry_after,
        rate_limit: Some(RateLimitHeaders {
            remaining: 0,
            ..headers
        }),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use http::StatusCode;

    use super::*;
    use crate::ratelimit::{LimitStatus, LimiterResult, Verdict};

    /// Answers every check with a set verdict (or error), recording what it was asked.
    struct ScriptedLimiter {
        answer: Mutex<Option<LimiterResult<Verdict>>>,
        asked: Mutex<Vec<(Vec<Check>, i64)>>,
    }

    impl ScriptedLimiter {
        fn answering(answer: LimiterResult<Verdict>) -> Self {
            Self {
                answer: Mutex::new(Some(answer)),
                asked: Mutex::new(Vec::new()),
            }
        }

        fn verdict(allowed: bool, remaining: u32, reset_ms: u64, retry_ms: u64) -> Self {
            Self::answering(Ok(Verdict {
                allowed,
                retry_after: Duration::from_millis(retry_ms),
                limits: vec![LimitStatus {
                    key: "k".into(),
                    limit: 20,
                    remaining,
                    reset_after: Duration::from_millis(reset_ms),
                }],
            }))
        }
    }

    #[async_trait::async_trait]
    impl Limiter for ScriptedLimiter {
        async fn check(&self, checks: &[Check], now_ms: i64) -> LimiterResult<Verdict> {
            self.asked.lock().unwrap().push((checks.to_vec(), now_ms));
            self.answer
                .lock()
                .unwrap()
                .take()
                .expect("asked once per test")
        }

        async fn block_until(&self, _: &str, _: i64, _: i64) -> LimiterResult<()> {
            unreachable!("endpoint limits never block")
        }
    }

    #[test]
    fn the_named_limits_key_by_ip_and_by_tenant() {
        let login = EndpointLimit::login("203.0.113.9");
        assert_eq!(login.key, "login:ip:203.0.113.9");
        assert_eq!(
            (login.rule.limit, login.rule.period),
            (20, Duration::from_secs(60))
        );
        let writes = EndpointLimit::writes("t-42");
        assert_eq!(writes.key, "writes:tenant:t-42");
        assert_eq!(
            EndpointLimit::login("::ffff:203.0.113.9").key,
            "login:ip:203.0.113.9"
        );
        assert_eq!(
            (writes.rule.limit, writes.rule.period),
            (100, Duration::from_secs(60))
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let key = |ip: &str| EndpointLimit::login(ip).key;
        let same_host = [
            "2001:db8:1:2::1",
            "2001:db8:1:2:ffff:ffff:ffff:ffff",
            "2001:0db8:0001:0002:1234:5678:9abc:def0",
        ];
        for ip in same_host {
            assert_eq!(key(ip), "login:ip:2001:db8:1:2::/64", "{ip}");
        }
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
    }

    #[tokio::test]
    async fn a_clients_64_shares_one_login_limit() {
        let limiter = crate::ratelimit::memory::MemoryLimiter::new();
        // Five back to back from one address of the /64, then any other is refused.
        for _ in 0..5 {
            enforce(&limiter, &EndpointLimit::login("2001:db8::1"), 0)
                .await
                .unwrap();
        }
        let error = enforce(&limiter, &EndpointLimit::login("2001:db8::2:1"), 0)
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::TOO_MANY_REQUESTS);
        enforce(&limiter, &EndpointLimit::login("2001:db8:0:1::1"), 0)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn an_admitted_request_gets_the_ratelimit_headers() {
        let limiter = ScriptedLimiter::verdict(true, 4, 3200, 0);
        let limit = EndpointLimit::login("203.0.113.9");

        let headers = enforce(&limiter, &limit, 1_000).await.unwrap();

        assert_eq!(
            *limiter.asked.lock().unwrap(),
            vec![(
                vec![Check {
                    key: "login:ip:203.0.113.9".into(),
                    rule: limit.rule
                }],
                1_000
            )]
        );
        let mut response = http::HeaderMap::new();
        headers.apply(&mut response);
        assert_eq!(response["ratelimit-limit"], "20");
        assert_eq!(response["ratelimit-remaining"], "4");
        assert_eq!(response["ratelimit-reset"], "4", "3.2 s rounds up");
    }

    #[tokio::test]
    async fn a_denied_request_is_a_429_problem_with_retry_after_and_ratelimit_headers() {
        let limiter = ScriptedLimiter::verdict(false, 0, 16_000, 3_500);

        let (denied, lines) =
            emf::capture::lines(enforce(&limiter, &EndpointLimit::login("203.0.113.9"), 0)).await;
        let error = denied.unwrap_err();
        let response = error.problem().into_response("req-1");
        // Counted by scope, never by key (a key names a client or a tenant).
        let counted = emf::capture::of(&lines, "RateLimited");
        assert_eq!(counted.len(), 1, "{lines:?}");
        assert_eq!(counted[0]["Scope"], "login");
        assert_eq!(
            emf::capture::dimension_sets(counted[0]),
            serde_json::json!([["Scope"]])
        );

        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert_eq!(response.headers()["retry-after"], "4");
        assert_eq!(response.headers()["ratelimit-limit"], "20");
        assert_eq!(response.headers()["ratelimit-remaining"], "0");
        assert_eq!(response.headers()["ratelimit-reset"], "16");
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["status"], 429);
    }

    #[tokio::test]
    async fn an_unreachable_limiter_fails_secure_with_503() {
        let limiter = ScriptedLimiter::answering(Err(LimiterError::Unavailable(
            "connection refused to 10.0.0.7".into(),
        )));

        let error = enforce(&limiter, &EndpointLimit::writes("t-1"), 0)
            .await
            .unwrap_err();
        let response = error.problem().into_response("req-2");

        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
        assert!(!text.contains("10.0.0.7"), "{text}");
    }

    #[tokio::test]
    async fn a_refused_limiter_call_is_an_internal_error() {
        let limiter = ScriptedLimiter::answering(Err(LimiterError::Rejected("ERR script".into())));

        let error = enforce(&limiter, &EndpointLimit::writes("t-1"), 0)
            .await
            .unwrap_err();

        assert_eq!(error.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
