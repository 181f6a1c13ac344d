//! Typed configuration, read once at init from the environment and, when SECRETS_ARN is
//! set, from one Secrets Manager secret (a JSON object of secret names to values).
//! Every problem is reported naming the variable at fault.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;

/// Where a configuration is for: it decides the defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// A Lambda function: DynamoDB and SQS, named by the template's variables.
    Lambda,
    /// The local runner: the embedded store and queue under DATA_DIR.
    Local,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    Embedded,
    DynamoDb { table: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueBackend {
    Embedded {
        max_receive_count: u32,
    },
    Sqs {
        queue_url: String,
        dead_letter_url: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// How long a health result is served from cache.
    pub cache_for: Duration,
    /// The queue is unhealthy from this many waiting messages.
    pub max_waiting: u64,
    /// The queue is unhealthy from this many dead letters.
    pub max_dead_letters: u64,
}

/// The Mercado Livre API client's settings (see `crate::upstream`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MercadoLivreSettings {
    /// The API base: https://api.mercadolibre.com, or a sandbox locally and in tests.
    pub api_url: reqwest::Url,
    /// The authorization host of the sellers' country (https://auth.mercadolivre.com.br).
    pub auth_url: reqwest::Url,
    /// Each attempt's limit, from connecting to the last byte of the answer.
    pub call_timeout: Duration,
    pub retry: crate::upstream::RetryPolicy,
    pub breaker: crate::upstream::BreakerPolicy,
}

/// The rate limiter's settings (see `crate::ratelimit`).
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitSettings {
    /// UPSTASH_REDIS_REST_URL: the limiter every instance shares. Unset, the local runner
    /// limits in process (a Lambda function needs it: see `ratelimit::setup`).
    pub upstash_url: Option<reqwest::Url>,
    pub upstash_connect_timeout: Duration,
    /// One Upstash request's limit, and the time the shared limiter has to answer a check
    /// before the fallback does.
    pub upstash_timeout: Duration,
    /// Mercado Livre's global budget (2000/h) and each seller account's (500/h).
    pub mercadolivre_global: crate::ratelimit::Rule,
    pub mercadolivre_account: crate::ratelimit::Rule,
    /// The share of each budget one instance may use while Redis is unreachable.
    pub fallback_share: f64,
    /// While on the fallback, how long before asking Redis again.
    pub fallback_retry_after: Duration,
}

/// Signing in with Mercado Livre and the sessions it creates (see `crate::auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthSettings {
    /// MERCADOLIVRE_CLIENT_ID: the application's id (its secret is a secret).
    pub client_id: Option<String>,
    /// MERCADOLIVRE_REDIRECT_URI: our GET /auth/callback as registered with the app.
    pub redirect_uri: Option<reqwest::Url>,
    /// Origins (scheme://host[:port]) a login's `return_to` may point at, besides our
    /// own relative paths.
    pub return_to_origins: Vec<String>,
    /// Where a login returns when it names no `return_to`.
    pub default_return_to: String,
    pub session_ttl: Duration,
    /// The `iss` of our session tokens (and half of a revocation's key).
    pub issuer: String,
    /// Grants expiring within this window are refreshed (Mercado Livre: at most 10 min).
    pub refresh_window: Duration,
    /// How long a refresher holds a grant while it spends the refresh token.
    pub refresh_lease: Duration,
    /// The local runner with no Mercado Livre configured: it serves the sandbox provider
    /// and points the client at it.
    pub sandbox: bool,
}

impl AuthSettings {
    /// The application's client id, for the functions that need it at init.
    pub fn require_client_id(&self) -> Result<&str, ConfigError> {
        self.client_id
            .as_deref()
            .ok_or(ConfigError::Missing("MERCADOLIVRE_CLIENT_ID"))
    }

    pub fn require_redirect_uri(&self) -> Result<&reqwest::Url, ConfigError> {
        self.redirect_uri
            .as_ref()
            .ok_or(ConfigError::Missing("MERCADOLIVRE_REDIRECT_URI"))
    }
}

/// Secret values by name. Never printed: `SecretString`'s Debug shows nothing.
#[derive(Clone, Debug, Default)]
pub struct Secrets(BTreeMap<&'static str, SecretString>);

/// Every secret sellerhub knows. Each may come from the environment or the secret.
pub const SECRET_NAMES: &[&str] = &[
    "SESSION_SIGNING_KEY",
    "GRANT_ENCRYPTION_KEY",
    "CURSOR_SIGNING_KEY",
    "MERCADOLIVRE_CLIENT_SECRET",
    "META_APP_SECRET",
    "UPSTASH_REDIS_REST_TOKEN",
];

impl Secrets {
    /// Sets `name` unless it is already set (the local runner's generated secrets never
    /// override configured ones).
    pub fn insert_default(&mut self, name: &'static str, value: SecretString) {
        self.0.entry(name).or_insert(value);
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.0.get(name)
    }

    /// The secret, or an error naming it: for functions to call at init for each secret
    /// they need.
    pub fn require(&self, name: &'static str) -> Result<&SecretString, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub version: &'static str,
    pub store: StoreBackend,
    pub queue: QueueBackend,
    /// Where the embedded store and queue keep their file.
    pub data_dir: PathBuf,
    /// The local runner's listening address (127.0.0.1:3000 by default).
    pub listen: SocketAddr,
    pub health: HealthSettings,
    pub mercadolivre: MercadoLivreSettings,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    /// The Secrets Manager secret to read at init, if any.
    pub secrets_arn: Option<String>,
    pub secrets: Secrets,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("SECRETS_ARN: {0}")]
    Secret(String),
}

/// Reads typed variables from a lookup, so tests pass a map instead of mutating the
/// process environment.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// A count of at least 1.
    fn count(&self, name: &'static str, default: u32) -> Result<u32, ConfigError> {
        match self.parsed(name, default)? {
            0 => Err(ConfigError::Invalid {
                name,
                reason: "must be at least 1".into(),
            }),
            count => Ok(count),
        }
    }

    /// A duration in whole milliseconds, at least 1.
    fn millis(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        match self.parsed(name, default)? {
            0 => Err(ConfigError::Invalid {
                name,
                reason: "must be at least 1".into(),
            }),
            millis => Ok(Duration::from_millis(millis)),
        }
    }

    fn text(&self, name: &'static str) -> Option<String> {
        (self.0)(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.text(name).ok_or(ConfigError::Missing(name))
    }

    fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|error: T::Err| ConfigError::Invalid {
                name,
                reason: format!("{text:?}: {error}"),
            }),
        }
    }

    fn choice(
        &self,
        name: &'static str,
        default: &'static str,
        allowed: &[&'static str],
    ) -> Result<&'static str, ConfigError> {
        let Some(text) = self.text(name) else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|choice| choice.eq_ignore_ascii_case(&text))
            .copied()
            .ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("{text:?}, expected one of {}", allowed.join(", ")),
            })
    }
}

impl Config {
    /// The configuration from the process environment plus, when SECRETS_ARN is set, the
    /// secret it names.
    pub async fn load(profile: Profile) -> Result<Self, ConfigError> {
        let mut config = Self::from_vars(profile, |name| std::env::var(name).ok())?;
        if let Some(arn) = config.secrets_arn.clone() {
            config
                .load_secret(&crate::aws::sdk_config().await, &arn)
                .await?;
        }
        Ok(config)
    }

    /// Adds the secrets held by the Secrets Manager secret `arn` (see
    /// [`Self::merge_secret_json`]).
    pub async fn load_secret(
        &mut self,
        sdk: &aws_config::SdkConfig,
        arn: &str,
    ) -> Result<(), ConfigError> {
        let client = aws_sdk_secretsmanager::Client::new(sdk);
        let secret = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|error| {
                ConfigError::Secret(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(error).to_string(),
                )
            })?;
        let text = secret
            .secret_string()
            .ok_or_else(|| ConfigError::Secret("the secret has no string value".into()))?;
        self.merge_secret_json(text)
    }

    /// The configuration from variables looked up with `var`.
    pub fn from_vars(
        profile: Profile,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let vars = Vars(var);
        // A Lambda function always uses the AWS services; the local runner chooses.
        let (store_backend, queue_backend) = match profile {
            Profile::Lambda => ("dynamodb", "sqs"),
            Profile::Local => (
                vars.choice("STORE_BACKEND", "embedded", &["embedded", "dynamodb"])?,
                vars.choice("QUEUE_BACKEND", "embedded", &["embedded", "sqs"])?,
            ),
        };

        let store = match store_backend {
            "dynamodb" => StoreBackend::DynamoDb {
                table: vars.required("TABLE_NAME")?,
            },
            _ => StoreBackend::Embedded,
        };
        let queue = match queue_backend {
            "sqs" => QueueBackend::Sqs {
                queue_url: vars.required("WEBHOOK_QUEUE_URL")?,
                dead_letter_url: vars.text("WEBHOOK_DLQ_URL"),
            },
            _ => QueueBackend::Embedded {
                max_receive_count: vars.count("QUEUE_MAX_RECEIVE_COUNT", 5)?,
            },
        };

        let host: std::net::IpAddr = vars.parsed("HOST", std::net::IpAddr::from([127, 0, 0, 1]))?;
        let port: u16 = vars.parsed("PORT", 3000)?;

        let health = HealthSettings {
            cache_for: Duration::from_millis(vars.parsed("HEALTH_CACHE_MS", 5000u64)?),
            max_waiting: vars.parsed("HEALTH_MAX_WAITING", 1000u64)?,
            max_dead_letters: vars.parsed("HEALTH_MAX_DEAD_LETTERS", 100u64)?,
        };

        let mercadolivre = mercadolivre_settings(&vars)?;
        let rate_limit = rate_limit_settings(&vars)?;
        let auth = auth_settings(&vars, profile)?;

        let mut secrets = Secrets::default();
        for name in SECRET_NAMES {
            if let Some(value) = vars.text(name) {
                secrets.0.insert(name, SecretString::from(value));
            }
        }

        Ok(Self {
            version: env!("CARGO_PKG_VERSION"),
            store,
            queue,
            data_dir: PathBuf::from(vars.text("DATA_DIR").unwrap_or_else(|| ".data".into())),
            listen: SocketAddr::new(host, port),
            health,
            mercadolivre,
            rate_limit,
            auth,
            secrets_arn: vars.text("SECRETS_ARN"),
            secrets,
        })
    }

    /// Adds the secrets of a Secrets Manager secret's JSON text; its values win over the
    /// environment's. A name sellerhub does not know is an error (a typo would otherwise
    /// leave a secret silently missing).
    pub fn merge_secret_json(&mut self, text: &str) -> Result<(), ConfigError> {
        let values: BTreeMap<String, String> = serde_json::from_str(text).map_err(|_| {
            ConfigError::Secret("the secret is not a JSON object of strings".into())
        })?;
        for (name, value) in values {
            let Some(known) = SECRET_NAMES.iter().find(|known| **known == name) else {
                return Err(ConfigError::Secret(format!("unknown secret name {name:?}")));
            };
            self.secrets.0.insert(known, SecretString::from(value));
        }
        Ok(())
    }
}

fn mercadolivre_settings<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<MercadoLivreSettings, ConfigError> {
    let retry = crate::upstream::RetryPolicy {
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
        api_url: base_url(vars, "MERCADOLIVRE_API_URL", "https://api.mercadolibre.com")?,
        auth_url: base_url(
            vars,
            "MERCADOLIVRE_AUTH_URL",
            "https://auth.mercadolivre.com.br",
        )?,
        call_timeout: vars.millis("MERCADOLIVRE_TIMEOUT_MS", 5000)?,
        retry,
        breaker: crate::upstream::BreakerPolicy {
            failure_threshold: vars.count("MERCADOLIVRE_BREAKER_FAILURES", 5)?,
            open_for: vars.millis("MERCADOLIVRE_BREAKER_OPEN_MS", 30_000)?,
            success_threshold: vars.count("MERCADOLIVRE_BREAKER_SUCCESSES", 3)?,
        },
    })
}

fn rate_limit_settings<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<RateLimitSettings, ConfigError> {
    let hourly = |limit_name: &'static str,
                  limit: u32,
                  burst_name: &'static str,
                  burst: u32|
     -> Result<crate::ratelimit::Rule, ConfigError> {
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
        Ok(crate::ratelimit::Rule::new(
            limit,
            Duration::from_secs(3600),
            burst,
        ))
    };
    let fallback_share: f64 = vars.parsed("RATE_LIMIT_FALLBACK_SHARE", 0.1)?;
    if !(fallback_share > 0.0 && fallback_share <= 1.0) {
        return Err(ConfigError::Invalid {
            name: "RATE_LIMIT_FALLBACK_SHARE",
            reason: format!("{fallback_share}: must be above 0 and at most 1"),
        });
    }
    let upstash_url = match vars.text("UPSTASH_REDIS_REST_URL") {
        Some(_) => Some(base_url(vars, "UPSTASH_REDIS_REST_URL", "")?),
        None => None,
    };
    Ok(RateLimitSettings {
        upstash_url,
        upstash_connect_timeout: vars.millis("UPSTASH_CONNECT_TIMEOUT_MS", 300)?,
        upstash_timeout: vars.millis("UPSTASH_TIMEOUT_MS", 1000)?,
        // Bursts: see README's configuration table (a burst lowers the sustained rate).
        mercadolivre_global: hourly(
            "RATE_LIMIT_ML_GLOBAL_PER_HOUR",
            2000,
            "RATE_LIMIT_ML_GLOBAL_BURST",
            100,
        )?,
        mercadolivre_account: hourly(
            "RATE_LIMIT_ML_ACCOUNT_PER_HOUR",
            500,
            "RATE_LIMIT_ML_ACCOUNT_BURST",
            20,
        )?,
        fallback_share,
        fallback_retry_after: vars.millis("RATE_LIMIT_FALLBACK_RETRY_MS", 5000)?,
    })
}

fn auth_settings<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    profile: Profile,
) -> Result<AuthSettings, ConfigError> {
    let redirect_uri = match vars.text("MERCADOLIVRE_REDIRECT_URI") {
        Some(_) => Some(base_url(vars, "MERCADOLIVRE_REDIRECT_URI", "")?),
        None => None,
    };
    let mut return_to_origins = Vec::new();
    for text in vars
        .text("AUTH_RETURN_TO_ORIGINS")
        .unwrap_or_default()
        .split(',')
    {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let invalid = |reason: &str| ConfigError::Invalid {
            name: "AUTH_RETURN_TO_ORIGINS",
            reason: format!("{text:?}: {reason}"),
        };
        let url = reqwest::Url::parse(text).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() || url.path() != "/" {
            return Err(invalid(
                "expected an origin such as https://app.example.com",
            ));
        }
        return_to_origins.push(url.origin().ascii_serialization());
    }
    let default_return_to = vars
        .text("AUTH_DEFAULT_RETURN_TO")
        .unwrap_or_else(|| "/v1/me".into());
    if !crate::auth::return_to::is_local_path(&default_return_to) {
        return Err(ConfigError::Invalid {
            name: "AUTH_DEFAULT_RETURN_TO",
            reason: format!("{default_return_to:?}: expected a path such as /app"),
        });
    }
    let refresh_window = Duration::from_secs(vars.parsed("GRANT_REFRESH_WINDOW_SECS", 600u64)?);
    Ok(AuthSettings {
        client_id: vars.text("MERCADOLIVRE_CLIENT_ID"),
        redirect_uri,
        return_to_origins,
        default_return_to,
        session_ttl: Duration::from_secs(u64::from(vars.count("SESSION_TTL_SECS", 43_200)?)),
        issuer: vars
            .text("SESSION_ISSUER")
            .unwrap_or_else(|| "sellerhub".into()),
        refresh_window,
        refresh_lease: vars.millis("GRANT_REFRESH_LEASE_MS", 60_000)?,
        sandbox: profile == Profile::Local && vars.text("MERCADOLIVRE_API_URL").is_none(),
    })
}

/// An http(s) base URL without query or fragment.
fn base_url<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    name: &'static str,
    default: &str,
) -> Result<reqwest::Url, ConfigError> {
    let text = vars.text(name).unwrap_or_else(|| default.to_owned());
    let invalid = |reason: &str| ConfigError::Invalid {
        name,
        reason: format!("{text:?}: {reason}"),
    };
    let url = reqwest::Url::parse(&text).map_err(|error| invalid(&error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(invalid("expected an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a base URL has no query or fragment"));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

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
        assert_eq!(settings.retry, crate::upstream::RetryPolicy::default());
        assert_eq!(settings.breaker, crate::upstream::BreakerPolicy::default());

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
            .merge_secret_json(
                r#"{"SESSION_SIGNING_KEY": "from-secret", "CURSOR_SIGNING_KEY": "c"}"#,
            )
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
            config.merge_secret_json(r#"{"SESION_KEY": "x"}"#),
            Err(ConfigError::Secret(_))
        ));
        assert!(matches!(
            config.merge_secret_json("not json"),
            Err(ConfigError::Secret(_))
        ));
    }

    #[test]
    fn rate_limits_default_to_mercado_livres_budgets_and_no_shared_limiter() {
        let hour = Duration::from_secs(3600);
        let settings = config(Profile::Local, &[]).unwrap().rate_limit;
        assert_eq!(settings.upstash_url, None);
        assert_eq!(
            settings.mercadolivre_global,
            crate::ratelimit::Rule::new(2000, hour, 100)
        );
        assert_eq!(
            settings.mercadolivre_account,
            crate::ratelimit::Rule::new(500, hour, 20)
        );
        assert_eq!(settings.fallback_share, 0.1);
        assert_eq!(settings.upstash_connect_timeout, Duration::from_millis(300));
        assert_eq!(settings.upstash_timeout, Duration::from_millis(1000));
        assert_eq!(settings.fallback_retry_after, Duration::from_millis(5000));

        let settings = config(
            Profile::Lambda,
            &[
                ("TABLE_NAME", "t"),
                ("WEBHOOK_QUEUE_URL", "q"),
                ("UPSTASH_REDIS_REST_URL", "https://eu1-x.upstash.io"),
                ("RATE_LIMIT_ML_ACCOUNT_PER_HOUR", "100"),
                ("RATE_LIMIT_ML_ACCOUNT_BURST", "5"),
                ("RATE_LIMIT_FALLBACK_SHARE", "0.25"),
            ],
        )
        .unwrap()
        .rate_limit;
        assert_eq!(
            settings.upstash_url.map(String::from).as_deref(),
            Some("https://eu1-x.upstash.io/")
        );
        assert_eq!(
            settings.mercadolivre_account,
            crate::ratelimit::Rule::new(100, hour, 5)
        );
        assert_eq!(settings.fallback_share, 0.25);
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
