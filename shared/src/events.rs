//! A tenant's event log: what happened to their account, newest last, kept a week, for
//! the live stream and the inbox to show.

use std::sync::Arc;

use serde_json::json;

use crate::store::{Condition, EpochSeconds, Item, Key, Store, StoreResult};

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

    /// Appends an event of `kind` with `data` to `tenant`'s log.
    pub async fn record(
        &self,
        tenant: &str,
        kind: &str,
        data: serde_json::Value,
        now: EpochSeconds,
    ) -> StoreResult<()> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let item = Item::new(
            Key::new(format!("TENANT#{tenant}"), format!("EVENT#{id}")),
            json!({ "id": id, "type": kind, "at": now, "data": data }),
        )
        .expiring_at(now + EVENT_TTL_SECS);
        self.store.put(item, Condition::Absent).await
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
