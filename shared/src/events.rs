//! A tenant's event log: what happened to their account, newest last, kept a week, for
//! the live stream and the inbox to show.

use std::sync::Arc;

use serde_json::json;

use crate::store::{Condition, EpochSeconds, Item, Key, Store, StoreError, StoreResult};

pub const EVENT_TTL_SECS: i64 = 7 * 24 * 3600;

/// The tenants' event logs.
#[derive(Clone)]
pub struct Events {
    store: Arc<dyn Store>,
}

impl Events {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Appends an event of `kind` with `data` to `tenant`'s log, once: a write the store
    /// retried after losing its answer finds the event already there, and the event's id
    /// (new for each call) tells it that the event is its own.
    pub async fn record(
        &self,
        tenant: &str,
        kind: &str,
        data: serde_json::Value,
        now: EpochSeconds,
    ) -> StoreResult<()> {
        let item = event_item(tenant, kind, data, now);
        let id = item.data["id"].clone();
        match self.store.put(item, Condition::Absent).await {
            Err(StoreError::ConditionFailed {
                current: Some(found),
            }) if found.data["id"] == id => Ok(()),
            result => result,
        }
    }
}

/// The item of an event of `kind` with `data` in `tenant`'s log, to write with
/// `Condition::Absent` (its id is new), alone or in the transaction of the change it
/// reports.
pub fn event_item(tenant: &str, kind: &str, data: serde_json::Value, now: EpochSeconds) -> Item {
    let id = uuid::Uuid::now_v7().simple().to_string();
    Item::new(
        Key::new(format!("TENANT#{tenant}"), format!("EVENT#{id}")),
        json!({ "id": id, "type": kind, "at": now, "data": data }),
    )
    .expiring_at(now + EVENT_TTL_SECS)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::store::Query;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::faulty::FaultyStore;

    #[tokio::test]
    async fn a_retried_write_whose_answer_was_lost_records_the_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        let store = Arc::new(FaultyStore::new(Arc::new(embedded)));
        store.set_puts_retried(true);
        let events = Events::new(store.clone());

        events
            .record("t1", "question", json!({"n": 1}), SystemClock.now_secs())
            .await
            .expect("the retry found the event it had written itself");

        let page = store
            .query(Query::partition("TENANT#t1").limit(10))
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1, "one event: {:?}", page.items);
        assert_eq!(page.items[0].data["type"], "question");
    }
}
