//! A store for tests that counts its reads and can be taken down: every operation then
//! fails as an unreachable DynamoDB would. It can also lose the answers to puts, as the
//! SDK's retries meet them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Condition, Item, Key, Page, Query, ScanPage, Store, StoreError, StoreResult, WriteOp};

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    reads: AtomicUsize,
    down: AtomicBool,
    puts_retried: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            reads: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            puts_retried: AtomicBool::new(false),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Whether each put is sent twice and answered by the second: a retry after the
    /// first one's answer was lost (the first may well have been written).
    pub fn set_puts_retried(&self, retried: bool) {
        self.puts_retried.store(retried, Ordering::SeqCst);
    }

    /// Gets, queries and scans so far.
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn check(&self) -> StoreResult<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "connection refused to 10.1.2.3:443".into(),
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.get(key).await
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        self.check()?;
        if self.puts_retried.load(Ordering::SeqCst) {
            let _lost = self.inner.put(item.clone(), condition).await;
        }
        self.inner.put(item, condition).await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
        self.check()?;
        self.inner.delete(key, condition).await
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.query(query).await
    }

    async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.check()?;
        self.inner.scan(after, limit).await
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        self.check()?;
        self.inner.transact(ops).await
    }
}
