//! GET /auth/login: the only way a login starts. Stores a one-time state and a PKCE
//! verifier, binds the login to this browser with a cookie, then sends the browser to
//! Mercado Livre's authorize page.

use std::sync::Arc;

use http::StatusCode;
use http::header::SET_COOKIE;
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::auth::cookie;
use crate::auth::login::{LOGIN_TTL, LoginRequest, Logins};
use crate::auth::return_to::ReturnToPolicy;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::{ApiError, EndpointLimit, client_ip, query_param, rate_limit, redirect};
use crate::ratelimit::Limiter;
use crate::services::Services;

pub struct AuthLogin {
    logins: Logins,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
    auth_url: reqwest::Url,
    client_id: String,
    redirect_uri: String,
    return_to: ReturnToPolicy,
}

impl HttpHandler for AuthLogin {
    const FUNCTION: &'static str = "auth-login";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        let config = services.config();
        Ok(Self {
            logins: Logins::new(services.store()),
            limiter: services.limiter()?,
            clock: services.clock(),
            auth_url: config.mercadolivre.auth_url.clone(),
            client_id: config.auth.require_client_id()?.to_owned(),
            redirect_uri: config.auth.require_redirect_uri()?.to_string(),
            return_to: ReturnToPolicy::new(&config.auth),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let ip = client_ip(&request).unwrap_or_else(|| "unknown".into());
        let now_ms = self.clock.now_ms();
        let limit_headers =
            rate_limit::enforce(self.limiter.as_ref(), &EndpointLimit::login(&ip), now_ms).await?;
        let return_to = self
            .return_to
            .check(query_param(&request, "return_to").as_deref())?;

        let login = LoginRequest::new();
        self.logins
            .save(&login, &return_to, self.clock.now_secs())
            .await?;
        let location = login.authorize_url(&self.auth_url, &self.client_id, &self.redirect_uri);

        let mut response = redirect(StatusCode::FOUND, location.as_str())?;
        response.headers_mut().insert(
            SET_COOKIE,
            cookie::login_cookie(&login.browser_binding(), LOGIN_TTL),
        );
        limit_headers.apply(response.headers_mut());
        Ok(response)
    }
}
