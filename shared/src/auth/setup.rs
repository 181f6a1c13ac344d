//! Building the auth pieces from the configuration, once at init: the same for every
//! function that needs them and for the local runner.

use std::sync::Arc;

use super::{GrantCipher, Grants, SessionKeys, Sessions, refresh::Refresher};
use crate::config::{Config, ConfigError};
use crate::ratelimit::Limiter;
use crate::store::Store;
use crate::upstream::{MercadoLivre, UpstreamLimits};

pub fn sessions(config: &Config, store: Arc<dyn Store>) -> Result<Sessions, ConfigError> {
    Ok(Sessions::new(
        store,
        Arc::new(SessionKeys::from_config(config)?),
        config.auth.session_ttl,
    ))
}

pub fn grants(config: &Config, store: Arc<dyn Store>) -> Result<Grants, ConfigError> {
    Ok(Grants::new(
        store,
        Arc::new(GrantCipher::from_config(config)?),
    ))
}

/// The Mercado Livre client on the process's one HTTP client, limited by `limiter`.
pub fn mercadolivre(
    config: &Config,
    limiter: Arc<dyn Limiter>,
) -> Result<Arc<MercadoLivre>, ConfigError> {
    let http = crate::outbound::shared_http_client(config.rate_limit.upstash_connect_timeout)
        .map_err(|error| ConfigError::Invalid {
            name: "MERCADOLIVRE_API_URL",
            reason: format!("building the HTTP client: {error}"),
        })?;
    Ok(Arc::new(MercadoLivre::new(
        http,
        &config.mercadolivre,
        UpstreamLimits::from(&config.rate_limit),
        limiter,
    )))
}

pub fn refresher(
    config: &Config,
    store: Arc<dyn Store>,
    mercadolivre: Arc<MercadoLivre>,
) -> Result<Refresher, ConfigError> {
    Ok(Refresher::new(
        grants(config, store)?,
        mercadolivre,
        Arc::new(super::client_credentials(config)?),
        config.auth.refresh_window,
        config.auth.refresh_lease,
    ))
}
