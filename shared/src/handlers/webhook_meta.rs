//! /webhooks/meta: WhatsApp Cloud API webhooks.
//! - GET answers Meta's subscription handshake: `hub.challenge` when `hub.mode` is
//!   `subscribe` and `hub.verify_token` is ours, 403 otherwise.
//! - POST checks `X-Hub-Signature-256` over the raw body (401 and nothing queued when it
//!   is missing or wrong), then queues one envelope per change and answers 200. No storage
//!   on this path: the worker finds the tenant by the change's phone number id.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};

use super::HttpHandler;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::{ApiError, body_bytes, json, query_param, request_ids};
use crate::queue::Queue;
use crate::services::Services;
use crate::webhooks::meta::{self, SIGNATURE_HEADER};
use crate::webhooks::{self, Envelope, Source};

/// Meta batches changes into one body; each becomes one queue message (SQS: 256 KiB).
pub const BODY_LIMIT: usize = 256 * 1024;

pub struct WebhookMeta {
    app_secret: SecretString,
    verify_token: SecretString,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
}

impl WebhookMeta {
    pub fn new(
        app_secret: SecretString,
        verify_token: SecretString,
        queue: Arc<dyn Queue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            app_secret,
            verify_token,
            queue,
            clock,
        }
    }
}

impl HttpHandler for WebhookMeta {
    const FUNCTION: &'static str = "webhook-meta";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        let secrets = &services.config().secrets;
        Ok(Self::new(
            secrets.require("META_APP_SECRET")?.clone(),
            secrets.require("META_VERIFY_TOKEN")?.clone(),
            services.webhook_queue(),
            services.clock(),
        ))
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        match *request.method() {
            Method::GET => self.subscribe(&request),
            Method::POST => self.receive(&request).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

impl WebhookMeta {
    fn subscribe(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let challenge = meta::subscription_challenge(
            query_param(request, "hub.mode").as_deref(),
            query_param(request, "hub.verify_token").as_deref(),
            query_param(request, "hub.challenge").as_deref(),
            self.verify_token.expose_secret().as_bytes(),
        )
        .map(str::to_owned)
        .ok_or(ApiError::Forbidden)?;
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .header("x-content-type-options", "nosniff")
            .header(http::header::CACHE_CONTROL, "no-store")
            .body(Body::Text(challenge))
            .map_err(|error| ApiError::Internal(error.to_string()))
    }

    async fn receive(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let envelopes = self.envelopes(request).inspect_err(|error| {
            tracing::warn!(error = %error, "Meta webhook refused");
            webhooks::count_rejected(Source::Meta, error);
        })?;
        webhooks::enqueue(&*self.queue, &envelopes).await?;
        webhooks::count(Source::Meta, "Accepted");
        tracing::debug!(changes = envelopes.len(), "Meta webhook queued");
        json(StatusCode::OK, &serde_json::json!({ "status": "accepted" }))
    }

    fn envelopes(&self, request: &Request) -> Result<Vec<Envelope>, ApiError> {
        let body = body_bytes(request, BODY_LIMIT)?;
        let signature = request
            .headers()
            .get(SIGNATURE_HEADER)
            .and_then(|value| value.to_str().ok());
        meta::verify_signature(self.app_secret.expose_secret().as_bytes(), body, signature)?;
        let received_at_ms = self.clock.now_ms();
        let correlation_id = request_ids(request).correlation_id;
        Ok(meta::changes(body)?
            .into_iter()
            .map(|change| Envelope {
                source: Source::Meta,
                received_at_ms,
                dedupe_key: change.dedupe_key,
                correlation_id: correlation_id.clone(),
                payload: change.payload,
                deferrals: 0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use lambda_http::RequestExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::embedded::EmbeddedQueue;

    const SECRET: &str = "fixture-app-secret-do-not-use";
    const SIGNATURE: &str =
        "sha256=a0573f063a0beb4659e376ad26bb39dd22d1e73dff5284d0a06f812da6409847";

    fn message() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/meta/whatsapp-message.json"
        ))
        .unwrap()
    }

    fn handler() -> (WebhookMeta, Arc<EmbeddedQueue>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let queue =
            Arc::new(EmbeddedQueue::open(EmbeddedDb::open(dir.path()).unwrap(), "q").unwrap());
        let handler = WebhookMeta::new(
            SECRET.into(),
            "our-verify-token".into(),
            queue.clone(),
            Arc::new(ManualClock::at(0)),
        );
        (handler, queue, dir)
    }

    fn post(body: Vec<u8>, signature: Option<&str>) -> Request {
        let mut request = http::Request::builder()
            .method("POST")
            .uri("/webhooks/meta");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        request.body(Body::Binary(body)).unwrap()
    }

    fn subscribe(mode: &str, token: &str) -> Request {
        let query: HashMap<String, String> = [
            ("hub.mode", mode),
            ("hub.verify_token", token),
            ("hub.challenge", "1158201444"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        http::Request::builder()
            .method("GET")
            .uri("/webhooks/meta")
            .body(Body::Empty)
            .unwrap()
            .with_query_string_parameters(query)
    }

    #[tokio::test]
    async fn the_subscription_echoes_the_challenge_for_our_token_only() {
        let (handler, _queue, _dir) = handler();
        let response = handler
            .handle(subscribe("subscribe", "our-verify-token"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.body(), &Body::Text("1158201444".into()));
        for (mode, token) in [
            ("subscribe", "another"),
            ("unsubscribe", "our-verify-token"),
        ] {
            let error = handler.handle(subscribe(mode, token)).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::FORBIDDEN);
        }
    }

    #[tokio::test]
    async fn a_signed_change_is_queued_byte_for_byte() {
        let (handler, queue, _dir) = handler();
        let response = handler
            .handle(post(message(), Some(SIGNATURE)))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let envelopes = Envelope::received(queue.as_ref()).await;
        assert_eq!(envelopes.len(), 1);
        assert_eq!(envelopes[0].source, Source::Meta);
        assert!(envelopes[0].dedupe_key.starts_with("meta:wamid."));
        assert!(envelopes[0].payload.get().contains(r"N\u00e3o recebi"));
    }

    #[tokio::test]
    async fn a_forged_or_unsigned_body_is_401_and_queues_nothing() {
        let (handler, queue, _dir) = handler();
        let mut forged = message();
        forged[120] ^= 1;
        for request in [post(forged, Some(SIGNATURE)), post(message(), None)] {
            let error = handler.handle(request).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        }
        assert!(Envelope::received(queue.as_ref()).await.is_empty());
    }

    #[tokio::test]
    async fn every_change_of_a_body_gets_its_envelope() {
        let (handler, queue, _dir) = handler();
        let changes: Vec<String> = (0..12)
            .map(|n| format!(r#"{{"field":"messages","value":{{"messages":[{{"id":"w{n}"}}]}}}}"#))
            .collect();
        let body = format!(
            r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{}]}}]}}"#,
            changes.join(",")
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET.as_bytes());
        let signature = format!(
            "sha256={}",
            hex::encode(aws_lc_rs::hmac::sign(&key, body.as_bytes()))
        );
        handler
            .handle(post(body.into_bytes(), Some(&signature)))
            .await
            .unwrap();
        let mut keys: Vec<String> = Envelope::received(queue.as_ref())
            .await
            .into_iter()
            .map(|e| e.dedupe_key)
            .collect();
        keys.extend(
            Envelope::received(queue.as_ref())
                .await
                .into_iter()
                .map(|e| e.dedupe_key),
        );
        keys.sort();
        let mut expected: Vec<String> = (0..12).map(|n| format!("meta:w{n}")).collect();
        expected.sort();
        assert_eq!(keys, expected, "12 changes, two batches of at most 10");
    }

    #[tokio::test]
    async fn a_forged_body_is_counted_as_rejected_for_its_signature() {
        let (handler, _queue, _dir) = handler();
        let ((), lines) = crate::telemetry::emf::capture::lines(async {
            let _ = handler.handle(post(message(), Some(SIGNATURE))).await;
            let _ = handler.handle(post(message(), None)).await;
        })
        .await;
        let count = |outcome: &str, reason: &str| {
            ("meta".to_owned(), outcome.to_owned(), reason.to_owned())
        };
        assert_eq!(
            webhooks::counted(&lines),
            [count("Accepted", ""), count("Rejected", "BadSignature")]
        );
    }
}
