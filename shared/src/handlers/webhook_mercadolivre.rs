//! POST /webhooks/mercadolivre: a Mercado Livre notification in, one envelope on the
//! webhook queue, 200 — no storage on this path (Mercado Livre wants its answer within
//! 500 ms and stops sending a topic that keeps failing).
//!
//! A notification for a seller who is not linked to a tenant is accepted like any other:
//! telling it apart would cost a read here, and refusing it would only make Mercado
//! Livre retry and eventually disable the topic. The worker drops it, logged and counted
//! (`Webhooks`, Outcome `UnlinkedSeller`).

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::value::RawValue;

use super::HttpHandler;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::{ApiError, body_bytes, json, request_ids};
use crate::queue::Queue;
use crate::services::Services;
use crate::webhooks::mercadolivre::Notification;
use crate::webhooks::{self, Envelope, Source};
use std::sync::Arc;

/// Mercado Livre's notifications are a few hundred bytes.
pub const BODY_LIMIT: usize = 64 * 1024;

pub struct WebhookMercadoLivre {
    application_id: String,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
}

impl WebhookMercadoLivre {
    pub fn new(application_id: String, queue: Arc<dyn Queue>, clock: Arc<dyn Clock>) -> Self {
        Self {
            application_id,
            queue,
            clock,
        }
    }
}

impl HttpHandler for WebhookMercadoLivre {
    const FUNCTION: &'static str = "webhook-mercadolivre";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self::new(
            services.config().auth.require_client_id()?.to_owned(),
            services.webhook_queue(),
            services.clock(),
        ))
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let envelope = self.envelope(&request).inspect_err(|error| {
            tracing::warn!(error = %error, "Mercado Livre notification refused");
            webhooks::count_rejected(Source::MercadoLivre, error);
        })?;
        webhooks::enqueue(&*self.queue, std::slice::from_ref(&envelope)).await?;
        webhooks::count(Source::MercadoLivre, "Accepted");
        tracing::debug!(dedupe_key = %envelope.dedupe_key, "Mercado Livre notification queued");
        json(StatusCode::OK, &serde_json::json!({ "status": "accepted" }))
    }
}

impl WebhookMercadoLivre {
    fn envelope(&self, request: &Request) -> Result<Envelope, ApiError> {
        let body = body_bytes(request, BODY_LIMIT)?;
        let notification = Notification::parse(body, &self.application_id)?;
        let text = String::from_utf8(body.to_vec())
            .map_err(|error| ApiError::BadRequest(format!("the body is not UTF-8: {error}")))?;
        let payload = RawValue::from_string(text)
            .map_err(|error| ApiError::BadRequest(format!("the body is not JSON: {error}")))?;
        Ok(Envelope {
            source: Source::MercadoLivre,
            received_at_ms: self.clock.now_ms(),
            dedupe_key: notification.dedupe_key(),
            correlation_id: request_ids(request).correlation_id,
            payload,
            deferrals: 0,
        })
    }
}

#[cfg(test)]
mod tests {

    use lambda_http::Body;

    use super::*;
    use crate::clock::ManualClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::embedded::EmbeddedQueue;

    const APP: &str = "2069392825111111";

    fn notification() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/mercadolivre/notification-questions.json"
        ))
        .unwrap()
    }

    fn handler() -> (WebhookMercadoLivre, Arc<EmbeddedQueue>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let queue =
            Arc::new(EmbeddedQueue::open(EmbeddedDb::open(dir.path()).unwrap(), "q").unwrap());
        let clock = Arc::new(ManualClock::at(1_763_647_331_000));
        let handler = WebhookMercadoLivre::new(APP.into(), queue.clone(), clock);
        (handler, queue, dir)
    }

    fn post(body: Vec<u8>) -> Request {
        http::Request::builder()
            .method("POST")
            .uri("/webhooks/mercadolivre")
            .header("x-correlation-id", "corr-ml")
            .body(Body::Binary(body))
            .unwrap()
    }

    #[tokio::test]
    async fn a_notification_is_queued_as_received_in_an_envelope() {
        let (handler, queue, _dir) = handler();
        let response = handler.handle(post(notification())).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let envelopes = Envelope::received(queue.as_ref()).await;
        assert_eq!(envelopes.len(), 1);
        let envelope = &envelopes[0];
        assert_eq!(envelope.source, Source::MercadoLivre);
        assert_eq!(
            envelope.dedupe_key,
            "mercadolivre:9e3b2c1a-5f7d-4c1e-8a2b-3d4e5f6a7b8c"
        );
        assert_eq!(envelope.correlation_id, "corr-ml");
        assert_eq!(envelope.received_at_ms, 1_763_647_331_000);
        assert_eq!(
            envelope.payload.get().trim_end(),
            String::from_utf8(notification()).unwrap().trim_end()
        );
    }

    #[tokio::test]
    async fn refused_notifications_queue_nothing() {
        let (handler, queue, _dir) = handler();
        let foreign = String::from_utf8(notification())
            .unwrap()
            .replace(APP, "1111");
        let cases = [
            (foreign.into_bytes(), StatusCode::FORBIDDEN),
            (b"{\"resource\":".to_vec(), StatusCode::BAD_REQUEST),
            (vec![b' '; BODY_LIMIT + 1], StatusCode::PAYLOAD_TOO_LARGE),
        ];
        for (body, status) in cases {
            let error = handler.handle(post(body)).await.unwrap_err();
            assert_eq!(error.status(), status);
        }
        assert!(
            Envelope::received(queue.as_ref()).await.is_empty(),
            "nothing was queued"
        );
    }

    #[tokio::test]
    async fn accepted_and_refused_notifications_are_counted_refusals_by_reason() {
        let (handler, _queue, _dir) = handler();
        let foreign = String::from_utf8(notification())
            .unwrap()
            .replace(APP, "1111");
        let ((), lines) = crate::telemetry::emf::capture::lines(async {
            for body in [
                notification(),
                foreign.into_bytes(),
                b"{\"resource\":".to_vec(),
                vec![b' '; BODY_LIMIT + 1],
            ] {
                let _ = handler.handle(post(body)).await;
            }
        })
        .await;
        let count = |outcome: &str, reason: &str| {
            (
                "mercadolivre".to_owned(),
                outcome.to_owned(),
                reason.to_owned(),
            )
        };
        assert_eq!(
            webhooks::counted(&lines),
            [
                count("Accepted", ""),
                count("Rejected", "ForeignApplication"),
                count("Rejected", "Malformed"),
                count("Rejected", "TooLarge"),
            ]
        );
    }
}
