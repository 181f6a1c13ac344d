//! The OAuth calls: trading an authorization code (with its PKCE verifier) for a grant,
//! refreshing a grant, and asking whose grant it is. They go through the same pipeline
//! as every other call (breaker, limiter, timeout, classification), as POSTs: repeated
//! only when the request never left, because codes and refresh tokens are single-use.
//!
//! Tokens, secrets, codes and verifiers are never formatted into an error or a log line:
//! the errors name the operation and the missing or wrong field, never a value.

use std::time::Duration;

use http::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::client::{Auth, Body, Budget, Call, FormField, MercadoLivre};
use super::error::UpstreamError;
use crate::telemetry::redact::REDACTED;

/// The token endpoint, under the API base.
const TOKEN_PATH: &str = "/oauth/token";

/// The scope that brings a refresh token: without it a grant dies with its access token.
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The application's OAuth client credentials. Debug never shows the secret.
#[derive(Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &REDACTED)
            .finish()
    }
}

/// A token response: POST /oauth/token. Debug never shows either token.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
    /// How long the access token lives from when it was issued (`expires_in` seconds).
    pub expires_in: Duration,
    /// The granted scopes (`"offline_access read write"` split on spaces).
    pub scopes: Vec<String>,
    /// The Mercado Livre user (seller account) the grant is for.
    pub user_id: u64,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &REDACTED)
            .field("refresh_token", &REDACTED)
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .field("user_id", &self.user_id)
            .finish()
    }
}

/// GET /users/me (the fields we keep).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SellerIdentity {
    pub id: u64,
    pub nickname: String,
    #[serde(default)]
    pub site_id: Option<String>,
    #[serde(default)]
    pub country_id: Option<String>,
}

impl MercadoLivre {
    /// authorization_code grant with PKCE, spending the sign-in share of the global
    /// budget (the account is not known yet). Not repeated once the request may have
    /// been sent: a code is single-use.
    pub async fn exchange_code(
        &self,
        credentials: &ClientCredentials,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<TokenSet, UpstreamError> {
        const OPERATION: &str = "ExchangeCode";
        let fields = [
            FormField::plain("grant_type", "authorization_code"),
            FormField::plain("client_id", &credentials.client_id),
            FormField::secret("client_secret", credentials.client_secret.expose_secret()),
            FormField::secret("code", code),
            FormField::plain("redirect_uri", redirect_uri),
            FormField::secret("code_verifier", code_verifier),
        ];
        self.token_call(OPERATION, &fields, None, Budget::SignIn)
            .await
    }

    /// refresh_token grant for `seller_id` (global + account budgets). Refresh tokens are
    /// single-use: never retried once the request may have been sent. A grant answered
    /// for another user than `seller_id` is refused as malformed.
    pub async fn refresh_grant(
        &self,
        credentials: &ClientCredentials,
        refresh_token: &SecretString,
        seller_id: u64,
    ) -> Result<TokenSet, UpstreamError> {
        const OPERATION: &str = "RefreshGrant";
        let fields = [
            FormField::plain("grant_type", "refresh_token"),
            FormField::plain("client_id", &credentials.client_id),
            FormField::secret("client_secret", credentials.client_secret.expose_secret()),
            FormField::secret("refresh_token", refresh_token.expose_secret()),
        ];
        let tokens = self
            .token_call(OPERATION, &fields, Some(seller_id), Budget::Work)
            .await?;
        if tokens.user_id != seller_id {
            return Err(UpstreamError::Malformed(format!(
                "{OPERATION}: the refreshed grant is for user {}, not {seller_id}",
                tokens.user_id
            )));
        }
        Ok(tokens)
    }

    /// GET /users/me with the access token a sign-in just obtained: who signed in. It
    /// spends the sign-in share as well as the account's budget.
    pub async fn users_me(
        &self,
        access_token: &SecretString,
        seller_id: u64,
    ) -> Result<SellerIdentity, UpstreamError> {
        let url = self.url("/users/me")?;
        let call = Call {
            budget: Budget::SignIn,
            ..Self::get_call("UsersMe", access_token, seller_id, url)
        };
        self.call(&call).await
    }

    /// POST the form to the token endpoint and read the grant it answers.
    async fn token_call(
        &self,
        operation: &'static str,
        fields: &[FormField<'_>],
        seller_id: Option<u64>,
        budget: Budget,
    ) -> Result<TokenSet, UpstreamError> {
        let url = self.url(TOKEN_PATH)?;
        let body = self
            .call_bytes(&Call {
                operation,
                method: Method::POST,
                url,
                auth: Auth::TokenEndpoint,
                seller_id,
                budget,
                body: Body::Form(fields),
            })
            .await?;
        parse_token_response(operation, &body)
    }
}

/// The token response as sent (token-response.json): every field optional here so that a
/// missing one is reported by name, without serde's messages (which may quote the body).
#[derive(Deserialize)]
struct WireTokens {
    access_token: Option<SecretString>,
    refresh_token: Option<SecretString>,
    token_type: Option<String>,
    expires_in: Option<u64>,
    scope: Option<String>,
    user_id: Option<u64>,
}

/// Reads a token response. Errors never include the body: it holds tokens.
fn parse_token_response(operation: &str, body: &[u8]) -> Result<TokenSet, UpstreamError> {
    let malformed = |what: &str| UpstreamError::Malformed(format!("{operation}: {what}"));
    let wire: WireTokens = serde_json::from_slice(body).map_err(|error| {
        // The category and position only: serde's text may quote a token.
        malformed(&format!(
            "the token response is not the expected JSON ({:?} error at line {} column {})",
            error.classify(),
            error.line(),
            error.column()
        ))
    })?;
    let present =
        |token: Option<SecretString>| token.filter(|token| !token.expose_secret().is_empty());
    let scopes: Vec<String> = wire
        .scope
        .as_deref()
        .unwrap_or_default()
        .split(' ')
        .filter(|scope| !scope.is_empty())
        .map(str::to_owned)
        .collect();
    let access_token = present(wire.access_token)
        .ok_or_else(|| malformed("the token response has no access_token"))?;
    let Some(refresh_token) = present(wire.refresh_token) else {
        // Mercado Livre issues refresh tokens only to applications with offline_access.
        if !scopes.iter().any(|scope| scope == OFFLINE_ACCESS) {
            return Err(UpstreamError::MissingScope(OFFLINE_ACCESS));
        }
        return Err(malformed("the token response has no refresh_token"));
    };
    let user_id = wire
        .user_id
        .ok_or_else(|| malformed("the token response has no user_id"))?;
    let expires_in = wire
        .expires_in
        .ok_or_else(|| malformed("the token response has no expires_in"))?;
    if !wire
        .token_type
        .is_some_and(|token_type| token_type.eq_ignore_ascii_case("bearer"))
    {
        return Err(malformed("the token response's token_type is not Bearer"));
    }
    Ok(TokenSet {
        access_token,
        refresh_token,
        expires_in: Duration::from_secs(expires_in),
        scopes,
        user_id,
    })
}
