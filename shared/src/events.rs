//! A tenant's event log: what happened to their account, newest last, kept a week, for
//! the live stream and the inbox to show. Events are items at pk `TENANT#t`, sk
//! `EVENT#<id>`, the id a UUIDv7 made by the writer: reading the partition in key order
//! reads the log in time order. [`stream`] serves it as Server-Sent Events; [`live`]
//! pushes its writes as they commit in the local runner.

pub mod live;
pub mod stream;

use std::sync::Arc;

use serde_json::{Value, json};

use crate::store::{
    Condition, EpochSeconds, Item, Key, Query, SortKey, Store, StoreError, StoreResult,
};

pub const EVENT_TTL_SECS: i64 = 7 * 24 * 3600;

const SORT_PREFIX: &str = "EVENT#";

/// The partition holding `tenant`'s log.
pub fn log_partition(tenant: &str) -> String {
    format!("TENANT#{tenant}")
}

/// Whether `key` is an event's.
pub fn is_event(key: &Key) -> bool {
    key.pk.starts_with("TENANT#") && key.sk.starts_with(SORT_PREFIX)
}

/// A position in a log: an event's id (the 32 hex digits of a UUIDv7, the first 12 its
/// milliseconds since the epoch, so that text order is time order), or a point between
/// ids ([`Position::after_ms`]). The stream sends it as `id:` and takes it back as
/// Last-Event-ID.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(String);

/// The largest time a UUIDv7 holds (48 bits of milliseconds).
const MAX_MS: i64 = (1 << 48) - 1;

/// How far ahead of our clock an id may be: another writer's clock may be a little ahead.
const MAX_AHEAD_MS: i64 = 60_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidPosition {
    #[error("an event id is 32 hexadecimal digits")]
    Malformed,
    #[error("no event id is made in the future")]
    Future,
}

impl Position {
    /// The position after every id made at or before `ms`, and before every later one.
    pub fn after_ms(ms: i64) -> Self {
        Self(format!("{:012x}{}", ms.clamp(0, MAX_MS), "f".repeat(20)))
    }

    /// `text` as a position: 32 hexadecimal digits (either case) of a time no later than
    /// a minute after `now_ms`.
    pub fn parse(text: &str, now_ms: i64) -> Result<Self, InvalidPosition> {
        if text.len() != 32 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(InvalidPosition::Malformed);
        }
        let position = Self(text.to_ascii_lowercase());
        if position.ms() > now_ms.saturating_add(MAX_AHEAD_MS) {
            return Err(InvalidPosition::Future);
        }
        Ok(position)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the ids at this position were made, in milliseconds since the epoch.
    pub fn ms(&self) -> i64 {
        i64::from_str_radix(&self.0[..12], 16).unwrap_or(MAX_MS)
    }

    fn sort_key(&self) -> String {
        format!("{SORT_PREFIX}{}", self.0)
    }

    fn from_sort_key(sk: &str) -> Option<Self> {
        let id = sk.strip_prefix(SORT_PREFIX)?;
        (id.len() == 32 && id.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .then(|| Self(id.to_ascii_lowercase()))
    }
}

/// One event as the stream sends it: the item's data (`id`, `type`, `at`, `data`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub position: Position,
    pub data: Value,
}

impl Event {
    /// The event `item` holds, if it is one.
    pub fn from_item(item: &Item) -> Option<Self> {
        Some(Self {
            position: Position::from_sort_key(&item.key.sk)?,
            data: item.data.clone(),
        })
    }
}

/// One read of a log.
#[derive(Debug, Default, PartialEq)]
pub struct LogPage {
    /// In order, all after the position read from.
    pub events: Vec<Event>,
    /// Where to read on from when more may follow (None: the log ends here for now).
    pub more: Option<Position>,
}

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

    /// Up to `limit` events of `tenant`'s log after `after` and at or before `up_to` (when
    /// given), in order.
    pub async fn read_after(
        &self,
        tenant: &str,
        after: &Position,
        up_to: Option<&Position>,
        limit: usize,
    ) -> StoreResult<LogPage> {
        let last = up_to.cloned().unwrap_or_else(|| Position("f".repeat(32)));
        if last <= *after {
            // DynamoDB refuses a BETWEEN whose bounds are the wrong way round.
            return Ok(LogPage::default());
        }
        // Inclusive bounds: `after` itself, when it is an event, is read and dropped.
        let query = Query::partition(log_partition(tenant))
            .sort(SortKey::Between(after.sort_key(), last.sort_key()))
            .limit(limit + 1);
        let page = self.store.query(query).await?;
        let mut events: Vec<Event> = page
            .items
            .iter()
            .filter_map(Event::from_item)
            .filter(|event| event.position > *after)
            .collect();
        if events.len() > limit {
            events.truncate(limit);
            let more = events.last().map(|event| event.position.clone());
            return Ok(LogPage { events, more });
        }
        let more = page
            .next
            .and_then(|cursor| Position::from_sort_key(&cursor.key.sk))
            .filter(|position| position > after);
        Ok(LogPage { events, more })
    }
}

/// The item of an event of `kind` with `data` in `tenant`'s log, to write with
/// `Condition::Absent` (its id is new), alone or in the transaction of the change it
/// reports.
pub fn event_item(tenant: &str, kind: &str, data: serde_json::Value, now: EpochSeconds) -> Item {
    let id = uuid::Uuid::now_v7().simple().to_string();
    Item::new(
        Key::new(log_partition(tenant), format!("{SORT_PREFIX}{id}")),
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

    #[test]
    fn positions_are_ids_in_time_order_and_parse_strictly() {
        let now = SystemClock.now_ms();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let position = Position::parse(&id, now).unwrap();
        assert_eq!(position.as_str(), id);
        assert_eq!(Position::parse(&id.to_uppercase(), now).unwrap(), position);
        assert!((now - 5..=now + 5).contains(&position.ms()));
        assert!(Position::after_ms(now + 1) > position);
        assert!(Position::after_ms(now - 1000) < position);
        assert_eq!(Position::after_ms(now).ms(), now);
        for bad in [
            "",
            "0190",
            &"g".repeat(32),
            &format!("{id}0"),
            "0190f3c2-58a1-7c3e-9a1b-2c3d4e5f6a7b",
        ] {
            assert_eq!(
                Position::parse(bad, now),
                Err(InvalidPosition::Malformed),
                "{bad}"
            );
        }
        let future = Position::after_ms(now + 120_000);
        assert_eq!(
            Position::parse(future.as_str(), now),
            Err(InvalidPosition::Future)
        );
    }

    #[tokio::test]
    async fn the_log_reads_after_a_position_up_to_another_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        let events = Events::new(Arc::clone(&store));
        let start = Position::after_ms(SystemClock.now_ms() - 1);
        for n in 0..5 {
            events
                .record("t1", "test", json!({ "n": n }), SystemClock.now_secs())
                .await
                .unwrap();
        }
        // Items of the same partition outside the log are not events.
        store
            .put(
                Item::new(Key::new("TENANT#t1", "QUESTION#1"), json!({})),
                Condition::Always,
            )
            .await
            .unwrap();
        let first = events.read_after("t1", &start, None, 3).await.unwrap();
        let numbers = |page: &LogPage| -> Vec<i64> {
            page.events
                .iter()
                .map(|event| event.data["data"]["n"].as_i64().unwrap())
                .collect()
        };
        assert_eq!(numbers(&first), [0, 1, 2]);
        let more = first.more.clone().expect("more follow");
        let rest = events.read_after("t1", &more, None, 3).await.unwrap();
        assert_eq!(numbers(&rest), [3, 4]);
        assert_eq!(rest.more, None);

        let third = first.events[2].position.clone();
        let bounded = events
            .read_after("t1", &start, Some(&third), 10)
            .await
            .unwrap();
        assert_eq!(numbers(&bounded), [0, 1, 2], "up to and with the bound");
        let backwards = events
            .read_after("t1", &third, Some(&start), 10)
            .await
            .unwrap();
        assert!(backwards.events.is_empty());
        let other = events.read_after("t2", &start, None, 10).await.unwrap();
        assert!(other.events.is_empty(), "tenants' logs are apart");
    }
}
