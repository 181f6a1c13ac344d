//! `queues` and `dlq list`, and how the ops commands look at dead letters: a queue has
//! no peek, so each is received (hidden while looked at) and made visible again after.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use shared::config::Config;
use shared::http::rfc3339;
use shared::queue::{MAX_BATCH, Queue, QueueResult, ReceivedMessage};
use shared::webhooks::Envelope;
use shared::webhooks::deferral::{DEAD_LETTER_ATTEMPTS, DEAD_LETTER_ERROR};

use super::OpsResult;

/// How long a received dead letter stays hidden while the command looks at it.
const LOOKING: Duration = Duration::from_secs(60);
/// A receive waits this long for a message: SQS's short poll samples only some of its
/// servers, and could answer "none" while messages wait.
const WAIT: Duration = Duration::from_secs(1);

/// The configured webhook queue.
pub(super) async fn webhook_queue(
    config: &Config,
) -> Result<Arc<dyn Queue>, Box<dyn std::error::Error>> {
    Ok(crate::adapters::build(config).await?.webhook_queue)
}

/// The dead-letter queue of `queue`, which must have one.
pub(super) fn dead_letter_queue(
    queue: &dyn Queue,
) -> Result<&dyn Queue, Box<dyn std::error::Error>> {
    queue
        .dead_letters()
        .ok_or_else(|| "the webhook queue has no dead-letter queue (set WEBHOOK_DLQ_URL)".into())
}

/// Up to `limit` dead letters, each received once (hidden for [`LOOKING`]) and in the
/// order received; [`release`] shows them again.
pub(super) async fn receive(dead: &dyn Queue, limit: usize) -> QueueResult<Vec<ReceivedMessage>> {
    let mut received: Vec<ReceivedMessage> = Vec::new();
    while received.len() < limit {
        let batch = dead
            .receive(MAX_BATCH.min(limit - received.len()), LOOKING, WAIT)
            .await?;
        if batch.is_empty() {
            break;
        }
        for message in batch {
            // Received again (it became visible while the walk went on): its newest
            // receipt handle is the one that still works.
            match received
                .iter_mut()
                .find(|known| known.message_id == message.message_id)
            {
                Some(known) => *known = message,
                None => received.push(message),
            }
        }
    }
    Ok(received)
}

/// Makes each of `messages` visible again now.
pub(super) async fn release(dead: &dyn Queue, messages: &[ReceivedMessage]) -> QueueResult<()> {
    for message in messages {
        dead.change_visibility(&message.receipt_handle, Duration::ZERO)
            .await?;
    }
    Ok(())
}

/// `queues`: the webhook queue's depths and the verdict GET /health gives them.
pub(super) async fn queues(config: &Config, out: &mut impl Write) -> OpsResult {
    let stats = webhook_queue(config).await?.stats().await?;
    writeln!(
        out,
        "webhook queue: {} waiting, {} in flight, {} delayed",
        stats.visible, stats.in_flight, stats.delayed
    )?;
    if let Some(age) = stats.oldest_age_seconds {
        writeln!(out, "oldest message: {age} s old")?;
    }
    match stats.dead_letters {
        Some(dead) => writeln!(out, "dead letters: {dead}")?,
        None => writeln!(out, "dead letters: no dead-letter queue configured")?,
    }
    let settings = &config.health;
    let verdict = settings.queue_verdict(stats.visible, stats.dead_letters.unwrap_or(0));
    writeln!(
        out,
        "verdict: {} (thresholds: {} waiting, {} dead letters)",
        verdict.map_or("healthy".to_owned(), |reason| format!(
            "unhealthy, {reason}"
        )),
        settings.max_waiting,
        settings.max_dead_letters
    )?;
    Ok(())
}

/// `dlq list`: each dead letter's id, when it was sent, its envelope's summary (never
/// its payload: a provider's data) and the last error the worker recorded.
pub(super) async fn list(config: &Config, limit: usize, out: &mut impl Write) -> OpsResult {
    let queue = webhook_queue(config).await?;
    let dead = dead_letter_queue(queue.as_ref())?;
    let total = dead.stats().await?.visible;
    let messages = receive(dead, limit).await?;
    let listed = write_list(&messages, total, out);
    release(dead, &messages).await?;
    listed
}

fn write_list(messages: &[ReceivedMessage], total: u64, out: &mut impl Write) -> OpsResult {
    writeln!(
        out,
        "dlq: {total} dead letters waiting, {} listed",
        messages.len()
    )?;
    for message in messages {
        writeln!(out, "{}", message.message_id)?;
        writeln!(
            out,
            "  sent:       {} (received {} times)",
            rfc3339(message.sent_at_millis.div_euclid(1000)),
            message.receive_count
        )?;
        match Envelope::from_message(&message.body) {
            Ok(envelope) => writeln!(
                out,
                "  envelope:   {}, dedupe key {}, received {}, correlation {}, deferrals {}",
                envelope.source.as_str(),
                envelope.dedupe_key,
                rfc3339(envelope.received_at_ms.div_euclid(1000)),
                envelope.correlation_id,
                envelope.deferrals
            )?,
            Err(_) => writeln!(
                out,
                "  envelope:   none (the body is not an envelope, {} bytes)",
                message.body.len()
            )?,
        }
        let attribute = |name: &str| {
            message
                .attributes
                .get(name)
                .map_or("unknown", String::as_str)
        };
        writeln!(out, "  attempts:   {}", attribute(DEAD_LETTER_ATTEMPTS))?;
        writeln!(out, "  last error: {}", attribute(DEAD_LETTER_ERROR))?;
    }
    Ok(())
}
