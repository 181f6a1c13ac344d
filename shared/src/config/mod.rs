//! Typed configuration, read once at init from the environment and, when SECRETS_ARN is
//! set, from one Secrets Manager secret. Every problem is reported naming the variable
//! at fault. One file per settings group; nothing here depends on a feature module (the
//! features read their settings from here, never the other way round).

mod auth;
mod backends;
mod events;
mod health;
mod mercadolivre;
mod rate_limit;
mod secrets;
mod tls;
mod vars;
mod webhooks;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

pub use auth::{AuthSettings, is_local_path};
pub use backends::{QueueBackend, StoreBackend};
pub use events::EventStreamSettings;
pub use health::HealthSettings;
pub use mercadolivre::{BreakerPolicy, MercadoLivreSettings, RetryPolicy};
pub use rate_limit::{HourlyBudget, RateLimitSettings, ThrottleScope};
pub use secrets::{SECRET_NAMES, Secrets};
use vars::Vars;
pub use webhooks::WorkerSettings;

/// Where a configuration is for: it decides the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A Lambda function: DynamoDB and SQS, named by the template's variables.
    Lambda,
    /// The local runner: the embedded store and queue under DATA_DIR.
    Local,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub profile: Profile,
    pub version: &'static str,
    pub store: StoreBackend,
    pub queue: QueueBackend,
    /// Where the embedded store and queue keep their file.
    pub data_dir: PathBuf,
    /// The local runner's listening address (127.0.0.1:3000 by default).
    pub listen: SocketAddr,
    /// LOCAL_WORKERS (default true): whether the local runner runs its workers (the queue
    /// consumer, the schedules). Off, accepted webhooks stay on the queue, to be counted
    /// (the ingest benchmark).
    pub local_workers: bool,
    pub health: HealthSettings,
    pub mercadolivre: MercadoLivreSettings,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    pub worker: WorkerSettings,
    pub events: EventStreamSettings,
    /// The Secrets Manager secret to read at init, if any.
    pub secrets_arn: Option<String>,
    pub secrets: Secrets,
    /// The certificate authorities every HTTPS client trusts (EXTRA_CA_BUNDLE's with
    /// Mozilla's).
    pub tls: crate::tls::Tls,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{} is not set{}", .0, secret_hint(.0))]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("SECRETS_ARN: {0}")]
    Secret(String),
}

/// HOST: an IP address, or `localhost` (127.0.0.1); other names are not resolved.
fn host<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<IpAddr, ConfigError> {
    match vars.text("HOST") {
        None => Ok(Ipv4Addr::LOCALHOST.into()),
        Some(name) if name.eq_ignore_ascii_case("localhost") => Ok(Ipv4Addr::LOCALHOST.into()),
        Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
            name: "HOST",
            reason: format!(
                "{text:?}: expected an IP address, such as 127.0.0.1 (this machine only) or \
                 0.0.0.0 (every interface)"
            ),
        }),
    }
}

/// Where a missing secret can come from, for its error message.
fn secret_hint(name: &str) -> &'static str {
    if SECRET_NAMES.contains(&name) {
        " (a secret, from the environment or from the Secrets Manager secret named by SECRETS_ARN)"
    } else {
        ""
    }
}

impl Config {
    /// The configuration from the process environment plus, when SECRETS_ARN is set, the
    /// secret it names.
    pub async fn load(profile: Profile) -> Result<Self, ConfigError> {
        let mut config = Self::from_env(profile)?;
        if config.secrets_arn.is_some() {
            let sdk = crate::aws::sdk_config(&config.tls).await;
            config.load_secret(&sdk).await?;
        }
        Ok(config)
    }

    /// The configuration from the process environment, without the secret SECRETS_ARN names
    /// (see [`Self::load_secret`]).
    pub fn from_env(profile: Profile) -> Result<Self, ConfigError> {
        Self::from_vars(profile, |name| std::env::var(name).ok())
    }

    /// Adds the secrets of the Secrets Manager secret SECRETS_ARN names, if it is set,
    /// through the SDK configuration `sdk`.
    pub async fn load_secret(&mut self, sdk: &aws_config::SdkConfig) -> Result<(), ConfigError> {
        if let Some(arn) = &self.secrets_arn {
            self.secrets.load(sdk, arn).await?;
        }
        Ok(())
    }

    /// The configuration from variables looked up with `var`.
    pub fn from_vars(
        profile: Profile,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let vars = Vars(var);
        let (store, queue) = backends::read(&vars, profile)?;
        let port: u16 = vars.parsed("PORT", 3000)?;
        if let Some(level) = vars.text("LOG_LEVEL") {
            crate::telemetry::parse_log_filter(&level).map_err(|reason| ConfigError::Invalid {
                name: "LOG_LEVEL",
                reason,
            })?;
        }
        Ok(Self {
            profile,
            version: env!("CARGO_PKG_VERSION"),
            store,
            queue,
            data_dir: PathBuf::from(vars.text("DATA_DIR").unwrap_or_else(|| ".data".into())),
            listen: SocketAddr::new(host(&vars)?, port),
            local_workers: vars.parsed("LOCAL_WORKERS", true)?,
            health: health::read(&vars)?,
            mercadolivre: mercadolivre::read(&vars)?,
            rate_limit: rate_limit::read(&vars)?,
            auth: auth::read(&vars, profile)?,
            worker: webhooks::read(&vars)?,
            events: events::read(&vars, profile)?,
            secrets_arn: vars.text("SECRETS_ARN"),
            secrets: Secrets::from_env(|name| vars.text(name)),
            tls: tls::read(&vars)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use secrecy::ExposeSecret;

    use super::*;

    fn config(profile: Profile, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(profile, |name| vars.get(name).cloned())
    }

    #[test]
    fn local_defaults_to_the_embedded_adapters_on_loopback() {
        let config = config(Profile::Local, &[]).unwrap();
        assert_eq!(config.store, StoreBackend::Embedded);
        assert_eq!(
            config.queue,
            QueueBackend::Embedded {
                max_receive_count: 5
            }
        );
        assert_eq!(config.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.data_dir, PathBuf::from(".data"));
        assert_eq!(config.health.max_waiting, 1000);
        assert_eq!(config.health.max_dead_letters, 100);
    }

    #[test]
    fn lambda_needs_its_table_and_queue_named() {
        assert_eq!(
            config(Profile::Lambda, &[]).unwrap_err(),
            ConfigError::Missing("TABLE_NAME")
        );
        assert_eq!(
            config(Profile::Lambda, &[("TABLE_NAME", "t")]).unwrap_err(),
            ConfigError::Missing("WEBHOOK_QUEUE_URL")
        );
        let config = config(
            Profile::Lambda,
            &[
                ("TABLE_NAME", "t"),
                ("WEBHOOK_QUEUE_URL", "http://q"),
                ("WEBHOOK_DLQ_URL", "http://d"),
            ],
        )
        .unwrap();
        assert_eq!(config.store, StoreBackend::DynamoDb { table: "t".into() });
        assert_eq!(
            config.queue,
            QueueBackend::Sqs {
                queue_url: "http://q".into(),
                dead_letter_url: Some("http://d".into())
            }
        );
    }

    #[test]
    fn a_lambda_function_cannot_be_switched_to_the_embedded_adapters() {
        let config = config(
            Profile::Lambda,
            &[
                ("STORE_BACKEND", "embedded"),
                ("QUEUE_BACKEND", "embedded"),
                ("TABLE_NAME", "t"),
                ("WEBHOOK_QUEUE_URL", "q"),
            ],
        )
        .unwrap();
        assert_eq!(config.store, StoreBackend::DynamoDb { table: "t".into() });
        assert!(matches!(config.queue, QueueBackend::Sqs { .. }));
    }

    #[test]
    fn each_adapter_switches_to_the_real_service_on_its_own() {
        let config = config(
            Profile::Local,
            &[("STORE_BACKEND", "DynamoDB"), ("TABLE_NAME", "t")],
        )
        .unwrap();
        assert_eq!(config.store, StoreBackend::DynamoDb { table: "t".into() });
        assert_eq!(
            config.queue,
            QueueBackend::Embedded {
                max_receive_count: 5
            }
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        let error = config(Profile::Local, &[("PORT", "eighty")]).unwrap_err();
        assert!(
            matches!(error, ConfigError::Invalid { name: "PORT", .. }),
            "{error}"
        );
        assert!(error.to_string().starts_with("PORT is invalid"));
        let error = config(Profile::Local, &[("STORE_BACKEND", "postgres")]).unwrap_err();
        assert!(error.to_string().contains("STORE_BACKEND"), "{error}");
        let error = config(Profile::Local, &[("QUEUE_MAX_RECEIVE_COUNT", "0")]).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                name: "QUEUE_MAX_RECEIVE_COUNT",
                ..
            }
        ));
    }

    #[test]
    fn host_is_an_ip_address_or_localhost_and_log_level_must_parse() {
        let listen = |host: &str| config(Profile::Local, &[("HOST", host)]).map(|c| c.listen);
        assert_eq!(listen("localhost"), Ok("127.0.0.1:3000".parse().unwrap()));
        assert_eq!(listen("0.0.0.0"), Ok("0.0.0.0:3000".parse().unwrap()));
        assert_eq!(listen("::1"), Ok("[::1]:3000".parse().unwrap()));
        let error = listen("example.com").unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { name: "HOST", .. }));
        assert!(
            error.to_string().contains("expected an IP address"),
            "{error}"
        );

        let error = config(Profile::Local, &[("LOG_LEVEL", "verbose")]).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("LOG_LEVEL is invalid: \"verbose\""),
            "{error}"
        );
        assert!(config(Profile::Local, &[("LOG_LEVEL", "info,shared=debug")]).is_ok());
    }

    #[test]
    fn a_missing_secret_says_where_secrets_come_from() {
        let message = ConfigError::Missing("SESSION_SIGNING_KEY").to_string();
        assert!(
            message.starts_with("SESSION_SIGNING_KEY is not set (a secret")
                && message.contains("SECRETS_ARN"),
            "{message}"
        );
        assert_eq!(
            ConfigError::Missing("TABLE_NAME").to_string(),
            "TABLE_NAME is not set"
        );
    }

    #[test]
    fn mercadolivre_defaults_to_the_real_api_and_takes_a_sandbox() {
        let lambda = config(
            Profile::Lambda,
            &[("TABLE_NAME", "t"), ("WEBHOOK_QUEUE_URL", "q")],
        )
        .unwrap();
        let settings = &lambda.mercadolivre;
        assert_eq!(settings.api_url.as_str(), "https://api.mercadolibre.com/");
        assert_eq!(
            settings.auth_url.as_str(),
            "https://auth.mercadolivre.com.br/"
        );
        assert_eq!(settings.call_timeout, Duration::from_secs(5));
        assert_eq!(settings.retry, RetryPolicy::default());
        assert_eq!(settings.breaker, BreakerPolicy::default());

        let sandbox = config(
            Profile::Local,
            &[
                (
                    "MERCADOLIVRE_API_URL",
                    "http://127.0.0.1:3000/sandbox/mercadolivre",
                ),
                ("MERCADOLIVRE_BREAKER_OPEN_MS", "1000"),
            ],
        )
        .unwrap();
        assert_eq!(
            sandbox.mercadolivre.api_url.as_str(),
            "http://127.0.0.1:3000/sandbox/mercadolivre"
        );
        assert_eq!(
            sandbox.mercadolivre.breaker.open_for,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn bad_mercadolivre_settings_name_their_variable() {
        for (name, value) in [
            ("MERCADOLIVRE_API_URL", "api.mercadolibre.com"),
            ("MERCADOLIVRE_API_URL", "ftp://api.mercadolibre.com"),
            (
                "MERCADOLIVRE_AUTH_URL",
                "https://auth.mercadolivre.com.br/?x=1",
            ),
            ("MERCADOLIVRE_TIMEOUT_MS", "0"),
            ("MERCADOLIVRE_MAX_ATTEMPTS", "0"),
            ("MERCADOLIVRE_BREAKER_FAILURES", "many"),
            ("MERCADOLIVRE_RETRY_MAX_MS", "10"),
        ] {
            let error = config(Profile::Local, &[(name, value)]).unwrap_err();
            assert!(
                matches!(error, ConfigError::Invalid { name: bad, .. } if bad == name),
                "{name}={value}: {error}"
            );
        }
    }

    #[test]
    fn secrets_come_from_the_environment_and_the_secret_and_never_print() {
        let mut config = config(
            Profile::Local,
            &[
                ("META_APP_SECRET", "from-env"),
                ("SESSION_SIGNING_KEY", "env-key"),
            ],
        )
        .unwrap();
        config
            .secrets
            .merge_json(r#"{"SESSION_SIGNING_KEY": "from-secret", "CURSOR_SIGNING_KEY": "c"}"#)
            .unwrap();
        assert_eq!(
            config
                .secrets
                .require("META_APP_SECRET")
                .unwrap()
                .expose_secret(),
            "from-env"
        );
        assert_eq!(
            config
                .secrets
                .require("SESSION_SIGNING_KEY")
                .unwrap()
                .expose_secret(),
            "from-secret"
        );
        assert_eq!(
            config.secrets.require("GRANT_ENCRYPTION_KEY").unwrap_err(),
            ConfigError::Missing("GRANT_ENCRYPTION_KEY")
        );
        let printed = format!("{config:?}");
        assert!(
            !printed.contains("from-env") && !printed.contains("from-secret"),
            "{printed}"
        );
        assert!(matches!(
            config.secrets.merge_json(r#"{"SESION_KEY": "x"}"#),
            Err(ConfigError::Secret(_))
        ));
        assert!(matches!(
            config.secrets.merge_json("not json"),
            Err(ConfigError::Secret(_))
        ));
    }

    #[test]
    fn rate_limits_default_to_mercado_livres_budgets_and_no_shared_limiter() {
        let settings = config(Profile::Local, &[]).unwrap().rate_limit;
        assert_eq!(settings.upstash_url, None);
        assert_eq!(
            settings.mercadolivre_global,
            HourlyBudget {
                limit: 2000,
                burst: 100
            }
        );
        assert_eq!(
            settings.mercadolivre_account,
            HourlyBudget {
                limit: 500,
                burst: 20
            }
        );
        assert_eq!(settings.fallback_share, 0.1);
        assert_eq!(settings.sign_in_share, 0.1);
        assert_eq!(settings.upstash_connect_timeout, Duration::from_millis(300));
        assert_eq!(settings.upstash_timeout, Duration::from_millis(1000));
        assert_eq!(settings.fallback_retry_after, Duration::from_millis(5000));
        assert_eq!(
            settings.mercadolivre_throttle_scope,
            ThrottleScope::Application
        );

        let settings = config(
            Profile::Lambda,
            &[
                ("TABLE_NAME", "t"),
                ("WEBHOOK_QUEUE_URL", "q"),
                ("UPSTASH_REDIS_REST_URL", "https://eu1-x.upstash.io"),
                ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", "100"),
                ("RATE_LIMIT_ML_ACCOUNT_BURST", "5"),
                ("RATE_LIMIT_FALLBACK_SHARE", "0.25"),
                ("RATE_LIMIT_ML_429_SCOPE", "account"),
                ("RATE_LIMIT_ML_SIGNIN_SHARE", "0.25"),
            ],
        )
        .unwrap()
        .rate_limit;
        assert_eq!(settings.sign_in_share, 0.25);
        assert_eq!(
            settings.upstash_url.map(String::from).as_deref(),
            Some("https://eu1-x.upstash.io/")
        );
        assert_eq!(
            settings.mercadolivre_account,
            HourlyBudget {
                limit: 100,
                burst: 5
            }
        );
        assert_eq!(settings.fallback_share, 0.25);
        assert_eq!(settings.mercadolivre_throttle_scope, ThrottleScope::Account);
    }

    #[test]
    fn invalid_rate_limit_settings_name_their_variable() {
        for (name, value) in [
            ("UPSTASH_REDIS_REST_URL", "eu1-x.upstash.io"),
            ("UPSTASH_TIMEOUT_MS", "0"),
            ("UPSTASH_CONNECT_TIMEOUT_MS", "soon"),
            ("RATE_LIMIT_ML_GLOBAL_PER_HOUR", "1"),
            ("RATE_LIMIT_ML_GLOBAL_BURST", "2000"),
            ("RATE_LIMIT_ML_ACCOUNT_BURST", "0"),
            ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", "-5"),
            ("RATE_LIMIT_FALLBACK_SHARE", "0"),
            ("RATE_LIMIT_FALLBACK_SHARE", "1.5"),
            ("RATE_LIMIT_FALLBACK_SHARE", "NaN"),
            ("RATE_LIMIT_FALLBACK_RETRY_MS", "0"),
            ("RATE_LIMIT_ML_429_SCOPE", "seller"),
            ("RATE_LIMIT_ML_SIGNIN_SHARE", "0"),
            ("RATE_LIMIT_ML_SIGNIN_SHARE", "0.5"),
            ("RATE_LIMIT_ML_SIGNIN_SHARE", "-0.1"),
            // 1% of the default burst of 100 is not even one sign-in's two calls.
            ("RATE_LIMIT_ML_SIGNIN_SHARE", "0.01"),
        ] {
            let error = config(Profile::Local, &[(name, value)]).unwrap_err();
            assert!(
                matches!(&error, ConfigError::Invalid { name: named, .. } if *named == name),
                "{name}={value}: {error}"
            );
            assert!(error.to_string().starts_with(name), "{error}");
        }
    }
}
