//! What Lambda's SQS event source mapping does, for the local runner: receive a batch,
//! hand it to a worker handler as a real `SqsEvent`, then delete every record except the
//! ones the handler reported in its `SqsBatchResponse`. Failed records stay hidden until
//! their visibility timeout passes and are received again, and the queue's redrive moves
//! them to the dead-letter queue after `max_receive_count` receives. A handler that
//! panics fails its whole batch, as an error does, and the consumer goes on, as Lambda's
//! runtime does.

use std::any::Any;
use std::collections::HashSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use futures_util::FutureExt;

use super::{MAX_BATCH, Queue, QueueError, ReceivedMessage};

#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    /// Records per event, 1 to 10.
    pub batch_size: usize,
    /// How long a received batch stays hidden: the worker's timeout times six, as AWS
    /// advises for event source mappings.
    pub visibility_timeout: Duration,
    /// Long-poll wait per receive.
    pub wait: Duration,
    /// The ARN the records carry as `eventSourceARN`.
    pub queue_arn: String,
    pub region: String,
}

/// What one poll did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOutcome {
    pub received: usize,
    pub deleted: usize,
    pub failed: usize,
}

/// The event Lambda would deliver for these messages.
pub fn sqs_event(messages: &[ReceivedMessage], settings: &ConsumerSettings) -> SqsEvent {
    let records = messages
        .iter()
        .map(|message| {
            let mut record = SqsMessage::default();
            record.message_id = Some(message.message_id.clone());
            record.receipt_handle = Some(message.receipt_handle.clone());
            record.body = Some(message.body.clone());
            record.attributes = [
                ("ApproximateReceiveCount", message.receive_count.to_string()),
                ("SentTimestamp", message.sent_at_millis.to_string()),
            ]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
            record.message_attributes = message
                .attributes
                .iter()
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = Some(value.clone());
                    attribute.data_type = Some("String".to_owned());
                    (name.clone(), attribute)
                })
                .collect();
            record.event_source = Some("aws:sqs".to_owned());
            record.event_source_arn = Some(settings.queue_arn.clone());
            record.aws_region = Some(settings.region.clone());
            record
        })
        .collect();
    let mut event = SqsEvent::default();
    event.records = records;
    event
}

/// The messages to delete after a handler's answer, following Lambda's rules: an error
/// fails the whole batch, and so does a reported failure that names no record of it.
pub fn settled<'a, E>(
    messages: &'a [ReceivedMessage],
    answer: &Result<SqsBatchResponse, E>,
) -> Vec<&'a ReceivedMessage> {
    let Ok(response) = answer else {
        return Vec::new();
    };
    let ids: HashSet<&str> = messages.iter().map(|m| m.message_id.as_str()).collect();
    let failed: HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|failure| failure.item_identifier.as_str())
        .collect();
    if failed.iter().any(|id| !ids.contains(id)) {
        return Vec::new();
    }
    messages
        .iter()
        .filter(|message| !failed.contains(message.message_id.as_str()))
        .collect()
}

/// Receives one batch (waiting up to `settings.wait`), runs `handler` on it, and deletes
/// what it settled.
pub async fn poll_once<H, F, E>(
    queue: &dyn Queue,
    settings: &ConsumerSettings,
    handler: &H,
) -> Result<PollOutcome, QueueError>
where
    H: Fn(SqsEvent) -> F,
    F: Future<Output = Result<SqsBatchResponse, E>>,
    E: std::fmt::Display,
{
    let batch_size = settings.batch_size.clamp(1, MAX_BATCH);
    let messages = queue
        .receive(batch_size, settings.visibility_timeout, settings.wait)
        .await?;
    if messages.is_empty() {
        return Ok(PollOutcome::default());
    }
    let event = sqs_event(&messages, settings);
    // Unwind safety: a panicking handler leaves nothing of the consumer's half-done, and
    // the handler's own state is what Lambda would keep in a warm environment too.
    let answer = match AssertUnwindSafe(async { handler(event).await })
        .catch_unwind()
        .await
    {
        Ok(answer) => answer.map_err(|error| error.to_string()),
        Err(panic) => Err(format!("the handler panicked: {}", panic_message(&*panic))),
    };
    if let Err(error) = &answer {
        tracing::error!(error = %error, records = messages.len(), "worker failed the whole batch");
    }
    let done = settled(&messages, &answer);
    let mut deleted = 0;
    for message in &done {
        match queue.delete(&message.receipt_handle).await {
            Ok(()) => deleted += 1,
            // Still in the queue: it comes back after its visibility timeout, and the
            // worker's idempotency makes the second run a no-op.
            Err(error) => {
                tracing::warn!(error = %error, message_id = %message.message_id, "delete after success failed")
            }
        }
    }
    Ok(PollOutcome {
        received: messages.len(),
        deleted,
        failed: messages.len() - done.len(),
    })
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string payload")
}

/// Polls until `stop` turns true. A batch being handled is always finished and settled:
/// `stop` is looked at between polls, so it takes effect within one `settings.wait`.
pub async fn run<H, F, E>(
    queue: &dyn Queue,
    settings: ConsumerSettings,
    handler: H,
    stop: tokio::sync::watch::Receiver<bool>,
) where
    H: Fn(SqsEvent) -> F,
    F: Future<Output = Result<SqsBatchResponse, E>>,
    E: std::fmt::Display,
{
    while !*stop.borrow() {
        if let Err(error) = poll_once(queue, &settings, &handler).await {
            tracing::warn!(error = %error, "queue receive failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::OutMessage;
    use crate::queue::embedded::EmbeddedQueue;

    fn settings() -> ConsumerSettings {
        ConsumerSettings {
            batch_size: 10,
            visibility_timeout: Duration::from_millis(150),
            wait: Duration::ZERO,
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:webhooks".into(),
            region: "us-east-1".into(),
        }
    }

    /// A worker that fails every record whose body is "poison".
    async fn worker(event: SqsEvent) -> Result<SqsBatchResponse, String> {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            if record.body.as_deref() == Some("poison") {
                response.add_failure(record.message_id.unwrap_or_default());
            }
        }
        Ok(response)
    }

    fn queue(dir: &std::path::Path, max_receive_count: u32) -> EmbeddedQueue {
        EmbeddedQueue::open_with_dead_letters(
            EmbeddedDb::open(dir).unwrap(),
            "work",
            "work-dlq",
            max_receive_count,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn records_arrive_as_the_event_lambda_delivers() {
        let dir = tempfile::tempdir().unwrap();
        let queue = queue(dir.path(), 3);
        queue
            .send_batch(vec![
                OutMessage::new("{\"a\":1}").attribute("source", "meta"),
            ])
            .await
            .unwrap();
        let seen = Mutex::new(None);
        let outcome = poll_once(&queue, &settings(), &|event: SqsEvent| {
            *seen.lock().unwrap() = Some(serde_json::to_value(&event).unwrap());
            async { Ok::<_, String>(SqsBatchResponse::default()) }
        })
        .await
        .unwrap();
        assert_eq!(
            outcome,
            PollOutcome {
                received: 1,
                deleted: 1,
                failed: 0
            }
        );
        let event = seen.lock().unwrap().take().unwrap();
        let record = &event["Records"][0];
        assert_eq!(record["body"], "{\"a\":1}");
        assert_eq!(record["eventSource"], "aws:sqs");
        assert_eq!(
            record["eventSourceARN"],
            "arn:aws:sqs:us-east-1:000000000000:webhooks"
        );
        assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
        assert_eq!(record["messageAttributes"]["source"]["stringValue"], "meta");
        assert_eq!(record["messageAttributes"]["source"]["dataType"], "String");
        // The JSON is what a Lambda worker deserialises.
        let parsed: SqsEvent = serde_json::from_value(event).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(
            queue.stats().await.unwrap().visible + queue.stats().await.unwrap().in_flight,
            0
        );
    }

    #[tokio::test]
    async fn only_reported_failures_come_back_and_end_in_the_dead_letter_queue() {
        let dir = tempfile::tempdir().unwrap();
        let queue = queue(dir.path(), 3);
        let bodies = ["ok-1", "poison", "ok-2"];
        queue
            .send_batch(
                bodies
                    .iter()
                    .map(|body| OutMessage::new(*body).attribute("n", *body))
                    .collect(),
            )
            .await
            .unwrap();

        let first = poll_once(&queue, &settings(), &worker).await.unwrap();
        assert_eq!(
            first,
            PollOutcome {
                received: 3,
                deleted: 2,
                failed: 1
            }
        );

        // The failed record comes back after its visibility timeout, counted, until the
        // redrive moves it to the dead-letter queue on the receive after the third.
        for attempt in 2..=3 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let again = poll_once(&queue, &settings(), &worker).await.unwrap();
            assert_eq!(
                again,
                PollOutcome {
                    received: 1,
                    deleted: 0,
                    failed: 1
                },
                "attempt {attempt}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            poll_once(&queue, &settings(), &worker).await.unwrap(),
            PollOutcome::default()
        );

        let stats = queue.stats().await.unwrap();
        assert_eq!(
            (stats.visible, stats.in_flight, stats.dead_letters),
            (0, 0, Some(1))
        );
        let dead = queue
            .dead_letters()
            .unwrap()
            .receive(10, Duration::from_secs(30), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].body, "poison");
        assert_eq!(dead[0].attributes["n"], "poison");
    }

    #[tokio::test]
    async fn an_error_or_an_unknown_failure_id_fails_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let queue = queue(dir.path(), 5);
        queue
            .send_batch(vec![OutMessage::new("a"), OutMessage::new("b")])
            .await
            .unwrap();

        let crashed = poll_once(&queue, &settings(), &|_event: SqsEvent| async {
            Err::<SqsBatchResponse, _>("boom")
        })
        .await
        .unwrap();
        assert_eq!(
            crashed,
            PollOutcome {
                received: 2,
                deleted: 0,
                failed: 2
            }
        );

        tokio::time::sleep(Duration::from_millis(200)).await;
        let confused = poll_once(&queue, &settings(), &|_event: SqsEvent| async {
            let mut response = SqsBatchResponse::default();
            response.add_failure("not-a-message-of-this-batch");
            Ok::<_, String>(response)
        })
        .await
        .unwrap();
        assert_eq!(
            confused,
            PollOutcome {
                received: 2,
                deleted: 0,
                failed: 2
            }
        );
    }

    #[tokio::test]
    async fn a_handler_panic_fails_its_batch_and_the_consumer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let queue = queue(dir.path(), 5);
        queue
            .send_batch(vec![OutMessage::new("before"), OutMessage::new("panic")])
            .await
            .unwrap();
        let panicked = AtomicBool::new(false);
        // (body, receive count) of every record handled to its end.
        let handled = Mutex::new(Vec::<(String, String)>::new());
        let handler = |event: SqsEvent| {
            let (panicked, handled) = (&panicked, &handled);
            async move {
                for record in event.records {
                    let body = record.body.unwrap_or_default();
                    if body == "panic" && !panicked.swap(true, Ordering::SeqCst) {
                        panic!("the worker panicked mid-batch");
                    }
                    let count = record.attributes["ApproximateReceiveCount"].clone();
                    handled.lock().unwrap().push((body, count));
                }
                Ok::<_, String>(SqsBatchResponse::default())
            }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut quick = settings();
        quick.wait = Duration::from_millis(50);
        let consumer = run(&queue, quick, handler, stopped);
        let driver = async {
            while !panicked.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            queue
                .send_batch(vec![OutMessage::new("after")])
                .await
                .unwrap();
            while handled.lock().unwrap().len() < 4 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.send(true).unwrap();
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(consumer, driver)
        })
        .await
        .expect("the consumer kept consuming after the panic");

        let mut handled = handled.into_inner().unwrap();
        handled.sort();
        let pair = |body: &str, count: &str| (body.to_owned(), count.to_owned());
        // "before" was handled in the batch that panicked, then again with "panic" once
        // their visibility timeout passed: the failed batch was not deleted.
        assert_eq!(
            handled,
            [
                pair("after", "1"),
                pair("before", "1"),
                pair("before", "2"),
                pair("panic", "2")
            ]
        );
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.visible, stats.in_flight), (0, 0));
    }

    #[tokio::test]
    async fn run_finishes_the_batch_in_hand_then_stops() {
        let dir = tempfile::tempdir().unwrap();
        let queue = queue(dir.path(), 5);
        queue
            .send_batch(vec![OutMessage::new("slow")])
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let handled = Mutex::new(0);
        let handler = |_event: SqsEvent| {
            let _ = stop.send(true);
            *handled.lock().unwrap() += 1;
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok::<_, String>(SqsBatchResponse::default())
            }
        };
        let mut quick = settings();
        quick.wait = Duration::from_millis(50);
        tokio::time::timeout(Duration::from_secs(5), run(&queue, quick, handler, stopped))
            .await
            .unwrap();
        assert_eq!(*handled.lock().unwrap(), 1);
        let stats = queue.stats().await.unwrap();
        assert_eq!(
            stats.visible + stats.in_flight,
            0,
            "the batch was settled before stopping"
        );
    }
}
