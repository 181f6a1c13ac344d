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
    CheckedBatch, OutMessage, Queue, QueueError, QueueResult, QueueStats, ReceivedMessage,
    SendFailure, batch_result, validate_batch, validate_receive_max,
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

/// An SDK error as the port's: `InvalidReceipt` when SQS says the receipt handle no longer
/// names a message in flight, `Invalid` when it blames the request, else `Unavailable`
/// with the error's code or the transport failure.
fn sdk_error<E>(operation: &str, error: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let (SdkError::ServiceError(_), Some(code)) = (&error, error.code()) else {
        return QueueError::Unavailable(format!("{operation}: {}", error_chain(&error)));
    };
    let message = error.message().unwrap_or("no message");
    match blame(code, message) {
        Blame::Receipt => QueueError::InvalidReceipt,
        Blame::Request => QueueError::Invalid(format!("{operation}: {code}: {message}")),
        Blame::Queue => QueueError::Unavailable(format!("{operation}: {code}: {message}")),
    }
}

enum Blame {
    Receipt,
    Request,
    Queue,
}

/// Whom an SQS error code blames. SQS speaks the JSON protocol with query-compatible
/// errors: the SDK's `code()` is the legacy code of the `x-amzn-query-error` header when
/// there is one, which for some errors carries a prefix
/// (`AWS.SimpleQueueService.MessageNotInflight`), and else the JSON `__type`'s shape name
/// (`MessageNotInflight`): both forms are matched. moto answers every bad receipt handle
/// with `ReceiptHandleIsInvalid`; real SQS does so only for a malformed one, and answers
/// an expired handle, or one whose message was deleted or received again, with
/// `InvalidParameterValue` about the ReceiptHandle parameter, which only the message
/// tells apart from other invalid parameters.
fn blame(code: &str, message: &str) -> Blame {
    let code = code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code);
    match code {
        "ReceiptHandleIsInvalid" | "InvalidIdFormat" | "MessageNotInflight" => Blame::Receipt,
        "InvalidParameterValue"
            if message.contains("ReceiptHandle")
                || message.contains("receipt handle")
                || message.contains("Message does not exist") =>
        {
            Blame::Receipt
        }
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
        | "UnsupportedOperation" => Blame::Request,
        _ => Blame::Queue,
    }
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
        let count = messages.len();
        let CheckedBatch {
            accepted,
            refused: mut failed,
        } = validate_batch(messages)?;
        // Each entry's id is the message's place in the batch, which SQS's answer names.
        let entries = accepted
            .into_iter()
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

        let place = |id: &str| id.parse::<usize>().ok().filter(|index| *index < count);
        let sent = output
            .successful
            .into_iter()
            .filter_map(|entry| Some((place(&entry.id)?, entry.message_id)))
            .collect();
        failed.extend(output.failed.into_iter().filter_map(|entry| {
            Some(SendFailure {
                index: place(&entry.id)?,
                sender_fault: entry.sender_fault,
                reason: format!(
                    "{}: {}",
                    entry.code,
                    entry.message.as_deref().unwrap_or("no message")
                ),
            })
        }));
        batch_result(count, sent, failed)
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
        observe("sqs", "DeleteMessage", request.send())
            .await
            .map(drop)
            .map_err(|error| sdk_error("DeleteMessage", error))
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> QueueResult<()> {
        let request = self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds_up(timeout, MAX_VISIBILITY_TIMEOUT_SECONDS));
        observe("sqs", "ChangeMessageVisibility", request.send())
            .await
            .map(drop)
            .map_err(|error| sdk_error("ChangeMessageVisibility", error))
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
            oldest_age_seconds: None,
        })
    }

    fn dead_letters(&self) -> Option<&dyn Queue> {
        self.dead_letters.as_deref().map(|dlq| dlq as &dyn Queue)
    }
}

#[cfg(test)]
mod tests {
    //! The adapter against SQS's recorded answers, replayed through a real SDK client so
    //! that the SDK's own parsing (JSON 1.0 with query-compatible error codes) runs. moto
    //! answers differently (see `blame`), so these are what pins the mapping to real SQS.

    use aws_sdk_sqs::config::retry::RetryConfig;
    use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_runtime_api::client::http::{
        HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
    };
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;

    use super::*;

    const QUEUE_URL: &str = "https://sqs.us-east-1.amazonaws.com/123456789012/webhooks";

    /// One recorded HTTP answer of SQS, given to every request.
    #[derive(Clone, Debug)]
    struct Recorded {
        status: u16,
        /// The `x-amzn-query-error` header: the legacy code and the fault.
        query_error: Option<&'static str>,
        body: &'static str,
    }

    /// A 400 as SQS sends it: the query-compatible code in the header, the JSON shape.
    fn error(query_error: &'static str, body: &'static str) -> Recorded {
        Recorded {
            status: 400,
            query_error: Some(query_error),
            body,
        }
    }

    impl HttpConnector for Recorded {
        fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
            let status = StatusCode::try_from(self.status).expect("a status code");
            let mut response = Response::new(status, SdkBody::from(self.body));
            let headers = response.headers_mut();
            headers.insert("content-type", "application/x-amz-json-1.0");
            headers.insert("x-amzn-requestid", "6b0c2fbd-0d26-5a51-9d0b-6a2f3f1e0c41");
            if let Some(query_error) = self.query_error {
                headers.insert("x-amzn-query-error", query_error);
            }
            HttpConnectorFuture::ready(Ok(response))
        }
    }

    fn queue(recorded: Recorded) -> SqsQueue {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("AKID", "secret", None, None, "test"))
            .endpoint_url("https://sqs.us-east-1.amazonaws.com")
            .retry_config(RetryConfig::disabled())
            .http_client(http_client_fn(move |_, _| {
                SharedHttpConnector::new(recorded.clone())
            }))
            .build();
        SqsQueue::new(Client::from_conf(config), QUEUE_URL, None)
    }

    const EXPIRED: &str = r#"{"__type":"com.amazon.coral.service#InvalidParameterValueException","message":"Value AQEBz1Ey0H2rHUTE8nI0aKp/ot7EwVq5 for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."}"#;
    const NOT_AVAILABLE: &str = r#"{"__type":"com.amazon.coral.service#InvalidParameterValueException","message":"Value AQEBz1Ey0H2rHUTE8nI0aKp/ot7EwVq5 for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change."}"#;
    const NOT_INFLIGHT: &str = r#"{"__type":"com.amazonaws.sqs#MessageNotInflight","message":"The message referred to isn't in flight."}"#;
    const MALFORMED: &str = r#"{"__type":"com.amazonaws.sqs#ReceiptHandleIsInvalid","message":"The input receipt handle \"not-a-handle\" is not a valid receipt handle."}"#;

    #[tokio::test]
    async fn stale_receipt_handles_are_invalid_receipts() {
        let cases = [
            (
                "expired handle",
                error("InvalidParameterValue;Sender", EXPIRED),
            ),
            (
                "deleted or received again",
                error("InvalidParameterValue;Sender", NOT_AVAILABLE),
            ),
            (
                "not in flight",
                error(
                    "AWS.SimpleQueueService.MessageNotInflight;Sender",
                    NOT_INFLIGHT,
                ),
            ),
            (
                "not in flight, no query-compatible header",
                Recorded {
                    status: 400,
                    query_error: None,
                    body: NOT_INFLIGHT,
                },
            ),
            (
                "malformed handle",
                error("ReceiptHandleIsInvalid;Sender", MALFORMED),
            ),
        ];
        for (what, recorded) in cases {
            let queue = queue(recorded);
            let changed = queue.change_visibility("handle", Duration::ZERO).await;
            assert!(
                matches!(changed, Err(QueueError::InvalidReceipt)),
                "change_visibility, {what}: {changed:?}"
            );
            let deleted = queue.delete("handle").await;
            assert!(
                matches!(deleted, Err(QueueError::InvalidReceipt)),
                "delete, {what}: {deleted:?}"
            );
        }
    }

    #[tokio::test]
    async fn an_invalid_parameter_that_is_not_the_handle_is_an_invalid_request() {
        let queue = queue(error(
            "InvalidParameterValue;Sender",
            r#"{"__type":"com.amazon.coral.service#InvalidParameterValueException","message":"Value 43201 for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [43200 seconds]"}"#,
        ));
        let result = queue
            .change_visibility("handle", Duration::from_secs(43_201))
            .await;
        assert!(
            matches!(&result, Err(QueueError::Invalid(reason)) if reason.contains("VisibilityTimeout")),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn batch_errors_are_invalid_requests_in_either_form() {
        let cases = [
            (
                Some("AWS.SimpleQueueService.BatchRequestTooLong;Sender"),
                r#"{"__type":"com.amazonaws.sqs#BatchRequestTooLong","message":"Batch requests cannot be longer than 1048576 bytes. You have sent 1048577 bytes."}"#,
            ),
            (
                Some("AWS.SimpleQueueService.EmptyBatchRequest;Sender"),
                r#"{"__type":"com.amazonaws.sqs#EmptyBatchRequest","message":"There should be at least one SendMessageBatchRequestEntry in the request."}"#,
            ),
            (
                Some("AWS.SimpleQueueService.TooManyEntriesInBatchRequest;Sender"),
                r#"{"__type":"com.amazonaws.sqs#TooManyEntriesInBatchRequest","message":"Maximum number of entries per request are 10. You have sent 11."}"#,
            ),
            (
                Some("AWS.SimpleQueueService.BatchEntryIdsNotDistinct;Sender"),
                r#"{"__type":"com.amazonaws.sqs#BatchEntryIdsNotDistinct","message":"Id 0 repeated."}"#,
            ),
            (
                Some("AWS.SimpleQueueService.InvalidBatchEntryId;Sender"),
                r#"{"__type":"com.amazonaws.sqs#InvalidBatchEntryId","message":"A batch entry id can only contain alphanumeric characters, hyphens and underscores."}"#,
            ),
            (
                None,
                r#"{"__type":"com.amazonaws.sqs#BatchRequestTooLong","message":"Batch requests cannot be longer than 1048576 bytes."}"#,
            ),
            (
                Some("InvalidMessageContents;Sender"),
                r#"{"__type":"com.amazonaws.sqs#InvalidMessageContents","message":"Invalid characters found."}"#,
            ),
        ];
        for (query_error, body) in cases {
            let queue = queue(Recorded {
                status: 400,
                query_error,
                body,
            });
            let result = queue.send_batch(vec![OutMessage::new("a")]).await;
            assert!(
                matches!(result, Err(QueueError::Invalid(_))),
                "{query_error:?} {body}: {result:?}"
            );
        }
    }

    #[tokio::test]
    async fn queue_failures_are_unavailable() {
        let cases = [
            error(
                "AWS.SimpleQueueService.NonExistentQueue;Sender",
                r#"{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}"#,
            ),
            error(
                "RequestThrottled;Sender",
                r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Rate exceeded"}"#,
            ),
            Recorded {
                status: 500,
                query_error: Some("InternalError;Receiver"),
                body: r#"{"__type":"com.amazon.coral.service#InternalFailure","message":"We encountered an internal error. Please try again."}"#,
            },
        ];
        for recorded in cases {
            let what = format!("{recorded:?}");
            let queue = queue(recorded);
            let deleted = queue.delete("handle").await;
            assert!(
                matches!(deleted, Err(QueueError::Unavailable(_))),
                "{what}: {deleted:?}"
            );
            let received = queue
                .receive(1, Duration::from_secs(30), Duration::ZERO)
                .await;
            assert!(
                matches!(received, Err(QueueError::Unavailable(_))),
                "{what}: {received:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_partial_batch_returns_the_ids_sent_and_each_failure_with_its_fault() {
        // Messages 0, 2 and 3 went to SQS as entries "0", "2" and "3" (message 1 was
        // refused before sending); SQS took "0", failed "2" on its side and refused "3".
        let queue = queue(Recorded {
            status: 200,
            query_error: None,
            body: r#"{"Successful":[{"Id":"0","MessageId":"5fea7756-0ea4-451a-a703-a558b933e274","MD5OfMessageBody":"0cc175b9c0f1b6a831c399e269772661"}],"Failed":[{"Id":"3","SenderFault":true,"Code":"InvalidMessageContents","Message":"Invalid characters found."},{"Id":"2","SenderFault":false,"Code":"InternalError","Message":"We encountered an internal error. Please try again."}]}"#,
        });
        let result = queue
            .send_batch(vec![
                OutMessage::new("a"),
                OutMessage::new("refused \u{0}"),
                OutMessage::new("b"),
                OutMessage::new("c"),
            ])
            .await;
        let Err(QueueError::PartiallySent { sent, failed }) = result else {
            panic!("expected PartiallySent, got {result:?}");
        };
        assert_eq!(
            sent,
            [
                Some("5fea7756-0ea4-451a-a703-a558b933e274".to_owned()),
                None,
                None,
                None
            ]
        );
        let faults: Vec<(usize, bool)> = failed
            .iter()
            .map(|failure| (failure.index, failure.sender_fault))
            .collect();
        assert_eq!(faults, [(1, true), (2, false), (3, true)]);
        assert!(failed[0].reason.contains("U+0000"), "{}", failed[0]);
        assert!(
            failed[1].reason.starts_with("InternalError: "),
            "{}",
            failed[1]
        );
        assert!(
            failed[2].reason.starts_with("InvalidMessageContents: "),
            "{}",
            failed[2]
        );
    }
}
