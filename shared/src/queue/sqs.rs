//! The SQS adapter of the queue port. The dead-letter queue (the queue's RedrivePolicy
//! target, which SQS itself moves messages to) is one more `SqsQueue`, so that it can be
//! inspected and drained through the same port.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::{
    OutMessage, Queue, QueueError, QueueResult, QueueStats, ReceivedMessage, validate_batch,
    validate_receive_max,
};
use crate::aws::error_chain;
use crate::telemetry::{observe, observe_waiting};

/// SQS's limits on ReceiveMessage's timing parameters; longer values are clamped.
const MAX_VISIBILITY_TIMEOUT_SECONDS: u64 = 12 * 60 * 60;
const MAX_WAIT_SECONDS: u64 = 20;

pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dead_letters: Option<Box<SqsQueue>>,
}

impl SqsQueue {
    /// `dead_letter_url` is the queue the RedrivePolicy of `queue_url` names, if any.
    pub fn new(
        client: Client,
        queue_url: impl Into<String>,
        dead_letter_url: Option<String>,
    ) -> Self {
        let dead_letters =
            dead_letter_url.map(|url| Box::new(SqsQueue::new(client.clone(), url, None)));
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letters,
        }
    }
}

/// Whole seconds, rounded up (SQS takes seconds; a shorter timeout would break a
/// caller's assumption that the message stays hidden at least that long), at most `max`.
fn seconds_up(duration: Duration, max: u64) -> i32 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    // Both maxima fit an i32.
    i32::try_from(seconds.min(max)).unwrap_or(i32::MAX)
}

/// An SDK error that is not an expected outcome: `Invalid` when SQS blames the request,
/// else `Unavailable` with the error's code or the transport failure.
fn sdk_error<E>(operation: &str, error: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let message = error.message().unwrap_or("no message").to_owned();
    match (&error, error.code()) {
        (SdkError::ServiceError(_), Some(code)) if is_request_error(code) => {
            QueueError::Invalid(format!("{operation}: {code}: {message}"))
        }
        (SdkError::ServiceError(_), Some(code)) => {
            QueueError::Unavailable(format!("{operation}: {code}: {message}"))
        }
        _ => QueueError::Unavailable(format!("{operation}: {}", error_chain(&error))),
    }
}

fn is_request_error(code: &str) -> bool {
    matches!(
        code,
        "InvalidParameterValue"
            | "InvalidAttributeName"
            | "InvalidAttributeValue"
            | "InvalidMessageContents"
            | "BatchRequestTooLong"
            | "TooManyEntriesInBatchRequest"
            | "EmptyBatchRequest"
            | "BatchEntryIdsNotDistinct"
            | "InvalidBatchEntryId"
            | "MissingParameter"
    )
}

/// The errors that say a receipt handle does not name a message this queue has in flight.
fn is_receipt_error<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    matches!(error, SdkError::ServiceError(_))
        && matches!(
            error.code(),
            Some("ReceiptHandleIsInvalid" | "InvalidIdFormat" | "MessageNotInflight")
        )
}

fn entry(index: usize, message: OutMessage) -> QueueResult<SendMessageBatchRequestEntry> {
    let mut attributes = HashMap::with_capacity(message.attributes.len());
    for (name, value) in message.attributes {
        let value = MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .map_err(|error| QueueError::Invalid(format!("attribute {name}: {error}")))?;
        attributes.insert(name, value);
    }
    let delay = i32::try_from(message.delay_seconds).unwrap_or(i32::MAX);
    SendMessageBatchRequestEntry::builder()
        .id(index.to_string())
        .message_body(message.body)
        .delay_seconds(delay)
        .set_message_attributes((!attributes.is_empty()).then_some(attributes))
        .build()
        .map_err(|error| QueueError::Invalid(format!("message {index}: {error}")))
}

fn received(message: aws_sdk_sqs::types::Message) -> QueueResult<ReceivedMessage> {
    let malformed =
        |what: &str| QueueError::Unavailable(format!("ReceiveMessage: message without {what}"));
    let system = message.attributes.unwrap_or_default();
    let number = |name: MessageSystemAttributeName| {
        system
            .get(&name)
            .and_then(|value| value.parse().ok())
            .ok_or_else(|| malformed(name.as_str()))
    };
    let receive_count = u32::try_from(number(MessageSystemAttributeName::ApproximateReceiveCount)?)
        .map_err(|_| malformed("a valid ApproximateReceiveCount"))?;
    let sent_at_millis = number(MessageSystemAttributeName::SentTimestamp)?;
    let attributes: BTreeMap<String, String> = message
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| value.string_value.map(|value| (name, value)))
        .collect();
    Ok(ReceivedMessage {
        message_id: message.message_id.ok_or_else(|| malformed("MessageId"))?,
        receipt_handle: message
            .receipt_handle
            .ok_or_else(|| malformed("ReceiptHandle"))?,
        body: message.body.unwrap_or_default(),
        attributes,
        receive_count,
        sent_at_millis,
    })
}

impl SqsQueue {
    /// (visible, in flight, delayed) as GetQueueAttributes reports them.
    async fn depths(&self) -> QueueResult<(u64, u64, u64)> {
        let request = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed);
        let output = observe("sqs", "GetQueueAttributes", request.send())
            .await
            .map_err(|error| sdk_error("GetQueueAttributes", error))?;
        let attributes = output.attributes.unwrap_or_default();
        let depth = |name: QueueAttributeName| -> QueueResult<u64> {
            let value = attributes.get(&name).ok_or_else(|| {
                QueueError::Unavailable(format!("GetQueueAttributes: no {}", name.as_str()))
            })?;
            value.parse().map_err(|_| {
                QueueError::Unavailable(format!("GetQueueAttributes: {}: {value}", name.as_str()))
            })
        };
        Ok((
            depth(QueueAttributeName::ApproximateNumberOfMessages)?,
            depth(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)?,
            depth(QueueAttributeName::ApproximateNumberOfMessagesDelayed)?,
        ))
    }
}

#[async_trait::async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, messages: Vec<OutMessage>) -> QueueResult<Vec<String>> {
        validate_batch(&messages)?;
        let count = messages.len();
        let entries = messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| entry(index, message))
            .collect::<QueueResult<Vec<_>>>()?;
        let request = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries));
        let output = observe("sqs", "SendMessageBatch", request.send())
            .await
            .map_err(|error| sdk_error("SendMessageBatch", error))?;

        let index = |id: &str| id.parse::<usize>().ok().filter(|index| *index < count);
        if let Some(first) = output.failed.first() {
            let mut failed: Vec<usize> = output
                .failed
                .iter()
                .filter_map(|entry| index(&entry.id))
                .collect();
            failed.sort_unstable();
            let reason = format!(
                "{}: {}",
                first.code,
                first.message.as_deref().unwrap_or("no message")
            );
            return Err(QueueError::PartiallySent { failed, reason });
        }
        let mut ids = vec![None; count];
        for sent in output.successful {
            if let Some(slot) = index(&sent.id).and_then(|index| ids.get_mut(index)) {
                *slot = Some(sent.message_id);
            }
        }
        ids.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| {
            QueueError::Unavailable("SendMessageBatch: a message id is missing".into())
        })
    }

    async fn receive(
        &self,
        max: usize,
        visibility_timeout: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        validate_receive_max(max)?;
        let request = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .visibility_timeout(seconds_up(
                visibility_timeout,
                MAX_VISIBILITY_TIMEOUT_SECONDS,
            ))
            .wait_time_seconds(seconds_up(wait, MAX_WAIT_SECONDS))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp);
        let output = observe_waiting("sqs", "ReceiveMessage", wait, request.send())
            .await
            .map_err(|error| sdk_error("ReceiveMessage", error))?;
        output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(received)
            .collect()
    }

    async fn delete(&self, receipt_handle: &str) -> QueueResult<()> {
        let request = self
            .client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle);
        match observe("sqs", "DeleteMessage", request.send()).await {
            Ok(_) => Ok(()),
            Err(error) if is_receipt_error(&error) => Err(QueueError::InvalidReceipt),
            Err(error) => Err(sdk_error("DeleteMessage", error)),
        }
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> QueueResult<()> {
        let request = self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds_up(timeout, MAX_VISIBILITY_TIMEOUT_SECONDS));
        match observe("sqs", "ChangeMessageVisibility", request.send()).await {
            Ok(_) => Ok(()),
            Err(error) if is_receipt_error(&error) => Err(QueueError::InvalidReceipt),
            Err(error) => Err(sdk_error("ChangeMessageVisibility", error)),
        }
    }

    async fn stats(&self) -> QueueResult<QueueStats> {
        let dead_letter_depths = async {
            match &self.dead_letters {
                Some(dlq) => dlq.depths().await.map(Some),
                None => Ok(None),
            }
        };
        let ((visible, in_flight, delayed), dead_letter_depths) =
            tokio::try_join!(self.depths(), dead_letter_depths)?;
        let dead_letters = dead_letter_depths.map(|(visible, in_flight, _)| visible + in_flight);
        Ok(QueueStats {
            visible,
            in_flight,
            delayed,
            dead_letters,
        })
    }

    fn dead_letters(&self) -> Option<&dyn Queue> {
        self.dead_letters.as_deref().map(|dlq| dlq as &dyn Queue)
    }
}
