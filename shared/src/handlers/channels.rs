//! The tenant's channels:
//! - PUT /v1/channels/whatsapp `{"phone_number_id": "…"}` links a WhatsApp phone number
//!   to the caller's tenant (201, or 200 when it already was; 409 when another tenant
//!   holds it). Counted against the tenant's write limit.
//! - GET /v1/channels lists the tenant's links (at most `channels::MAX_LINKS`).

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::HttpHandler;
use crate::auth::Authenticator;
use crate::channels::{ChannelError, Channels, MAX_LINKS};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::{ApiError, EndpointLimit, body_bytes, json, rate_limit};
use crate::ratelimit::Limiter;
use crate::services::Services;

const BODY_LIMIT: usize = 4 * 1024;

pub struct ChannelsHandler {
    authenticator: Authenticator,
    channels: Channels,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRequest {
    phone_number_id: String,
}

impl From<ChannelError> for ApiError {
    fn from(error: ChannelError) -> Self {
        match error {
            ChannelError::InvalidPhoneNumberId => ApiError::BadRequest(error.to_string()),
            ChannelError::HeldByAnotherTenant | ChannelError::TooMany => {
                ApiError::Conflict(error.to_string())
            }
            ChannelError::Store(error) => error.into(),
        }
    }
}

impl HttpHandler for ChannelsHandler {
    const FUNCTION: &'static str = "channels";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: services.authenticator()?,
            channels: Channels::new(services.store()),
            limiter: services.limiter()?,
            clock: services.clock(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let principal = self.authenticator.authenticate(&request).await?;
        let tenant = principal.tenant();
        match *request.method() {
            Method::GET => {
                let links = self.channels.list(tenant).await?;
                json(
                    StatusCode::OK,
                    &serde_json::json!({ "items": links, "max_items": MAX_LINKS }),
                )
            }
            Method::PUT => {
                let now_ms = self.clock.now_ms();
                let limit_headers = rate_limit::enforce(
                    self.limiter.as_ref(),
                    &EndpointLimit::writes(tenant),
                    now_ms,
                )
                .await?;
                let body: LinkRequest = serde_json::from_slice(body_bytes(&request, BODY_LIMIT)?)
                    .map_err(|error| {
                    ApiError::BadRequest(format!(
                        "expected {{\"phone_number_id\": \"…\"}}: {error}"
                    ))
                })?;
                let (link, created) = self
                    .channels
                    .link_whatsapp(tenant, &body.phone_number_id, self.clock.now_secs())
                    .await?;
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                let mut response = json(status, &link)?;
                limit_headers.apply(response.headers_mut());
                Ok(response)
            }
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::auth::{SessionKeys, Sessions};
    use crate::clock::SystemClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::ratelimit::memory::MemoryLimiter;
    use crate::store::embedded::EmbeddedStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        sessions: Sessions,
        handler: ChannelsHandler,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(store.clone(), Arc::new(keys), Duration::from_secs(3600));
        let handler = ChannelsHandler {
            authenticator: Authenticator::new(sessions.clone()),
            channels: Channels::new(store),
            limiter: Arc::new(MemoryLimiter::new()),
            clock: Arc::new(SystemClock),
        };
        Fixture {
            _dir: dir,
            sessions,
            handler,
        }
    }

    impl Fixture {
        async fn token(&self, user: &str, tenant: &str) -> SecretString {
            self.sessions
                .start(user, tenant, SystemClock.now_secs())
                .await
                .unwrap()
                .token
        }
    }

    fn request(method: &str, path: &str, token: &SecretString, body: &str) -> Request {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", token.expose_secret()))
            .body(Body::Text(body.into()))
            .unwrap()
    }

    fn link(token: &SecretString, phone: &str) -> Request {
        request(
            "PUT",
            "/v1/channels/whatsapp",
            token,
            &format!(r#"{{"phone_number_id":"{phone}"}}"#),
        )
    }

    fn body(response: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[tokio::test]
    async fn a_tenant_links_a_number_another_tenant_cannot_take() {
        let f = fixture();
        let (one, two) = (f.token("ml:1", "t1").await, f.token("ml:2", "t2").await);

        let created = f
            .handler
            .handle(link(&one, "106540352242922"))
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        assert!(created.headers().contains_key("ratelimit-remaining"));
        let again = f
            .handler
            .handle(link(&one, "106540352242922"))
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        let taken = f
            .handler
            .handle(link(&two, "106540352242922"))
            .await
            .unwrap_err();
        assert_eq!(taken.status(), StatusCode::CONFLICT);

        let listed = f
            .handler
            .handle(request("GET", "/v1/channels", &one, ""))
            .await
            .unwrap();
        let items = body(&listed)["items"].clone();
        assert_eq!(items.as_array().unwrap().len(), 1);
        assert_eq!(items[0]["phone_number_id"], "106540352242922");
        assert_eq!(items[0]["channel"], "whatsapp");
        let other = f
            .handler
            .handle(request("GET", "/v1/channels", &two, ""))
            .await
            .unwrap();
        assert_eq!(
            body(&other)["items"],
            serde_json::json!([]),
            "tenants see their own links only"
        );
    }

    #[tokio::test]
    async fn bad_bodies_and_missing_sessions_are_refused() {
        let f = fixture();
        let token = f.token("ml:1", "t1").await;
        for bad in [
            "",
            "{}",
            r#"{"phone_number_id":"12a"}"#,
            r#"{"phone_number_id":"1","x":1}"#,
        ] {
            let error = f
                .handler
                .handle(request("PUT", "/v1/channels/whatsapp", &token, bad))
                .await
                .unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
        let anonymous = http::Request::builder()
            .method("GET")
            .uri("/v1/channels")
            .body(Body::Empty)
            .unwrap();
        let error = f.handler.handle(anonymous).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
    }
}
