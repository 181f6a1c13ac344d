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
/// The most bytes of a message (body, attribute names, types and values) and of a whole
/// batch. SQS takes up to 1 MiB (since 2025); this queue keeps the older 256 KiB on
/// purpose: the largest message sellerhub sends is a webhook envelope around a body the
/// ingest caps at 64 KiB (`http::DEFAULT_BODY_LIMIT`), so this leaves room for its JSON
/// escaping, and a worker's full batch of ten stays at 2.5 MiB, well inside Lambda's 6 MB
/// invocation payload. Raise it only with a reason to send more.
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
    /// How long ago the oldest message still in the queue was sent, when the backend
    /// says (SQS reports it only as the CloudWatch metric ApproximateAgeOfOldestMessage).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_seconds: Option<u64>,
}

/// One message of a batch that was not sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendFailure {
    /// Its place in the batch.
    pub index: usize,
    /// The sender's fault (SQS's `SenderFault`): the message is refused as it is, and
    /// sending it again unchanged fails again. Otherwise the queue failed to take it, and
    /// sending it again may succeed.
    pub sender_fault: bool,
    pub reason: String,
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "message {}: {}", self.index, self.reason)
    }
}

/// What went wrong, in the three kinds a caller acts on differently: its request
/// (`Invalid`), its receipt handle (`InvalidReceipt`), or the queue (`Unavailable`). A
/// batch sent in part (`PartiallySent`) tells the first and the last apart per message
/// by `sender_fault`.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The request is refused as it is (nothing was sent or changed); sending it again
    /// unchanged fails again.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Part of a batch was not sent. `sent` has one entry per message of the batch, in
    /// order: the message id of each message sent, `None` for the others; `failed` says
    /// why each of those was not, in index order. Send again only the failed ones. SQS
    /// reports each message's outcome, so `sent` may hold no id at all when it failed
    /// them all; a batch the queue refuses whole, or whose every message the shared check
    /// refuses, is `Invalid` instead.
    #[error(
        "{} of {} messages not sent; {}",
        failed.len(),
        sent.len(),
        failed.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    PartiallySent {
        sent: Vec<Option<String>>,
        failed: Vec<SendFailure>,
    },
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
    /// Sends up to [`MAX_BATCH`] messages; returns their message ids, in order. A message
    /// that SQS refuses on its own (an empty body, characters SQS does not take, bad
    /// attributes, too long a delay) does not stop the others: they are sent, and the
    /// error is [`QueueError::PartiallySent`].
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

/// Checks what SQS refuses, before any I/O, so that the embedded queue refuses it too.
///
/// A batch SQS refuses whole (SendMessageBatch fails: no message or more than
/// [`MAX_BATCH`], more than [`MAX_BODY_BYTES`] in all, which a single message over the
/// limit always makes it) is `Invalid`. A message SQS refuses on its own (it reports a
/// failed entry, `SenderFault` true, and sends the rest: an empty body, characters it does
/// not take, bad attributes, a delay over [`MAX_DELAY_SECONDS`]) is a [`SendFailure`], and
/// the others are returned, with their places, to be sent. A batch whose every message is
/// refused is `Invalid`: nothing would be sent.
pub(crate) fn validate_batch(messages: Vec<OutMessage>) -> QueueResult<CheckedBatch> {
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(QueueError::Invalid(format!(
            "a batch holds 1 to {MAX_BATCH} messages, not {}",
            messages.len()
        )));
    }
    let sizes: Vec<usize> = messages.iter().map(size).collect();
    if let Some((index, size)) = sizes
        .iter()
        .enumerate()
        .find(|(_, size)| **size > MAX_BODY_BYTES)
    {
        return Err(QueueError::Invalid(format!(
            "message {index}: {size} bytes, over {MAX_BODY_BYTES}"
        )));
    }
    let batch_size: usize = sizes.iter().sum();
    if batch_size > MAX_BODY_BYTES {
        return Err(QueueError::Invalid(format!(
            "the batch holds {batch_size} bytes, over {MAX_BODY_BYTES}"
        )));
    }
    let mut accepted = Vec::with_capacity(messages.len());
    let mut refused = Vec::new();
    for (index, message) in messages.into_iter().enumerate() {
        match validate_message(&message) {
            Ok(()) => accepted.push((index, message)),
            Err(reason) => refused.push(SendFailure {
                index,
                sender_fault: true,
                reason,
            }),
        }
    }
    if accepted.is_empty() {
        let reasons: Vec<String> = refused.iter().map(ToString::to_string).collect();
        return Err(QueueError::Invalid(reasons.join("; ")));
    }
    Ok(CheckedBatch { accepted, refused })
}

/// A batch [`validate_batch`] let through.
pub(crate) struct CheckedBatch {
    /// The messages to send, with their places in the batch.
    pub accepted: Vec<(usize, OutMessage)>,
    /// The messages refused.
    pub refused: Vec<SendFailure>,
}

/// What SQS counts against [`MAX_BODY_BYTES`]: the body and each attribute's name, data
/// type and value.
fn size(message: &OutMessage) -> usize {
    message.body.len()
        + message
            .attributes
            .iter()
            .map(|(name, value)| name.len() + value.len() + "String".len())
            .sum::<usize>()
}

fn validate_message(message: &OutMessage) -> Result<(), String> {
    if message.body.is_empty() {
        return Err("empty body".into());
    }
    validate_characters(&message.body).map_err(|reason| format!("body: {reason}"))?;
    if message.attributes.len() > MAX_ATTRIBUTES {
        return Err(format!("more than {MAX_ATTRIBUTES} attributes"));
    }
    for (name, value) in &message.attributes {
        let invalid = |reason: &str| format!("attribute {name:?}: {reason}");
        validate_attribute_name(name).map_err(invalid)?;
        if value.is_empty() {
            return Err(invalid("empty value"));
        }
        validate_characters(value).map_err(|reason| invalid(&reason))?;
    }
    if message.delay_seconds > MAX_DELAY_SECONDS {
        return Err(format!(
            "delay {} s, over {MAX_DELAY_SECONDS}",
            message.delay_seconds
        ));
    }
    Ok(())
}

/// SQS takes, in bodies and attribute values, only the characters XML 1.0 allows: #x9,
/// #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD and #x10000 to #x10FFFF (a Rust string
/// holds no surrogates, #xD800 to #xDFFF). The position counts characters from 0.
fn validate_characters(text: &str) -> Result<(), String> {
    let allowed = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
            || matches!(c, '\u{10000}'..='\u{10FFFF}')
    };
    match text.chars().enumerate().find(|(_, c)| !allowed(*c)) {
        Some((position, c)) => Err(format!(
            "character U+{:04X} at position {position} is not allowed by SQS",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// The result of sending a batch of `count` messages: `sent` holds the (place, message
/// id) of the messages the queue took, `failed` those refused, by the shared check or by
/// the queue. A message in neither list (the queue did not report on it) failed, not by
/// the sender's fault.
pub(crate) fn batch_result(
    count: usize,
    sent: Vec<(usize, String)>,
    mut failed: Vec<SendFailure>,
) -> QueueResult<Vec<String>> {
    let mut ids = vec![None; count];
    for (index, id) in sent {
        if let Some(slot) = ids.get_mut(index) {
            *slot = Some(id);
        }
    }
    for (index, id) in ids.iter().enumerate() {
        if id.is_none() && !failed.iter().any(|failure| failure.index == index) {
            failed.push(SendFailure {
                index,
                sender_fault: false,
                reason: "the queue reported no outcome".into(),
            });
        }
    }
    if failed.is_empty() {
        return Ok(ids.into_iter().flatten().collect());
    }
    failed.sort_by_key(|failure| failure.index);
    Err(QueueError::PartiallySent { sent: ids, failed })
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

    fn ok() -> OutMessage {
        OutMessage::new("body").attribute("source", "meta")
    }

    #[test]
    fn batches_are_refused_as_sqs_would_refuse_them() {
        assert!(validate_batch(vec![ok()]).is_ok());
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
            vec![OutMessage::new("nul \u{0} inside")],
            vec![ok().attribute("bad", "\u{FFFE}")],
            vec![OutMessage::new("x".repeat(MAX_BODY_BYTES + 1))],
            vec![OutMessage::new("x".repeat(MAX_BODY_BYTES / 2)); 3],
            // One message over the limit makes the whole batch too long, as in SQS.
            vec![ok(), OutMessage::new("x".repeat(MAX_BODY_BYTES + 1))],
        ];
        for (case, batch) in refused.into_iter().enumerate() {
            let result = validate_batch(batch).map(|checked| checked.accepted.len());
            assert!(
                matches!(result, Err(QueueError::Invalid(_))),
                "case {case}: {result:?}"
            );
        }
    }

    #[test]
    fn only_the_characters_sqs_takes_pass_and_a_refusal_names_the_position() {
        let allowed = "tab\t lf\n cr\r ação ✓ \u{D7FF} \u{E000} \u{FFFD} 😀 \u{10FFFF}";
        assert_eq!(validate_characters(allowed), Ok(()));
        for (text, code, position) in [
            ("\u{0}", "U+0000", 0),
            ("ab\u{1}", "U+0001", 2),
            ("ação\u{8}", "U+0008", 4),
            ("x\u{B}", "U+000B", 1),
            ("\u{1F}", "U+001F", 0),
            ("✓\u{FFFE}", "U+FFFE", 1),
            ("\u{FFFF}", "U+FFFF", 0),
        ] {
            let reason = validate_characters(text).unwrap_err();
            assert!(
                reason.contains(code) && reason.contains(&format!("position {position}")),
                "{text:?}: {reason}"
            );
        }
        let Err(QueueError::Invalid(reason)) = validate_batch(vec![OutMessage::new("ok\u{0}")])
        else {
            panic!("a body with U+0000 is refused");
        };
        assert!(
            reason.contains("message 0: body: character U+0000 at position 2"),
            "{reason}"
        );
    }

    #[test]
    fn a_message_sqs_refuses_on_its_own_leaves_the_rest_of_its_batch_to_send() {
        let CheckedBatch { accepted, refused } = validate_batch(vec![
            ok(),
            ok().delayed(901),
            OutMessage::new("\u{0}"),
            ok().attribute("bad name", "v"),
            ok(),
        ])
        .unwrap();
        let places: Vec<usize> = accepted.iter().map(|(index, _)| *index).collect();
        assert_eq!(places, [0, 4]);
        let failed: Vec<(usize, bool)> = refused
            .iter()
            .map(|failure| (failure.index, failure.sender_fault))
            .collect();
        assert_eq!(failed, [(1, true), (2, true), (3, true)]);
        assert!(refused[0].reason.contains("delay"), "{}", refused[0]);
        assert!(refused[1].reason.contains("position 0"), "{}", refused[1]);
    }

    #[test]
    fn a_batch_result_returns_the_ids_sent_and_the_failures() {
        assert_eq!(
            batch_result(2, vec![(1, "b".into()), (0, "a".into())], vec![]).unwrap(),
            ["a", "b"]
        );
        let refused = SendFailure {
            index: 2,
            sender_fault: true,
            reason: "empty body".into(),
        };
        let Err(QueueError::PartiallySent { sent, failed }) = batch_result(
            4,
            vec![(0, "a".into()), (3, "d".into())],
            vec![refused.clone()],
        ) else {
            panic!("a batch with failures is PartiallySent");
        };
        assert_eq!(sent, [Some("a".into()), None, None, Some("d".into())]);
        // Message 1 was neither reported sent nor failed: failed, not the sender's fault.
        assert_eq!(
            failed,
            [
                SendFailure {
                    index: 1,
                    sender_fault: false,
                    reason: "the queue reported no outcome".into()
                },
                refused
            ]
        );
    }
}
