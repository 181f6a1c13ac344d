//! Signing in with Mercado Livre and the sessions it creates (see `crate::auth`).

use std::time::Duration;

use super::vars::Vars;
use super::{ConfigError, Profile};

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

/// A path on our own origin. `//host` and `/\host` are refused: browsers read them as
/// another host.
pub fn is_local_path(text: &str) -> bool {
    text.starts_with('/')
        && !text.starts_with("//")
        && !text.starts_with("/\\")
        && !text.chars().any(|c| c.is_control() || c == '\\')
        && text.len() <= 2048
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    profile: Profile,
) -> Result<AuthSettings, ConfigError> {
    let default_return_to = vars
        .text("AUTH_DEFAULT_RETURN_TO")
        .unwrap_or_else(|| "/v1/me".into());
    if !is_local_path(&default_return_to) {
        return Err(ConfigError::Invalid {
            name: "AUTH_DEFAULT_RETURN_TO",
            reason: format!("{default_return_to:?}: expected a path such as /app"),
        });
    }
    Ok(AuthSettings {
        client_id: vars.text("MERCADOLIVRE_CLIENT_ID"),
        redirect_uri: vars.optional_url("MERCADOLIVRE_REDIRECT_URI")?,
        return_to_origins: return_to_origins(vars)?,
        default_return_to,
        session_ttl: Duration::from_secs(u64::from(vars.count("SESSION_TTL_SECS", 43_200)?)),
        issuer: vars
            .text("SESSION_ISSUER")
            .unwrap_or_else(|| "sellerhub".into()),
        refresh_window: Duration::from_secs(vars.parsed("GRANT_REFRESH_WINDOW_SECS", 600u64)?),
        refresh_lease: vars.millis("GRANT_REFRESH_LEASE_MS", 60_000)?,
        sandbox: profile == Profile::Local && vars.text("MERCADOLIVRE_API_URL").is_none(),
    })
}

fn return_to_origins<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
) -> Result<Vec<String>, ConfigError> {
    let mut origins = Vec::new();
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
        origins.push(url.origin().ascii_serialization());
    }
    Ok(origins)
}
