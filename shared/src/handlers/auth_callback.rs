//! GET /auth/callback: Mercado Livre sends the browser back here. The callback must come
//! from the browser that started the login (its login cookie binds the state), the
//! login's state is taken exactly once, a code that cannot be Mercado Livre's is refused
//! without a call, the code is exchanged with its PKCE verifier (from the sign-in share of
//! the Mercado Livre budget), the seller identified, their tenant found or made, the
//! grant stored sealed, and a session started (ending any earlier one of theirs).
//! Webhooks parked while the grant needed reconnecting go back on the queue.
//!
//! Every refusal is a clear problem, never a 500 with internals, and is counted and
//! logged with its reason. Once the state is spent, retrying the same callback cannot
//! work, so a failure from then on says to sign in again, with the link.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::header::{COOKIE, SET_COOKIE};
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::auth::grants::{GrantError, GrantInfo, GrantStatus, GrantTokens, Grants};
use crate::auth::login::{self, Logins};
use crate::auth::sessions::{SessionError, Sessions};
use crate::auth::tenants::Tenants;
use crate::auth::{cookie, user_id};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::rate_limit::whole_seconds;
use crate::http::{ApiError, query_param, redirect};
use crate::queue::Queue;
use crate::services::Services;
use crate::store::StoreError;
use crate::telemetry::emf;
use crate::upstream::{ClientCredentials, MercadoLivre, UpstreamError};
use crate::webhooks::parking::Parking;

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

/// A callback that did not sign anyone in: why (a metric dimension and a log field, from
/// a short fixed list) and the problem answered.
struct Refused {
    reason: &'static str,
    error: ApiError,
}

fn refused(reason: &'static str, error: ApiError) -> Refused {
    Refused { reason, error }
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
        self.sign_in(&request).await.map_err(|refused| {
            tracing::info!(
                reason = refused.reason,
                status = refused.error.status().as_u16(),
                "sign-in refused"
            );
            emf::emit(
                &[("Reason", refused.reason)],
                &[emf::Metric::count("SignInRefused", 1.0)],
            );
            refused.error
        })
    }
}

impl AuthCallback {
    async fn sign_in(&self, request: &Request) -> Result<Response<Body>, Refused> {
        let login_path = format!("{}/auth/login", self.base_path);
        let start_again = format!("Start again at {login_path}.");
        let state = query_param(request, "state").ok_or_else(|| {
            refused(
                "no_state",
                ApiError::BadRequest(format!("The state is missing. {start_again}")),
            )
        })?;
        let started_here = cookie::login_from(request.headers().get_all(COOKIE).iter())
            .ok()
            .flatten()
            .is_some_and(|binding| login::binds(&state, &binding));
        if !started_here {
            return Err(refused(
                "other_browser",
                ApiError::Denied(format!(
                    "This sign-in was not started in this browser, or took too long. \
                     {start_again}"
                )),
            ));
        }
        let pending = self
            .logins
            .take(&state)
            .await
            .map_err(|error| refused("store", ApiError::from(error)))?
            .ok_or_else(|| {
                refused(
                    "unknown_state",
                    ApiError::BadRequest(format!(
                        "This sign-in has expired or was already completed. {start_again}"
                    )),
                )
            })?;

        // The state is spent: from here on, only a new sign-in can succeed.
        if let Some(error) = query_param(request, "error") {
            return Err(provider_refusal(&error, &login_path));
        }
        let code = query_param(request, "code")
            .filter(|code| login::looks_like_code(code))
            .ok_or_else(|| {
                refused(
                    "malformed_code",
                    ApiError::BadRequest(format!(
                        "The authorization code is missing or is not a Mercado Livre code. \
                         {start_again}"
                    )),
                )
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
            .map_err(|error| upstream_refusal(error, &login_path))?;
        let seller = self
            .mercadolivre
            .users_me(&tokens.access_token, tokens.user_id)
            .await
            .map_err(|error| upstream_refusal(error, &login_path))?;
        if seller.id != tokens.user_id {
            return Err(failed(
                "upstream",
                StatusCode::BAD_GATEWAY,
                format!(
                    "/users/me answered seller {} for a token of seller {}",
                    seller.id, tokens.user_id
                ),
                &login_path,
            ));
        }

        let now = self.clock.now_secs();
        let tenant = self
            .tenants
            .for_seller(seller.id, &seller.nickname, now)
            .await
            .map_err(|error| store_failure(error, &login_path))?;
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
                GrantError::Store(error) => store_failure(error, &login_path),
                other => failed(
                    "internal",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    other.to_string(),
                    &login_path,
                ),
            })?;
        let session = self
            .sessions
            .start(&user_id(seller.id), &tenant, now)
            .await
            .map_err(|error| match error {
                SessionError::Store(error) => store_failure(error, &login_path),
                SessionError::Token(error) => failed(
                    "internal",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    error.to_string(),
                    &login_path,
                ),
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
        let mut response = redirect(StatusCode::SEE_OTHER, &location).map_err(|error| {
            failed(
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                error.to_string(),
                &login_path,
            )
        })?;
        let headers = response.headers_mut();
        headers.append(
            SET_COOKIE,
            cookie::session_cookie(&session.token, self.session_ttl),
        );
        headers.append(SET_COOKIE, cookie::cleared_login_cookie());
        Ok(response)
    }
}

/// A failure after the state was spent: the caller is told to sign in again at `login_path`,
/// the cause is logged.
fn failed(reason: &'static str, status: StatusCode, cause: String, login_path: &str) -> Refused {
    refused(
        reason,
        ApiError::Failed {
            status,
            detail: format!("Signing in could not be completed. Sign in again at {login_path}."),
            cause,
        },
    )
}

fn store_failure(error: StoreError, login_path: &str) -> Refused {
    match error {
        // Concurrent sign-ins of this seller kept winning the race.
        StoreError::ConditionFailed { .. } | StoreError::TransactionCancelled { .. } => refused(
            "concurrent_sign_in",
            ApiError::Conflict(format!(
                "Another sign-in of this seller was completing at the same moment. Sign in \
                 again at {login_path}."
            )),
        ),
        StoreError::Unavailable(_) => failed(
            "store",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store: {error}"),
            login_path,
        ),
        StoreError::Invalid(_) | StoreError::Corrupt(_) => failed(
            "store",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store: {error}"),
            login_path,
        ),
    }
}

/// The provider's `error` parameter: the seller cancelled, signed in with a collaborator
/// account, or the request was refused.
fn provider_refusal(error: &str, login_path: &str) -> Refused {
    let start_again = format!("Start again at {login_path}.");
    match error {
        "access_denied" => refused(
            "access_denied",
            ApiError::Denied(format!(
                "You did not authorize sellerhub on Mercado Livre. {start_again}"
            )),
        ),
        "invalid_operator_user_id" => operator_user(&start_again),
        _ => {
            let code: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(40)
                .collect();
            refused(
                "provider_error",
                ApiError::BadRequest(format!(
                    "Mercado Livre refused the sign-in ({code}). {start_again}"
                )),
            )
        }
    }
}

fn upstream_refusal(error: UpstreamError, login_path: &str) -> Refused {
    let start_again = format!("Start again at {login_path}.");
    match error {
        UpstreamError::InvalidGrant => refused(
            "invalid_grant",
            ApiError::BadRequest(format!(
                "Mercado Livre did not accept this sign-in: the code is invalid, expired or \
                 already used. {start_again}"
            )),
        ),
        UpstreamError::OperatorUser => operator_user(&start_again),
        UpstreamError::MissingScope(scope) => {
            tracing::error!(
                scope,
                "Mercado Livre granted no {scope} scope: the application's settings on \
                 Mercado Livre must include it, or sellers cannot stay connected"
            );
            refused(
                "missing_scope",
                ApiError::Failed {
                    status: StatusCode::BAD_GATEWAY,
                    detail: format!(
                        "Mercado Livre did not grant the {scope} scope, without which \
                         sellerhub cannot stay connected to your account. The application's \
                         settings on Mercado Livre must include it: please tell its operator."
                    ),
                    cause: error.to_string(),
                },
            )
        }
        UpstreamError::RateLimited { retry_after } => refused(
            "rate_limited",
            ApiError::Failed {
                status: StatusCode::SERVICE_UNAVAILABLE,
                detail: format!(
                    "Too many sign-ins right now. Sign in again in {} seconds at {login_path}.",
                    whole_seconds(retry_after).max(1)
                ),
                cause: error.to_string(),
            },
        ),
        UpstreamError::Unavailable { .. } | UpstreamError::Limiter(_) => failed(
            "unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            error.to_string(),
            login_path,
        ),
        UpstreamError::Unauthorized
        | UpstreamError::NotFound
        | UpstreamError::Rejected { .. }
        | UpstreamError::Malformed(_)
        | UpstreamError::InvalidPath(_) => failed(
            "upstream",
            StatusCode::BAD_GATEWAY,
            error.to_string(),
            login_path,
        ),
    }
}

/// A collaborator (operator) account tried to sign in: only the account's owner can
/// authorize an application on Mercado Livre.
fn operator_user(start_again: &str) -> Refused {
    refused(
        "operator_user",
        ApiError::Denied(format!(
            "You signed in to Mercado Livre with a collaborator account. Sign in with the \
             account's owner (its administrator) instead. {start_again}"
        )),
    )
}

/// The path our routes hang under: the callback URL's path without `/auth/callback`.
fn base_path(redirect_uri: &reqwest::Url) -> String {
    let path = redirect_uri.path();
    path.strip_suffix("/auth/callback")
        .unwrap_or_default()
        .to_owned()
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

    /// The problem a refusal answers, as the client reads it.
    fn answered(refused: Refused) -> (StatusCode, serde_json::Value) {
        let response = refused.error.problem().into_response("r");
        let body = serde_json::from_slice(response.body().as_ref()).unwrap();
        (response.status(), body)
    }

    #[test]
    fn provider_errors_are_clear_and_carry_no_internals() {
        let login = "/prod/auth/login";
        let (status, _) = answered(provider_refusal("access_denied", login));
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, body) = answered(provider_refusal("server_error<script>", login));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!body.to_string().contains('<'), "{body}");

        let (status, body) = answered(upstream_refusal(UpstreamError::InvalidGrant, login));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body["detail"].as_str().unwrap().contains(login), "{body}");
        let odd = upstream_refusal(UpstreamError::Malformed("token body".into()), login);
        assert_eq!(odd.reason, "upstream");
        let (status, body) = answered(odd);
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(!body.to_string().contains("token body"), "{body}");
    }

    #[test]
    fn a_failure_after_the_state_was_spent_says_to_sign_in_again_with_the_link() {
        let login = "/prod/auth/login";
        let timeout = upstream_refusal(
            UpstreamError::Unavailable {
                cause: crate::upstream::UnavailableCause::Timeout,
                retry_after: None,
            },
            login,
        );
        let store = store_failure(StoreError::Unavailable("connection refused".into()), login);
        let busy = upstream_refusal(
            UpstreamError::RateLimited {
                retry_after: Duration::from_millis(41_500),
            },
            login,
        );
        for refused in [timeout, store, busy] {
            let (status, body) = answered(refused);
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            let detail = body["detail"].as_str().unwrap();
            assert!(detail.contains("Sign in again"), "{detail}");
            assert!(detail.contains(login), "{detail}");
            assert!(!detail.contains("retry shortly"), "{detail}");
            assert!(!detail.contains("connection refused"), "{detail}");
        }
        let (_, body) = answered(upstream_refusal(
            UpstreamError::RateLimited {
                retry_after: Duration::from_millis(41_500),
            },
            login,
        ));
        assert!(body["detail"].as_str().unwrap().contains("in 42 seconds"));
    }

    #[test]
    fn a_grant_without_offline_access_names_the_missing_scope() {
        let refused = upstream_refusal(
            UpstreamError::MissingScope(crate::upstream::OFFLINE_ACCESS),
            "/auth/login",
        );
        assert_eq!(refused.reason, "missing_scope");
        let (status, body) = answered(refused);
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(
            body["detail"].as_str().unwrap().contains("offline_access"),
            "{body}"
        );
    }

    #[test]
    fn a_collaborator_account_is_told_to_sign_in_with_the_owner() {
        for refused in [
            provider_refusal("invalid_operator_user_id", "/auth/login"),
            upstream_refusal(UpstreamError::OperatorUser, "/auth/login"),
        ] {
            assert_eq!(refused.reason, "operator_user");
            let (status, body) = answered(refused);
            assert_eq!(status, StatusCode::FORBIDDEN);
            assert!(body["detail"].as_str().unwrap().contains("owner"), "{body}");
        }
    }

    #[test]
    fn losing_every_race_to_concurrent_sign_ins_is_a_clear_409() {
        let (status, body) = answered(store_failure(
            StoreError::ConditionFailed { current: None },
            "/auth/login",
        ));
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(
            body["detail"].as_str().unwrap().contains("Sign in again"),
            "{body}"
        );
    }
}
