//! - GET /v1/me: the signed-in seller, their tenant, their session's expiry and whether
//!   the Mercado Livre grant works or needs them to reconnect; 401 without a live session.
//! - GET /auth/session: whether the request is signed in, 200 either way —
//!   `{"signed_in": false}`, or `{"signed_in": true}` with the same fields as /v1/me. For
//!   the inbox page, which must learn it is signed out without an error status (a browser
//!   logs every 4xx as a console error). A session that cannot be checked is still a 503,
//!   and a request presenting two session cookies still a 400.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use super::HttpHandler;
use crate::auth::Authenticator;
use crate::auth::Principal;
use crate::auth::grants::{GrantInfos, GrantStatus};
use crate::config::ConfigError;
use crate::http::{ApiError, json, resource_path, rfc3339};
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

/// GET /auth/session's answer: signed out, or signed in with the seller.
#[derive(Serialize)]
struct SessionProbe {
    signed_in: bool,
    #[serde(flatten)]
    me: Option<MeBody>,
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
        if resource_path(&request) == SESSION_PROBE {
            let probe = match self.authenticator.authenticate(&request).await {
                Ok(principal) => SessionProbe {
                    signed_in: true,
                    me: Some(self.me(&principal).await?),
                },
                Err(ApiError::Unauthorized) => SessionProbe {
                    signed_in: false,
                    me: None,
                },
                Err(error) => return Err(error),
            };
            return json(StatusCode::OK, &probe);
        }
        let principal = self.authenticator.authenticate(&request).await?;
        json(StatusCode::OK, &self.me(&principal).await?)
    }
}

/// The route answering 200 signed in or not.
const SESSION_PROBE: &str = "/auth/session";

impl Me {
    async fn me(&self, principal: &Principal) -> Result<MeBody, ApiError> {
        let grant = self.grants.get(principal.tenant()).await?;
        let claims = &principal.claims;
        Ok(MeBody {
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
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use lambda_http::RequestExt;
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
    use lambda_http::request::RequestContext;
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
        request_to("/v1/me", header)
    }

    /// A request for the route `path`, as API Gateway delivers it.
    fn request_to(path: &str, header: Option<(&str, String)>) -> Request {
        let mut builder = http::Request::builder().uri(path);
        if let Some((name, value)) = header {
            builder = builder.header(name, value);
        }
        let mut context = ApiGatewayProxyRequestContext::default();
        context.resource_path = Some(path.to_owned());
        builder
            .body(Body::Empty)
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV1(context))
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

    fn cookie(token: &SecretString) -> Option<(&'static str, String)> {
        Some((
            "cookie",
            format!(
                "{}={}",
                crate::auth::cookie::SESSION_COOKIE,
                token.expose_secret()
            ),
        ))
    }

    async fn probe(f: &Fixture, header: Option<(&str, String)>) -> serde_json::Value {
        let response =
            f.me.handle(request_to("/auth/session", header))
                .await
                .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[tokio::test]
    async fn the_session_probe_answers_200_signed_out_and_the_seller_signed_in() {
        let f = fixture();
        let signed_out = serde_json::json!({"signed_in": false});
        assert_eq!(probe(&f, None).await, signed_out);
        let garbage = Some((
            "cookie",
            format!("{}=a.b.c", crate::auth::cookie::SESSION_COOKIE),
        ));
        assert_eq!(probe(&f, garbage).await, signed_out);

        let session = f.sign_in().await;
        let signed_in = probe(&f, cookie(&session.token)).await;
        assert_eq!(signed_in["signed_in"], true);
        let me = f.me.handle(bearer(&session.token)).await.unwrap();
        let mut me: serde_json::Value = serde_json::from_slice(me.body().as_ref()).unwrap();
        me["signed_in"] = true.into();
        assert_eq!(signed_in, me, "the probe signed in is /v1/me's body");

        f.sessions
            .end(&session.claims, SystemClock.now_secs())
            .await
            .unwrap();
        assert_eq!(probe(&f, cookie(&session.token)).await, signed_out);
    }

    #[tokio::test]
    async fn the_session_probe_fails_when_the_session_cannot_be_checked() {
        let f = fixture();
        let session = f.sign_in().await;
        f.store.set_down(true);
        let error =
            f.me.handle(request_to("/auth/session", cookie(&session.token)))
                .await
                .unwrap_err();
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        f.store.set_down(false);

        let two = format!(
            "{name}={token}; {name}={token}",
            name = crate::auth::cookie::SESSION_COOKIE,
            token = session.token.expose_secret()
        );
        let error =
            f.me.handle(request_to("/auth/session", Some(("cookie", two))))
                .await
                .unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
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
