//! Builds the limiter a process uses from its configuration, once, at init.

use std::sync::Arc;

use secrecy::SecretString;

use super::cached::CachedLimiter;
use super::fallback::{FallbackLimiter, FallbackSettings};
use super::memory::MemoryLimiter;
use super::redis::RedisLimiter;
use super::upstash::{Upstash, UpstashConfig};
use super::{Check, Limiter};
use crate::config::{Config, ConfigError, RateLimitSettings};

const TOKEN: &str = "UPSTASH_REDIS_REST_TOKEN";

/// The shared limiter for a Lambda function: Redis through Upstash, behind the denial
/// cache, with the per-instance fallback. Without UPSTASH_REDIS_REST_URL (or its token)
/// it is an error: per-process limits would multiply the budget by the instance count.
pub fn shared_limiter(config: &Config) -> Result<Arc<dyn Limiter>, ConfigError> {
    let settings = &config.rate_limit;
    let url = settings
        .upstash_url
        .clone()
        .ok_or(ConfigError::Missing("UPSTASH_REDIS_REST_URL"))?;
    let token = config.secrets.require(TOKEN)?.clone();
    redis_limiter(settings, url.as_str(), token)
}

/// The local runner's limiter: the shared one when UPSTASH_REDIS_REST_URL is set, else
/// the embedded one (behind the same denial cache).
pub fn local_limiter(config: &Config) -> Result<Arc<dyn Limiter>, ConfigError> {
    if config.rate_limit.upstash_url.is_some() {
        return shared_limiter(config);
    }
    Ok(Arc::new(CachedLimiter::new(Arc::new(MemoryLimiter::new()))))
}

fn redis_limiter(
    settings: &RateLimitSettings,
    url: &str,
    token: SecretString,
) -> Result<Arc<dyn Limiter>, ConfigError> {
    let upstash = Upstash::new(UpstashConfig {
        url: url.to_owned(),
        token,
        connect_timeout: settings.upstash_connect_timeout,
        request_timeout: settings.upstash_timeout,
    })
    .map_err(|error| ConfigError::Invalid {
        name: "UPSTASH_REDIS_REST_URL",
        reason: error.to_string(),
    })?;
    let fallback = FallbackLimiter::new(
        Arc::new(RedisLimiter::new(upstash)),
        FallbackSettings {
            share: settings.fallback_share,
            timeout: settings.upstash_timeout,
            retry_primary_after: settings.fallback_retry_after,
        },
    );
    Ok(Arc::new(CachedLimiter::new(Arc::new(fallback))))
}

/// The two limits every Mercado Livre API call is checked against, in one check: the
/// application's global budget and the seller account's.
pub fn mercadolivre_checks(settings: &RateLimitSettings, account: &str) -> [Check; 2] {
    [
        Check {
            key: "ml:global".to_owned(),
            rule: settings.mercadolivre_global,
        },
        Check {
            key: format!("ml:account:{account}"),
            rule: settings.mercadolivre_account,
        },
    ]
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
        let checks = mercadolivre_checks(&config.rate_limit, "123");
        let verdict = limiter.check(&checks, 0).await.unwrap();
        assert!(verdict.allowed);
        assert_eq!(verdict.limits[0].limit, 2000);
        assert_eq!(verdict.limits[0].remaining, 99);
        assert_eq!(verdict.limits[1].key, "ml:account:123");
        assert_eq!(verdict.limits[1].remaining, 19);
    }
}
