//! The embedded store: the storage kernel over the local runner's redb file. Items live
//! in one table keyed (pk, sk); the secondary index is a second table keyed
//! (gsi1pk, gsi1sk, pk, sk), kept in step with the items in the same transaction.

use std::ops::Bound;
use std::sync::Arc;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{
    Condition, Cursor, Index, Item, Key, Page, Query, ScanPage, Store, StoreError, StoreResult,
    WriteOp, validate_item, validate_key, validate_query, validate_scan, validate_transaction,
};
use crate::clock::{Clock, SystemClock};
use crate::embedded_db::{EmbeddedDb, EmbeddedError};

const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("store_items");
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("store_gsi1");

#[derive(Clone)]
pub struct EmbeddedStore {
    db: EmbeddedDb,
    /// Decides which items have expired.
    clock: Arc<dyn Clock>,
}

impl EmbeddedStore {
    /// The store in `db`, creating its tables if they are not there yet.
    pub fn open(db: EmbeddedDb) -> Result<Self, EmbeddedError> {
        db.init(|txn| {
            txn.open_table(ITEMS)?;
            txn.open_table(GSI1)?;
            Ok(())
        })?;
        Ok(Self {
            db,
            clock: Arc::new(SystemClock),
        })
    }

    /// The same store deciding expiry by `clock` (tests).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// What a write transaction's closure returns: the operation's own outcome, kept apart
/// from storage failures (which fail the commit).
type Outcome<T> = Result<StoreResult<T>, redb::Error>;

impl From<EmbeddedError> for StoreError {
    fn from(error: EmbeddedError) -> Self {
        StoreError::Unavailable(error.to_string())
    }
}

fn corrupt(error: serde_json::Error) -> redb::Error {
    redb::Error::Corrupted(format!("store item: {error}"))
}

fn decode(bytes: &[u8]) -> Result<Item, redb::Error> {
    serde_json::from_slice(bytes).map_err(corrupt)
}

/// The item stored at `key`, expired or not.
fn stored_item(
    items: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: &Key,
) -> Result<Option<Item>, redb::Error> {
    match items.get((key.pk.as_str(), key.sk.as_str()))? {
        Some(bytes) => decode(bytes.value()).map(Some),
        None => Ok(None),
    }
}

fn live_item(
    items: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    key: &Key,
    now: i64,
) -> Result<Option<Item>, redb::Error> {
    Ok(stored_item(items, key)?.filter(|item| item.is_live_at(now)))
}

/// Removes the item at `key` (and its index entry), whatever its state.
fn remove(txn: &WriteTransaction, key: &Key) -> Result<(), redb::Error> {
    let mut items = txn.open_table(ITEMS)?;
    let old = match items.remove((key.pk.as_str(), key.sk.as_str()))? {
        Some(bytes) => Some(decode(bytes.value())?),
        None => None,
    };
    if let Some(gsi1) = old.and_then(|old| old.gsi1) {
        let mut index = txn.open_table(GSI1)?;
        index.remove((
            gsi1.pk.as_str(),
            gsi1.sk.as_str(),
            key.pk.as_str(),
            key.sk.as_str(),
        ))?;
    }
    Ok(())
}

fn insert(txn: &WriteTransaction, item: &Item) -> Result<(), redb::Error> {
    remove(txn, &item.key)?;
    let bytes = serde_json::to_vec(item).map_err(corrupt)?;
    let key = &item.key;
    txn.open_table(ITEMS)?
        .insert((key.pk.as_str(), key.sk.as_str()), bytes.as_slice())?;
    if let Some(gsi1) = &item.gsi1 {
        txn.open_table(GSI1)?.insert(
            (
                gsi1.pk.as_str(),
                gsi1.sk.as_str(),
                key.pk.as_str(),
                key.sk.as_str(),
            ),
            (),
        )?;
    }
    Ok(())
}

/// Whether `condition` holds for the live item at `key`; when it does not, the failure
/// holding that item.
fn check(
    txn: &WriteTransaction,
    key: &Key,
    condition: Condition,
    now: i64,
) -> Result<Result<(), StoreError>, redb::Error> {
    if condition == Condition::Always {
        return Ok(Ok(()));
    }
    let current = live_item(&txn.open_table(ITEMS)?, key, now)?;
    if condition.holds_for(current.as_ref()) {
        return Ok(Ok(()));
    }
    Ok(Err(StoreError::ConditionFailed {
        current: current.map(Box::new),
    }))
}

/// What one operation of a transaction writes, decided before anything is written.
enum Planned<'a> {
    Insert(&'a Item),
    /// An add's item, counter added.
    Added(Item),
    Remove(&'a Key),
    Nothing,
}

/// What `op` writes if the transaction commits; a failed condition
/// ([`StoreError::ConditionFailed`]) or an invalid result when it cannot.
fn plan<'a>(
    txn: &WriteTransaction,
    op: &'a WriteOp,
    now: i64,
) -> Result<StoreResult<Planned<'a>>, redb::Error> {
    Ok(match op {
        WriteOp::Put { item, condition } => {
            check(txn, &item.key, *condition, now)?.map(|()| Planned::Insert(item))
        }
        WriteOp::Delete { key, condition } => {
            check(txn, key, *condition, now)?.map(|()| Planned::Remove(key))
        }
        WriteOp::Check { key, condition } => {
            check(txn, key, *condition, now)?.map(|()| Planned::Nothing)
        }
        WriteOp::Add { key, delta } => added(txn, key, *delta, now)?.map(Planned::Added),
    })
}

/// The item at `key` after adding `delta` to its counter (see [`WriteOp::Add`]).
fn added(
    txn: &WriteTransaction,
    key: &Key,
    delta: i64,
    now: i64,
) -> Result<StoreResult<Item>, redb::Error> {
    let mut item = match stored_item(&txn.open_table(ITEMS)?, key)? {
        Some(expired) if !expired.is_live_at(now) => {
            return Ok(Err(StoreError::ConditionFailed { current: None }));
        }
        Some(item) => item,
        None => Item::new(key.clone(), serde_json::json!({})),
    };
    let Some(counter) = item.counter.checked_add(delta) else {
        return Ok(Err(StoreError::Invalid(format!(
            "adding {delta} to the counter {} overflows",
            item.counter
        ))));
    };
    item.counter = counter;
    Ok(validate_item(&item).map(|_| item))
}

/// The smallest string after `partition` in byte order: the exclusive upper bound of
/// that partition's keys.
fn next_partition(partition: &str) -> String {
    format!("{partition}\0")
}

impl EmbeddedStore {
    async fn write<T: Send + 'static>(
        &self,
        mut write: impl FnMut(&WriteTransaction, i64) -> Outcome<T> + Send + 'static,
    ) -> StoreResult<T> {
        let clock = Arc::clone(&self.clock);
        self.db
            .write(move |txn| write(txn, clock.now_secs()))
            .await?
    }

    fn primary_page(
        items: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
        query: &Query,
        now: i64,
    ) -> Result<Page, redb::Error> {
        let upper = next_partition(&query.partition);
        let start: (&str, &str) = (&query.partition, "");
        let end: (&str, &str) = (&upper, "");
        let after = query.after.as_ref().map(|cursor| cursor.key.sk.as_str());
        let (low, high) = match (after, query.forward) {
            (Some(sk), true) => (
                Bound::Excluded((query.partition.as_str(), sk)),
                Bound::Excluded(end),
            ),
            (Some(sk), false) => (
                Bound::Included(start),
                Bound::Excluded((query.partition.as_str(), sk)),
            ),
            (None, _) => (Bound::Included(start), Bound::Excluded(end)),
        };
        let range = items.range::<(&str, &str)>((low, high))?;
        let entries: Box<dyn Iterator<Item = _>> = if query.forward {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let mut page = Vec::new();
        for entry in entries {
            let (key, value) = entry?;
            if !query.sort.matches(key.value().1) {
                continue;
            }
            let item = decode(value.value())?;
            if !item.is_live_at(now) {
                continue;
            }
            if page.len() == query.limit {
                return Ok(finish(page, true));
            }
            page.push(item);
        }
        Ok(finish(page, false))
    }

    fn gsi1_page(
        txn: &redb::ReadTransaction,
        query: &Query,
        now: i64,
    ) -> Result<Page, redb::Error> {
        let index = txn.open_table(GSI1)?;
        let items = txn.open_table(ITEMS)?;
        let upper = next_partition(&query.partition);
        let p = query.partition.as_str();
        let start = (p, "", "", "");
        let end = (upper.as_str(), "", "", "");
        let after = query.after.as_ref().and_then(|cursor| {
            cursor.gsi1.as_ref().map(|gsi1| {
                (
                    p,
                    gsi1.sk.as_str(),
                    cursor.key.pk.as_str(),
                    cursor.key.sk.as_str(),
                )
            })
        });
        let (low, high) = match (after, query.forward) {
            (Some(after), true) => (Bound::Excluded(after), Bound::Excluded(end)),
            (Some(after), false) => (Bound::Included(start), Bound::Excluded(after)),
            (None, _) => (Bound::Included(start), Bound::Excluded(end)),
        };
        let range = index.range::<(&str, &str, &str, &str)>((low, high))?;
        let entries: Box<dyn Iterator<Item = _>> = if query.forward {
            Box::new(range)
        } else {
            Box::new(range.rev())
        };
        let mut page = Vec::new();
        for entry in entries {
            let (key, _) = entry?;
            let (_, gsi1sk, pk, sk) = key.value();
            if !query.sort.matches(gsi1sk) {
                continue;
            }
            let Some(item) = live_item(&items, &Key::new(pk, sk), now)? else {
                continue;
            };
            if page.len() == query.limit {
                return Ok(finish(page, true));
            }
            page.push(item);
        }
        Ok(finish(page, false))
    }
}

/// A page; its cursor points at the last item when another matching item follows.
fn finish(items: Vec<Item>, more: bool) -> Page {
    let next = match (more, items.last()) {
        (true, Some(last)) => Some(Cursor {
            key: last.key.clone(),
            gsi1: last.gsi1.clone(),
        }),
        _ => None,
    };
    Page { items, next }
}

#[async_trait::async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        validate_key(key)?;
        let key = key.clone();
        let now = self.clock.now_secs();
        Ok(self
            .db
            .read(move |txn| {
                let items = txn.open_table(ITEMS)?;
                live_item(&items, &key, now)
            })
            .await?)
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        validate_item(&item)?;
        self.write(move |txn, now| {
            if let Err(failed) = check(txn, &item.key, condition, now)? {
                return Ok(Err(failed));
            }
            insert(txn, &item)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
        validate_key(key)?;
        let key = key.clone();
        self.write(move |txn, now| {
            let old = live_item(&txn.open_table(ITEMS)?, &key, now)?;
            if !condition.holds_for(old.as_ref()) {
                return Ok(Err(StoreError::ConditionFailed {
                    current: old.map(Box::new),
                }));
            }
            remove(txn, &key)?;
            Ok(Ok(old))
        })
        .await
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        validate_query(&query)?;
        let now = self.clock.now_secs();
        Ok(self
            .db
            .read(move |txn| match query.index {
                Index::Primary => Self::primary_page(&txn.open_table(ITEMS)?, &query, now),
                Index::Gsi1 => Self::gsi1_page(txn, &query, now),
            })
            .await?)
    }

    /// Walks the items in key order (pk, then sk).
    async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
        validate_scan(after.as_ref(), limit)?;
        Ok(self
            .db
            .read(move |txn| {
                let now = SystemClock.now_secs();
                let items = txn.open_table(ITEMS)?;
                let low = match &after {
                    Some(key) => Bound::Excluded((key.pk.as_str(), key.sk.as_str())),
                    None => Bound::Unbounded,
                };
                let mut page = ScanPage::default();
                let mut last: Option<Key> = None;
                for (seen, entry) in items
                    .range::<(&str, &str)>((low, Bound::Unbounded))?
                    .enumerate()
                {
                    let (_, value) = entry?;
                    if seen == limit {
                        // Another item follows: the next page starts after the last one.
                        page.next = last;
                        break;
                    }
                    let item = decode(value.value())?;
                    last = Some(item.key.clone());
                    if item.is_live_at(now) {
                        page.live.push(item);
                    } else {
                        page.expired.push(item.key);
                    }
                }
                Ok(page)
            })
            .await?)
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        self.write(move |txn, now| {
            // Nothing is written until every operation is known to hold: a write returned
            // as failed here would still commit with the rest of its group.
            let mut failed = Vec::new();
            let mut writes = Vec::with_capacity(ops.len());
            for (index, op) in ops.iter().enumerate() {
                match plan(txn, op, now)? {
                    Ok(write) => writes.push(write),
                    Err(StoreError::ConditionFailed { .. }) => failed.push(index),
                    Err(invalid) => return Ok(Err(invalid)),
                }
            }
            if !failed.is_empty() {
                return Ok(Err(StoreError::TransactionCancelled { failed }));
            }
            for write in writes {
                match write {
                    Planned::Insert(item) => insert(txn, item)?,
                    Planned::Added(item) => insert(txn, &item)?,
                    Planned::Remove(key) => remove(txn, key)?,
                    Planned::Nothing => {}
                }
            }
            Ok(Ok(()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        conformance::run_all(&store).await;
        conformance::run_embedded_only(std::sync::Arc::new(store)).await;
    }

    #[tokio::test]
    async fn items_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("tenant#1", "profile");
        {
            let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
            let item = Item::new(key.clone(), serde_json::json!({"name": "loja"}));
            store.put(item, Condition::Absent).await.unwrap();
        }
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        let item = store.get(&key).await.unwrap().expect("item after reopen");
        assert_eq!(item.data["name"], "loja");
    }
}
