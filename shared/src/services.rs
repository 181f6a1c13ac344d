//! The composition root: everything a handler depends on, built from the configuration
//! and the adapters once per process. A Lambda binary and the local runner build every
//! handler the same way, by `Handler::build(&services)`, so no wiring exists twice.
//!
//! Each piece is made on first use and then shared: a Lambda function pays at init only
//! for what its handler takes (and needs only that part of the configuration), and the
//! local runner's handlers share one limiter, one Mercado Livre client (one circuit
//! breaker) and one set of keys.
//!
//! The local profile's store publishes its event writes as they commit
//! ([`LiveEvents`]): the local runner's event streams are pushed to, where a Lambda
//! function's poll the store.

use std::sync::{Arc, OnceLock};

use crate::adapters::Adapters;
use crate::auth::refresh::Refresher;
use crate::auth::{Authenticator, GrantCipher, Grants, SessionKeys, Sessions};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Profile};
use crate::events::Events;
use crate::events::live::LiveEvents;
use crate::http::cursor::Cursors;
use crate::queue::Queue;
use crate::ratelimit::Limiter;
use crate::ratelimit::cached::CachedLimiter;
use crate::ratelimit::fallback::{FallbackLimiter, FallbackSettings};
use crate::ratelimit::memory::MemoryLimiter;
use crate::ratelimit::redis::RedisLimiter;
use crate::ratelimit::upstash::{Upstash, UpstashConfig};
use crate::store::Store;
use crate::upstream::{ClientCredentials, MercadoLivre};

/// The limiter shared by every instance, in the parts GET /health looks at.
#[derive(Clone)]
pub struct SharedLimiter {
    /// The script on Redis, through Upstash.
    pub redis: RedisLimiter,
    /// What [`Services::limiter`] answers from: the Redis limiter, or the per-instance
    /// fallback while Redis fails.
    pub fallback: Arc<FallbackLimiter>,
}

pub struct Services {
    config: Config,
    store: Arc<dyn Store>,
    live_events: Option<Arc<LiveEvents>>,
    webhook_queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    upstash: OnceLock<Option<Upstash>>,
    shared_limiter: OnceLock<Option<SharedLimiter>>,
    limiter: OnceLock<Arc<dyn Limiter>>,
    mercadolivre: OnceLock<Arc<MercadoLivre>>,
    session_keys: OnceLock<Arc<SessionKeys>>,
    grant_cipher: OnceLock<Arc<GrantCipher>>,
    cursors: OnceLock<Arc<Cursors>>,
}

/// The value in `cell`, made by `make` the first time (a failure is returned, not kept).
fn once<T: Clone, E>(cell: &OnceLock<T>, make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    if let Some(value) = cell.get() {
        return Ok(value.clone());
    }
    let value = make()?;
    Ok(cell.get_or_init(|| value).clone())
}

impl Services {
    pub fn new(config: Config, adapters: Adapters) -> Self {
        let (store, live_events) = match config.profile {
            Profile::Local => {
                let live = LiveEvents::new(config.events.live_buffer);
                (live.watch(adapters.store), Some(live))
            }
            Profile::Lambda => (adapters.store, None),
        };
        Self {
            config,
            store,
            live_events,
            webhook_queue: adapters.webhook_queue,
            clock: Arc::new(SystemClock),
            upstash: OnceLock::new(),
            shared_limiter: OnceLock::new(),
            limiter: OnceLock::new(),
            mercadolivre: OnceLock::new(),
            session_keys: OnceLock::new(),
            grant_cipher: OnceLock::new(),
            cursors: OnceLock::new(),
        }
    }

    /// The same services reading time from `clock` (tests). Set it before building
    /// anything from them.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.store)
    }

    /// The live event logs, in the local profile (one process sees every write).
    pub fn live_events(&self) -> Option<Arc<LiveEvents>> {
        self.live_events.clone()
    }

    pub fn webhook_queue(&self) -> Arc<dyn Queue> {
        Arc::clone(&self.webhook_queue)
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// The Upstash client UPSTASH_REDIS_REST_URL names (then its token is required), if
    /// it is set.
    pub fn upstash(&self) -> Result<Option<Upstash>, ConfigError> {
        once(&self.upstash, || {
            let settings = &self.config.rate_limit;
            let Some(url) = &settings.upstash_url else {
                return Ok(None);
            };
            let token = self.config.secrets.require(UPSTASH_TOKEN)?.clone();
            Upstash::new(UpstashConfig {
                url: url.to_string(),
                token,
                connect_timeout: settings.upstash_connect_timeout,
                request_timeout: settings.upstash_timeout,
                tls: self.config.tls.clone(),
            })
            .map(Some)
            .map_err(|error| ConfigError::Invalid {
                name: "UPSTASH_REDIS_REST_URL",
                reason: error.to_string(),
            })
        })
    }

    /// The limiter on Redis through Upstash with the per-instance fallback, if Upstash is
    /// configured.
    pub fn shared_limiter(&self) -> Result<Option<SharedLimiter>, ConfigError> {
        once(&self.shared_limiter, || {
            let Some(upstash) = self.upstash()? else {
                return Ok(None);
            };
            let redis = RedisLimiter::new(upstash);
            let settings = &self.config.rate_limit;
            let fallback = FallbackLimiter::new(
                Arc::new(redis.clone()),
                FallbackSettings {
                    share: settings.fallback_share,
                    timeout: settings.upstash_timeout,
                    retry_primary_after: settings.fallback_retry_after,
                },
            );
            Ok(Some(SharedLimiter {
                redis,
                fallback: Arc::new(fallback),
            }))
        })
    }

    /// The rate limiter: the shared limiter behind the denial cache. A Lambda function must
    /// have it (per-process limits would multiply the budget by the instance count); the
    /// local runner limits in process when no Upstash is configured.
    pub fn limiter(&self) -> Result<Arc<dyn Limiter>, ConfigError> {
        once(&self.limiter, || {
            let inner: Arc<dyn Limiter> = match (self.shared_limiter()?, self.config.profile) {
                (Some(shared), _) => shared.fallback,
                (None, Profile::Lambda) => {
                    return Err(ConfigError::Missing("UPSTASH_REDIS_REST_URL"));
                }
                (None, Profile::Local) => Arc::new(MemoryLimiter::new()),
            };
            let limiter: Arc<dyn Limiter> = Arc::new(CachedLimiter::new(inner));
            Ok(limiter)
        })
    }

    /// The Mercado Livre API client, behind the limiter.
    pub fn mercadolivre(&self) -> Result<Arc<MercadoLivre>, ConfigError> {
        once(&self.mercadolivre, || {
            let client = MercadoLivre::from_settings(
                &self.config.mercadolivre,
                &self.config.rate_limit,
                self.limiter()?,
                &self.config.tls,
            )
            .map_err(|error| ConfigError::Invalid {
                name: "MERCADOLIVRE_API_URL",
                reason: format!("building the HTTP client: {error}"),
            })?;
            Ok(Arc::new(client.with_clock(self.clock())))
        })
    }

    /// The application's Mercado Livre credentials, for exchanging and refreshing tokens.
    pub fn client_credentials(&self) -> Result<ClientCredentials, ConfigError> {
        Ok(ClientCredentials {
            client_id: self.config.auth.require_client_id()?.to_owned(),
            client_secret: self
                .config
                .secrets
                .require("MERCADOLIVRE_CLIENT_SECRET")?
                .clone(),
        })
    }

    pub fn sessions(&self) -> Result<Sessions, ConfigError> {
        let keys = once(&self.session_keys, || {
            SessionKeys::from_config(&self.config).map(Arc::new)
        })?;
        Ok(Sessions::new(
            self.store(),
            keys,
            self.config.auth.session_ttl,
        ))
    }

    pub fn authenticator(&self) -> Result<Authenticator, ConfigError> {
        Ok(Authenticator::new(self.sessions()?).with_clock(self.clock()))
    }

    pub fn grants(&self) -> Result<Grants, ConfigError> {
        let cipher = once(&self.grant_cipher, || {
            GrantCipher::from_config(&self.config).map(Arc::new)
        })?;
        Ok(Grants::new(self.store(), cipher))
    }

    /// The list endpoints' cursor sealer, keyed by CURSOR_SIGNING_KEY.
    pub fn cursors(&self) -> Result<Arc<Cursors>, ConfigError> {
        once(&self.cursors, || {
            let secret = self.config.secrets.require("CURSOR_SIGNING_KEY")?;
            Cursors::new(secret)
                .map(Arc::new)
                .map_err(|error| ConfigError::Invalid {
                    name: "CURSOR_SIGNING_KEY",
                    reason: error.to_string(),
                })
        })
    }

    pub fn refresher(&self) -> Result<Refresher, ConfigError> {
        Ok(Refresher::new(
            self.grants()?,
            Events::new(self.store()),
            self.mercadolivre()?,
            Arc::new(self.client_credentials()?),
            self.config.auth.refresh_window,
            self.config.auth.refresh_lease,
        )
        .with_clock(self.clock()))
    }
}

const UPSTASH_TOKEN: &str = "UPSTASH_REDIS_REST_TOKEN";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::store::embedded::EmbeddedStore;
    use crate::upstream::UpstreamLimits;

    fn services(profile: Profile, vars: &[(&str, &str)]) -> (tempfile::TempDir, Services) {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let config = Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let adapters = Adapters {
            store: Arc::new(EmbeddedStore::open(db.clone()).unwrap()),
            webhook_queue: Arc::new(
                EmbeddedQueue::open_with_dead_letters(db, "q", "d", 5).unwrap(),
            ),
        };
        (dir, Services::new(Config { profile, ..config }, adapters))
    }

    #[test]
    fn a_lambda_functions_limiter_needs_the_upstash_url_and_token() {
        assert_eq!(
            services(Profile::Lambda, &[]).1.limiter().err(),
            Some(ConfigError::Missing("UPSTASH_REDIS_REST_URL"))
        );
        let url = ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:1");
        assert_eq!(
            services(Profile::Lambda, &[url]).1.limiter().err(),
            Some(ConfigError::Missing(UPSTASH_TOKEN))
        );
        assert!(
            services(Profile::Lambda, &[url, (UPSTASH_TOKEN, "t")])
                .1
                .limiter()
                .is_ok()
        );
        assert!(services(Profile::Local, &[]).1.limiter().is_ok());
    }

    #[tokio::test]
    async fn mercado_livre_calls_count_against_both_budgets() {
        let (_dir, services) = services(Profile::Local, &[]);
        let limiter = services.limiter().unwrap();
        let checks = UpstreamLimits::from(&services.config().rate_limit).checks(123);
        let verdict = limiter.check(&checks, 0).await.unwrap();
        assert!(verdict.allowed);
        assert_eq!(verdict.limits[0].limit, 2000);
        assert_eq!(verdict.limits[0].remaining, 99);
        assert_eq!(verdict.limits[1].key, "ml:account:123");
        assert_eq!(verdict.limits[1].remaining, 19);
    }

    #[tokio::test]
    async fn handlers_share_one_limiter_one_client_and_the_clock_given() {
        let (_dir, services) = services(Profile::Local, &[]);
        let clock = Arc::new(crate::clock::ManualClock::at(1_700_000_000_000));
        let services = services.with_clock(clock.clone());
        assert!(Arc::ptr_eq(
            &services.limiter().unwrap(),
            &services.limiter().unwrap()
        ));
        assert!(Arc::ptr_eq(
            &services.mercadolivre().unwrap(),
            &services.mercadolivre().unwrap()
        ));
        assert_eq!(services.clock().now_secs(), 1_700_000_000);
        clock.advance(std::time::Duration::from_secs(5));
        assert_eq!(services.clock().now_secs(), 1_700_000_005);
    }

    #[tokio::test]
    async fn the_fallback_health_reads_is_the_one_the_limiter_answers_from() {
        let (_dir, services) = services(
            Profile::Lambda,
            &[
                ("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:1"),
                (UPSTASH_TOKEN, "t"),
            ],
        );
        let shared = services
            .shared_limiter()
            .unwrap()
            .expect("Upstash is configured");
        assert!(!shared.fallback.in_fallback());
        let checks = UpstreamLimits::from(&services.config().rate_limit).checks(123);
        let verdict = services.limiter().unwrap().check(&checks, 0).await;
        assert!(verdict.unwrap().allowed, "answered by the fallback");
        assert!(shared.fallback.in_fallback());
    }

    #[test]
    fn a_missing_secret_fails_only_what_needs_it() {
        let (_dir, services) = services(Profile::Local, &[]);
        assert_eq!(
            services.sessions().err(),
            Some(ConfigError::Missing("SESSION_SIGNING_KEY"))
        );
        assert_eq!(
            services.grants().err(),
            Some(ConfigError::Missing("GRANT_ENCRYPTION_KEY"))
        );
        assert!(services.upstash().unwrap().is_none());
        assert!(services.shared_limiter().unwrap().is_none());
        assert!(services.mercadolivre().is_ok());
    }
}
