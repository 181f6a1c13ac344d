//! `webhook-worker`: the webhook queue's consumer. Each record is one envelope:
//!
//! 1. claim its dedupe key (a receipt; a completed one means it was applied: done);
//! 2. find the tenant (Mercado Livre: the seller; Meta: the linked phone number) — none
//!    means nobody to apply it for: acknowledged, logged and counted;
//! 3. hydrate (a Mercado Livre notification is a pointer: GET the resource with the
//!    seller's grant, through the limited client) and apply it to the inbox, in one
//!    transaction with the receipt's completion: `questions` → the question (and a
//!    `question.new` notification when it is new), `orders_v2` → an `order.updated`
//!    notification, `messages` → the message in its conversation; Meta `messages`
//!    changes → messages and delivery statuses. Other topics are acknowledged and counted.
//!
//! Work that cannot run now is deferred (re-sent with a delay, this delivery
//! acknowledged), or parked under the tenant when the seller must sign in again (the
//! sign-in replays it: `crate::webhooks::parking`); a real failure is retried with a backoff and dead-lettered, intact,
//! after `deferral::MAX_ATTEMPTS`. See `crate::webhooks::deferral`.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsMessage;

use super::QueueHandler;
use crate::auth::grants::{GrantError, GrantStatus, Grants};
use crate::auth::tenants::Tenants;
use crate::channels::Channels;
use crate::clock::Clock;
use crate::config::{ConfigError, WorkerSettings};
use crate::inbox::{
    Applied, Channel, ConversationRef, Direction, Inbox, Message, OrderUpdate, StatusUpdate,
};
use crate::queue::{Queue, QueueError};
use crate::services::Services;
use crate::store::StoreError;
use crate::upstream::{Disposition, MercadoLivre, UpstreamError};
use crate::webhooks::deferral::{self, MAX_ATTEMPTS};
use crate::webhooks::mercadolivre::Notification;
use crate::webhooks::meta::ChangeContent;
use crate::webhooks::parking::Parking;
use crate::webhooks::receipts::{Claim, Receipt, Receipts};
use crate::webhooks::{self, Envelope, Source, WebhookError};

/// How long work whose access token was refused waits for the token refresher.
const REAUTHORIZE_WAIT: Duration = Duration::from_secs(300);

pub struct WebhookWorker {
    receipts: Receipts,
    parking: Parking,
    inbox: Inbox,
    tenants: Tenants,
    channels: Channels,
    grants: Grants,
    mercadolivre: Arc<MercadoLivre>,
    /// The webhook queue; it has a dead-letter queue (checked at build).
    queue: Arc<dyn Queue>,
    settings: WorkerSettings,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error("the seller's Mercado Livre grant needs reconnecting")]
    NeedsReconnect { tenant: String },
    #[error("the receipt's claim lapsed before the change committed")]
    ClaimLost,
}

/// What the worker does with work that failed.
enum Next {
    Defer(Duration),
    /// Until the seller signs in again.
    Park {
        tenant: String,
    },
    Retry,
    /// Retry, but never dead-letter: another attempt may be applying it right now.
    RetryUndecided,
    DeadLetter,
}

impl WorkError {
    fn next(&self) -> Next {
        match self {
            WorkError::Upstream(error) => match error.disposition() {
                Disposition::Defer(wait) => Next::Defer(wait),
                Disposition::Reauthorize => Next::Defer(REAUTHORIZE_WAIT),
                Disposition::Retry => Next::Retry,
                Disposition::GiveUp => Next::DeadLetter,
            },
            WorkError::NeedsReconnect { tenant } => Next::Park {
                tenant: tenant.clone(),
            },
            WorkError::ClaimLost => Next::RetryUndecided,
            WorkError::Webhook(_) => Next::DeadLetter,
            WorkError::Store(StoreError::Invalid(_) | StoreError::Corrupt(_)) => Next::DeadLetter,
            WorkError::Store(_) | WorkError::Grant(_) | WorkError::Queue(_) => Next::Retry,
        }
    }
}

/// What became of an envelope the worker applied.
enum Done {
    /// Applied, or nothing was to be done for it: the `Result` it is counted with
    /// (`crate::webhooks::count_processed`).
    Processed(&'static str),
    /// Another attempt applied it first.
    Duplicate,
}

/// One delivery of a record, as SQS describes it.
struct Delivery<'a> {
    message_id: &'a str,
    receipt_handle: &'a str,
    body: &'a str,
    /// 1 on the first delivery.
    attempt: u32,
    /// A dead letter moved back to the queue (it carries the attributes the worker put on
    /// it when it gave up): an operator's decision to try again.
    redriven: bool,
}

impl<'a> Delivery<'a> {
    fn of(record: &'a SqsMessage) -> Delivery<'a> {
        Delivery {
            message_id: record.message_id.as_deref().unwrap_or_default(),
            receipt_handle: record.receipt_handle.as_deref().unwrap_or_default(),
            body: record.body.as_deref().unwrap_or_default(),
            attempt: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|count| count.parse().ok())
                .unwrap_or(1),
            redriven: record
                .message_attributes
                .contains_key(deferral::DEAD_LETTER_ATTEMPTS),
        }
    }
}

impl QueueHandler for WebhookWorker {
    const FUNCTION: &'static str = "webhook-worker";

    type Error = WorkError;

    fn build(services: &Services) -> Result<Self, ConfigError> {
        let store = services.store();
        let queue = services.webhook_queue();
        if queue.dead_letters().is_none() {
            return Err(ConfigError::Missing("WEBHOOK_DLQ_URL"));
        }
        Ok(Self {
            receipts: Receipts::new(Arc::clone(&store)),
            parking: Parking::new(Arc::clone(&store)),
            inbox: Inbox::new(Arc::clone(&store)),
            tenants: Tenants::new(Arc::clone(&store)),
            channels: Channels::new(store),
            grants: services.grants()?,
            mercadolivre: services.mercadolivre()?,
            queue,
            settings: services.config().worker,
            clock: services.clock(),
        })
    }

    async fn process(&self, record: SqsMessage, deadline_ms: i64) -> Result<(), WorkError> {
        let delivery = Delivery::of(&record);
        let envelope = match Envelope::from_message(delivery.body) {
            Ok(envelope) => envelope,
            Err(error) => {
                // Never applicable, however often it is tried.
                let error = format!("not an envelope: {error}");
                return self.send_dead_letter(&delivery, None, &error).await;
            }
        };
        let Some(receipt) = self.claim(&delivery, &envelope, deadline_ms).await? else {
            return Ok(());
        };
        let error = match self.apply(&envelope, &receipt).await {
            Ok(Done::Processed(result)) => {
                webhooks::count_processed(envelope.source, result);
                tracing::info!(dedupe_key = %envelope.dedupe_key, outcome = result, "webhook applied");
                return Ok(());
            }
            Ok(Done::Duplicate) => {
                webhooks::count(envelope.source, "Duplicate");
                tracing::info!(dedupe_key = %envelope.dedupe_key, "webhook applied by another attempt");
                return Ok(());
            }
            Err(error) => error,
        };
        let next = match error.next() {
            Next::Retry if delivery.attempt >= MAX_ATTEMPTS => Next::DeadLetter,
            next => next,
        };
        if let Next::DeadLetter = next {
            return self
                .dead_letter(&delivery, &envelope, &receipt, &error)
                .await;
        }
        if let Err(release) = self.receipts.release(&receipt).await {
            tracing::warn!(error = %release, "releasing a receipt failed; it lapses on its own");
        }
        match next {
            Next::Defer(wait) => self.defer(&envelope, wait).await,
            Next::Park { tenant } => {
                self.parking
                    .park(&tenant, &envelope, self.clock.now_secs())
                    .await?;
                tracing::info!(tenant = %tenant, dedupe_key = %envelope.dedupe_key, "webhook parked until the seller reconnects");
                webhooks::count(envelope.source, "Parked");
                Ok(())
            }
            Next::Retry | Next::RetryUndecided | Next::DeadLetter => {
                webhooks::count(envelope.source, "Failed");
                let backoff = deferral::retry_backoff(&self.settings, delivery.attempt);
                if let Err(hide) = self
                    .queue
                    .change_visibility(delivery.receipt_handle, backoff)
                    .await
                {
                    tracing::warn!(error = %hide, "backoff not set; the record returns after its visibility timeout");
                }
                Err(error)
            }
        }
    }
}

impl WebhookWorker {
    /// This delivery's claim on the envelope, or None when there is nothing to do: it was
    /// applied (a duplicate), or given up on (a stray copy of a dead letter), or it was
    /// deferred because another attempt holds it.
    async fn claim(
        &self,
        delivery: &Delivery<'_>,
        envelope: &Envelope,
        deadline_ms: i64,
    ) -> Result<Option<Receipt>, WorkError> {
        let attempt = format!("{}:{}", delivery.message_id, delivery.attempt);
        let until = deadline_ms.div_euclid(1000) + 1;
        let key = &envelope.dedupe_key;
        let mut claim = self.receipts.claim(key, &attempt, until).await?;
        if let Claim::Dead { version, .. } = &claim
            && delivery.redriven
        {
            claim = self.receipts.revive(key, *version, &attempt, until).await?;
        }
        match claim {
            Claim::Claimed(receipt) => Ok(Some(receipt)),
            Claim::Completed => {
                webhooks::count(envelope.source, "Duplicate");
                Ok(None)
            }
            // Another attempt holds it: look again once its claim may have lapsed.
            Claim::Busy => self.defer(envelope, Duration::ZERO).await.map(|()| None),
            // This very message was being dead-lettered when its attempt stopped: finish.
            Claim::Dead {
                version,
                message_id,
                sent,
            } if message_id == delivery.message_id => {
                if !sent {
                    let error = "given up on by an earlier attempt";
                    self.send_dead_letter(delivery, Some(envelope.source), error)
                        .await?;
                    let burial = Receipts::burial(key, version);
                    let now = self.clock.now_secs();
                    self.receipts
                        .buried_and_sent(&burial, delivery.message_id, now)
                        .await?;
                }
                Ok(None)
            }
            Claim::Dead { .. } => {
                webhooks::count(envelope.source, "DuplicateOfDeadLetter");
                Ok(None)
            }
        }
    }

    /// Gives up on the envelope: its receipt turns DEAD first (so that no copy of it
    /// applies it later), then the message goes to the dead-letter queue as delivered.
    async fn dead_letter(
        &self,
        delivery: &Delivery<'_>,
        envelope: &Envelope,
        receipt: &Receipt,
        error: &WorkError,
    ) -> Result<(), WorkError> {
        let now = self.clock.now_secs();
        let Some(burial) = self
            .receipts
            .bury(receipt, delivery.message_id, now)
            .await?
        else {
            // The claim lapsed: another attempt holds the envelope and decides.
            return Err(WorkError::ClaimLost);
        };
        self.send_dead_letter(delivery, Some(envelope.source), &error.to_string())
            .await?;
        self.receipts
            .buried_and_sent(&burial, delivery.message_id, now)
            .await?;
        Ok(())
    }

    /// Applies the envelope: what became of it, for metrics and logs.
    async fn apply(&self, envelope: &Envelope, receipt: &Receipt) -> Result<Done, WorkError> {
        let now_ms = self.clock.now_ms();
        let applied = match envelope.source {
            Source::MercadoLivre => self.apply_mercadolivre(envelope, receipt, now_ms).await,
            Source::Meta => self.apply_meta(envelope, receipt, now_ms).await,
        };
        match applied {
            // The claim lapsed before the change could commit: another attempt applied
            // the envelope, or holds it now, or will take it on the next delivery.
            Err(WorkError::Store(StoreError::TransactionCancelled { .. })) => {
                if self.receipts.is_completed(&envelope.dedupe_key).await? {
                    Ok(Done::Duplicate)
                } else {
                    Err(WorkError::ClaimLost)
                }
            }
            other => other.map(Done::Processed),
        }
    }

    async fn apply_mercadolivre(
        &self,
        envelope: &Envelope,
        receipt: &Receipt,
        now_ms: i64,
    ) -> Result<&'static str, WorkError> {
        let now = now_ms.div_euclid(1000);
        let notification = Notification::from_payload(&envelope.payload)?;
        let Some(tenant) = self.tenants.find(notification.user_id).await? else {
            tracing::warn!(seller_id = notification.user_id, topic = %notification.topic, "notification for a seller who is not linked: dropped");
            self.receipts
                .complete(receipt, "unlinked_seller", now)
                .await?;
            return Ok("UnlinkedSeller");
        };
        let grant = match self.grants.load(&tenant).await? {
            Some(grant) if grant.info.status == GrantStatus::Ok => grant,
            _ => return Err(WorkError::NeedsReconnect { tenant }),
        };
        let token = &grant.tokens.access_token;
        let seller_id = notification.user_id;
        let with = [self.receipts.completion(receipt, &notification.topic, now)];
        let applied = match notification.topic.as_str() {
            "questions" => {
                let id = resource_id(&notification.resource, "/questions/")?;
                let question = self.mercadolivre.get_question(token, seller_id, id).await?;
                self.inbox
                    .apply_question(&tenant, &question, now_ms, &with)
                    .await?
            }
            "orders_v2" => {
                let id = resource_id(&notification.resource, "/orders/")?;
                let order = self.mercadolivre.get_order(token, seller_id, id).await?;
                let update = OrderUpdate {
                    order_id: order.id,
                    status: order.status,
                    total: order.total_amount,
                    currency: order.currency_id,
                };
                self.inbox
                    .apply_order(&tenant, &update, now_ms, &with)
                    .await?
            }
            "messages" => {
                // The resource may be a bare message id, or a path ending in it.
                let id = notification.resource.rsplit('/').next().unwrap_or_default();
                let message = self.mercadolivre.get_message(token, seller_id, id).await?;
                let direction = if message.from_user_id == seller_id {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                let conversation = ConversationRef {
                    channel: Channel::MercadoLivre,
                    id: message.conversation_id.clone(),
                    title: None,
                };
                let message = Message {
                    at_ms: message.created_at.unix_timestamp().saturating_mul(1000),
                    id: message.id,
                    direction,
                    kind: "text".into(),
                    text: Some(message.text),
                };
                self.inbox
                    .apply_message(&tenant, &conversation, &message, now_ms, &with)
                    .await?
            }
            _ => {
                tracing::info!(topic = %notification.topic, "notification topic not applied");
                self.receipts
                    .complete(receipt, "ignored_topic", now)
                    .await?;
                return Ok("IgnoredTopic");
            }
        };
        Ok(outcome(applied))
    }

    async fn apply_meta(
        &self,
        envelope: &Envelope,
        receipt: &Receipt,
        now_ms: i64,
    ) -> Result<&'static str, WorkError> {
        let now = now_ms.div_euclid(1000);
        let change = ChangeContent::parse(&envelope.payload)?;
        let value = &change.value;
        let phone = value
            .metadata
            .as_ref()
            .map(|metadata| metadata.phone_number_id.as_str());
        let tenant = match phone {
            Some(phone) if change.field == "messages" => {
                self.channels.whatsapp_tenant(phone).await?
            }
            _ => {
                self.receipts
                    .complete(receipt, "ignored_field", now)
                    .await?;
                return Ok("IgnoredField");
            }
        };
        let Some(tenant) = tenant else {
            tracing::warn!(
                phone_number_id = phone.unwrap_or_default(),
                "change for a phone number no tenant linked: dropped"
            );
            self.receipts
                .complete(receipt, "unlinked_channel", now)
                .await?;
            return Ok("UnlinkedChannel");
        };
        // The receipt completes with the last write; the ones before it are idempotent
        // (a message already held, a status already reached) if this is tried again.
        let total = value.messages.len() + value.statuses.len();
        let with = [self.receipts.completion(receipt, "messages", now)];
        let with_last = |index: usize| if index + 1 == total { &with[..] } else { &[] };
        let mut applied = Applied::Unchanged;
        for (index, message) in value.messages.iter().enumerate() {
            let conversation = ConversationRef {
                channel: Channel::WhatsApp,
                id: message.from.clone(),
                title: change.contact_name(&message.from).map(str::to_owned),
            };
            let message = Message {
                id: message.id.clone(),
                direction: Direction::Inbound,
                kind: message.kind.clone(),
                text: message.text.as_ref().map(|text| text.body.clone()),
                at_ms: message.at_ms(),
            };
            applied = self
                .inbox
                .apply_message(&tenant, &conversation, &message, now_ms, with_last(index))
                .await?;
        }
        for (index, status) in value.statuses.iter().enumerate() {
            let update = StatusUpdate {
                channel: Channel::WhatsApp,
                conversation_id: status.recipient_id.clone(),
                message_id: status.id.clone(),
                status: status.status.clone(),
            };
            let index = value.messages.len() + index;
            applied = self
                .inbox
                .apply_message_status(&tenant, &update, now_ms, with_last(index))
                .await?;
        }
        if total == 0 {
            self.receipts.complete(receipt, "empty", now).await?;
        }
        Ok(outcome(applied))
    }

    /// Puts the envelope back for later as a new delayed message; this delivery is done.
    async fn defer(&self, envelope: &Envelope, wait: Duration) -> Result<(), WorkError> {
        let message = deferral::deferred(&self.settings, envelope, wait).map_err(|error| {
            WorkError::Webhook(WebhookError::Malformed {
                what: "envelope",
                reason: error.to_string(),
            })
        })?;
        tracing::info!(dedupe_key = %envelope.dedupe_key, delay_seconds = message.delay_seconds, deferrals = envelope.deferrals + 1, "webhook deferred");
        self.queue.send_batch(vec![message]).await?;
        webhooks::count(envelope.source, "Deferred");
        Ok(())
    }

    /// Sends the record, as delivered, to the dead-letter queue; this delivery is done.
    async fn send_dead_letter(
        &self,
        delivery: &Delivery<'_>,
        source: Option<Source>,
        error: &str,
    ) -> Result<(), WorkError> {
        tracing::error!(
            message_id = delivery.message_id,
            attempts = delivery.attempt,
            error,
            "webhook dead-lettered"
        );
        let dead_letters = self.queue.dead_letters().ok_or_else(|| {
            QueueError::Invalid("the webhook queue has no dead-letter queue".into())
        })?;
        dead_letters
            .send_batch(vec![deferral::dead_letter(
                delivery.body,
                error,
                delivery.attempt,
            )])
            .await?;
        if let Some(source) = source {
            webhooks::count(source, "DeadLettered");
        }
        Ok(())
    }
}

fn outcome(applied: Applied) -> &'static str {
    match applied {
        Applied::Created => "Created",
        Applied::Updated => "Updated",
        Applied::Unchanged => "Unchanged",
        Applied::UnknownMessage => "UnknownMessage",
    }
}

/// The numeric id at the end of a notification's resource (`/questions/123` → 123).
fn resource_id(resource: &str, prefix: &str) -> Result<u64, WebhookError> {
    resource
        .strip_prefix(prefix)
        .map(|rest| rest.split(['?', '/']).next().unwrap_or_default())
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| WebhookError::Malformed {
            what: "notification resource",
            reason: format!("expected {prefix}<id>, got {resource:?}"),
        })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU16, Ordering};

    use axum::extract::{Path, State};
    use axum::response::IntoResponse;
    use secrecy::ExposeSecret;
    use serde_json::json;

    use super::*;
    use crate::adapters::Adapters;
    use crate::auth::GrantCipher;

    use crate::clock::{ManualClock, SystemClock};
    use crate::config::{Config, Profile};
    use crate::embedded_db::EmbeddedDb;
    use crate::inbox::keys;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Query, Store};

    const SELLER: u64 = 468_424_240;
    const PHONE: &str = "106540352242922";

    fn fixture(path: &str) -> String {
        std::fs::read_to_string(format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Mercado Livre's API for one resource of each kind (a fixture), answering with
    /// `status` when it is not 200.
    async fn resource(
        State(status): State<Arc<AtomicU16>>,
        Path((kind, id)): Path<(String, String)>,
    ) -> axum::response::Response {
        let known = match (kind.as_str(), id.as_str()) {
            ("questions", "13190540261") => Some("mercadolivre/question-13190540261.json"),
            ("orders", "2000009876543210") => Some("mercadolivre/order-2000009876543210.json"),
            ("messages", "0190f3c2a1b24d5e8f7a6b5c4d3e2f10") => {
                Some("mercadolivre/message-post_sale.json")
            }
            _ => None,
        };
        match (status.load(Ordering::SeqCst), known) {
            (200, Some(path)) => {
                ([("content-type", "application/json")], fixture(path)).into_response()
            }
            (200, None) => (http::StatusCode::NOT_FOUND, "{}").into_response(),
            (code, _) => (
                http::StatusCode::from_u16(code).unwrap(),
                fixture("mercadolivre/error-429.json"),
            )
                .into_response(),
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        worker: WebhookWorker,
        store: Arc<dyn Store>,
        queue: Arc<EmbeddedQueue>,
        dead_letters: Arc<EmbeddedQueue>,
        api_status: Arc<AtomicU16>,
        clock: Arc<ManualClock>,
        tenant: String,
    }

    async fn fixture_worker() -> Fixture {
        let api_status = Arc::new(AtomicU16::new(200));
        let app = axum::Router::new()
            .route("/{kind}/{id}", axum::routing::get(resource))
            .with_state(Arc::clone(&api_status));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let key = GrantCipher::generate_key("k1");
        let vars: HashMap<&str, String> = HashMap::from([
            ("MERCADOLIVRE_API_URL", base),
            ("MERCADOLIVRE_CLIENT_ID", "2069392825111111".into()),
            ("MERCADOLIVRE_CLIENT_SECRET", "secret".into()),
            ("MERCADOLIVRE_MAX_ATTEMPTS", "1".into()),
            ("GRANT_ENCRYPTION_KEY", key.expose_secret().to_owned()),
        ]);
        let config = Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db.clone()).unwrap());
        let queue =
            Arc::new(EmbeddedQueue::open_with_dead_letters(db.clone(), "q", "dlq", 5).unwrap());
        let dead_letters = Arc::new(EmbeddedQueue::open(db, "dlq").unwrap());
        let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
        let services = Services::new(
            config,
            Adapters {
                store: Arc::clone(&store),
                webhook_queue: queue.clone(),
            },
        )
        .with_clock(clock.clone());
        let now = SystemClock.now_secs();
        let tenant = crate::testkit::connected_seller(&services, SELLER).await;
        Channels::new(Arc::clone(&store))
            .link_whatsapp(&tenant, PHONE, now)
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            worker: WebhookWorker::build(&services).unwrap(),
            store,
            queue,
            dead_letters,
            api_status,
            clock,
            tenant,
        }
    }

    fn envelope(source: Source, dedupe_key: &str, payload: &str) -> String {
        json!({
            "source": source,
            "received_at_ms": 1,
            "dedupe_key": dedupe_key,
            "correlation_id": "corr",
            "payload": serde_json::from_str::<serde_json::Value>(payload).unwrap(),
        })
        .to_string()
    }

    fn question_envelope() -> String {
        let notification = fixture("mercadolivre/notification-questions.json");
        envelope(Source::MercadoLivre, "mercadolivre:q1", &notification)
    }

    fn record(id: &str, body: &str, attempt: u32) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.into());
        record.receipt_handle = Some(format!("handle-{id}"));
        record.body = Some(body.into());
        record
            .attributes
            .insert("ApproximateReceiveCount".into(), attempt.to_string());
        record
    }

    fn deadline() -> i64 {
        SystemClock.now_ms() + 30_000
    }

    impl Fixture {
        async fn count(&self, partition: String) -> usize {
            self.store
                .query(Query::partition(partition).limit(50))
                .await
                .unwrap()
                .items
                .len()
        }

        async fn notifications(&self) -> usize {
            self.count(keys::notification(&self.tenant, "").pk).await
        }

        async fn waiting(&self, queue: &EmbeddedQueue) -> Vec<crate::queue::ReceivedMessage> {
            queue
                .receive(10, Duration::from_secs(60), Duration::ZERO)
                .await
                .unwrap()
        }
    }

    #[tokio::test]
    async fn a_question_notification_is_applied_once_however_often_it_arrives() {
        let f = fixture_worker().await;
        for (n, id) in ["m1", "m2", "m3"].into_iter().enumerate() {
            f.worker
                .process(record(id, &question_envelope(), 1), deadline())
                .await
                .unwrap_or_else(|error| panic!("delivery {n}: {error}"));
        }
        let question = f
            .store
            .get(&keys::question(&f.tenant, 13_190_540_261))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(question.data["status"], "UNANSWERED");
        assert_eq!(f.notifications().await, 1, "one question.new, not three");
        assert!(f.waiting(&f.queue).await.is_empty());
    }

    #[tokio::test]
    async fn a_rate_limited_notification_is_deferred_not_failed() {
        let f = fixture_worker().await;
        f.api_status.store(429, Ordering::SeqCst);
        f.worker
            .process(record("m1", &question_envelope(), 1), deadline())
            .await
            .unwrap();
        assert_eq!(f.notifications().await, 0);
        let stats = f.queue.stats().await.unwrap();
        assert_eq!(stats.delayed, 1, "re-sent with a delay: {stats:?}");

        // Once it can run, the deferred copy applies (its receipt was released). The 429
        // blocked the account in the limiter for a while: until then it would be
        // deferred again.
        f.api_status.store(200, Ordering::SeqCst);
        let blocked = f
            .worker
            .process(record("m2", &question_envelope(), 1), deadline())
            .await;
        assert!(blocked.is_ok());
        assert_eq!(
            f.queue.stats().await.unwrap().delayed,
            2,
            "deferred again while blocked"
        );
        f.clock.advance(Duration::from_secs(3600));
        let mut deferred = Envelope::from_message(&question_envelope()).unwrap();
        deferred.deferrals = 1;
        let body = deferred.to_message().unwrap().body;
        f.worker
            .process(record("m2", &body, 1), deadline())
            .await
            .unwrap();
        assert_eq!(f.notifications().await, 1);
    }

    #[tokio::test]
    async fn failures_retry_then_go_to_the_dead_letter_queue_intact() {
        let f = fixture_worker().await;
        f.api_status.store(500, Ordering::SeqCst);
        let body = question_envelope();
        for attempt in 1..MAX_ATTEMPTS {
            let error = f
                .worker
                .process(record("m1", &body, attempt), deadline())
                .await;
            assert!(error.is_err(), "attempt {attempt} is reported failed");
        }
        f.worker
            .process(record("m1", &body, MAX_ATTEMPTS), deadline())
            .await
            .unwrap();
        let dead = f.waiting(&f.dead_letters).await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, body, "the envelope as it was delivered");
        assert!(
            dead[0].attributes["error"].contains("500"),
            "{:?}",
            dead[0].attributes
        );
        assert_eq!(dead[0].attributes["attempts"], MAX_ATTEMPTS.to_string());
    }

    #[tokio::test]
    async fn what_cannot_ever_apply_goes_straight_to_the_dead_letter_queue() {
        let f = fixture_worker().await;
        f.worker
            .process(record("m1", "not json", 1), deadline())
            .await
            .unwrap();
        let bad_resource = envelope(
            Source::MercadoLivre,
            "mercadolivre:bad",
            &fixture("mercadolivre/notification-questions.json")
                .replace("/questions/13190540261", "/questions/abc"),
        );
        f.worker
            .process(record("m2", &bad_resource, 1), deadline())
            .await
            .unwrap();
        let bodies: Vec<String> = f
            .waiting(&f.dead_letters)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(bodies, ["not json".to_owned(), bad_resource]);
    }

    #[tokio::test]
    async fn a_seller_or_number_nobody_linked_is_dropped_and_counted() {
        let f = fixture_worker().await;
        let stranger =
            fixture("mercadolivre/notification-questions.json").replace("468424240", "1");
        f.worker
            .process(
                record("m1", &envelope(Source::MercadoLivre, "ml:x", &stranger), 1),
                deadline(),
            )
            .await
            .unwrap();
        let unlinked = fixture("meta/whatsapp-message.json");
        let change =
            crate::webhooks::meta::changes(unlinked.replace(PHONE, "999").as_bytes()).unwrap();
        f.worker
            .process(
                record(
                    "m2",
                    &envelope(Source::Meta, "meta:x", change[0].payload.get()),
                    1,
                ),
                deadline(),
            )
            .await
            .unwrap();
        assert_eq!(f.notifications().await, 0);
        let receipts = Receipts::new(Arc::clone(&f.store));
        assert!(receipts.is_completed("ml:x").await.unwrap());
        assert!(receipts.is_completed("meta:x").await.unwrap());
    }

    #[tokio::test]
    async fn a_whatsapp_message_and_its_status_reach_the_conversation() {
        let f = fixture_worker().await;
        let message =
            crate::webhooks::meta::changes(fixture("meta/whatsapp-message.json").as_bytes())
                .unwrap();
        let status =
            crate::webhooks::meta::changes(fixture("meta/whatsapp-status.json").as_bytes())
                .unwrap();
        f.worker
            .process(
                record(
                    "m1",
                    &envelope(
                        Source::Meta,
                        &message[0].dedupe_key,
                        message[0].payload.get(),
                    ),
                    1,
                ),
                deadline(),
            )
            .await
            .unwrap();
        f.worker
            .process(
                record(
                    "m2",
                    &envelope(Source::Meta, &status[0].dedupe_key, status[0].payload.get()),
                    1,
                ),
                deadline(),
            )
            .await
            .unwrap();
        let conversation = f
            .store
            .get(&keys::conversation(
                &f.tenant,
                Channel::WhatsApp,
                "5511988887777",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conversation.data["title"], "Ana Souza");
        assert_eq!(conversation.data["messages"], 1);
        assert_eq!(f.notifications().await, 1);
        // The status is of a message the seller sent (not in the inbox): acknowledged.
        assert!(
            Receipts::new(Arc::clone(&f.store))
                .is_completed(&status[0].dedupe_key)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_grant_that_needs_reconnecting_parks_the_notification() {
        let f = fixture_worker().await;
        let grants = &f.worker.grants;
        let mut grant = grants.load(&f.tenant).await.unwrap().unwrap();
        grant.info.status = GrantStatus::NeedsReconnect;
        grants.connect(grant.info, &grant.tokens).await.unwrap();

        f.worker
            .process(record("m1", &question_envelope(), 1), deadline())
            .await
            .unwrap();
        let parking = Parking::new(Arc::clone(&f.store));
        assert_eq!(parking.count(&f.tenant, 10).await.unwrap(), 1);
        assert_eq!(
            f.queue.stats().await.unwrap().delayed,
            0,
            "parked, not deferred"
        );
        assert!(
            !Receipts::new(Arc::clone(&f.store))
                .is_completed("mercadolivre:q1")
                .await
                .unwrap()
        );
        assert!(f.waiting(&f.dead_letters).await.is_empty());
    }

    #[tokio::test]
    async fn an_order_notifies_and_a_post_sale_message_joins_its_conversation() {
        let f = fixture_worker().await;
        let order = fixture("mercadolivre/notification-orders_v2.json");
        let message = fixture("mercadolivre/notification-messages.json");
        f.worker
            .process(
                record("m1", &envelope(Source::MercadoLivre, "ml:o", &order), 1),
                deadline(),
            )
            .await
            .unwrap();
        f.worker
            .process(
                record("m2", &envelope(Source::MercadoLivre, "ml:m", &message), 1),
                deadline(),
            )
            .await
            .unwrap();

        let listed = f
            .store
            .query(Query::partition(keys::notification(&f.tenant, "").pk).limit(10))
            .await
            .unwrap()
            .items;
        let kinds: Vec<&str> = listed
            .iter()
            .map(|item| item.data["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["order.updated", "message.new"]);
        assert_eq!(listed[0].data["data"]["order_id"], 2_000_009_876_543_210u64);
        assert!(listed[0].data["data"]["status"].is_string());
        let conversations = f
            .store
            .query(
                Query::partition(keys::conversations(&f.tenant))
                    .on_gsi1()
                    .limit(10),
            )
            .await
            .unwrap()
            .items;
        assert_eq!(conversations.len(), 1);
        assert_eq!(conversations[0].data["channel"], "mercadolivre");
        assert_eq!(
            conversations[0].data["last_message"]["text"],
            "Olá! O pedido já foi enviado?"
        );
        assert_eq!(
            conversations[0].data["last_message"]["direction"], "inbound",
            "from the buyer"
        );
    }

    #[tokio::test]
    async fn a_dead_letter_stops_its_copies_until_it_is_redriven() {
        let f = fixture_worker().await;
        f.api_status.store(500, Ordering::SeqCst);
        let body = question_envelope();
        f.worker
            .process(record("m1", &body, MAX_ATTEMPTS), deadline())
            .await
            .unwrap();
        let dead = f.waiting(&f.dead_letters).await;
        assert_eq!(dead.len(), 1);

        // A copy of it (a deferral re-sent before its original was deleted) stops.
        f.api_status.store(200, Ordering::SeqCst);
        f.worker
            .process(record("m2", &body, 1), deadline())
            .await
            .unwrap();
        assert_eq!(
            f.notifications().await,
            0,
            "declared dead: not applied by a copy"
        );

        // The operator redrives the dead letter: it applies.
        let mut redriven = record("m3", &dead[0].body, 1);
        for (name, value) in &dead[0].attributes {
            let mut attribute = aws_lambda_events::sqs::SqsMessageAttribute::default();
            attribute.string_value = Some(value.clone());
            attribute.data_type = Some("String".into());
            redriven.message_attributes.insert(name.clone(), attribute);
        }
        f.worker.process(redriven, deadline()).await.unwrap();
        assert_eq!(f.notifications().await, 1);
    }

    #[tokio::test]
    async fn every_end_of_a_delivery_is_counted_by_source_and_outcome() {
        let f = fixture_worker().await;
        let question = |key: &str| {
            let notification = fixture("mercadolivre/notification-questions.json");
            envelope(Source::MercadoLivre, key, &notification)
        };
        let unlinked = fixture("meta/whatsapp-message.json").replace(PHONE, "999");
        let change = crate::webhooks::meta::changes(unlinked.as_bytes()).unwrap();
        let unlinked = envelope(Source::Meta, "meta:x", change[0].payload.get());

        let ((), lines) = crate::telemetry::emf::capture::lines(async {
            let process = |id: &str, body: &str, attempt: u32| {
                f.worker.process(record(id, body, attempt), deadline())
            };
            process("m1", &question("ml:q1"), 1).await.unwrap();
            process("m2", &question("ml:q1"), 1).await.unwrap();
            process("m3", &unlinked, 1).await.unwrap();
            f.api_status.store(500, Ordering::SeqCst);
            assert!(process("m4", &question("ml:q2"), 1).await.is_err());
            process("m4", &question("ml:q2"), MAX_ATTEMPTS)
                .await
                .unwrap();
            f.api_status.store(429, Ordering::SeqCst);
            process("m5", &question("ml:q3"), 1).await.unwrap();
            let grants = &f.worker.grants;
            let mut grant = grants.load(&f.tenant).await.unwrap().unwrap();
            grant.info.status = GrantStatus::NeedsReconnect;
            grants.connect(grant.info, &grant.tokens).await.unwrap();
            process("m6", &question("ml:q4"), 1).await.unwrap();
        })
        .await;

        let count = |source: &str, outcome: &str, detail: &str| {
            (source.to_owned(), outcome.to_owned(), detail.to_owned())
        };
        assert_eq!(
            crate::webhooks::counted(&lines),
            [
                count("mercadolivre", "Processed", "Created"),
                count("mercadolivre", "Duplicate", ""),
                count("meta", "Processed", "UnlinkedChannel"),
                count("mercadolivre", "Failed", ""),
                count("mercadolivre", "DeadLettered", ""),
                count("mercadolivre", "Deferred", ""),
                count("mercadolivre", "Parked", ""),
            ]
        );
        // The calls to Mercado Livre, by status.
        let calls = crate::telemetry::emf::capture::of(&lines, "UpstreamCalls");
        let statuses: Vec<&str> = calls
            .iter()
            .map(|line| line["Status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["200", "500", "500", "429"]);
        for line in calls {
            assert_eq!(line["Dependency"], "mercadolivre");
            assert_eq!(
                crate::telemetry::emf::capture::dimension_sets(line),
                json!([["Dependency", "Operation", "Status"]])
            );
        }
    }
}
