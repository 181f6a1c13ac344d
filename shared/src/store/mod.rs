//! The storage kernel: the few operations every feature is built from, over one table
//! keyed by (pk, sk) with one secondary index (gsi1pk, gsi1sk) and a TTL attribute.
//!
//! Two adapters implement [`Store`]: [`dynamodb::DynamoStore`] and
//! [`embedded::EmbeddedStore`]; both pass the one conformance suite in [`conformance`].
//!
//! Expiry is part of the kernel's meaning, not a storage detail: an item whose
//! `expires_at` has passed is absent for every read and for every condition, whatever
//! the backend has physically deleted yet (DynamoDB's TTL deletes only eventually).

pub mod dynamodb;
pub mod embedded;

#[cfg(any(test, feature = "testkit"))]
pub mod conformance;
#[cfg(any(test, feature = "testkit"))]
pub mod faulty;

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch: the unit of `expires_at` (DynamoDB TTL's unit).
pub type EpochSeconds = i64;

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One stored item. `data` holds the feature's own fields; the kernel owns the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    pub key: Key,
    /// Secondary index key; both parts or neither.
    pub gsi1: Option<Key>,
    /// When set and passed, the item is absent.
    pub expires_at: Option<EpochSeconds>,
    /// Optimistic-concurrency counter, compared by [`Condition::VersionIs`]. The kernel
    /// stores what it is given; writers bump it themselves.
    pub version: u64,
    pub data: serde_json::Value,
}

impl Item {
    pub fn new(key: Key, data: serde_json::Value) -> Self {
        Self {
            key,
            gsi1: None,
            expires_at: None,
            version: 0,
            data,
        }
    }

    pub fn with_gsi1(mut self, gsi1: Key) -> Self {
        self.gsi1 = Some(gsi1);
        self
    }

    pub fn expiring_at(mut self, expires_at: EpochSeconds) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    pub fn is_live_at(&self, now: EpochSeconds) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A precondition on the live item at a key (an expired item counts as no item).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    Always,
    /// No live item at the key.
    Absent,
    /// A live item exists at the key.
    Present,
    /// A live item exists at the key and its version is this one.
    VersionIs(u64),
}

impl Condition {
    pub fn holds_for(self, live: Option<&Item>) -> bool {
        match self {
            Condition::Always => true,
            Condition::Absent => live.is_none(),
            Condition::Present => live.is_some(),
            Condition::VersionIs(v) => live.is_some_and(|item| item.version == v),
        }
    }
}

/// Which key a query walks: the table's primary key or the secondary index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Index {
    Primary,
    Gsi1,
}

/// A condition on the sort key of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortKey {
    Any,
    Eq(String),
    BeginsWith(String),
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

impl SortKey {
    pub fn matches(&self, sk: &str) -> bool {
        match self {
            SortKey::Any => true,
            SortKey::Eq(v) => sk == v,
            SortKey::BeginsWith(p) => sk.starts_with(p.as_str()),
            SortKey::Between(a, b) => sk >= a.as_str() && sk <= b.as_str(),
            SortKey::Lt(v) => sk < v.as_str(),
            SortKey::Le(v) => sk <= v.as_str(),
            SortKey::Gt(v) => sk > v.as_str(),
            SortKey::Ge(v) => sk >= v.as_str(),
        }
    }
}

/// Where a page ended: the full position of its last item, so the next page starts
/// right after it. Only ever kept server-side today (the token refresher's pages); a
/// cursor handed to a client must first be signed, so it cannot name another tenant's
/// key (the paginated inbox API will do that in `crate::http`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub key: Key,
    pub gsi1: Option<Key>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub sort: SortKey,
    pub forward: bool,
    pub limit: usize,
    pub after: Option<Cursor>,
}

impl Query {
    /// Ascending query of one partition of the primary key.
    pub fn partition(partition: impl Into<String>) -> Self {
        Self {
            index: Index::Primary,
            partition: partition.into(),
            sort: SortKey::Any,
            forward: true,
            limit: 20,
            after: None,
        }
    }

    pub fn on_gsi1(mut self) -> Self {
        self.index = Index::Gsi1;
        self
    }

    pub fn sort(mut self, sort: SortKey) -> Self {
        self.sort = sort;
        self
    }

    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.after = cursor;
        self
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Set when more items may follow; pass it back as [`Query::after`].
    pub next: Option<Cursor>,
}

/// One operation of a transactional write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put { item: Item, condition: Condition },
    Delete { key: Key, condition: Condition },
    Check { key: Key, condition: Condition },
}

impl WriteOp {
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } => key,
        }
    }

    pub fn condition(&self) -> Condition {
        match self {
            WriteOp::Put { condition, .. }
            | WriteOp::Delete { condition, .. }
            | WriteOp::Check { condition, .. } => *condition,
        }
    }
}

/// The most operations one transactional write may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_OPS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("condition failed")]
    ConditionFailed,
    /// The transaction was cancelled; `failed` lists the operations (by index) whose
    /// condition did not hold. Empty when it was cancelled for another reason (a conflict
    /// with a concurrent transaction): retrying may then succeed.
    #[error("transaction cancelled (failed conditions at {failed:?})")]
    TransactionCancelled { failed: Vec<usize> },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The storage kernel. Object safe, so handlers take `&dyn Store`.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// The live item at `key`, if any.
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>>;

    /// Writes `item` if `condition` holds for the live item at its key.
    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()>;

    /// Deletes the item at `key` if `condition` holds, returning the live item it
    /// removed (None when there was none).
    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>>;

    /// One page of live items of a partition.
    async fn query(&self, query: Query) -> StoreResult<Page>;

    /// All operations or none. At most [`MAX_TRANSACTION_OPS`], each on a distinct key.
    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()>;
}

/// Checks what both adapters reject before touching storage.
pub(crate) fn validate_transaction(ops: &[WriteOp]) -> StoreResult<()> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1 to {MAX_TRANSACTION_OPS} operations, not {}",
            ops.len()
        )));
    }
    let mut keys: Vec<&Key> = ops.iter().map(WriteOp::key).collect();
    keys.sort();
    if keys.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err(StoreError::Invalid(
            "a transaction cannot touch one key twice".into(),
        ));
    }
    Ok(())
}

pub(crate) fn validate_query(query: &Query) -> StoreResult<()> {
    if query.limit == 0 {
        return Err(StoreError::Invalid(
            "a query's limit must be at least 1".into(),
        ));
    }
    if query.index == Index::Gsi1
        && query
            .after
            .as_ref()
            .is_some_and(|cursor| cursor.gsi1.is_none())
    {
        return Err(StoreError::Invalid(
            "a gsi1 query's cursor must hold a gsi1 key".into(),
        ));
    }
    Ok(())
}

pub(crate) fn validate_item(item: &Item) -> StoreResult<()> {
    let mut parts = vec![&item.key.pk, &item.key.sk];
    if let Some(gsi1) = &item.gsi1 {
        parts.extend([&gsi1.pk, &gsi1.sk]);
    }
    if parts.iter().any(|part| part.is_empty()) {
        return Err(StoreError::Invalid("key attributes cannot be empty".into()));
    }
    Ok(())
}
