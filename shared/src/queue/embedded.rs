//! The embedded queue: SQS semantics over the local runner's redb file. Messages are
//! kept in send order per queue; a receive hides a message until its visibility timeout
//! passes and counts the delivery; a message received `max_receive_count` times without
//! being deleted moves to the dead-letter queue on its next receive, as SQS redrives.
//!
//! A stored message starts with a fixed 12-byte header (visible-at millis, receive count)
//! so that depth counts read no JSON. Receives and `stats` read those headers in send
//! order (there is no index by visibility), so their cost grows with the queue's depth,
//! and `stats` reads the dead-letter queue's too: sized for the local runner's queues (a
//! developer's webhooks), not a server's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    CheckedBatch, OutMessage, Queue, QueueError, QueueResult, QueueStats, ReceivedMessage,
    batch_result, validate_batch, validate_receive_max,
};
use crate::embedded_db::{EmbeddedDb, EmbeddedError};

/// The local runner's webhook queue and its dead-letter queue (what WEBHOOK_QUEUE_URL and
/// WEBHOOK_DLQ_URL name in AWS).
pub const WEBHOOK_QUEUE: &str = "webhooks";
pub const WEBHOOK_DEAD_LETTER_QUEUE: &str = "webhooks-dlq";

const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_messages");
const NEXT_SEQUENCE: TableDefinition<&str, u64> = TableDefinition::new("queue_next_sequence");

/// How often a long poll looks again when no send woke it (delays expiring, visibility
/// timeouts passing).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub struct EmbeddedQueue {
    db: EmbeddedDb,
    name: String,
    max_receive_count: u32,
    sent: Arc<Notify>,
    dead_letters: Option<Box<EmbeddedQueue>>,
}

impl EmbeddedQueue {
    /// A queue with no dead-letter queue, creating the queue tables if needed.
    pub fn open(db: EmbeddedDb, name: impl Into<String>) -> Result<Self, EmbeddedError> {
        db.init(|txn| {
            txn.open_table(MESSAGES)?;
            txn.open_table(NEXT_SEQUENCE)?;
            Ok(())
        })?;
        Ok(Self {
            db,
            name: name.into(),
            max_receive_count: u32::MAX,
            sent: Arc::new(Notify::new()),
            dead_letters: None,
        })
    }

    /// A queue redriving to a dead-letter queue named `dead_letter_name` after
    /// `max_receive_count` receives.
    pub fn open_with_dead_letters(
        db: EmbeddedDb,
        name: impl Into<String>,
        dead_letter_name: impl Into<String>,
        max_receive_count: u32,
    ) -> Result<Self, EmbeddedError> {
        let dead_letters = EmbeddedQueue::open(db.clone(), dead_letter_name)?;
        Ok(Self {
            max_receive_count: max_receive_count.max(1),
            dead_letters: Some(Box::new(dead_letters)),
            ..EmbeddedQueue::open(db, name)?
        })
    }
}

#[derive(Serialize, Deserialize)]
struct Body {
    id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    sent_at_millis: i64,
    /// The nonce of the current receipt handle; a new receive makes older handles stale.
    receipt: Option<String>,
}

struct Stored {
    visible_at_millis: i64,
    receive_count: u32,
    body: Body,
}

const HEADER: usize = 12;

fn header(bytes: &[u8]) -> Result<(i64, u32), redb::Error> {
    let visible: [u8; 8] = bytes
        .get(0..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("short header"))?;
    let count: [u8; 4] = bytes
        .get(8..HEADER)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("short header"))?;
    Ok((i64::from_be_bytes(visible), u32::from_be_bytes(count)))
}

fn corrupt(reason: impl std::fmt::Display) -> redb::Error {
    redb::Error::Corrupted(format!("queue message: {reason}"))
}

impl Stored {
    fn encode(&self) -> Result<Vec<u8>, redb::Error> {
        let mut bytes = Vec::with_capacity(HEADER + self.body.body.len() + 128);
        bytes.extend_from_slice(&self.visible_at_millis.to_be_bytes());
        bytes.extend_from_slice(&self.receive_count.to_be_bytes());
        serde_json::to_writer(&mut bytes, &self.body).map_err(corrupt)?;
        Ok(bytes)
    }

    fn decode(bytes: &[u8]) -> Result<Self, redb::Error> {
        let (visible_at_millis, receive_count) = header(bytes)?;
        let body = serde_json::from_slice(&bytes[HEADER..]).map_err(corrupt)?;
        Ok(Self {
            visible_at_millis,
            receive_count,
            body,
        })
    }
}

fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl From<EmbeddedError> for QueueError {
    fn from(error: EmbeddedError) -> Self {
        QueueError::Unavailable(error.to_string())
    }
}

/// Appends a message to `queue`, returning its sequence number.
fn append(txn: &WriteTransaction, queue: &str, stored: &Stored) -> Result<u64, redb::Error> {
    let mut sequences = txn.open_table(NEXT_SEQUENCE)?;
    let sequence = sequences
        .get(queue)?
        .map(|value| value.value())
        .unwrap_or(0);
    sequences.insert(queue, sequence + 1)?;
    txn.open_table(MESSAGES)?
        .insert((queue, sequence), stored.encode()?.as_slice())?;
    Ok(sequence)
}

/// A receipt handle names the queue, the message's place in it and the receive it came from.
fn receipt_handle(queue: &str, sequence: u64, nonce: &str) -> String {
    format!("{sequence}.{nonce}.{queue}")
}

fn parse_receipt<'a>(handle: &'a str, queue: &str) -> QueueResult<(u64, &'a str)> {
    let mut parts = handle.splitn(3, '.');
    let (Some(sequence), Some(nonce), Some(owner)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(QueueError::InvalidReceipt);
    };
    let sequence = sequence.parse().map_err(|_| QueueError::InvalidReceipt)?;
    if owner != queue {
        return Err(QueueError::InvalidReceipt);
    }
    Ok((sequence, nonce))
}

/// The message a receipt handle refers to, if that handle is still its current one.
fn find_received(
    txn: &WriteTransaction,
    queue: &str,
    handle: &str,
) -> Result<QueueResult<(u64, Stored)>, redb::Error> {
    let (sequence, nonce) = match parse_receipt(handle, queue) {
        Ok(parsed) => parsed,
        Err(error) => return Ok(Err(error)),
    };
    let messages = txn.open_table(MESSAGES)?;
    let Some(bytes) = messages.get((queue, sequence))? else {
        return Ok(Err(QueueError::InvalidReceipt));
    };
    let stored = Stored::decode(bytes.value())?;
    if stored.body.receipt.as_deref() != Some(nonce) {
        return Ok(Err(QueueError::InvalidReceipt));
    }
    Ok(Ok((sequence, stored)))
}

impl EmbeddedQueue {
    /// One receive attempt, without waiting. It stops at the `max`th message due, so it
    /// reads every header of the queue only at worst (see the module's doc).
    async fn receive_now(
        &self,
        max: usize,
        visibility_timeout: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        let queue = self.name.clone();
        let max_receive_count = self.max_receive_count;
        let dead_letter_queue = self.dead_letters.as_ref().map(|dlq| dlq.name.clone());
        let hide_for = millis(visibility_timeout);
        let (received, moved) = self
            .db
            .write(move |txn| {
                let now = now_millis();
                // Due messages to deliver (at most `max`) and due ones to redrive, which do
                // not count against `max`: SQS moves them and returns the next ones.
                let mut due = Vec::new();
                let mut dead = Vec::new();
                {
                    let messages = txn.open_table(MESSAGES)?;
                    for entry in messages.range((queue.as_str(), 0)..=(queue.as_str(), u64::MAX))? {
                        let (key, value) = entry?;
                        let (visible_at, receive_count) = header(value.value())?;
                        if visible_at > now {
                            continue;
                        }
                        let sequence = key.value().1;
                        if dead_letter_queue.is_some() && receive_count >= max_receive_count {
                            dead.push((sequence, Stored::decode(value.value())?));
                        } else {
                            due.push((sequence, Stored::decode(value.value())?));
                            if due.len() == max {
                                break;
                            }
                        }
                    }
                }
                let moved = dead.len();
                if let Some(dlq) = &dead_letter_queue {
                    for (sequence, stored) in dead {
                        txn.open_table(MESSAGES)?
                            .remove((queue.as_str(), sequence))?;
                        // The copy keeps its receive count, as SQS's redrive does.
                        let copy = Stored {
                            visible_at_millis: now,
                            body: Body {
                                receipt: None,
                                ..stored.body
                            },
                            ..stored
                        };
                        append(txn, dlq, &copy)?;
                    }
                }
                let mut received = Vec::with_capacity(due.len());
                let mut messages = txn.open_table(MESSAGES)?;
                for (sequence, mut stored) in due {
                    let nonce = uuid::Uuid::new_v4().simple().to_string();
                    stored.receive_count += 1;
                    stored.visible_at_millis = now.saturating_add(hide_for);
                    stored.body.receipt = Some(nonce.clone());
                    messages.insert((queue.as_str(), sequence), stored.encode()?.as_slice())?;
                    received.push(ReceivedMessage {
                        message_id: stored.body.id.clone(),
                        receipt_handle: receipt_handle(&queue, sequence, &nonce),
                        body: stored.body.body,
                        attributes: stored.body.attributes,
                        receive_count: stored.receive_count,
                        sent_at_millis: stored.body.sent_at_millis,
                    });
                }
                Ok((received, moved))
            })
            .await?;
        if moved > 0
            && let Some(dlq) = &self.dead_letters
        {
            dlq.sent.notify_waiters();
        }
        Ok(received)
    }
}

#[async_trait::async_trait]
impl Queue for EmbeddedQueue {
    async fn send_batch(&self, messages: Vec<OutMessage>) -> QueueResult<Vec<String>> {
        let count = messages.len();
        let CheckedBatch { accepted, refused } = validate_batch(messages)?;
        let queue = self.name.clone();
        // Ids and encoding here, in the caller's task: the database's one writer thread
        // only appends the bytes.
        let now = now_millis();
        let prepared = accepted
            .into_iter()
            .map(|(index, message)| {
                let id = uuid::Uuid::new_v4().to_string();
                let stored = Stored {
                    visible_at_millis: now + i64::from(message.delay_seconds) * 1000,
                    receive_count: 0,
                    body: Body {
                        id: id.clone(),
                        body: message.body,
                        attributes: message.attributes,
                        sent_at_millis: now,
                        receipt: None,
                    },
                };
                Ok((index, id, stored.encode()?))
            })
            .collect::<Result<Vec<_>, redb::Error>>()
            .map_err(EmbeddedError::from)?;
        let sent = self
            .db
            .write(move |txn| {
                let mut sequences = txn.open_table(NEXT_SEQUENCE)?;
                let mut messages = txn.open_table(MESSAGES)?;
                let first = sequences
                    .get(queue.as_str())?
                    .map(|value| value.value())
                    .unwrap_or(0);
                let mut next = first;
                for (_, _, bytes) in &prepared {
                    messages.insert((queue.as_str(), next), bytes.as_slice())?;
                    next += 1;
                }
                sequences.insert(queue.as_str(), next)?;
                Ok(prepared
                    .iter()
                    .map(|(index, id, _)| (*index, id.clone()))
                    .collect::<Vec<_>>())
            })
            .await?;
        self.sent.notify_waiters();
        batch_result(count, sent, refused)
    }

    async fn receive(
        &self,
        max: usize,
        visibility_timeout: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        validate_receive_max(max)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let woken = self.sent.notified();
            let received = self.receive_now(max, visibility_timeout).await?;
            let now = tokio::time::Instant::now();
            if !received.is_empty() || now >= deadline {
                return Ok(received);
            }
            let _ = tokio::time::timeout(POLL_INTERVAL.min(deadline - now), woken).await;
        }
    }

    async fn delete(&self, receipt_handle: &str) -> QueueResult<()> {
        let queue = self.name.clone();
        let handle = receipt_handle.to_owned();
        self.db
            .write(move |txn| {
                let (sequence, _) = match find_received(txn, &queue, &handle)? {
                    Ok(found) => found,
                    Err(error) => return Ok(Err(error)),
                };
                txn.open_table(MESSAGES)?
                    .remove((queue.as_str(), sequence))?;
                Ok(Ok(()))
            })
            .await?
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> QueueResult<()> {
        let queue = self.name.clone();
        let handle = receipt_handle.to_owned();
        let changed = self
            .db
            .write(move |txn| {
                let (sequence, mut stored) = match find_received(txn, &queue, &handle)? {
                    Ok(found) => found,
                    Err(error) => return Ok(Err(error)),
                };
                stored.visible_at_millis = now_millis().saturating_add(millis(timeout));
                txn.open_table(MESSAGES)?
                    .insert((queue.as_str(), sequence), stored.encode()?.as_slice())?;
                Ok(Ok(()))
            })
            .await?;
        if changed.is_ok() && timeout.is_zero() {
            self.sent.notify_waiters();
        }
        changed
    }

    async fn stats(&self) -> QueueResult<QueueStats> {
        let queue = self.name.clone();
        let dead_letter_queue = self.dead_letters.as_ref().map(|dlq| dlq.name.clone());
        Ok(self
            .db
            .read(move |txn| {
                let messages = txn.open_table(MESSAGES)?;
                let now = now_millis();
                let mut stats = QueueStats::default();
                for entry in messages.range((queue.as_str(), 0)..=(queue.as_str(), u64::MAX))? {
                    let (_, value) = entry?;
                    // Messages are kept in send order: the first one is the oldest.
                    if stats.oldest_age_seconds.is_none() {
                        let sent = Stored::decode(value.value())?.body.sent_at_millis;
                        let age = u64::try_from(now.saturating_sub(sent) / 1000).unwrap_or(0);
                        stats.oldest_age_seconds = Some(age);
                    }
                    match header(value.value())? {
                        (visible_at, _) if visible_at <= now => stats.visible += 1,
                        (_, 0) => stats.delayed += 1,
                        _ => stats.in_flight += 1,
                    }
                }
                if let Some(dlq) = dead_letter_queue {
                    let count = messages
                        .range((dlq.as_str(), 0)..=(dlq.as_str(), u64::MAX))?
                        .count();
                    stats.dead_letters = Some(count as u64);
                }
                Ok(stats)
            })
            .await?)
    }

    fn dead_letters(&self) -> Option<&dyn Queue> {
        self.dead_letters.as_deref().map(|dlq| dlq as &dyn Queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::conformance;

    #[tokio::test]
    async fn messages_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        {
            let queue = EmbeddedQueue::open_with_dead_letters(
                EmbeddedDb::open(dir.path()).unwrap(),
                "webhooks",
                "webhooks-dlq",
                5,
            )
            .unwrap();
            queue
                .send_batch(vec![OutMessage::new("kept").attribute("source", "meta")])
                .await
                .unwrap();
        }
        let queue = EmbeddedQueue::open_with_dead_letters(
            EmbeddedDb::open(dir.path()).unwrap(),
            "webhooks",
            "webhooks-dlq",
            5,
        )
        .unwrap();
        let received = queue
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].body, "kept");
        assert_eq!(received[0].attributes["source"], "meta");
    }

    #[tokio::test]
    async fn a_receipt_from_another_queue_or_a_forged_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let a = EmbeddedQueue::open(db.clone(), "a").unwrap();
        let b = EmbeddedQueue::open(db, "b").unwrap();
        a.send_batch(vec![OutMessage::new("m")]).await.unwrap();
        let received = a
            .receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let handle = &received[0].receipt_handle;
        assert!(matches!(
            b.delete(handle).await,
            Err(QueueError::InvalidReceipt)
        ));
        assert!(matches!(
            a.delete("0.forged.a").await,
            Err(QueueError::InvalidReceipt)
        ));
        assert!(matches!(
            a.delete("garbage").await,
            Err(QueueError::InvalidReceipt)
        ));
        a.delete(handle).await.unwrap();
    }

    #[tokio::test]
    async fn messages_redriven_by_a_receive_do_not_count_against_its_max() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let queue = EmbeddedQueue::open_with_dead_letters(db, "q", "q-dlq", 1).unwrap();
        let ids = queue
            .send_batch(vec![OutMessage::new("poison"), OutMessage::new("next")])
            .await
            .unwrap();
        let first = queue
            .receive(1, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(first[0].message_id, ids[0]);

        // "poison" is due again, first in line, and out of receives: it moves, and the
        // receive returns "next" instead of coming back empty.
        let second = queue
            .receive(1, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        let bodies: Vec<&str> = second.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["next"]);
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.in_flight, stats.dead_letters), (1, Some(1)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        conformance::run_all(|max_receive_count| {
            let name = uuid::Uuid::new_v4().to_string();
            let queue = EmbeddedQueue::open_with_dead_letters(
                db.clone(),
                name.clone(),
                format!("{name}-dlq"),
                max_receive_count,
            )
            .unwrap();
            async move { queue }
        })
        .await;
    }

    #[tokio::test]
    async fn stats_know_the_oldest_messages_age() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(EmbeddedDb::open(dir.path()).unwrap(), "q").unwrap();
        assert_eq!(
            queue.stats().await.unwrap().oldest_age_seconds,
            None,
            "empty"
        );
        queue
            .send_batch(vec![OutMessage::new("old")])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        queue
            .send_batch(vec![OutMessage::new("new")])
            .await
            .unwrap();
        let age = queue.stats().await.unwrap().oldest_age_seconds.unwrap();
        assert!(
            (1..5).contains(&age),
            "the first message's age, not the last's: {age}"
        );
    }
}
