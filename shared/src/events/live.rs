//! The local runner's live logs: the composition root wraps the local profile's store in
//! [`LiveEvents::watch`], and every event write through it is published, as it commits,
//! to the open streams of its tenant (a `tokio::sync::broadcast` per tenant), with the
//! ids still being written, so that a stream never sends an event while one of a smaller
//! id may still commit (see `super::stream`). A stream that falls `buffer` updates behind
//! is closed (its client resumes from its last id); it never holds the writers back.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::{broadcast, watch};

use super::{Event, Position, is_event, log_partition};
use crate::store::{
    Condition, Item, Key, Page, Query, ScanPage, Store, StoreError, StoreResult, WriteOp,
};

/// What one event write did to a log, as its streams hear it.
#[derive(Debug)]
pub struct Committed {
    /// The events it committed, in order (none when the write failed).
    pub events: Vec<Event>,
    /// The smallest id still being written after it, if any: no event from there on may
    /// be sent yet.
    pub writing_from: Option<Position>,
}

/// A stream's view of its tenant's log from the moment it subscribed.
pub struct Subscription {
    /// Every event write that ends from now on.
    pub updates: broadcast::Receiver<Arc<Committed>>,
    /// The smallest id being written at subscription.
    pub writing_from: Option<Position>,
    /// Turns true when the server shuts down: streams end then.
    pub closing: watch::Receiver<bool>,
}

pub struct LiveEvents {
    /// By partition (one per tenant).
    logs: Mutex<HashMap<String, Log>>,
    buffer: usize,
    closing: watch::Sender<bool>,
}

struct Log {
    /// The ids of the event writes in flight.
    writing: BTreeMap<Position, usize>,
    updates: broadcast::Sender<Arc<Committed>>,
}

impl Log {
    fn writing_from(&self) -> Option<Position> {
        self.writing.keys().next().cloned()
    }

    fn unused(&self) -> bool {
        self.writing.is_empty() && self.updates.receiver_count() == 0
    }
}

impl LiveEvents {
    /// `buffer`: the updates a stream may fall behind before it is closed.
    pub fn new(buffer: usize) -> Arc<Self> {
        Arc::new(Self {
            logs: Mutex::new(HashMap::new()),
            buffer: buffer.max(1),
            closing: watch::Sender::new(false),
        })
    }

    /// `store`, publishing its event writes here.
    pub fn watch(self: &Arc<Self>, store: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(LiveStore {
            inner: store,
            live: Arc::clone(self),
        })
    }

    pub fn subscribe(&self, tenant: &str) -> Subscription {
        let mut logs = self.logs();
        logs.retain(|_, log| !log.unused());
        let log = logs
            .entry(log_partition(tenant))
            .or_insert_with(|| self.new_log());
        Subscription {
            updates: log.updates.subscribe(),
            writing_from: log.writing_from(),
            closing: self.closing.subscribe(),
        }
    }

    /// Ends every stream (the server is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn logs(&self) -> MutexGuard<'_, HashMap<String, Log>> {
        self.logs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_log(&self) -> Log {
        Log {
            writing: BTreeMap::new(),
            updates: broadcast::Sender::new(self.buffer),
        }
    }

    /// Runs `write` of `events` (partition, event) as in flight, then publishes its outcome.
    /// The write runs on a task of its own, so that a caller that stops waiting stops
    /// neither the write nor its publication.
    async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        events: Vec<(String, Event)>,
        write: impl Future<Output = StoreResult<T>> + Send + 'static,
    ) -> StoreResult<T> {
        let writing = Writing::begin(Arc::clone(self), events);
        let task = tokio::spawn(async move {
            let mut writing = writing;
            let result = write.await;
            writing.committed = result.is_ok();
            result
        });
        task.await
            .unwrap_or_else(|error| Err(StoreError::Unavailable(format!("event write: {error}"))))
    }
}

/// Event writes in flight; when dropped (the write ended, or its task panicked), their
/// logs hear how it went.
struct Writing {
    live: Arc<LiveEvents>,
    events: Vec<(String, Event)>,
    committed: bool,
}

impl Writing {
    fn begin(live: Arc<LiveEvents>, events: Vec<(String, Event)>) -> Self {
        {
            let mut logs = live.logs();
            for (partition, event) in &events {
                let log = logs
                    .entry(partition.clone())
                    .or_insert_with(|| live.new_log());
                *log.writing.entry(event.position.clone()).or_default() += 1;
            }
        }
        Self {
            live,
            events,
            committed: false,
        }
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        let mut by_log: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for (partition, event) in std::mem::take(&mut self.events) {
            by_log.entry(partition).or_default().push(event);
        }
        let mut logs = self.live.logs();
        for (partition, mut events) in by_log {
            let Some(log) = logs.get_mut(&partition) else {
                continue;
            };
            for event in &events {
                if let Some(count) = log.writing.get_mut(&event.position) {
                    *count -= 1;
                    if *count == 0 {
                        log.writing.remove(&event.position);
                    }
                }
            }
            if !self.committed {
                events.clear();
            }
            events.sort_by(|a, b| a.position.cmp(&b.position));
            let update = Committed {
                events,
                writing_from: log.writing_from(),
            };
            // Sent under the lock: every stream hears the writes in the order they ended.
            // No stream listening is not an error.
            let _ = log.updates.send(Arc::new(update));
            if log.unused() {
                logs.remove(&partition);
            }
        }
    }
}

/// The store, with its event writes published to the live logs.
struct LiveStore {
    inner: Arc<dyn Store>,
    live: Arc<LiveEvents>,
}

/// The events `item` holds, with their partitions (none when it is no event).
fn event_of(item: &Item) -> Option<(String, Event)> {
    if !is_event(&item.key) {
        return None;
    }
    Event::from_item(item).map(|event| (item.key.pk.clone(), event))
}

#[async_trait::async_trait]
impl Store for LiveStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        let Some(event) = event_of(&item) else {
            return self.inner.put(item, condition).await;
        };
        let inner = Arc::clone(&self.inner);
        self.live
            .write(vec![event], async move { inner.put(item, condition).await })
            .await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
        self.inner.delete(key, condition).await
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.inner.query(query).await
    }

    async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
        self.inner.scan(after, limit).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        let events: Vec<(String, Event)> = ops
            .iter()
            .filter_map(|op| match op {
                WriteOp::Put { item, .. } => event_of(item),
                _ => None,
            })
            .collect();
        if events.is_empty() {
            return self.inner.transact(ops).await;
        }
        let inner = Arc::clone(&self.inner);
        self.live
            .write(events, async move { inner.transact(ops).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::Notify;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::events::event_item;
    use crate::store::embedded::EmbeddedStore;

    /// A store whose writes wait until they are let go.
    struct HeldStore {
        inner: Arc<dyn Store>,
        release: Notify,
    }

    #[async_trait::async_trait]
    impl Store for HeldStore {
        async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
            self.inner.get(key).await
        }
        async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
            self.release.notified().await;
            self.inner.put(item, condition).await
        }
        async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
            self.inner.delete(key, condition).await
        }
        async fn query(&self, query: Query) -> StoreResult<Page> {
            self.inner.query(query).await
        }
        async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
            self.inner.scan(after, limit).await
        }
        async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
            self.release.notified().await;
            self.inner.transact(ops).await
        }
    }

    fn embedded() -> (tempfile::TempDir, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        (dir, Arc::new(store))
    }

    fn event(tenant: &str) -> Item {
        event_item(tenant, "test", json!({}), SystemClock.now_secs())
    }

    fn position(item: &Item) -> Position {
        Event::from_item(item).unwrap().position
    }

    async fn next(subscription: &mut Subscription) -> Arc<Committed> {
        tokio::time::timeout(Duration::from_secs(10), subscription.updates.recv())
            .await
            .expect("an update")
            .expect("not lagged")
    }

    impl LiveEvents {
        fn writing(&self, tenant: &str) -> usize {
            self.logs()
                .get(&log_partition(tenant))
                .map_or(0, |log| log.writing.values().sum())
        }
    }

    #[tokio::test]
    async fn a_write_in_flight_holds_back_the_later_ids_until_it_ends() {
        let (_dir, inner) = embedded();
        let held = Arc::new(HeldStore {
            inner,
            release: Notify::new(),
        });
        let live = LiveEvents::new(16);
        let store = live.watch(held.clone());
        let mut subscription = live.subscribe("t1");
        assert_eq!(subscription.writing_from, None);

        let (first, second) = (event("t1"), event("t1"));
        let first_write = tokio::spawn({
            let (store, first) = (Arc::clone(&store), first.clone());
            async move { store.put(first, Condition::Absent).await }
        });
        let second_write = tokio::spawn({
            let (store, second) = (Arc::clone(&store), second.clone());
            async move { store.put(second, Condition::Absent).await }
        });
        while live.writing("t1") < 2 {
            tokio::task::yield_now().await;
        }
        // Let one write through: whichever it is, the first id is still being written
        // or is committed, never skipped.
        held.release.notify_one();
        let update = next(&mut subscription).await;
        let done: Vec<&Position> = update.events.iter().map(|e| &e.position).collect();
        if done == [&position(&first)] {
            assert_eq!(update.writing_from, Some(position(&second)));
        } else {
            assert_eq!(done, [&position(&second)]);
            assert_eq!(update.writing_from, Some(position(&first)));
        }
        held.release.notify_one();
        let update = next(&mut subscription).await;
        assert_eq!(update.events.len(), 1);
        assert_eq!(update.writing_from, None);
        first_write.await.unwrap().unwrap();
        second_write.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_failed_write_releases_its_id_and_commits_nothing() {
        let (_dir, store) = embedded();
        let live = LiveEvents::new(16);
        let store = live.watch(store);
        let item = event("t1");
        store.put(item.clone(), Condition::Absent).await.unwrap();
        let mut subscription = live.subscribe("t1");
        let refused = store
            .transact(vec![
                WriteOp::Put {
                    item: event("t1"),
                    condition: Condition::Absent,
                },
                WriteOp::Check {
                    key: Key::new("missing", "m"),
                    condition: Condition::Present,
                },
            ])
            .await;
        assert!(refused.is_err());
        let update = next(&mut subscription).await;
        assert!(update.events.is_empty());
        assert_eq!(update.writing_from, None);
    }

    #[tokio::test]
    async fn streams_hear_only_their_tenant_and_other_writes_pass_through() {
        let (_dir, store) = embedded();
        let live = LiveEvents::new(16);
        let store = live.watch(store);
        let mut one = live.subscribe("t1");
        let mut two = live.subscribe("t2");
        store
            .put(
                Item::new(Key::new("TENANT#t1", "QUESTION#1"), json!({})),
                Condition::Always,
            )
            .await
            .unwrap();
        let item = event("t2");
        store.put(item.clone(), Condition::Absent).await.unwrap();
        let update = next(&mut two).await;
        assert_eq!(update.events[0].position, position(&item));
        assert!(one.updates.try_recv().is_err(), "nothing for t1");
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_told_so() {
        let (_dir, store) = embedded();
        let live = LiveEvents::new(2);
        let store = live.watch(store);
        let mut slow = live.subscribe("t1");
        for _ in 0..3 {
            store.put(event("t1"), Condition::Absent).await.unwrap();
        }
        assert!(matches!(
            slow.updates.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
        live.close();
        assert!(*slow.closing.borrow_and_update());
    }
}
