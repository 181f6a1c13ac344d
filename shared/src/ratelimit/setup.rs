//! Builds the limiter a process uses from its configuration, once, at init.

use std::sync::Arc;

use super::Limiter;
use super::cached::CachedLimiter;
use super::fallback::{FallbackLimiter, FallbackSettings};
use super::memory::MemoryLimiter;
use super::redis::RedisLimiter;
use super::upstash::{Upstash, UpstashConfig};
use crate::config::{Config, ConfigError, RateLimitSettings};

const TOKEN: &str = "UPSTASH_REDIS_REST_TOKEN";

/// The Upstash client the configuration names, if UPSTASH_REDIS_REST_URL is set (then its
/// token is required).
pub fn upstash(config: &Config) -> Result<Option<Upstash>, ConfigError> {
    let settings = &config.rate_limit;
    let Some(url) = &settings.upstash_url else {
        return Ok(None);
    };
    let token = config.secrets.require(TOKEN)?.clone();
    Upstash::new(UpstashConfig {
        url: url.to_string(),
        token,
        connect_timeout: settings.upstash_connect_timeout,
        request_timeout: settings.upstash_timeout,
    })
    .map(Some)
    .map_err(|error| ConfigError::Invalid {
        name: "UPSTASH_REDIS_REST_URL",
        reason: error.to_string(),
    })
}

/// The shared limiter for a Lambda function: Redis through Upstash, behind the denial
/// cache, with the per-instance fallback. Without UPSTASH_REDIS_REST_URL (or its token)
/// it is an error: per-process limits would multiply the budget by the instance count.
pub fn shared_limiter(config: &Config) -> Result<Arc<dyn Limiter>, ConfigError> {
    let upstash = upstash(config)?.ok_or(ConfigError::Missing("UPSTASH_REDIS_REST_URL"))?;
    Ok(redis_limiter(&config.rate_limit, upstash))
}

/// The local runner's limiter: the shared one when UPSTASH_REDIS_REST_URL is set, else
/// the embedded one (behind the same denial cache).
pub fn local_limiter(config: &Config) -> Result<Arc<dyn Limiter>, ConfigError> {
    Ok(match upstash(config)? {
        Some(upstash) => redis_limiter(&config.rate_limit, upstash),
        None => Arc::new(CachedLimiter::new(Arc::new(MemoryLimiter::new()))),
    })
}

fn redis_limiter(settings: &RateLimitSettings, upstash: Upstash) -> Arc<dyn Limiter> {
    let fallback = FallbackLimiter::new(
        Arc::new(RedisLimiter::new(upstash)),
        FallbackSettings {
            share: settings.fallback_share,
            timeout: settings.upstash_timeout,
            retry_primary_after: settings.fallback_retry_after,
        },
    );
    Arc::new(CachedLimiter::new(Arc::new(fallback)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Profile;

    fn config(vars: &[(&str, &str)]) -> Config {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap()
    }

    #[test]
    fn a_shared_limiter_needs_the_url_and_the_token() {
        assert_eq!(
            shared_limiter(&config(&[])).err(),
            Some(ConfigError::Missing("UPSTASH_REDIS_REST_URL"))
        );
        assert_eq!(
            shared_limiter(&config(&[("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:1")])).err(),
            Some(ConfigError::Missing(TOKEN))
        );
        assert!(
            shared_limiter(&config(&[
                ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:1"),
                (TOKEN, "t"),
            ]))
            .is_ok()
        );
        assert!(local_limiter(&config(&[])).is_ok());
    }

    #[tokio::test]
    async fn mercado_livre_calls_count_against_both_budgets() {
        let config = config(&[]);
        let limiter = local_limiter(&config).unwrap();
        let checks = crate::upstream::UpstreamLimits::from(&config.rate_limit).checks(123);
        let verdict = limiter.check(&checks, 0).await.unwrap();
        assert!(verdict.allowed);
        assert_eq!(verdict.limits[0].limit, 2000);
        assert_eq!(verdict.limits[0].remaining, 99);
        assert_eq!(verdict.limits[1].key, "ml:account:123");
        assert_eq!(verdict.limits[1].remaining, 19);
    }
}
