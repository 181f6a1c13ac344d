//! Who is calling: the session token from the `Authorization: Bearer` header or the
//! session cookie, verified, and checked against the revocation list. There is no
//! fallback user: no valid token is a 401, and a revocation list that cannot be read is
//! a 503 (fail secure).

use http::header::{AUTHORIZATION, COOKIE};
use lambda_http::Request;

use super::session_token::Claims;
use super::sessions::Sessions;
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
}

impl Authenticator {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    pub async fn authenticate(&self, request: &Request) -> Result<Principal, ApiError> {
        let token = presented_token(request).ok_or(ApiError::Unauthorized)?;
        let claims = self.sessions.keys().verify(&token).map_err(|error| {
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
pub fn presented_token(request: &Request) -> Option<String> {
    let bearer = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|token| !token.is_empty());
    bearer.or_else(|| super::cookie::session_from(request.headers().get_all(COOKIE).iter()))
}
