//! GET /v1/me: the signed-in seller, their tenant, their session's expiry and whether
//! the Mercado Livre grant works or needs them to reconnect.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::HttpHandler;
use crate::auth::Authenticator;
use crate::auth::grants::{GrantInfos, GrantStatus};
use crate::config::ConfigError;
use crate::http::{ApiError, json, rfc3339};
use crate::services::Services;

pub struct Me {
    authenticator: Authenticator,
    grants: GrantInfos,
}

#[derive(Serialize)]
struct MeBody {
    user: UserBody,
    tenant: TenantBody,
    session: SessionBody,
    grant: GrantBody,
}

#[derive(Serialize)]
struct UserBody {
    id: String,
    seller_id: Option<u64>,
    nickname: Option<String>,
}

#[derive(Serialize)]
struct TenantBody {
    id: String,
}

#[derive(Serialize)]
struct SessionBody {
    id: String,
    issued_at: String,
    expires_at: String,
}

#[derive(Serialize)]
struct GrantBody {
    provider: &'static str,
    /// `ok`, or `needs_reconnect`: the seller must sign in again (GET /auth/login).
    status: GrantStatus,
    /// When the current access token expires (refreshed before then).
    expires_at: Option<String>,
    scopes: Vec<String>,
}

impl HttpHandler for Me {
    const FUNCTION: &'static str = "me";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: services.authenticator()?,
            grants: GrantInfos::new(services.store()),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let principal = self.authenticator.authenticate(&request).await?;
        let grant = self.grants.get(principal.tenant()).await?;
        let claims = &principal.claims;
        let body = MeBody {
            user: UserBody {
                id: claims.sub.clone(),
                seller_id: grant.as_ref().map(|grant| grant.seller_id),
                nickname: grant.as_ref().map(|grant| grant.nickname.clone()),
            },
            tenant: TenantBody {
                id: claims.tenant.clone(),
            },
            session: SessionBody {
                id: claims.sid.clone(),
                issued_at: rfc3339(claims.iat),
                expires_at: rfc3339(claims.exp),
            },
            grant: match grant {
                Some(grant) => GrantBody {
                    provider: "mercadolivre",
                    status: grant.status,
                    expires_at: Some(rfc3339(grant.expires_at)),
                    scopes: grant.scopes,
                },
                // No grant at all: only a new login can make one.
                None => GrantBody {
                    provider: "mercadolivre",
                    status: GrantStatus::NeedsReconnect,
                    expires_at: None,
                    scopes: Vec::new(),
                },
            },
        };
        json(StatusCode::OK, &body)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::auth::{SessionKeys, Sessions};
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::faulty::FaultyStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<FaultyStore>,
        sessions: Sessions,
        me: Me,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        let store = Arc::new(FaultyStore::new(Arc::new(embedded)));
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(store.clone(), Arc::new(keys), Duration::from_secs(3600));
        let me = Me {
            authenticator: Authenticator::new(sessions.clone()),
            grants: GrantInfos::new(store.clone()),
        };
        Fixture {
            _dir: dir,
            store,
            sessions,
            me,
        }
    }

    impl Fixture {
        async fn sign_in(&self) -> crate::auth::sessions::IssuedSession {
            self.sessions
                .start("ml:5", "t5", SystemClock.now_secs())
                .await
                .unwrap()
        }
    }

    fn request(header: Option<(&str, String)>) -> Request {
        let mut builder = http::Request::builder().uri("/v1/me");
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        builder.body(Body::Empty).unwrap()
    }

    fn bearer(token: &SecretString) -> Request {
        request(Some((
            "authorization",
            format!("Bearer {}", token.expose_secret()),
        )))
    }

    #[tokio::test]
    async fn a_session_token_by_bearer_or_cookie_gets_the_seller() {
        let f = fixture();
        let session = f.sign_in().await;

        let response = f.me.handle(bearer(&session.token)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(body["user"]["id"], "ml:5");
        assert_eq!(body["tenant"]["id"], "t5");
        assert_eq!(body["session"]["id"], session.claims.sid.as_str());
        assert_eq!(
            body["grant"]["status"], "needs_reconnect",
            "no grant stored"
        );

        let cookie = request(Some((
            "cookie",
            format!(
                "a=b; {}={}",
                crate::auth::cookie::SESSION_COOKIE,
                session.token.expose_secret()
            ),
        )));
        assert_eq!(f.me.handle(cookie).await.unwrap().status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn authentication_costs_exactly_one_storage_read() {
        let f = fixture();
        let session = f.sign_in().await;
        let before = f.store.reads();
        f.me.authenticator
            .authenticate(&bearer(&session.token))
            .await
            .unwrap();
        assert_eq!(f.store.reads() - before, 1);
    }

    #[tokio::test]
    async fn no_token_or_a_revoked_one_is_a_401() {
        let f = fixture();
        let error = f.me.handle(request(None)).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);

        let session = f.sign_in().await;
        f.sessions
            .end(&session.claims, SystemClock.now_secs())
            .await
            .unwrap();
        let error = f.me.handle(bearer(&session.token)).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn an_unreadable_revocation_list_fails_secure_with_503() {
        let f = fixture();
        let session = f.sign_in().await;
        f.store.set_down(true);
        let error = f.me.handle(bearer(&session.token)).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        let response = error.problem().into_response("r");
        let text = String::from_utf8(response.body().as_ref().to_vec()).unwrap();
        assert!(!text.contains("10.1.2.3"), "{text}");
    }
}
