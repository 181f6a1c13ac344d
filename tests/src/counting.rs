//! Store and queue decorators that count what a run asks of DynamoDB and SQS: requests by
//! kind, and the read and write units DynamoDB on-demand would bill for them. For the
//! benchmarks' cost per webhook; they wrap the real adapters (on moto or embedded).
//!
//! Units follow DynamoDB's rounding: a read is one unit per 4 KB read (at least one), half
//! that when eventually consistent (the adapter reads the table strongly consistent and
//! the index eventually); a write is one unit per 1 KB of the larger of the item before
//! and after it (at least one), twice that inside a transaction. A write that succeeds
//! also writes the index (gsi1, which projects whole items) where the item is or was in
//! it: one unit per 1 KB to put it there or update it in place, one to delete it from
//! there, both when its index key changed. Index writes are counted once, inside a
//! transaction too. Sizes are the kernel's `item_size`; the item before a write is read
//! from the store beneath, uncounted. A check costs a write unit of 1 KB, twice in a
//! transaction. Failed conditional writes cost their table units too, as in DynamoDB.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shared::queue::{OutMessage, Queue, QueueResult, QueueStats, ReceivedMessage};
use shared::store::{
    Condition, Index, Item, Key, Page, Query, ScanPage, Store, StoreResult, WriteOp, item_size,
};

/// Counters; [`Counter::snapshot`] reads them, [`Counts::minus`] takes a difference.
#[derive(Default)]
struct Counter([AtomicU64; FIELDS]);

const FIELDS: usize = 14;

impl Counter {
    fn add(&self, field: Field, n: u64) {
        self.0[field as usize].fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Counts {
        Counts(std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed)))
    }
}

#[derive(Clone, Copy)]
enum Field {
    Gets,
    Queries,
    Scans,
    Puts,
    Deletes,
    Transactions,
    /// Read units times two (eventually consistent reads cost half a unit).
    HalfReadUnits,
    WriteUnits,
    Sends,
    MessagesSent,
    Receives,
    ReceivesWithMessages,
    Deletions,
    VisibilityChanges,
}

/// What was counted, all fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts([u64; FIELDS]);

impl Counts {
    fn get(&self, field: Field) -> u64 {
        self.0[field as usize]
    }

    /// Both counts (a store's and a queue's fill different fields).
    pub fn plus(&self, other: &Counts) -> Counts {
        Counts(std::array::from_fn(|i| self.0[i] + other.0[i]))
    }

    pub fn minus(&self, earlier: &Counts) -> Counts {
        Counts(std::array::from_fn(|i| self.0[i] - earlier.0[i]))
    }

    /// Store calls that read: gets, queries, scans.
    pub fn store_reads(&self) -> u64 {
        self.get(Field::Gets) + self.get(Field::Queries) + self.get(Field::Scans)
    }

    /// Store calls that write: puts, deletes, transactions.
    pub fn store_writes(&self) -> u64 {
        self.get(Field::Puts) + self.get(Field::Deletes) + self.get(Field::Transactions)
    }

    pub fn read_units(&self) -> f64 {
        self.get(Field::HalfReadUnits) as f64 / 2.0
    }

    pub fn write_units(&self) -> u64 {
        self.get(Field::WriteUnits)
    }

    /// SendMessageBatch requests, and the messages they carried.
    pub fn sends(&self) -> (u64, u64) {
        (self.get(Field::Sends), self.get(Field::MessagesSent))
    }

    /// ReceiveMessage requests, and those that returned messages.
    pub fn receives(&self) -> (u64, u64) {
        (
            self.get(Field::Receives),
            self.get(Field::ReceivesWithMessages),
        )
    }

    pub fn deletions(&self) -> u64 {
        self.get(Field::Deletions)
    }

    pub fn visibility_changes(&self) -> u64 {
        self.get(Field::VisibilityChanges)
    }
}

fn units(bytes: usize, unit: usize) -> u64 {
    bytes.div_ceil(unit).max(1) as u64
}

/// Read units ×2 for `bytes` read in one request.
fn half_read_units(bytes: usize, consistent: bool) -> u64 {
    units(bytes, 4096) * if consistent { 2 } else { 1 }
}

/// The size of the item a get or delete returned (0 for none, or an error).
fn returned_size(result: &StoreResult<Option<Item>>) -> usize {
    result
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map_or(0, item_size)
}

pub struct CountingStore {
    inner: Arc<dyn Store>,
    counter: Counter,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            counter: Counter::default(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counter.snapshot()
    }
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        let result = self.inner.get(key).await;
        let size = returned_size(&result);
        self.counter.add(Field::Gets, 1);
        self.counter
            .add(Field::HalfReadUnits, half_read_units(size, true));
        result
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        let before = self.before(&item.key).await;
        let (table, index) = write_units(before.as_ref(), Some(&item));
        self.counter.add(Field::Puts, 1);
        self.counter.add(Field::WriteUnits, table);
        let result = self.inner.put(item, condition).await;
        if result.is_ok() {
            self.counter.add(Field::WriteUnits, index);
        }
        result
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
        let before = self.before(key).await;
        let (table, index) = write_units(before.as_ref(), None);
        let result = self.inner.delete(key, condition).await;
        self.counter.add(Field::Deletes, 1);
        self.counter.add(Field::WriteUnits, table);
        if result.is_ok() {
            self.counter.add(Field::WriteUnits, index);
        }
        result
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        let consistent = query.index == Index::Primary;
        let result = self.inner.query(query).await;
        let size: usize = result
            .as_ref()
            .map_or(0, |page| page.items.iter().map(item_size).sum());
        self.counter.add(Field::Queries, 1);
        self.counter
            .add(Field::HalfReadUnits, half_read_units(size, consistent));
        result
    }

    async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
        let result = self.inner.scan(after, limit).await;
        let size: usize = result
            .as_ref()
            .map_or(0, |page| page.live.iter().map(item_size).sum());
        self.counter.add(Field::Scans, 1);
        self.counter
            .add(Field::HalfReadUnits, half_read_units(size, false));
        result
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        let (mut table, mut index) = (0, 0);
        for op in &ops {
            let before = self.before(op.key()).await;
            let (op_table, op_index) = match op {
                WriteOp::Put { item, .. } => write_units(before.as_ref(), Some(item)),
                WriteOp::Delete { .. } => write_units(before.as_ref(), None),
                WriteOp::Check { .. } => (1, 0),
                // The counter changes; the rest of the item stays as it is.
                WriteOp::Add { .. } => match &before {
                    Some(before) => write_units(Some(before), Some(before)),
                    None => (1, 0),
                },
            };
            table += 2 * op_table;
            index += op_index;
        }
        self.counter.add(Field::Transactions, 1);
        self.counter.add(Field::WriteUnits, table);
        let result = self.inner.transact(ops).await;
        if result.is_ok() {
            self.counter.add(Field::WriteUnits, index);
        }
        result
    }
}

impl CountingStore {
    /// The item at `key` before a write, read uncounted (what DynamoDB sizes a write by).
    async fn before(&self, key: &Key) -> Option<Item> {
        self.inner.get(key).await.ok().flatten()
    }
}

/// The write units of writing `after` (None: deleting) over `before` (None: nothing
/// there): the table's, and the index's once the write succeeded.
fn write_units(before: Option<&Item>, after: Option<&Item>) -> (u64, u64) {
    let size = |item: Option<&Item>| item.map_or(0, item_size);
    let table = units(size(before).max(size(after)), 1024);
    let in_index = |item: &&Item| item.gsi1.is_some();
    let index = match (before.filter(in_index), after.filter(in_index)) {
        (None, None) => 0,
        (Some(gone), None) => units(item_size(gone), 1024),
        (None, Some(new)) => units(item_size(new), 1024),
        (Some(old), Some(new)) if old.gsi1 == new.gsi1 => {
            units(item_size(old).max(item_size(new)), 1024)
        }
        (Some(old), Some(new)) => units(item_size(old), 1024) + units(item_size(new), 1024),
    };
    (table, index)
}

/// Counts the requests made of the queue. Its dead-letter queue is the inner one's,
/// uncounted (a clean run sends nothing there; the benchmark reports its depth).
pub struct CountingQueue {
    inner: Arc<dyn Queue>,
    counter: Counter,
}

impl CountingQueue {
    pub fn new(inner: Arc<dyn Queue>) -> Self {
        Self {
            inner,
            counter: Counter::default(),
        }
    }

    pub fn counts(&self) -> Counts {
        self.counter.snapshot()
    }
}

#[async_trait::async_trait]
impl Queue for CountingQueue {
    async fn send_batch(&self, messages: Vec<OutMessage>) -> QueueResult<Vec<String>> {
        self.counter.add(Field::Sends, 1);
        self.counter.add(Field::MessagesSent, messages.len() as u64);
        self.inner.send_batch(messages).await
    }

    async fn receive(
        &self,
        max: usize,
        visibility_timeout: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<ReceivedMessage>> {
        let result = self.inner.receive(max, visibility_timeout, wait).await;
        self.counter.add(Field::Receives, 1);
        if result.as_ref().is_ok_and(|messages| !messages.is_empty()) {
            self.counter.add(Field::ReceivesWithMessages, 1);
        }
        result
    }

    async fn delete(&self, receipt_handle: &str) -> QueueResult<()> {
        self.counter.add(Field::Deletions, 1);
        self.inner.delete(receipt_handle).await
    }

    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> QueueResult<()> {
        self.counter.add(Field::VisibilityChanges, 1);
        self.inner.change_visibility(receipt_handle, timeout).await
    }

    async fn stats(&self) -> QueueResult<QueueStats> {
        self.inner.stats().await
    }

    fn dead_letters(&self) -> Option<&dyn Queue> {
        self.inner.dead_letters()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use shared::embedded_db::EmbeddedDb;
    use shared::store::StoreError;
    use shared::store::embedded::EmbeddedStore;

    use super::*;

    fn store() -> (CountingStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        (CountingStore::new(Arc::new(embedded)), dir)
    }

    fn indexed(sk: &str, gsi1sk: &str) -> Item {
        Item::new(Key::new("T#1", sk), json!({ "text": "x" }))
            .with_gsi1(Key::new("T#1#BY_DATE", gsi1sk))
    }

    #[tokio::test]
    async fn index_writes_are_counted_where_the_item_enters_moves_or_leaves_the_index() {
        let (store, _dir) = store();
        let units = |store: &CountingStore| store.counts().write_units();

        store
            .put(indexed("A", "1"), Condition::Absent)
            .await
            .unwrap();
        assert_eq!(
            units(&store),
            2,
            "the table, and the item's copy in the index"
        );

        let failed = store.put(indexed("A", "1"), Condition::Absent).await;
        assert!(matches!(failed, Err(StoreError::ConditionFailed { .. })));
        assert_eq!(
            units(&store),
            3,
            "a failed condition costs the table's unit, no index"
        );

        store
            .put(indexed("A", "2"), Condition::VersionIs(0))
            .await
            .unwrap();
        assert_eq!(units(&store), 6, "a new index key: deleted there, then put");

        store
            .transact(vec![WriteOp::Put {
                item: Item::new(Key::new("T#1", "A"), json!({ "text": "x" })),
                condition: Condition::VersionIs(0),
            }])
            .await
            .unwrap();
        assert_eq!(
            units(&store),
            9,
            "twice the table's in a transaction, once the index's"
        );

        store
            .transact(vec![WriteOp::Put {
                item: Item::new(Key::new("T#1", "B"), json!({ "text": "y" })),
                condition: Condition::Absent,
            }])
            .await
            .unwrap();
        assert_eq!(
            units(&store),
            11,
            "an item outside the index writes the table alone"
        );
    }
}
