//! Store and queue decorators that count what a run asks of DynamoDB and SQS: requests by
//! kind, and the read and write units DynamoDB on-demand would bill for them. For the
//! benchmarks' cost per webhook; they wrap the real adapters (on moto or embedded).
//!
//! Units follow DynamoDB's rounding: a read is one unit per 4 KB read (at least one), half
//! that when eventually consistent (the adapter reads the table strongly consistent and
//! the index eventually); a write is one unit per 1 KB written (at least one), twice that
//! inside a transaction. Sizes are the kernel's `item_size`, of what was written or
//! returned; a delete, check or add inside a transaction counts as 1 KB (the adapter does
//! not see the stored item). Failed conditional writes cost their units too, as in
//! DynamoDB.

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
        self.counter.add(Field::Puts, 1);
        self.counter
            .add(Field::WriteUnits, units(item_size(&item), 1024));
        self.inner.put(item, condition).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
        let result = self.inner.delete(key, condition).await;
        let size = returned_size(&result);
        self.counter.add(Field::Deletes, 1);
        self.counter.add(Field::WriteUnits, units(size, 1024));
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
        let write_units: u64 = ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { item, .. } => 2 * units(item_size(item), 1024),
                WriteOp::Delete { .. } | WriteOp::Check { .. } | WriteOp::Add { .. } => 2,
            })
            .sum();
        self.counter.add(Field::Transactions, 1);
        self.counter.add(Field::WriteUnits, write_units);
        self.inner.transact(ops).await
    }
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
