//! A store for tests that counts its reads and can be taken down: every operation then
//! fails as an unreachable DynamoDB would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::{Condition, Item, Key, Page, Query, Store, StoreError, StoreResult, WriteOp};

pub struct FaultyStore {
    inner: Arc<dyn Store>,
    reads: AtomicUsize,
    down: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            reads: AtomicUsize::new(0),
            down: AtomicBool::new(false),
        }
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Gets and queries so far.
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

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        self.check()?;
        self.inner.transact(ops).await
    }
}
