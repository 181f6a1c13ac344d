//! GET /auth/callback: Mercado Livre sends the browser back here. The login's state is
//! taken exactly once, the code exchanged with its PKCE verifier, the seller identified,
//! their tenant found or made, the grant stored sealed, and a session started (ending
//! any earlier one of theirs). Webhooks parked while the grant needed reconnecting go
//! back on the queue. Any refusal is a clear problem, never a 500 with
//! internals.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::SET_COOKIE;
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::auth::grants::{GrantInfo, GrantStatus, GrantTokens, Grants};
use crate::auth::login::Logins;
use crate::auth::sessions::{SessionError, Sessions};
use crate::auth::tenants::Tenants;
use crate::auth::{cookie, user_id};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::{ApiError, query_param, redirect};
use crate::queue::Queue;
use crate::services::Services;
use crate::upstream::{ClientCredentials, MercadoLivre, UpstreamError};
use crate::webhooks::parking::Parking;

const START_AGAIN: &str = "Start again at /auth/login.";

pub struct AuthCallback {
    logins: Logins,
    tenants: Tenants,
    grants: Grants,
    sessions: Sessions,
    parking: Parking,
    webhook_queue: Arc<dyn Queue>,
    mercadolivre: Arc<MercadoLivre>,
    clock: Arc<dyn Clock>,
    credentials: ClientCredentials,
    redirect_uri: String,
    /// Our own paths live under this prefix (the API Gateway stage, `/prod`), read off
    /// the registered callback URL.
    base_path: String,
    session_ttl: Duration,
}

impl HttpHandler for AuthCallback {
    const FUNCTION: &'static str = "auth-callback";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        let config = services.config();
        let redirect_uri = config.auth.require_redirect_uri()?;
        Ok(Self {
            logins: Logins::new(services.store()),
            tenants: Tenants::new(services.store()),
            grants: services.grants()?,
            sessions: services.sessions()?,
            parking: Parking::new(services.store()),
            webhook_queue: services.webhook_queue(),
            mercadolivre: services.mercadolivre()?,
            clock: services.clock(),
            credentials: services.client_credentials()?,
            redirect_uri: redirect_uri.to_string(),
            base_path: base_path(redirect_uri),
            session_ttl: config.auth.session_ttl,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let state = query_param(&request, "state")
            .ok_or_else(|| ApiError::BadRequest(format!("The state is missing. {START_AGAIN}")))?;
        let Some(pending) = self.logins.take(&state).await? else {
            return Err(ApiError::BadRequest(format!(
                "This sign-in has expired or was already completed. {START_AGAIN}"
            )));
        };
        if let Some(error) = query_param(&request, "error") {
            return Err(provider_refusal(&error));
        }
        let code = query_param(&request, "code").ok_or_else(|| {
            ApiError::BadRequest(format!("The authorization code is missing. {START_AGAIN}"))
        })?;

        let tokens = self
            .mercadolivre
            .exchange_code(
                &self.credentials,
                &code,
                secrecy::ExposeSecret::expose_secret(&pending.verifier),
                &self.redirect_uri,
            )
            .await
            .map_err(sign_in_error)?;
        let seller = self
            .mercadolivre
            .users_me(&tokens.access_token, tokens.user_id)
            .await
            .map_err(sign_in_error)?;
        if seller.id != tokens.user_id {
            return Err(ApiError::BadGateway(format!(
                "/users/me answered seller {} for a token of seller {}",
                seller.id, tokens.user_id
            )));
        }

        let now = self.clock.now_secs();
        let tenant = self
            .tenants
            .for_seller(seller.id, &seller.nickname, now)
            .await?;
        let info = GrantInfo {
            tenant: tenant.clone(),
            seller_id: seller.id,
            nickname: seller.nickname.clone(),
            scopes: tokens.scopes.clone(),
            status: GrantStatus::Ok,
            expires_at: now
                .saturating_add(i64::try_from(tokens.expires_in.as_secs()).unwrap_or(i64::MAX)),
            lease_until: None,
            version: 0,
        };
        let grant_tokens = GrantTokens {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        };
        self.grants
            .connect(info, &grant_tokens)
            .await
            .map_err(|error| match error {
                crate::auth::grants::GrantError::Store(error) => ApiError::from(error),
                other => ApiError::Internal(other.to_string()),
            })?;
        let session = self
            .sessions
            .start(&user_id(seller.id), &tenant, now)
            .await
            .map_err(|error| match error {
                SessionError::Store(error) => ApiError::from(error),
                SessionError::Token(error) => ApiError::Internal(error.to_string()),
            })?;
        tracing::info!(tenant = %tenant, seller_id = seller.id, "seller signed in");
        // The sign-in succeeded whatever happens here: what is not replayed now stays
        // parked for the next sign-in.
        match self
            .parking
            .replay(&tenant, self.webhook_queue.as_ref())
            .await
        {
            Ok(0) => {}
            Ok(replayed) => tracing::info!(tenant = %tenant, replayed, "parked webhooks replayed"),
            Err(error) => {
                tracing::warn!(tenant = %tenant, error = %error, "replaying parked webhooks failed")
            }
        }

        let location = if pending.return_to.starts_with('/') {
            format!("{}{}", self.base_path, pending.return_to)
        } else {
            pending.return_to
        };
        let mut response = redirect(StatusCode::SEE_OTHER, &location)?;
        response.headers_mut().insert(
            SET_COOKIE,
            cookie::session_cookie(&session.token, self.session_ttl),
        );
        Ok(response)
    }
}

/// The path our routes hang under: the callback URL's path without `/auth/callback`.
fn base_path(redirect_uri: &reqwest::Url) -> String {
    let path = redirect_uri.path();
    path.strip_suffix("/auth/callback")
        .unwrap_or_default()
        .to_owned()
}

/// The provider's `error` parameter: the seller cancelled, or the request was refused.
fn provider_refusal(error: &str) -> ApiError {
    if error == "access_denied" {
        return ApiError::Denied(format!(
            "You did not authorize sellerhub on Mercado Livre. {START_AGAIN}"
        ));
    }
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    ApiError::BadRequest(format!(
        "Mercado Livre refused the sign-in ({code}). {START_AGAIN}"
    ))
}

fn sign_in_error(error: UpstreamError) -> ApiError {
    match error {
        UpstreamError::InvalidGrant => ApiError::BadRequest(format!(
            "Mercado Livre did not accept this sign-in: the code is invalid, expired or \
             already used. {START_AGAIN}"
        )),
        UpstreamError::RateLimited { .. }
        | UpstreamError::Unavailable { .. }
        | UpstreamError::Limiter(_) => ApiError::Unavailable(error.to_string()),
        UpstreamError::Unauthorized
        | UpstreamError::NotFound
        | UpstreamError::Rejected { .. }
        | UpstreamError::Malformed(_)
        | UpstreamError::InvalidPath(_) => ApiError::BadGateway(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_paths_are_under_the_stage_the_callback_is_registered_at() {
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        assert_eq!(
            base_path(&url(
                "https://abc.execute-api.sa-east-1.amazonaws.com/prod/auth/callback"
            )),
            "/prod"
        );
        assert_eq!(base_path(&url("https://api.example.com/auth/callback")), "");
        assert_eq!(base_path(&url("http://127.0.0.1:3000/auth/callback")), "");
    }

    #[test]
    fn provider_errors_are_clear_and_carry_no_internals() {
        assert_eq!(
            provider_refusal("access_denied").status(),
            StatusCode::FORBIDDEN
        );
        let refused = provider_refusal("server_error<script>");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert!(!refused.to_string().contains('<'), "{refused}");

        let timeout = sign_in_error(UpstreamError::Unavailable {
            cause: crate::upstream::UnavailableCause::Timeout,
            retry_after: None,
        });
        assert_eq!(timeout.status(), StatusCode::SERVICE_UNAVAILABLE);
        let invalid = sign_in_error(UpstreamError::InvalidGrant);
        assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
        let odd = sign_in_error(UpstreamError::Malformed("token body".into()));
        assert_eq!(odd.status(), StatusCode::BAD_GATEWAY);
        let body = odd.problem().into_response("r");
        let text = String::from_utf8(body.body().as_ref().to_vec()).unwrap();
        assert!(!text.contains("token body"), "{text}");
    }
}
