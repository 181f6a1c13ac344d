//! POST /auth/logout: revokes the presented session token, deletes its session and
//! clears the cookie. Idempotent: without a valid token there is nothing to revoke and
//! the cookie is cleared all the same.

use std::sync::Arc;

use http::StatusCode;
use http::header::{CACHE_CONTROL, SET_COOKIE};
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::auth::authenticate::presented_token;
use crate::auth::{Sessions, cookie};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::ApiError;
use crate::services::Services;

pub struct AuthLogout {
    sessions: Sessions,
    clock: Arc<dyn Clock>,
}

impl HttpHandler for AuthLogout {
    const FUNCTION: &'static str = "auth-logout";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            sessions: services.sessions()?,
            clock: services.clock(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let now = self.clock.now_secs();
        // Two session cookies: which one to end cannot be known; the cookie is cleared.
        let claims = presented_token(&request)
            .ok()
            .flatten()
            .and_then(|token| self.sessions.keys().verify(&token, now).ok());
        if let Some(claims) = claims {
            self.sessions.end(&claims, now).await?;
        }
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(SET_COOKIE, cookie::cleared_cookie())
            .header(CACHE_CONTROL, "no-store")
            .body(Body::Empty)
            .map_err(|error| ApiError::Internal(error.to_string()))
    }
}
