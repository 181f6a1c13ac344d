//! The queue port: SQS semantics (at-least-once delivery, visibility timeout, receive
//! count, redrive to a dead-letter queue after `max_receive_count` receives).
//!
//! Two adapters implement [`Queue`]: [`sqs::SqsQueue`] and [`embedded::EmbeddedQueue`];
//! both pass the one conformance suite in [`conformance`]. [`consumer`] turns received
//! messages into `aws_lambda_events` SQS events for worker handlers, as Lambda's event
//! source mapping does.

pub mod consumer;
pub mod embedded;
pub mod sqs;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;

use std::collections::BTreeMap;
use std::time::Duration;

/// SQS's limits, enforced by both adapters so the embedded one cannot accept what SQS
/// would refuse.
pub const MAX_BATCH: usize = 10;
pub const MAX_DELAY_SECONDS: u32 = 900;
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A message to send. Attributes are SQS message attributes of type String.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct OutMessage {
    pub body: String,
    pub delay_seconds: u32,
    pub attributes: BTreeMap<String, String>,
}

impl OutMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    pub fn delayed(mut self, seconds: u32) -> Self {
        self.delay_seconds = seconds;
        self
    }

    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }
}

/// A received message. The receipt handle is what delete and change-visibility take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    /// 1 on the first delivery.
    pub receive_count: u32,
    /// When the message was first sent, in milliseconds since the Unix epoch.
    pub sent_at_millis: i64,
}

/// Approximate depths, as SQS reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize)]
pub struct QueueStats {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted nor back to visible.
    pub in_flight: u64,
    /// Sent with a delay that has not passed yet.
    pub delayed: u64,
    /// Messages in the dead-letter queue (visible + in flight), when there is one.
    pub dead_letters: Option<u64>,
}

/// What went wrong, in the three kinds a caller acts on differently: its request
/// (`Invalid`, `PartiallySent`), its receipt handle (`InvalidReceipt`), or the queue
/// (`Unavailable`).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request is refused as it is (nothing was sent or changed); sending it again
    /// unchanged fails again.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Some messages of a batch were not sent; `failed` lists their indexes. The others
    /// were sent: retry only the failed ones.
    #[error("{} of the batch not sent: {reason}", failed.len())]
    PartiallySent { failed: Vec<usize>, reason: String },
    /// The receipt handle no longer names a message this queue has in flight: the message
    /// was deleted, or received again (which replaces the handle), or its visibility
    /// timeout passed or the handle expired; or it never was one of this queue's handles.
    /// The message is not the caller's any more: it is or will be delivered again (or is
    /// gone), so nothing is to be retried with this handle.
    #[error("receipt handle is not valid")]
    InvalidReceipt,
    /// The queue could not be reached or failed (throttling, a server error, a missing
    /// queue or permission): the same request may succeed later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

pub type QueueResult<T> = Result<T, QueueError>;

/// One queue. Object safe, so handlers take `&dyn Queue`.
#[async_trait::async_trait]
pub trait Queue: Send + Sync {
    /// Sends up to [`MAX_BATCH`] messages; returns their message ids, in order.
    async fn send_batch(&self, messages: Vec<OutMessage>) -> QueueResult<Vec<String>>;

    /// Receives up to `max` (1..=10) visible messages and hides them for
    /// `visibility_timeout`, waiting up to `wait` for the first one (long polling).
    async fn receive(
        &self,
        max: usize,
        visibility_timeout: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>>;

    async fn delete(&self, receipt_handle: &str) -> QueueResult<()>;

    /// Makes a received message visible again after `timeout` (zero: now).
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> QueueResult<()>;

    async fn stats(&self) -> QueueResult<QueueStats>;

    /// The dead-letter queue this queue redrives to, if any.
    fn dead_letters(&self) -> Option<&dyn Queue>;
}

/// The most message attributes SQS takes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// Checks what SQS rejects, before any I/O, so the embedded queue refuses it too.
pub(crate) fn validate_batch(messages: &[OutMessage]) -> QueueResult<()> {
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(QueueError::Invalid(format!(
            "a batch holds 1 to {MAX_BATCH} messages, not {}",
            messages.len()
        )));
    }
    let mut batch_size = 0;
    for (index, message) in messages.iter().enumerate() {
        let invalid = |reason: String| QueueError::Invalid(format!("message {index}: {reason}"));
        if message.body.is_empty() {
            return Err(invalid("empty body".into()));
        }
        if message.attributes.len() > MAX_ATTRIBUTES {
            return Err(invalid(format!("more than {MAX_ATTRIBUTES} attributes")));
        }
        for (name, value) in &message.attributes {
            validate_attribute_name(name)
                .map_err(|reason| invalid(format!("attribute {name:?}: {reason}")))?;
            if value.is_empty() {
                return Err(invalid(format!("attribute {name:?}: empty value")));
            }
        }
        let size = message.body.len()
            + message
                .attributes
                .iter()
                .map(|(name, value)| name.len() + value.len() + "String".len())
                .sum::<usize>();
        if size > MAX_BODY_BYTES {
            return Err(invalid(format!("{size} bytes, over {MAX_BODY_BYTES}")));
        }
        batch_size += size;
        if message.delay_seconds > MAX_DELAY_SECONDS {
            return Err(invalid(format!(
                "delay {} s, over {MAX_DELAY_SECONDS}",
                message.delay_seconds
            )));
        }
    }
    if batch_size > MAX_BODY_BYTES {
        return Err(QueueError::Invalid(format!(
            "the batch holds {batch_size} bytes, over {MAX_BODY_BYTES}"
        )));
    }
    Ok(())
}

/// SQS's rules for a message attribute name.
fn validate_attribute_name(name: &str) -> Result<(), &'static str> {
    let lower = name.to_ascii_lowercase();
    if name.is_empty() || name.len() > 256 {
        Err("names are 1 to 256 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Err("names hold only letters, digits, '_', '-' and '.'")
    } else if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        Err("names cannot start or end with '.' nor hold '..'")
    } else if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        Err("names cannot start with AWS. or Amazon.")
    } else {
        Ok(())
    }
}

pub(crate) fn validate_receive_max(max: usize) -> QueueResult<()> {
    if (1..=MAX_BATCH).contains(&max) {
        Ok(())
    } else {
        Err(QueueError::Invalid(format!(
            "receive takes 1 to {MAX_BATCH} messages, not {max}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_refused_as_sqs_would_refuse_them() {
        let ok = || OutMessage::new("body").attribute("source", "meta");
        assert!(validate_batch(&[ok()]).is_ok());
        let refused = [
            vec![],
            vec![ok(); 11],
            vec![OutMessage::new("")],
            vec![ok().attribute("empty", "")],
            vec![ok().attribute("has space", "v")],
            vec![ok().attribute("AWS.reserved", "v")],
            vec![ok().attribute("a..b", "v")],
            vec![(0..11).fold(OutMessage::new("b"), |m, n| {
                m.attribute(format!("a{n}"), "v")
            })],
            vec![ok().delayed(901)],
            vec![OutMessage::new("x".repeat(MAX_BODY_BYTES + 1))],
            vec![OutMessage::new("x".repeat(MAX_BODY_BYTES / 2)); 3],
        ];
        for batch in refused {
            assert!(
                matches!(validate_batch(&batch), Err(QueueError::Invalid(_))),
                "{batch:?}"
            );
        }
    }
}
