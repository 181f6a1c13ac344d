//! A tenant's event log: what happened to their account, newest last, kept a week, for
//! the live stream and the inbox to show.

use serde_json::json;

use crate::store::{Condition, EpochSeconds, Item, Key, Store, StoreResult};

pub const EVENT_TTL_SECS: i64 = 7 * 24 * 3600;

/// Appends an event of `kind` with `data` to `tenant`'s log.
pub async fn record(
    store: &dyn Store,
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
    store.put(item, Condition::Absent).await
}
