//! Parked webhooks: Mercado Livre notifications for a seller whose grant needs
//! reconnecting. Retrying cannot help until the seller signs in again, so the worker
//! parks the envelope under the tenant, and the sign-in that reconnects the grant puts
//! every parked envelope back on the queue.

use std::sync::Arc;

use serde_json::json;

use super::Envelope;
use crate::queue::{MAX_BATCH, Queue, QueueError};
use crate::store::{Condition, EpochSeconds, Item, Key, Query, Store, StoreError};

/// How long a parked envelope waits for its seller: as long as the dead-letter queue
/// keeps what fails.
pub const PARKED_TTL_SECS: i64 = 14 * 24 * 3600;

fn partition(tenant: &str) -> String {
    format!("TENANT#{tenant}#PARKED")
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

#[derive(Clone)]
pub struct Parking {
    store: Arc<dyn Store>,
}

impl Parking {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Keeps `envelope` for `tenant` (parking it twice keeps one).
    pub async fn park(
        &self,
        tenant: &str,
        envelope: &Envelope,
        now: EpochSeconds,
    ) -> Result<(), StoreError> {
        let mut envelope = envelope.clone();
        envelope.deferrals = 0;
        let body = serde_json::to_string(&envelope)
            .map_err(|error| StoreError::Invalid(format!("envelope: {error}")))?;
        let item = Item::new(
            Key::new(partition(tenant), envelope.dedupe_key.clone()),
            json!({ "envelope": body, "parked_at": now }),
        )
        .expiring_at(now + PARKED_TTL_SECS);
        self.store.put(item, Condition::Always).await
    }

    /// How many envelopes `tenant` has parked, counted up to `at_most`.
    pub async fn count(&self, tenant: &str, at_most: usize) -> Result<usize, StoreError> {
        let mut counted = 0;
        let mut query = Query::partition(partition(tenant)).limit(100);
        loop {
            let page = self.store.query(query.clone()).await?;
            counted += page.items.len();
            match page.next {
                Some(cursor) if counted < at_most => query = query.after(Some(cursor)),
                _ => return Ok(counted.min(at_most)),
            }
        }
    }

    /// Sends every envelope `tenant` parked back to `queue`, removing each once sent.
    /// Returns how many went back.
    pub async fn replay(&self, tenant: &str, queue: &dyn Queue) -> Result<usize, ReplayError> {
        let mut replayed = 0;
        loop {
            let page = self
                .store
                .query(Query::partition(partition(tenant)).limit(MAX_BATCH))
                .await?;
            if page.items.is_empty() {
                return Ok(replayed);
            }
            let messages = page
                .items
                .iter()
                .map(|item| {
                    let body = item.data["envelope"].as_str().ok_or_else(|| {
                        StoreError::Corrupt(format!("{:?}: parked without an envelope", item.key))
                    })?;
                    Ok(crate::queue::OutMessage::new(body))
                })
                .collect::<Result<Vec<_>, StoreError>>()?;
            queue.send_batch(messages).await?;
            for item in &page.items {
                self.store.delete(&item.key, Condition::Always).await?;
            }
            replayed += page.items.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::store::embedded::EmbeddedStore;

    fn envelope(key: &str) -> Envelope {
        Envelope::from_message(&format!(
            r#"{{"source":"mercadolivre","received_at_ms":1,"dedupe_key":"{key}","correlation_id":"c","payload":{{"topic":"questions"}},"deferrals":3}}"#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn parked_envelopes_go_back_to_the_queue_once_on_replay() {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let parking = Parking::new(Arc::new(EmbeddedStore::open(db.clone()).unwrap()));
        let queue = EmbeddedQueue::open(db, "q").unwrap();
        let now = SystemClock.now_secs();
        for n in 0..13 {
            parking
                .park("t1", &envelope(&format!("k{n}")), now)
                .await
                .unwrap();
        }
        parking.park("t1", &envelope("k0"), now).await.unwrap();
        parking.park("t2", &envelope("other"), now).await.unwrap();
        assert_eq!(parking.count("t1", 1000).await.unwrap(), 13);
        assert_eq!(parking.count("t1", 5).await.unwrap(), 5);

        assert_eq!(parking.replay("t1", &queue).await.unwrap(), 13);
        assert_eq!(parking.count("t1", 1000).await.unwrap(), 0);
        assert_eq!(
            parking.count("t2", 1000).await.unwrap(),
            1,
            "only the tenant's own"
        );
        let mut bodies = Vec::new();
        loop {
            let batch = queue
                .receive(10, Duration::from_secs(30), Duration::ZERO)
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            bodies.extend(
                batch
                    .into_iter()
                    .map(|message| Envelope::from_message(&message.body).unwrap()),
            );
        }
        assert_eq!(bodies.len(), 13);
        assert!(
            bodies.iter().all(|envelope| envelope.deferrals == 0),
            "a replay starts afresh"
        );
        assert_eq!(parking.replay("t1", &queue).await.unwrap(), 0);
    }
}
