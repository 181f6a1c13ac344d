//! POST /auth/logout: revokes the presented session token, deletes its session and
//! clears the cookie. Idempotent: without a valid token there is nothing to revoke and
//! the cookie is cleared all the same.

use http::StatusCode;
use http::header::{CACHE_CONTROL, SET_COOKIE};
use lambda_http::{Body, Request, Response};

use crate::auth::authenticate::presented_token;
use crate::auth::{Sessions, cookie};
use crate::http::ApiError;
use crate::store::now_epoch_seconds;

pub struct AuthLogout {
    sessions: Sessions,
}

impl AuthLogout {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }

    pub async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let claims =
            presented_token(&request).and_then(|token| self.sessions.keys().verify(&token).ok());
        if let Some(claims) = claims {
            self.sessions.end(&claims, now_epoch_seconds()).await?;
        }
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(SET_COOKIE, cookie::cleared_cookie())
            .header(CACHE_CONTROL, "no-store")
            .body(Body::Empty)
            .map_err(|error| ApiError::Internal(error.to_string()))
    }
}
