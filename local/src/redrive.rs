//! `cargo run -p local -- redrive`: moves every dead letter of the webhook queue back to
//! it, as `aws sqs start-message-move-task` does in AWS, printing its progress. The
//! embedded database is one process's at a time: stop the runner first.

use std::io::Write;
use std::time::Duration;

use shared::config::Config;
use shared::queue::{MAX_BATCH, OutMessage, Queue};

/// How long a received dead letter stays hidden while it is moved.
const MOVING: Duration = Duration::from_secs(60);

/// Moves the dead letters back; returns how many moved.
pub async fn redrive(
    config: &Config,
    out: &mut impl Write,
) -> Result<usize, Box<dyn std::error::Error>> {
    let adapters = crate::adapters::build(config).await?;
    let queue = adapters.webhook_queue;
    move_back(queue.as_ref(), out).await
}

async fn move_back(
    queue: &dyn Queue,
    out: &mut impl Write,
) -> Result<usize, Box<dyn std::error::Error>> {
    let dead_letters = queue
        .dead_letters()
        .ok_or("the webhook queue has no dead-letter queue")?;
    let total = dead_letters.stats().await?.visible;
    writeln!(out, "redrive: {total} dead letters to move back")?;
    let mut moved = 0;
    loop {
        let batch = dead_letters
            .receive(MAX_BATCH, MOVING, Duration::ZERO)
            .await?;
        if batch.is_empty() {
            break;
        }
        // With their attributes: the worker knows a redriven dead letter by them.
        let messages = batch
            .iter()
            .map(|message| OutMessage {
                attributes: message.attributes.clone(),
                ..OutMessage::new(message.body.clone())
            })
            .collect();
        queue.send_batch(messages).await?;
        for message in &batch {
            dead_letters.delete(&message.receipt_handle).await?;
        }
        moved += batch.len();
        writeln!(out, "redrive: moved {moved}/{total}")?;
    }
    writeln!(
        out,
        "redrive: done, {moved} moved back to the webhook queue"
    )?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use shared::embedded_db::EmbeddedDb;
    use shared::queue::embedded::EmbeddedQueue;

    use super::*;

    #[tokio::test]
    async fn every_dead_letter_goes_back_with_progress() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let queue = EmbeddedQueue::open_with_dead_letters(db.clone(), "q", "q-dlq", 5).unwrap();
        let dead = EmbeddedQueue::open(db, "q-dlq").unwrap();
        let bodies: Vec<OutMessage> = (0..12)
            .map(|n| OutMessage::new(format!("envelope {n}")).attribute("attempts", "3"))
            .collect();
        dead.send_batch(bodies[..10].to_vec()).await.unwrap();
        dead.send_batch(bodies[10..].to_vec()).await.unwrap();

        let mut out = Vec::new();
        assert_eq!(move_back(&queue, &mut out).await.unwrap(), 12);
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("12 dead letters to move back"), "{out}");
        assert!(
            out.contains("moved 10/12") && out.contains("moved 12/12"),
            "{out}"
        );
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.visible, stats.dead_letters), (12, Some(0)));
        let received = queue.receive(10, MOVING, Duration::ZERO).await.unwrap();
        assert_eq!(received[0].body, "envelope 0", "bodies intact");
        assert_eq!(received[0].attributes["attempts"], "3", "attributes kept");
    }
}
