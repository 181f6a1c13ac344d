//! The inbox's write model: questions, conversations, messages and notifications, as the
//! webhook worker applies provider changes to a tenant. Keys are in [`keys`]; the
//! notifications' read side is [`notifications`].
//!
//! Each change is one transactional write of its items and its event (see
//! `crate::events`), so a crash never leaves an inbox item without its event or the
//! reverse. An item that several changes update (a conversation) is read and written on
//! its version; a change that loses a race is rebuilt and retried. Every `apply_*` takes
//! `with`: the caller's writes to commit in the same transaction (the webhook worker's
//! receipt), written even when the change itself turns out to change nothing.

pub mod conversations;
pub mod keys;
pub mod notifications;
pub mod questions;

use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};

use crate::events;
use crate::store::{Condition, Item, Key, Store, StoreError, StoreResult, WriteOp};
use crate::upstream::{PublishedAnswer, Question};
use std::sync::Arc;

/// How many times a change is rebuilt after a concurrent write cancelled it.
const ATTEMPTS: u32 = 8;

/// Where a conversation happens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Mercado Livre's post-sale messages (a conversation per pack or order).
    MercadoLivre,
    /// WhatsApp (a conversation per customer's WhatsApp id).
    WhatsApp,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::MercadoLivre => "mercadolivre",
            Channel::WhatsApp => "whatsapp",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Channel::MercadoLivre, Channel::WhatsApp]
            .into_iter()
            .find(|channel| channel.as_str() == text)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// From the seller.
    Outbound,
}

/// The conversation a message belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConversationRef {
    pub channel: Channel,
    pub id: String,
    /// Who the seller talks to, when the provider says (a WhatsApp profile name).
    pub title: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    pub id: String,
    pub direction: Direction,
    /// `text`, `image`, … as the provider names it.
    pub kind: String,
    pub text: Option<String>,
    /// When the provider says it was sent, in milliseconds since the epoch.
    pub at_ms: i64,
}

/// A message's new delivery status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub channel: Channel,
    pub conversation_id: String,
    pub message_id: String,
    /// `sent`, `delivered`, `read` or `failed`.
    pub status: String,
}

/// An order's state, as an `order.updated` notification carries it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrderUpdate {
    pub order_id: u64,
    pub status: String,
    pub total: Option<f64>,
    pub currency: Option<String>,
}

/// What applying a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    Created,
    Updated,
    /// Nothing new: the store already says what the change says.
    Unchanged,
    /// A status for a message the inbox does not hold.
    UnknownMessage,
}

/// The tenants' inboxes (write side).
#[derive(Clone)]
pub struct Inbox {
    store: Arc<dyn Store>,
}

/// One change to write, and what it does.
struct Plan {
    ops: Vec<WriteOp>,
    applied: Applied,
}

impl Inbox {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// A question as Mercado Livre has it now: new (with a `question.new` notification),
    /// or an update of the one we hold (answered elsewhere, closed, deleted…).
    pub async fn apply_question(
        &self,
        tenant: &str,
        question: &Question,
        now_ms: i64,
        with: &[WriteOp],
    ) -> StoreResult<Applied> {
        let status = serde_json::to_value(question.status)
            .ok()
            .and_then(|status| status.as_str().map(str::to_owned))
            .unwrap_or_default();
        let asked_ms = millis(question.date_created);
        let data = json!({
            "id": question.id,
            "item_id": question.item_id,
            "status": status,
            "text": question.text,
            "asked_at_ms": asked_ms,
            "from": question.from.id,
            "answer": question.answer.as_ref().map(|answer| json!({
                "text": answer.text,
                "at_ms": answer.date_created.map(millis),
            })),
            "hold": question.hold,
            "deleted_from_listing": question.deleted_from_listing,
        });
        let item =
            Item::new(keys::question(tenant, question.id), data.clone()).with_gsi1(Key::new(
                keys::questions_by_status(tenant, &status),
                format!("{}#{}", keys::sortable_ms(asked_ms), question.id),
            ));
        let (item, data) = (&item, &data);
        self.commit(with, || async move {
            let Some(old) = self.store.get(&item.key).await? else {
                let mut ops = vec![put(item.clone().with_version(1), Condition::Absent)];
                ops.extend(Self::notify(tenant, "question.new", data, now_ms));
                ops.push(event(tenant, "question.new", data, now_ms));
                return Ok(Some(Plan {
                    ops,
                    applied: Applied::Created,
                }));
            };
            if old.data == *data {
                return Ok(None);
            }
            Ok(Some(Plan {
                ops: vec![
                    put(
                        item.clone().with_version(old.version + 1),
                        Condition::VersionIs(old.version),
                    ),
                    event(tenant, "question.updated", data, now_ms),
                ],
                applied: Applied::Updated,
            }))
        })
        .await
    }

    /// The seller's answer, published on Mercado Livre through this API: the question
    /// becomes ANSWERED (unless a notification already said so) with a `question.answered`
    /// event.
    pub async fn apply_answer(
        &self,
        tenant: &str,
        answer: &PublishedAnswer,
        now_ms: i64,
        with: &[WriteOp],
    ) -> StoreResult<Applied> {
        let key = keys::question(tenant, answer.question_id);
        let key = &key;
        self.commit(with, || async move {
            let Some(old) = self.store.get(key).await? else {
                return Ok(None);
            };
            if old.data["status"] == "ANSWERED" {
                return Ok(None);
            }
            let mut item = old.clone().with_version(old.version + 1);
            item.data["status"] = json!("ANSWERED");
            item.data["answer"] = json!({
                "text": answer.text,
                "at_ms": answer.date_created.map_or(now_ms, millis),
            });
            if let Some(gsi1) = &mut item.gsi1 {
                gsi1.pk = keys::questions_by_status(tenant, "ANSWERED");
            }
            let event = event(tenant, "question.answered", &item.data, now_ms);
            Ok(Some(Plan {
                ops: vec![put(item, Condition::VersionIs(old.version)), event],
                applied: Applied::Updated,
            }))
        })
        .await
    }

    /// An order changed: an `order.updated` notification with its status and total.
    pub async fn apply_order(
        &self,
        tenant: &str,
        order: &OrderUpdate,
        now_ms: i64,
        with: &[WriteOp],
    ) -> StoreResult<Applied> {
        let data = serde_json::to_value(order)
            .map_err(|error| StoreError::Invalid(format!("order: {error}")))?;
        let data = &data;
        self.commit(with, || async move {
            let mut ops = Self::notify(tenant, "order.updated", data, now_ms).to_vec();
            ops.push(event(tenant, "order.updated", data, now_ms));
            Ok(Some(Plan {
                ops,
                applied: Applied::Created,
            }))
        })
        .await
    }

    /// A message in a conversation (created with its first message). An inbound message
    /// also notifies the seller. A message the inbox already holds changes nothing.
    pub async fn apply_message(
        &self,
        tenant: &str,
        conversation: &ConversationRef,
        message: &Message,
        now_ms: i64,
        with: &[WriteOp],
    ) -> StoreResult<Applied> {
        let (channel, conversation_id) = (conversation.channel, conversation.id.as_str());
        let message_key = keys::message(tenant, channel, conversation_id, &message.id);
        let mut message_data = serde_json::to_value(message)
            .map_err(|error| StoreError::Invalid(format!("message: {error}")))?;
        message_data["conversation_id"] = json!(conversation_id);
        message_data["channel"] = json!(channel);
        let message_item =
            Item::new(message_key.clone(), message_data.clone()).with_gsi1(Key::new(
                keys::messages(tenant, channel, conversation_id),
                format!("{}#{}", keys::sortable_ms(message.at_ms), message.id),
            ));
        let conversation_key = keys::conversation(tenant, channel, conversation_id);
        let (message_key, message_item, message_data) =
            (&message_key, &message_item, &message_data);
        let conversation_key = &conversation_key;
        self.commit(with, || async move {
            if self.store.get(message_key).await?.is_some() {
                return Ok(None);
            }
            let old = self.store.get(conversation_key).await?;
            let data = conversation_data(old.as_ref(), conversation, message);
            let updated_ms = data["updated_at_ms"].as_i64().unwrap_or(message.at_ms);
            let conversation_item =
                Item::new(conversation_key.clone(), data.clone()).with_gsi1(Key::new(
                    keys::conversations(tenant),
                    format!(
                        "{}#{}#{conversation_id}",
                        keys::sortable_ms(updated_ms),
                        channel.as_str()
                    ),
                ));
            let mut ops = vec![
                versioned(conversation_item, old.as_ref()),
                put(message_item.clone().with_version(1), Condition::Absent),
            ];
            if message.direction == Direction::Inbound {
                ops.extend(Self::notify(tenant, "message.new", message_data, now_ms));
            }
            ops.push(event(tenant, "message.new", message_data, now_ms));
            Ok(Some(Plan {
                ops,
                applied: Applied::Created,
            }))
        })
        .await
    }

    /// The seller read a conversation: its unread count goes to zero, with a
    /// `conversation.read` event. Reading one with nothing unread, or one the tenant does
    /// not have, changes nothing.
    pub async fn apply_conversation_read(
        &self,
        tenant: &str,
        channel: Channel,
        conversation_id: &str,
        now_ms: i64,
    ) -> StoreResult<Applied> {
        let key = keys::conversation(tenant, channel, conversation_id);
        let key = &key;
        self.commit(&[], || async move {
            let Some(old) = self.store.get(key).await? else {
                return Ok(None);
            };
            if old.data["unread"].as_u64().unwrap_or(0) == 0 {
                return Ok(None);
            }
            let mut item = old.clone().with_version(old.version + 1);
            item.data["unread"] = json!(0);
            let data = json!({ "channel": channel, "conversation_id": conversation_id });
            Ok(Some(Plan {
                ops: vec![
                    put(item, Condition::VersionIs(old.version)),
                    event(tenant, "conversation.read", &data, now_ms),
                ],
                applied: Applied::Updated,
            }))
        })
        .await
    }

    /// A message's delivery status (`sent` → `delivered` → `read`, or `failed`); a status
    /// that arrives after a later one changes nothing.
    pub async fn apply_message_status(
        &self,
        tenant: &str,
        update: &StatusUpdate,
        now_ms: i64,
        with: &[WriteOp],
    ) -> StoreResult<Applied> {
        let StatusUpdate {
            channel,
            conversation_id,
            message_id,
            status,
        } = update;
        let (channel, status) = (*channel, status.as_str());
        let key = keys::message(tenant, channel, conversation_id, message_id);
        let key = &key;
        self.commit(with, || async move {
            let Some(old) = self.store.get(key).await? else {
                return Ok(Some(Plan {
                    ops: Vec::new(),
                    applied: Applied::UnknownMessage,
                }));
            };
            let current = old.data["status"].as_str().unwrap_or_default();
            if status_rank(status) <= status_rank(current) {
                return Ok(None);
            }
            let mut item = old.clone().with_version(old.version + 1);
            item.data["status"] = json!(status);
            let data = json!({
                "channel": channel,
                "conversation_id": conversation_id,
                "message_id": message_id,
                "status": status,
            });
            Ok(Some(Plan {
                ops: vec![
                    put(item, Condition::VersionIs(old.version)),
                    event(tenant, "message.status", &data, now_ms),
                ],
                applied: Applied::Updated,
            }))
        })
        .await
    }

    /// Writes the plan `build` makes together with `with` (the caller's own writes, such
    /// as the worker's receipt), rebuilding the plan when a concurrent write to its items
    /// cancelled the transaction. A plan of `None` writes `with` alone. When one of
    /// `with` fails its condition the cancellation is returned as it is: rebuilding the
    /// plan cannot help.
    async fn commit<Fut>(
        &self,
        with: &[WriteOp],
        mut build: impl FnMut() -> Fut,
    ) -> StoreResult<Applied>
    where
        Fut: Future<Output = StoreResult<Option<Plan>>>,
    {
        for attempt in 1..=ATTEMPTS {
            let Plan { mut ops, applied } = build().await?.unwrap_or(Plan {
                ops: Vec::new(),
                applied: Applied::Unchanged,
            });
            let planned = ops.len();
            ops.extend_from_slice(with);
            if ops.is_empty() {
                return Ok(applied);
            }
            match self.store.transact(ops).await {
                Ok(()) => return Ok(applied),
                Err(StoreError::TransactionCancelled { failed })
                    if failed.iter().any(|index| *index >= planned) =>
                {
                    return Err(StoreError::TransactionCancelled { failed });
                }
                Err(StoreError::TransactionCancelled { .. }) if attempt < ATTEMPTS => {
                    let jitter = fastrand::u64(5..=25) * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Unavailable(
            "the inbox change kept conflicting with concurrent writes".into(),
        ))
    }

    /// A new unread notification, on the tenant's unread index, and one more on the
    /// tenant's unread counter: the list reads the count in one get, never by counting.
    /// Every notification of a tenant adds to that one item, so on DynamoDB concurrent
    /// changes of one tenant can cancel each other's transactions; `commit` retries them.
    fn notify(tenant: &str, kind: &str, data: &Value, now_ms: i64) -> [WriteOp; 2] {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let notification = Item::new(
            keys::notification(tenant, &id),
            json!({ "id": id, "type": kind, "at_ms": now_ms, "data": data, "read": false }),
        )
        .with_gsi1(Key::new(keys::unread_notifications(tenant), id));
        [
            put(notification, Condition::Absent),
            WriteOp::Add {
                key: keys::unread_count(tenant),
                delta: 1,
            },
        ]
    }
}

fn put(item: Item, condition: Condition) -> WriteOp {
    WriteOp::Put { item, condition }
}

/// `item` as the next version of `old` (or the first one), written only if `old` is
/// still what the store holds.
fn versioned(item: Item, old: Option<&Item>) -> WriteOp {
    match old {
        Some(old) => put(
            item.with_version(old.version + 1),
            Condition::VersionIs(old.version),
        ),
        None => put(item.with_version(1), Condition::Absent),
    }
}

fn event(tenant: &str, kind: &str, data: &Value, now_ms: i64) -> WriteOp {
    put(
        events::event_item(tenant, kind, data.clone(), now_ms.div_euclid(1000)),
        Condition::Absent,
    )
}

fn millis(at: time::OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A conversation after `message`: its latest message is the newest one seen, whatever
/// order they arrive in.
fn conversation_data(
    old: Option<&Item>,
    conversation: &ConversationRef,
    message: &Message,
) -> Value {
    let mut data = old.map_or_else(
        || {
            json!({
                "channel": conversation.channel,
                "id": conversation.id,
                "created_at_ms": message.at_ms,
                "updated_at_ms": message.at_ms,
                "messages": 0,
                "unread": 0,
            })
        },
        |old| old.data.clone(),
    );
    if let Some(title) = &conversation.title {
        data["title"] = json!(title);
    }
    let updated_ms = data["updated_at_ms"].as_i64().unwrap_or(i64::MIN);
    if message.at_ms >= updated_ms || data["last_message"].is_null() {
        data["updated_at_ms"] = json!(message.at_ms.max(updated_ms));
        data["last_message"] = json!({
            "id": message.id,
            "direction": message.direction,
            "text": message.text,
            "at_ms": message.at_ms,
        });
    }
    data["messages"] = json!(data["messages"].as_u64().unwrap_or(0) + 1);
    if message.direction == Direction::Inbound {
        data["unread"] = json!(data["unread"].as_u64().unwrap_or(0) + 1);
    }
    data
}

/// Delivery statuses only move forward.
fn status_rank(status: &str) -> u8 {
    match status {
        "" => 0,
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        "failed" => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::store::Query;
    use crate::store::embedded::EmbeddedStore;

    /// The store's liveness follows the real clock: events written "at 0" would be expired.
    fn now() -> i64 {
        SystemClock.now_ms()
    }

    fn inbox() -> (Inbox, Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        (Inbox::new(Arc::clone(&store)), store, dir)
    }

    fn question() -> Question {
        serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/fixtures/mercadolivre/question-13190540261.json"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    async fn all(store: &dyn Store, query: Query) -> Vec<Item> {
        store.query(query.limit(50)).await.unwrap().items
    }

    async fn types(store: &dyn Store, query: Query) -> Vec<String> {
        all(store, query)
            .await
            .iter()
            .map(|item| item.data["type"].as_str().unwrap().to_owned())
            .collect()
    }

    fn events(tenant: &str) -> Query {
        Query::partition(format!("TENANT#{tenant}"))
            .sort(crate::store::SortKey::BeginsWith("EVENT#".into()))
    }

    fn notifications(tenant: &str) -> Query {
        Query::partition(keys::notifications(tenant)).backward()
    }

    async fn unread_count(store: &dyn Store, tenant: &str) -> Option<i64> {
        let counter = store.get(&keys::unread_count(tenant)).await.unwrap();
        counter.map(|item| item.counter)
    }

    #[tokio::test]
    async fn a_new_question_is_stored_with_its_notification_and_event_once() {
        let (inbox, store, _dir) = inbox();
        let question = question();
        assert_eq!(
            inbox
                .apply_question("t1", &question, now(), &[])
                .await
                .unwrap(),
            Applied::Created
        );
        assert_eq!(
            inbox
                .apply_question("t1", &question, now(), &[])
                .await
                .unwrap(),
            Applied::Unchanged
        );

        let stored = store
            .get(&keys::question("t1", 13_190_540_261))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.data["status"], "UNANSWERED");
        assert_eq!(stored.data["text"], question.text);
        let unanswered = all(
            &*store,
            Query::partition(keys::questions_by_status("t1", "UNANSWERED")).on_gsi1(),
        )
        .await;
        assert_eq!(unanswered.len(), 1);
        assert_eq!(types(&*store, notifications("t1")).await, ["question.new"]);
        assert_eq!(types(&*store, events("t1")).await, ["question.new"]);
        let unread = all(
            &*store,
            Query::partition(keys::unread_notifications("t1")).on_gsi1(),
        )
        .await;
        assert_eq!(unread.len(), 1);
        assert_eq!(unread_count(&*store, "t1").await, Some(1), "counted once");
        assert!(
            all(&*store, notifications("t2")).await.is_empty(),
            "tenants stay apart"
        );
    }

    #[tokio::test]
    async fn a_question_answered_elsewhere_moves_to_its_new_status() {
        let (inbox, store, _dir) = inbox();
        let mut question = question();
        inbox
            .apply_question("t1", &question, now(), &[])
            .await
            .unwrap();
        question.status = crate::upstream::QuestionStatus::Answered;
        question.answer = Some(crate::upstream::Answer {
            text: "Serve sim!".into(),
            status: Some("ACTIVE".into()),
            date_created: None,
        });
        assert_eq!(
            inbox
                .apply_question("t1", &question, now(), &[])
                .await
                .unwrap(),
            Applied::Updated
        );
        let by_status = |status: &'static str| {
            let store = Arc::clone(&store);
            async move {
                all(
                    &*store,
                    Query::partition(keys::questions_by_status("t1", status)).on_gsi1(),
                )
                .await
                .len()
            }
        };
        assert_eq!(by_status("UNANSWERED").await, 0);
        assert_eq!(by_status("ANSWERED").await, 1);
        assert_eq!(
            types(&*store, notifications("t1")).await,
            ["question.new"],
            "no second notification"
        );
        assert_eq!(
            types(&*store, events("t1")).await,
            ["question.new", "question.updated"]
        );
    }

    fn whatsapp(id: &str) -> ConversationRef {
        ConversationRef {
            channel: Channel::WhatsApp,
            id: id.into(),
            title: Some("Ana Souza".into()),
        }
    }

    fn inbound(id: &str, at_ms: i64) -> Message {
        Message {
            id: id.into(),
            direction: Direction::Inbound,
            kind: "text".into(),
            text: Some(format!("message {id}")),
            at_ms,
        }
    }

    #[tokio::test]
    async fn messages_build_their_conversation_whatever_their_order() {
        let (inbox, store, _dir) = inbox();
        let conversation = whatsapp("5511988887777");
        for message in [
            inbound("w2", 2_000),
            inbound("w1", 1_000),
            inbound("w2", 2_000),
        ] {
            inbox
                .apply_message("t1", &conversation, &message, now(), &[])
                .await
                .unwrap();
        }
        let key = keys::conversation("t1", Channel::WhatsApp, "5511988887777");
        let stored = store.get(&key).await.unwrap().unwrap();
        assert_eq!(
            stored.data["messages"], 2,
            "the repeated message counted once"
        );
        assert_eq!(stored.data["unread"], 2);
        assert_eq!(
            stored.data["last_message"]["id"], "w2",
            "the newest, not the last to arrive"
        );
        assert_eq!(stored.data["title"], "Ana Souza");
        let listed = all(
            &*store,
            Query::partition(keys::messages("t1", Channel::WhatsApp, "5511988887777"))
                .on_gsi1()
                .backward(),
        )
        .await;
        let ids: Vec<&str> = listed
            .iter()
            .map(|item| item.data["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["w2", "w1"], "newest first");
        let conversations = all(
            &*store,
            Query::partition(keys::conversations("t1"))
                .on_gsi1()
                .backward(),
        )
        .await;
        assert_eq!(
            conversations.len(),
            1,
            "one conversation, re-indexed as it updates"
        );
        assert_eq!(
            types(&*store, notifications("t1")).await,
            ["message.new", "message.new"]
        );
        assert_eq!(unread_count(&*store, "t1").await, Some(2));
        assert_eq!(
            types(&*store, events("t1")).await,
            ["message.new", "message.new"]
        );
    }

    #[tokio::test]
    async fn concurrent_messages_of_one_conversation_all_land() {
        let (inbox, store, _dir) = inbox();
        let conversation = whatsapp("c1");
        let tasks: Vec<_> = (0..6)
            .map(|n| {
                let (inbox, conversation) = (inbox.clone(), conversation.clone());
                tokio::spawn(async move {
                    inbox
                        .apply_message(
                            "t1",
                            &conversation,
                            &inbound(&format!("m{n}"), n),
                            now(),
                            &[],
                        )
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), Applied::Created);
        }
        let stored = store
            .get(&keys::conversation("t1", Channel::WhatsApp, "c1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.data["messages"], 6);
        assert_eq!(stored.data["last_message"]["id"], "m5");
        assert_eq!(
            unread_count(&*store, "t1").await,
            Some(6),
            "each one counted"
        );
    }

    #[tokio::test]
    async fn statuses_only_move_forward() {
        let (inbox, store, _dir) = inbox();
        inbox
            .apply_message("t1", &whatsapp("c1"), &inbound("w1", 1), now(), &[])
            .await
            .unwrap();
        let status = |status: &'static str, message: &'static str| {
            let inbox = inbox.clone();
            async move {
                inbox
                    .apply_message_status(
                        "t1",
                        &StatusUpdate {
                            channel: Channel::WhatsApp,
                            conversation_id: "c1".into(),
                            message_id: message.into(),
                            status: status.into(),
                        },
                        now(),
                        &[],
                    )
                    .await
                    .unwrap()
            }
        };
        assert_eq!(status("delivered", "w1").await, Applied::Updated);
        assert_eq!(status("sent", "w1").await, Applied::Unchanged);
        assert_eq!(status("read", "w1").await, Applied::Updated);
        assert_eq!(status("read", "nope").await, Applied::UnknownMessage);
        let message = store
            .get(&keys::message("t1", Channel::WhatsApp, "c1", "w1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(message.data["status"], "read");
        assert_eq!(
            types(&*store, events("t1")).await,
            ["message.new", "message.status", "message.status"]
        );
    }

    #[tokio::test]
    async fn an_order_update_notifies() {
        let (inbox, store, _dir) = inbox();
        let order = OrderUpdate {
            order_id: 2_000_009_876_543_210,
            status: "paid".into(),
            total: Some(149.9),
            currency: Some("BRL".into()),
        };
        assert_eq!(
            inbox.apply_order("t1", &order, now(), &[]).await.unwrap(),
            Applied::Created
        );
        let listed = all(&*store, notifications("t1")).await;
        assert_eq!(listed[0].data["type"], "order.updated");
        assert_eq!(listed[0].data["data"]["total"], 149.9);
        assert_eq!(types(&*store, events("t1")).await, ["order.updated"]);
    }

    #[tokio::test]
    async fn the_callers_writes_commit_with_the_change_or_nothing_does() {
        let (inbox, store, _dir) = inbox();
        let marker = || Item::new(Key::new("marker", "m"), json!({}));
        let must_exist = WriteOp::Check {
            key: marker().key,
            condition: Condition::Present,
        };
        let refused = inbox
            .apply_question("t1", &question(), now(), std::slice::from_ref(&must_exist))
            .await;
        assert!(matches!(
            refused,
            Err(StoreError::TransactionCancelled { .. })
        ));
        assert!(
            all(&*store, notifications("t1")).await.is_empty(),
            "nothing written"
        );
        assert_eq!(unread_count(&*store, "t1").await, None, "nothing counted");

        let put_marker = put(marker(), Condition::Absent);
        inbox
            .apply_question("t1", &question(), now(), &[])
            .await
            .unwrap();
        let unchanged = inbox
            .apply_question("t1", &question(), now(), std::slice::from_ref(&put_marker))
            .await
            .unwrap();
        assert_eq!(unchanged, Applied::Unchanged);
        assert!(
            store.get(&marker().key).await.unwrap().is_some(),
            "written though nothing changed"
        );
    }
}
