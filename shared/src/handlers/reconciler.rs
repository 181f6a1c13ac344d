//! `reconciler` (every 15 minutes): reads Mercado Livre's `missed_feeds` — the
//! notifications of our application that our callback did not answer with 200 in time —
//! per topic, and feeds each through the same envelope and dedupe path as the webhook, so
//! a notification Mercado Livre gave up on is still applied, and applied once: one whose
//! receipt is completed is skipped; one queued twice is deduplicated by the worker.
//!
//! `missed_feeds` is per application, but the call needs a seller's access token: any
//! connected seller's will do (it is counted against that account's budget).

use std::sync::Arc;

use serde::Serialize;

use super::ScheduledHandler;
use crate::auth::grants::{Grant, GrantError, GrantStatus, Grants};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::queue::Queue;
use crate::services::Services;
use crate::store::{EpochSeconds, StoreError};
use crate::upstream::{MercadoLivre, UpstreamError};
use crate::webhooks::mercadolivre::Notification;
use crate::webhooks::receipts::Receipts;
use crate::webhooks::{self, EnqueueError, Envelope, Source};

/// The topics the worker applies.
pub const TOPICS: [&str; 3] = ["questions", "orders_v2", "messages"];
/// Entries per `missed_feeds` page, and pages read per topic and run: at most 3 × 10
/// calls every 15 minutes (120 an hour of the application's 2000).
const PAGE: u32 = 10;
const MAX_PAGES: u32 = 10;
/// Grants looked at to find one that works.
const GRANTS_TRIED: usize = 20;

pub struct Reconciler {
    grants: Grants,
    receipts: Receipts,
    mercadolivre: Arc<MercadoLivre>,
    queue: Arc<dyn Queue>,
    application_id: String,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Entries `missed_feeds` listed.
    pub listed: usize,
    /// Queued again for the worker.
    pub queued: usize,
    /// Already applied (their receipt is completed).
    pub already_applied: usize,
    /// Not ours or not a notification.
    pub refused: usize,
    /// Set when no connected seller could make the calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Enqueue(#[from] EnqueueError),
}

impl ScheduledHandler for Reconciler {
    const FUNCTION: &'static str = "reconciler";

    type Report = Report;
    type Error = ReconcileError;

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            grants: services.grants()?,
            receipts: Receipts::new(services.store()),
            mercadolivre: services.mercadolivre()?,
            queue: services.webhook_queue(),
            application_id: services.config().auth.require_client_id()?.to_owned(),
            clock: services.clock(),
        })
    }

    async fn run(&self, now: EpochSeconds) -> Result<Report, ReconcileError> {
        let mut report = Report::default();
        let Some(grant) = self.connected_grant(now).await? else {
            report.skipped = Some("no connected seller");
            return Ok(report);
        };
        for topic in TOPICS {
            for page in 0..MAX_PAGES {
                let feeds = self
                    .mercadolivre
                    .missed_feeds(
                        &grant.tokens.access_token,
                        grant.info.seller_id,
                        &self.application_id,
                        topic,
                        page * PAGE,
                        PAGE,
                    )
                    .await?;
                let listed = feeds.messages.len();
                report.listed += listed;
                let mut envelopes = Vec::new();
                for feed in feeds.messages {
                    let notification = match Notification::parse(
                        feed.notification.get().as_bytes(),
                        &self.application_id,
                    ) {
                        Ok(notification) => notification,
                        Err(error) => {
                            tracing::warn!(topic, error = %error, "missed feed refused");
                            report.refused += 1;
                            continue;
                        }
                    };
                    let dedupe_key = notification.dedupe_key();
                    if self.receipts.is_completed(&dedupe_key).await? {
                        report.already_applied += 1;
                        continue;
                    }
                    envelopes.push(Envelope {
                        source: Source::MercadoLivre,
                        received_at_ms: self.clock.now_ms(),
                        dedupe_key,
                        correlation_id: format!("reconciler:{topic}"),
                        payload: feed.notification,
                        deferrals: 0,
                    });
                }
                webhooks::enqueue(self.queue.as_ref(), &envelopes).await?;
                report.queued += envelopes.len();
                if listed < PAGE as usize {
                    break;
                }
            }
        }
        if report.queued > 0 {
            webhooks::count(Source::MercadoLivre, "Reconciled");
        }
        tracing::info!(report = ?report, "missed feeds reconciled");
        Ok(report)
    }
}

impl Reconciler {
    /// A connected seller's grant whose access token is still valid.
    async fn connected_grant(&self, now: EpochSeconds) -> Result<Option<Grant>, ReconcileError> {
        let (tenants, _) = self
            .grants
            .due(EpochSeconds::MAX / 2, None, GRANTS_TRIED)
            .await?;
        for tenant in tenants {
            if let Some(grant) = self.grants.load(&tenant).await?
                && grant.info.status == GrantStatus::Ok
                && grant.info.expires_at > now
            {
                return Ok(Some(grant));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use axum::extract::Query as UrlQuery;
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;
    use crate::adapters::Adapters;
    use crate::auth::GrantCipher;

    use crate::clock::SystemClock;
    use crate::config::{Config, Profile};
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;

    const APP: &str = "2069392825111111";

    fn notification(id: &str, app: &str) -> String {
        json!({
            "_id": id, "resource": "/questions/1", "user_id": 468_424_240, "topic": "questions",
            "application_id": app.parse::<u64>().unwrap(), "attempts": 5,
            "sent": "2026-11-20T14:02:11.482Z", "received": "2026-11-20T14:02:11.341Z",
        })
        .to_string()
    }

    /// `missed_feeds`: three missed questions (one for another application), nothing
    /// else; each entry carries what was POSTed as `request.data`.
    async fn missed_feeds(
        UrlQuery(query): UrlQuery<HashMap<String, String>>,
    ) -> ([(&'static str, &'static str); 1], String) {
        let entries = if query.get("topic").map(String::as_str) == Some("questions")
            && query.get("offset").map(String::as_str) == Some("0")
        {
            [("n1", APP), ("n2", APP), ("n3", "1")]
                .iter()
                .map(|(id, app)| json!({ "request": { "data": notification(id, app) }, "response": { "http_code": 500 } }))
                .collect()
        } else {
            vec![]
        };
        (
            [("content-type", "application/json")],
            json!({ "messages": entries }).to_string(),
        )
    }

    #[tokio::test]
    async fn missed_notifications_are_queued_unless_already_applied() {
        let app = axum::Router::new().route("/missed_feeds", axum::routing::get(missed_feeds));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let key = GrantCipher::generate_key("k1");
        let vars: HashMap<&str, String> = HashMap::from([
            ("MERCADOLIVRE_API_URL", base),
            ("MERCADOLIVRE_CLIENT_ID", APP.into()),
            ("MERCADOLIVRE_CLIENT_SECRET", "secret".into()),
            ("GRANT_ENCRYPTION_KEY", key.expose_secret().to_owned()),
        ]);
        let config = Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db.clone()).unwrap());
        let queue = Arc::new(EmbeddedQueue::open(db, "q").unwrap());
        let services = Services::new(
            config,
            Adapters {
                store: Arc::clone(&store),
                webhook_queue: queue.clone(),
            },
        );
        let reconciler = Reconciler::build(&services).unwrap();

        let now = SystemClock.now_secs();
        assert_eq!(
            reconciler.run(now).await.unwrap().skipped,
            Some("no connected seller")
        );

        crate::testkit::connected_seller(&services, 468_424_240).await;
        // n1 was applied when it first arrived.
        let receipts = Receipts::new(Arc::clone(&store));
        let crate::webhooks::receipts::Claim::Claimed(receipt) = receipts
            .claim("mercadolivre:n1", "a", now + 30)
            .await
            .unwrap()
        else {
            panic!("claim");
        };
        receipts.complete(&receipt, "questions", now).await.unwrap();

        let report = reconciler.run(now).await.unwrap();
        assert_eq!(
            (
                report.listed,
                report.queued,
                report.already_applied,
                report.refused
            ),
            (3, 1, 1, 1)
        );
        let queued = queue
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(queued.len(), 1);
        let envelope = Envelope::from_message(&queued[0].body).unwrap();
        assert_eq!(
            envelope.dedupe_key, "mercadolivre:n2",
            "the same key as the webhook's"
        );
        assert_eq!(
            envelope.payload.get(),
            notification("n2", APP),
            "as Mercado Livre POSTed it"
        );
    }
}
