//! Who is calling: the session token from the `Authorization: Bearer` header or the
//! session cookie, verified, and checked against the revocation list. There is no
//! fallback user: no valid token is a 401, and a revocation list that cannot be read is
//! a 503 (fail secure). Two session cookies in one request are a 400: which one the
//! browser meant cannot be known, and one may have been planted.

use std::sync::Arc;

use http::header::{AUTHORIZATION, COOKIE};
use lambda_http::Request;

use super::cookie::DuplicateCookie;
use super::session_token::Claims;
use super::sessions::Sessions;
use crate::clock::{Clock, SystemClock};
use crate::http::ApiError;

/// The signed-in caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub claims: Claims,
}

impl Principal {
    pub fn user(&self) -> &str {
        &self.claims.sub
    }

    pub fn tenant(&self) -> &str {
        &self.claims.tenant
    }
}

#[derive(Clone)]
pub struct Authenticator {
    sessions: Sessions,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    pub fn new(sessions: Sessions) -> Self {
        Self {
            sessions,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same authenticator judging tokens' times by `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub async fn authenticate(&self, request: &Request) -> Result<Principal, ApiError> {
        let token = presented_token(request)
            .map_err(|duplicate| ApiError::BadRequest(format!("{duplicate}.")))?
            .ok_or(ApiError::Unauthorized)?;
        let now = self.clock.now_secs();
        let claims = self.sessions.keys().verify(&token, now).map_err(|error| {
            tracing::info!(error = %error, "session token refused");
            ApiError::Unauthorized
        })?;
        let revoked = self
            .sessions
            .is_revoked(&claims)
            .await
            .map_err(|error| ApiError::Unavailable(format!("revocation check: {error}")))?;
        if revoked {
            tracing::info!(sid = %claims.sid, "revoked session token refused");
            return Err(ApiError::Unauthorized);
        }
        tracing::Span::current().record("tenant", claims.tenant.as_str());
        Ok(Principal { claims })
    }
}

/// The token a request presents: the Bearer header first, then the session cookie.
pub fn presented_token(request: &Request) -> Result<Option<String>, DuplicateCookie> {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    match bearer {
        Some(bearer) => Ok(Some(bearer)),
        None => super::cookie::session_from(request.headers().get_all(COOKIE).iter()),
    }
}
