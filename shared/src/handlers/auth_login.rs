//! GET /auth/login: the only way a login starts. Stores a one-time state and a PKCE
//! verifier, then sends the browser to Mercado Livre's authorize page.

use std::sync::Arc;

use http::StatusCode;
use lambda_http::{Body, Request, Response};

use crate::auth::login::{self, LoginRequest};
use crate::auth::return_to::ReturnToPolicy;
use crate::config::{Config, ConfigError};
use crate::http::{ApiError, EndpointLimit, client_ip, query_param, rate_limit, redirect};
use crate::ratelimit::Limiter;
use crate::store::{Store, now_epoch_seconds};
use crate::upstream::Clock;

pub struct AuthLogin {
    store: Arc<dyn Store>,
    limiter: Arc<dyn Limiter>,
    auth_url: reqwest::Url,
    client_id: String,
    redirect_uri: String,
    return_to: ReturnToPolicy,
}

impl AuthLogin {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        limiter: Arc<dyn Limiter>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            store,
            limiter,
            auth_url: config.mercadolivre.auth_url.clone(),
            client_id: config.auth.require_client_id()?.to_owned(),
            redirect_uri: config.auth.require_redirect_uri()?.to_string(),
            return_to: ReturnToPolicy::new(&config.auth),
        })
    }

    pub async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let ip = client_ip(&request).unwrap_or_else(|| "unknown".into());
        let now_ms = crate::upstream::SystemClock.now_ms();
        let limit_headers =
            rate_limit::enforce(self.limiter.as_ref(), &EndpointLimit::login(&ip), now_ms).await?;
        let return_to = self
            .return_to
            .check(query_param(&request, "return_to").as_deref())?;

        let login = LoginRequest::new();
        login::save(self.store.as_ref(), &login, &return_to, now_epoch_seconds()).await?;
        let location = login.authorize_url(&self.auth_url, &self.client_id, &self.redirect_uri);

        let mut response = redirect(StatusCode::FOUND, location.as_str())?;
        limit_headers.apply(response.headers_mut());
        Ok(response)
    }
}
