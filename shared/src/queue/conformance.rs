//! The queue port's conformance suite: what every [`Queue`] adapter must do, as plain
//! async functions that panic with a message naming the broken rule.
//!
//! Every check needs a queue of its own (depth counts and receives would otherwise see
//! the other checks' messages), so [`run_all`] takes a factory: `make(max_receive_count)`
//! returns a new, empty queue that has a new, empty dead-letter queue, to which a message
//! is redriven once it has been received `max_receive_count` times without being
//! deleted. The checks run concurrently; the timing ones wait for one- and two-second
//! delays and visibility timeouts (SQS counts in whole seconds), so the suite takes a few
//! seconds in all.
//!
//! Only what SQS and its emulators share is checked: for instance not that a stale
//! receipt handle (from before a message's latest receive) is refused, which SQS does
//! not promise, nor the exact receive count of a dead letter (only that the redrive did
//! not reset it).

use std::future::Future;
use std::time::{Duration, Instant};

use super::{OutMessage, Queue, QueueError, QueueStats, ReceivedMessage, SendFailure};

/// The max_receive_count of the queues the checks that do not test redrive use: high
/// enough that none of their receives moves a message.
pub const ROOMY_MAX_RECEIVE_COUNT: u32 = 10;

/// The max_receive_count of the queue [`redrives_to_the_dead_letter_queue`] gets.
pub const REDRIVE_MAX_RECEIVE_COUNT: u32 = 2;

/// How long a receive that expects messages may wait for them (long polling returns as
/// soon as one is there).
const WAIT: Duration = Duration::from_secs(5);
const HIDE: Duration = Duration::from_secs(30);

/// Runs every check, each against a queue from `make`.
pub async fn run_all<F, Fut, Q>(make: F)
where
    F: Fn(u32) -> Fut,
    Fut: Future<Output = Q>,
    Q: Queue,
{
    let round_trip = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let batches = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let partial = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let delay = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let visibility = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let change = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let receipts = make(ROOMY_MAX_RECEIVE_COUNT).await;
    let redrive = make(REDRIVE_MAX_RECEIVE_COUNT).await;
    tokio::join!(
        send_receive_round_trip(&round_trip),
        batches_hold_one_to_ten_messages(&batches),
        a_batch_sends_what_is_valid_and_reports_the_rest(&partial),
        a_delay_hides_a_message_until_it_passes(&delay),
        the_visibility_timeout_hides_a_received_message(&visibility),
        change_visibility_to_zero_makes_a_message_visible(&change),
        unknown_receipt_handles_are_refused(&receipts),
        redrives_to_the_dead_letter_queue(&redrive, REDRIVE_MAX_RECEIVE_COUNT),
    );
}

fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4())
}

async fn send(queue: &dyn Queue, messages: Vec<OutMessage>) -> Vec<String> {
    let count = messages.len();
    match queue.send_batch(messages).await {
        Ok(ids) => {
            assert_eq!(
                ids.len(),
                count,
                "send_batch returns one message id per message"
            );
            ids
        }
        Err(error) => panic!("send_batch of {count} failed: {error}"),
    }
}

async fn receive(
    queue: &dyn Queue,
    max: usize,
    hide: Duration,
    wait: Duration,
) -> Vec<ReceivedMessage> {
    match queue.receive(max, hide, wait).await {
        Ok(messages) => {
            assert!(
                messages.len() <= max,
                "receive({max}) returned {}",
                messages.len()
            );
            messages
        }
        Err(error) => panic!("receive failed: {error}"),
    }
}

/// Receives exactly one message, waiting for it.
async fn receive_one(queue: &dyn Queue, hide: Duration, what: &str) -> ReceivedMessage {
    let mut messages = receive(queue, 1, hide, WAIT).await;
    assert_eq!(
        messages.len(),
        1,
        "{what}: expected one message within {WAIT:?}"
    );
    messages.remove(0)
}

async fn assert_nothing_visible(queue: &dyn Queue, what: &str) {
    let messages = receive(queue, 10, HIDE, Duration::ZERO).await;
    assert!(
        messages.is_empty(),
        "{what}: expected no message, received {messages:?}"
    );
}

async fn delete(queue: &dyn Queue, message: &ReceivedMessage) {
    if let Err(error) = queue.delete(&message.receipt_handle).await {
        panic!("delete of {} failed: {error}", message.message_id);
    }
}

/// Polls `stats` until `expected` holds (SQS's depths are approximate and may lag; exact
/// adapters pass at once), failing with the last value after a few seconds.
async fn assert_stats(queue: &dyn Queue, what: &str, expected: impl Fn(&QueueStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let stats = match queue.stats().await {
            Ok(stats) => stats,
            Err(error) => panic!("{what}: stats failed: {error}"),
        };
        if expected(&stats) {
            return;
        }
        if Instant::now() > deadline {
            panic!("{what}: unexpected stats {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub async fn send_receive_round_trip(queue: &dyn Queue) {
    let body = format!(r#"{{"event":"{}","text":"ação ✓"}}"#, unique("round-trip"));
    let correlation = unique("correlation");
    let sent_at = now_millis();
    let ids = send(
        queue,
        vec![
            OutMessage::new(&body)
                .attribute("source", "meta")
                .attribute("correlation_id", &correlation),
        ],
    )
    .await;

    let message = receive_one(queue, HIDE, "a sent message").await;
    assert_eq!(
        message.message_id, ids[0],
        "the received message has the id send returned"
    );
    assert_eq!(message.body, body, "the body round-trips");
    assert_eq!(
        message.attributes.len(),
        2,
        "the attributes round-trip: {:?}",
        message.attributes
    );
    assert_eq!(message.attributes["source"], "meta");
    assert_eq!(message.attributes["correlation_id"], correlation);
    assert_eq!(message.receive_count, 1, "the first delivery counts 1");
    assert!(
        (message.sent_at_millis - sent_at).abs() < 60_000,
        "sent_at_millis {} is not the send time (about {sent_at})",
        message.sent_at_millis
    );
    assert!(!message.receipt_handle.is_empty(), "a receipt handle");
    assert_stats(queue, "a received message", |s| {
        s.visible == 0 && s.in_flight == 1
    })
    .await;

    delete(queue, &message).await;
    assert_stats(queue, "after delete", |s| {
        s.visible == 0 && s.in_flight == 0 && s.delayed == 0 && s.dead_letters == Some(0)
    })
    .await;
    assert_nothing_visible(queue, "a deleted message").await;
}

pub async fn batches_hold_one_to_ten_messages(queue: &dyn Queue) {
    let batch = unique("batch");
    let bodies: Vec<String> = (0..10).map(|n| format!("{batch}-{n}")).collect();
    let messages = |count: usize| -> Vec<OutMessage> {
        (0..count)
            .map(|n| OutMessage::new(format!("{batch}-{n}")).attribute("n", n.to_string()))
            .collect()
    };

    let result = queue.send_batch(messages(11)).await;
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "a batch of 11: {result:?}"
    );
    let result = queue.send_batch(vec![]).await;
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "an empty batch: {result:?}"
    );
    let result = queue.send_batch(vec![OutMessage::new("")]).await;
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "an empty body: {result:?}"
    );
    let result = queue
        .send_batch(vec![OutMessage::new("late").delayed(901)])
        .await;
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "a delay over 900 s: {result:?}"
    );
    let result = queue
        .send_batch(vec![OutMessage::new("nul \u{0} inside")])
        .await;
    assert!(
        matches!(&result, Err(QueueError::Invalid(reason)) if reason.contains("position 4")),
        "a character SQS does not take, named by its position: {result:?}"
    );
    let result = queue.receive(0, HIDE, Duration::ZERO).await;
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "receive(0): {result:?}"
    );
    let result = queue.receive(11, HIDE, Duration::ZERO).await;
    assert!(
        matches!(result, Err(QueueError::Invalid(_))),
        "receive(11): {result:?}"
    );
    assert_stats(queue, "after rejected batches", |s| {
        s.visible == 0 && s.delayed == 0
    })
    .await;

    let ids = send(queue, messages(10)).await;
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "ten distinct message ids: {ids:?}");
    assert_stats(queue, "after a batch of 10", |s| s.visible == 10).await;

    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    while received.len() < 10 && Instant::now() < deadline {
        received.extend(receive(queue, 10, HIDE, Duration::from_secs(1)).await);
    }
    let mut received_bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
    received_bodies.sort();
    assert_eq!(received_bodies, bodies, "every message of the batch, once");
    for message in &received {
        let n = message.body.rsplit('-').next().unwrap_or_default();
        assert_eq!(
            message.attributes.get("n").map(String::as_str),
            Some(n),
            "attributes stay with their message"
        );
        let index: usize = n.parse().unwrap_or(usize::MAX);
        assert_eq!(
            ids.get(index),
            Some(&message.message_id),
            "ids are returned in send order"
        );
        delete(queue, message).await;
    }
    assert_stats(queue, "after deleting the batch", |s| {
        s.visible == 0 && s.in_flight == 0
    })
    .await;
}

/// SQS reports a batch's messages one by one and sends the valid ones; here the shared
/// check refuses the invalid ones before SQS sees them, with the same outcome.
pub async fn a_batch_sends_what_is_valid_and_reports_the_rest(queue: &dyn Queue) {
    let batch = unique("partial");
    let result = queue
        .send_batch(vec![
            OutMessage::new(format!("{batch}-0")),
            OutMessage::new(format!("{batch}-1")).delayed(901),
            OutMessage::new(format!("{batch}-2 \u{FFFF}")),
            OutMessage::new(format!("{batch}-3")).attribute("n", "3"),
        ])
        .await;
    let Err(QueueError::PartiallySent { sent, failed }) = result else {
        panic!("a batch with two invalid messages of four: {result:?}");
    };
    assert_eq!(sent.len(), 4, "one entry per message: {sent:?}");
    assert!(
        sent[0].is_some() && sent[1].is_none() && sent[2].is_none() && sent[3].is_some(),
        "the valid messages were sent, the others not: {sent:?}"
    );
    let faults: Vec<(usize, bool)> = failed
        .iter()
        .map(
            |SendFailure {
                 index,
                 sender_fault,
                 ..
             }| (*index, *sender_fault),
        )
        .collect();
    assert_eq!(
        faults,
        [(1, true), (2, true)],
        "the failed messages, by index, the sender's fault: {failed:?}"
    );
    assert!(
        failed[0].reason.contains("delay"),
        "the reason names the delay: {}",
        failed[0]
    );
    assert!(
        failed[1].reason.contains("U+FFFF"),
        "the reason names the character: {}",
        failed[1]
    );

    let mut received = Vec::new();
    let deadline = Instant::now() + WAIT;
    while received.len() < 2 && Instant::now() < deadline {
        received.extend(receive(queue, 10, HIDE, Duration::from_secs(1)).await);
    }
    let mut got: Vec<(&str, Option<&String>)> = received
        .iter()
        .map(|m| (m.body.as_str(), Some(&m.message_id)))
        .collect();
    got.sort();
    let first = format!("{batch}-0");
    let last = format!("{batch}-3");
    assert_eq!(
        got,
        [
            (first.as_str(), sent[0].as_ref()),
            (last.as_str(), sent[3].as_ref())
        ],
        "the sent messages, under the ids returned"
    );
    for message in &received {
        delete(queue, message).await;
    }
    assert_nothing_visible(queue, "after a partly sent batch").await;
}

pub async fn a_delay_hides_a_message_until_it_passes(queue: &dyn Queue) {
    let body = unique("delayed");
    let started = Instant::now();
    send(
        queue,
        vec![
            OutMessage::new(&body)
                .delayed(2)
                .attribute("kind", "delayed"),
        ],
    )
    .await;
    assert_stats(queue, "a delayed message", |s| {
        s.delayed == 1 && s.visible == 0
    })
    .await;
    assert_nothing_visible(queue, "a message within its delay").await;

    let message = receive_one(queue, HIDE, "a message whose delay passed").await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "a 2 s delay ended after {:?}",
        started.elapsed()
    );
    assert_eq!(message.body, body);
    assert_eq!(message.attributes["kind"], "delayed");
    assert_eq!(message.receive_count, 1);
    assert_stats(queue, "after the delay", |s| {
        s.delayed == 0 && s.in_flight == 1
    })
    .await;
    delete(queue, &message).await;
}

pub async fn the_visibility_timeout_hides_a_received_message(queue: &dyn Queue) {
    let body = unique("visibility");
    send(queue, vec![OutMessage::new(&body)]).await;
    let first = receive_one(queue, Duration::from_secs(2), "a sent message").await;
    let received_at = Instant::now();
    assert_eq!(first.receive_count, 1);
    assert_stats(queue, "a message within its visibility timeout", |s| {
        s.in_flight == 1 && s.visible == 0
    })
    .await;
    assert_nothing_visible(queue, "a message within its visibility timeout").await;

    let second = receive_one(queue, HIDE, "a message whose visibility timeout passed").await;
    assert!(
        received_at.elapsed() >= Duration::from_millis(1500),
        "a 2 s visibility timeout ended after {:?}",
        received_at.elapsed()
    );
    assert_eq!(
        second.message_id, first.message_id,
        "the same message comes back"
    );
    assert_eq!(second.body, body);
    assert_eq!(second.receive_count, 2, "the second delivery counts 2");
    assert_ne!(
        second.receipt_handle, first.receipt_handle,
        "each receive gets its own receipt handle"
    );

    delete(queue, &second).await;
    assert_stats(queue, "after delete", |s| {
        s.in_flight == 0 && s.visible == 0
    })
    .await;
    assert_nothing_visible(queue, "a deleted message").await;
}

pub async fn change_visibility_to_zero_makes_a_message_visible(queue: &dyn Queue) {
    let body = unique("change-visibility");
    send(queue, vec![OutMessage::new(&body)]).await;
    let first = receive_one(queue, HIDE, "a sent message").await;
    assert_nothing_visible(queue, "a message hidden for 30 s").await;

    if let Err(error) = queue
        .change_visibility(&first.receipt_handle, Duration::ZERO)
        .await
    {
        panic!("change_visibility to zero failed: {error}");
    }
    let second = receive_one(queue, HIDE, "a message made visible again").await;
    assert_eq!(second.message_id, first.message_id);
    assert_eq!(second.receive_count, 2);

    if let Err(error) = queue
        .change_visibility(&second.receipt_handle, Duration::from_secs(60))
        .await
    {
        panic!("change_visibility to extend the timeout failed: {error}");
    }
    assert_stats(queue, "a message whose timeout was extended", |s| {
        s.in_flight == 1
    })
    .await;
    delete(queue, &second).await;
}

pub async fn unknown_receipt_handles_are_refused(queue: &dyn Queue) {
    let result = queue.delete("not-a-receipt-handle").await;
    assert!(
        matches!(result, Err(QueueError::InvalidReceipt)),
        "delete of a forged receipt: {result:?}"
    );
    let result = queue
        .change_visibility("not-a-receipt-handle", Duration::ZERO)
        .await;
    assert!(
        matches!(result, Err(QueueError::InvalidReceipt)),
        "change_visibility of a forged receipt: {result:?}"
    );

    send(queue, vec![OutMessage::new(unique("receipts"))]).await;
    let message = receive_one(queue, HIDE, "a sent message").await;
    delete(queue, &message).await;
    let result = queue
        .change_visibility(&message.receipt_handle, Duration::ZERO)
        .await;
    assert!(
        matches!(result, Err(QueueError::InvalidReceipt)),
        "change_visibility of a deleted message: {result:?}"
    );
}

/// `queue` must redrive after `max_receive_count` receives.
pub async fn redrives_to_the_dead_letter_queue(queue: &dyn Queue, max_receive_count: u32) {
    let Some(dead_letters) = queue.dead_letters() else {
        panic!("the queue has no dead-letter queue");
    };
    assert!(
        dead_letters.dead_letters().is_none(),
        "a dead-letter queue has no dead-letter queue"
    );
    let body = unique("poison");
    let ids = send(
        queue,
        vec![
            OutMessage::new(&body)
                .attribute("source", "meta")
                .attribute("attempt", "original"),
        ],
    )
    .await;

    // A zero visibility timeout makes each receive count without waiting for one to pass.
    for count in 1..=max_receive_count {
        let message = receive_one(queue, Duration::ZERO, "a message not yet redriven").await;
        assert_eq!(message.receive_count, count, "receive number {count}");
    }
    // The receive after the last allowed one moves the message instead of returning it.
    let deadline = Instant::now() + WAIT;
    loop {
        let messages = receive(queue, 10, HIDE, Duration::ZERO).await;
        assert!(
            messages.is_empty(),
            "a message received {max_receive_count} times was delivered again: {messages:?}"
        );
        let stats = queue
            .stats()
            .await
            .unwrap_or_else(|error| panic!("stats failed: {error}"));
        if stats.dead_letters == Some(1) || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_stats(queue, "after the redrive", |s| {
        s.dead_letters == Some(1) && s.visible == 0 && s.in_flight == 0
    })
    .await;
    assert_stats(dead_letters, "the dead-letter queue", |s| {
        s.visible == 1 && s.dead_letters.is_none()
    })
    .await;

    let dead = receive_one(dead_letters, HIDE, "the redriven message").await;
    assert_eq!(
        dead.message_id, ids[0],
        "the dead letter keeps its message id"
    );
    assert!(
        dead.receive_count > max_receive_count,
        "the dead letter keeps counting its receives: {}",
        dead.receive_count
    );
    assert_eq!(dead.body, body, "the dead letter keeps its body");
    assert_eq!(
        dead.attributes.len(),
        2,
        "the dead letter keeps its attributes: {:?}",
        dead.attributes
    );
    assert_eq!(dead.attributes["source"], "meta");
    assert_eq!(dead.attributes["attempt"], "original");
    assert_stats(queue, "a dead letter in flight still counts", |s| {
        s.dead_letters == Some(1)
    })
    .await;
    delete(dead_letters, &dead).await;
    assert_stats(queue, "after deleting the dead letter", |s| {
        s.dead_letters == Some(0)
    })
    .await;
}
