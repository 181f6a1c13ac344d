//! `redrive`: moves dead letters of the webhook queue back to it, as `aws sqs
//! start-message-move-task` does in AWS (which moto and the embedded queue lack), with
//! their attributes (the worker knows a redriven dead letter by them), printing its
//! progress; `--id` moves one.

use std::io::Write;

use shared::config::Config;
use shared::queue::{MAX_BATCH, OutMessage, Queue, ReceivedMessage};

use super::OpsResult;
use super::dead_letters::{dead_letter_queue, receive, release, webhook_queue};

/// `redrive`: every dead letter.
pub(super) async fn all(config: &Config, out: &mut impl Write) -> OpsResult {
    let queue = webhook_queue(config).await?;
    move_all(queue.as_ref(), out).await
}

/// `redrive --id`: the dead letter with message id `id`.
pub(super) async fn one(config: &Config, id: &str, out: &mut impl Write) -> OpsResult {
    let queue = webhook_queue(config).await?;
    move_one(queue.as_ref(), id, out).await
}

async fn move_all(queue: &dyn Queue, out: &mut impl Write) -> OpsResult {
    let dead = dead_letter_queue(queue)?;
    let total = dead.stats().await?.visible;
    writeln!(out, "redrive: {total} dead letters to move back")?;
    let mut moved = 0;
    loop {
        let batch = receive(dead, MAX_BATCH).await?;
        if batch.is_empty() {
            break;
        }
        move_back(queue, dead, &batch).await?;
        moved += batch.len();
        writeln!(out, "redrive: moved {moved}/{total}")?;
    }
    writeln!(
        out,
        "redrive: done, {moved} moved back to the webhook queue"
    )?;
    Ok(())
}

async fn move_one(queue: &dyn Queue, id: &str, out: &mut impl Write) -> OpsResult {
    let dead = dead_letter_queue(queue)?;
    let total = dead.stats().await?.visible;
    writeln!(out, "redrive: looking for {id} among {total} dead letters")?;
    let received = receive(dead, usize::MAX).await?;
    let (wanted, others): (Vec<ReceivedMessage>, Vec<ReceivedMessage>) = received
        .into_iter()
        .partition(|message| message.message_id == id);
    release(dead, &others).await?;
    if wanted.is_empty() {
        return Err(format!("no dead letter has the id {id}").into());
    }
    move_back(queue, dead, &wanted).await?;
    writeln!(out, "redrive: moved {id} back to the webhook queue")?;
    Ok(())
}

/// Sends `batch` (at most [`MAX_BATCH`]) to `queue` and then deletes it from `dead`: a
/// failure in between leaves a copy in both, never none (the worker applies each change
/// once).
async fn move_back(queue: &dyn Queue, dead: &dyn Queue, batch: &[ReceivedMessage]) -> OpsResult {
    let messages = batch
        .iter()
        .map(|message| OutMessage {
            attributes: message.attributes.clone(),
            ..OutMessage::new(message.body.clone())
        })
        .collect();
    queue.send_batch(messages).await?;
    for message in batch {
        dead.delete(&message.receipt_handle).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shared::embedded_db::EmbeddedDb;
    use shared::queue::embedded::EmbeddedQueue;

    use super::*;

    struct Queues {
        _dir: tempfile::TempDir,
        queue: EmbeddedQueue,
        dead: EmbeddedQueue,
    }

    fn queues() -> Queues {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let queue = EmbeddedQueue::open_with_dead_letters(db.clone(), "q", "q-dlq", 5).unwrap();
        let dead = EmbeddedQueue::open(db, "q-dlq").unwrap();
        Queues {
            _dir: dir,
            queue,
            dead,
        }
    }

    #[tokio::test]
    async fn every_dead_letter_goes_back_with_progress() {
        let q = queues();
        let bodies: Vec<OutMessage> = (0..12)
            .map(|n| OutMessage::new(format!("envelope {n}")).attribute("attempts", "3"))
            .collect();
        q.dead.send_batch(bodies[..10].to_vec()).await.unwrap();
        q.dead.send_batch(bodies[10..].to_vec()).await.unwrap();

        let mut out = Vec::new();
        move_all(&q.queue, &mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("12 dead letters to move back"), "{out}");
        assert!(
            out.contains("moved 10/12") && out.contains("moved 12/12"),
            "{out}"
        );
        assert!(out.contains("done, 12 moved back"), "{out}");
        let stats = q.queue.stats().await.unwrap();
        assert_eq!((stats.visible, stats.dead_letters), (12, Some(0)));
        let received = q
            .queue
            .receive(10, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(received[0].body, "envelope 0", "bodies intact");
        assert_eq!(received[0].attributes["attempts"], "3", "attributes kept");
    }

    #[tokio::test]
    async fn one_dead_letter_goes_back_by_its_id_and_the_others_stay_visible() {
        let q = queues();
        let messages = (0..3)
            .map(|n| OutMessage::new(format!("envelope {n}")).attribute("error", "boom"))
            .collect();
        let ids = q.dead.send_batch(messages).await.unwrap();

        let mut out = Vec::new();
        move_one(&q.queue, &ids[1], &mut out).await.unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains(&format!("moved {} back", ids[1])), "{out}");
        let back = q
            .queue
            .receive(10, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].body, "envelope 1");
        assert_eq!(back[0].attributes["error"], "boom");
        let missing = move_one(&q.queue, "no-such-id", &mut Vec::new()).await;
        assert!(missing.unwrap_err().to_string().contains("no-such-id"));

        let left = q
            .dead
            .receive(10, Duration::from_secs(60), Duration::ZERO)
            .await
            .unwrap();
        let bodies: Vec<&str> = left.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(
            bodies,
            ["envelope 0", "envelope 2"],
            "visible again, in order"
        );
    }
}
