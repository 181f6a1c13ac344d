//! `POST /oauth/token`: authorization codes and refresh tokens exchanged for a new token
//! pair, with the client authenticated by `client_id` + `client_secret` in the body (form
//! or JSON, as Mercado Livre accepts both).

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aws_lc_rs::constant_time::verify_slices_are_equal;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use secrecy::ExposeSecret;
use serde::Serialize;

use super::params::{BodyKind, ParamError, Params};
use super::state::{Rejection, Seller, TokenPair};
use super::{Sandbox, credentials, pkce, reply};

const SCOPE: &str = "offline_access read write";

enum TokenError {
    InvalidRequest(String),
    InvalidClient,
    UnsupportedGrantType,
    InvalidGrant(Rejection),
    Unavailable,
}

impl From<ParamError> for TokenError {
    fn from(error: ParamError) -> Self {
        Self::InvalidRequest(error.to_string())
    }
}

#[derive(Clone, Copy)]
enum GrantType {
    AuthorizationCode,
    RefreshToken,
}

impl GrantType {
    fn name(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// The success body, field for field as Mercado Livre sends it.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    scope: &'static str,
    user_id: u64,
    refresh_token: &'a str,
}

pub(super) async fn grant(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match exchange(&sandbox, &headers, &body) {
        Ok(tokens) => {
            let body = TokenResponse {
                access_token: &tokens.access_token,
                token_type: "Bearer",
                expires_in: sandbox.settings.access_token_ttl.as_secs(),
                scope: SCOPE,
                user_id: tokens.seller.user_id,
                refresh_token: &tokens.refresh_token,
            };
            reply::json(StatusCode::OK, &body)
        }
        Err(error) => refuse(&sandbox, error),
    }
}

fn exchange(sandbox: &Sandbox, headers: &HeaderMap, body: &[u8]) -> Result<TokenPair, TokenError> {
    let params = match BodyKind::of(headers) {
        Some(BodyKind::Form) => Params::from_urlencoded(body),
        Some(BodyKind::Json) => Params::from_json(body).ok_or_else(|| {
            TokenError::InvalidRequest(
                "the body must be a JSON object of strings and numbers".to_owned(),
            )
        })?,
        None => {
            return Err(TokenError::InvalidRequest(
                "the body must be application/x-www-form-urlencoded or application/json".to_owned(),
            ));
        }
    };
    let grant_type = params.required("grant_type")?;
    let client_id = params.required("client_id")?;
    let client_secret = params.required("client_secret")?;
    authenticate(sandbox, client_id, client_secret)?;

    let (grant_type, seller) = match grant_type {
        "authorization_code" => (
            GrantType::AuthorizationCode,
            redeem_code(sandbox, &params, client_id)?,
        ),
        "refresh_token" => (
            GrantType::RefreshToken,
            redeem_refresh_token(sandbox, &params, client_id)?,
        ),
        _ => return Err(TokenError::UnsupportedGrantType),
    };
    issue(sandbox, client_id, seller, grant_type)
}

fn authenticate(sandbox: &Sandbox, client_id: &str, client_secret: &str) -> Result<(), TokenError> {
    let expected = sandbox.settings.client_secret.expose_secret();
    let secret_matches =
        verify_slices_are_equal(client_secret.as_bytes(), expected.as_bytes()).is_ok();
    if client_id == sandbox.settings.client_id && secret_matches {
        Ok(())
    } else {
        Err(TokenError::InvalidClient)
    }
}

fn redeem_code(sandbox: &Sandbox, params: &Params, client_id: &str) -> Result<Seller, TokenError> {
    let code = params.required("code")?;
    let redirect_uri = params.required("redirect_uri")?;
    let verifier = params.required("code_verifier")?;
    let grant = sandbox
        .registry()
        .spend_code(code, Instant::now())
        .map_err(TokenError::InvalidGrant)?;
    if grant.client_id != client_id {
        return Err(TokenError::InvalidGrant("code issued to another client"));
    }
    if grant.redirect_uri != redirect_uri {
        return Err(TokenError::InvalidGrant(
            "redirect_uri differs from the authorization request",
        ));
    }
    if !pkce::verifier_matches(verifier, &grant.code_challenge) {
        return Err(TokenError::InvalidGrant(
            "code_verifier does not match the code_challenge",
        ));
    }
    Ok(grant.seller)
}

fn redeem_refresh_token(
    sandbox: &Sandbox,
    params: &Params,
    client_id: &str,
) -> Result<Seller, TokenError> {
    let refresh_token = params.required("refresh_token")?;
    sandbox
        .registry()
        .spend_refresh_token(refresh_token, client_id)
        .map_err(TokenError::InvalidGrant)
}

fn issue(
    sandbox: &Sandbox,
    client_id: &str,
    seller: Seller,
    grant_type: GrantType,
) -> Result<TokenPair, TokenError> {
    let random = &sandbox.random;
    let user_id = seller.user_id;
    let access_token =
        credentials::access_token(random, &sandbox.app_number, user_id, SystemTime::now())
            .map_err(|_| TokenError::Unavailable)?;
    let refresh_token =
        credentials::refresh_token(random, user_id).map_err(|_| TokenError::Unavailable)?;
    let now = Instant::now();
    let tokens = TokenPair {
        client_id: client_id.to_owned(),
        seller,
        access_token,
        access_expires_at: now + sandbox.settings.access_token_ttl,
        refresh_token,
    };

    let mut registry = sandbox.registry();
    registry.store_tokens(&tokens, now);
    match grant_type {
        GrantType::AuthorizationCode => registry.stats.codes_redeemed += 1,
        GrantType::RefreshToken => registry.stats.refreshes += 1,
    }
    drop(registry);
    tracing::info!(
        user_id,
        grant_type = grant_type.name(),
        outcome = "issued",
        "sandbox token"
    );
    Ok(tokens)
}

fn refuse(sandbox: &Sandbox, error: TokenError) -> Response {
    let (status, code, message) = match &error {
        TokenError::InvalidRequest(message) => {
            (StatusCode::BAD_REQUEST, "invalid_request", message.as_str())
        }
        TokenError::InvalidClient => (
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "invalid client_id or client_secret",
        ),
        TokenError::UnsupportedGrantType => (
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
        // One message whatever the reason, as Mercado Livre does.
        TokenError::InvalidGrant(_) => (
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Error validating grant. Your authorization code or refresh token may be expired \
             or it was already used",
        ),
        TokenError::Unavailable => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "no random numbers are available; try again",
        ),
    };
    if let TokenError::InvalidGrant(reason) = error {
        sandbox.registry().stats.rejected_grants += 1;
        tracing::info!(reason, outcome = "invalid_grant", "sandbox token");
    } else {
        tracing::info!(outcome = code, "sandbox token");
    }
    reply::error(status, code, message)
}
