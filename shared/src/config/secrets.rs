//! The secrets: from the environment, and from one Secrets Manager secret (a JSON object
//! of secret names to values) when SECRETS_ARN is set. Never printed: `SecretString`'s
//! Debug shows nothing.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::ConfigError;

/// Secret values by name.
#[derive(Clone, Debug, Default)]
pub struct Secrets(BTreeMap<&'static str, SecretString>);

/// Every secret sellerhub knows. Each may come from the environment or the secret.
pub const SECRET_NAMES: &[&str] = &[
    "SESSION_SIGNING_KEY",
    "GRANT_ENCRYPTION_KEY",
    "CURSOR_SIGNING_KEY",
    "MERCADOLIVRE_CLIENT_SECRET",
    "META_APP_SECRET",
    "META_VERIFY_TOKEN",
    "UPSTASH_REDIS_REST_TOKEN",
];

impl Secrets {
    /// The secrets set in the environment `text` reads.
    pub(super) fn from_env(text: impl Fn(&'static str) -> Option<String>) -> Self {
        let mut secrets = Self::default();
        for name in SECRET_NAMES {
            if let Some(value) = text(name) {
                secrets.0.insert(name, SecretString::from(value));
            }
        }
        secrets
    }

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

    /// Adds the secrets of a Secrets Manager secret's JSON text; its values win over the
    /// environment's. A name sellerhub does not know is an error (a typo would otherwise
    /// leave a secret silently missing).
    pub fn merge_json(&mut self, text: &str) -> Result<(), ConfigError> {
        let values: BTreeMap<String, String> = serde_json::from_str(text).map_err(|_| {
            ConfigError::Secret("the secret is not a JSON object of strings".into())
        })?;
        for (name, value) in values {
            let Some(known) = SECRET_NAMES.iter().find(|known| **known == name) else {
                return Err(ConfigError::Secret(format!("unknown secret name {name:?}")));
            };
            self.0.insert(known, SecretString::from(value));
        }
        Ok(())
    }

    /// Adds the secrets held by the Secrets Manager secret `arn` (see [`Self::merge_json`]).
    pub async fn load(
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
        self.merge_json(text)
    }
}
