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
    /// A number that [`WriteOp::Add`] changes atomically, however many writers add at
    /// once (a put writes it as given: 0 unless set). It lives apart from `data` because
    /// DynamoDB adds only to a top-level number attribute.
    #[serde(default)]
    pub counter: i64,
}

impl Item {
    pub fn new(key: Key, data: serde_json::Value) -> Self {
        Self {
            key,
            gsi1: None,
            expires_at: None,
            version: 0,
            data,
            counter: 0,
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

/// A position in a query's walk: the next page starts right after it. Usually the full
/// position of a page's last item; it may also be the position of an item the page did
/// not return (an expired one, where an adapter stopped early) or of an item deleted
/// since, and the walk still goes on right after it. A cursor handed to a client is
/// sealed first (`crate::http::cursor`), so it cannot name another tenant's key.
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
    /// At most the query's limit of live items, in order.
    pub items: Vec<Item>,
    /// Where to go on; pass it back as [`Query::after`]. None only when no live item
    /// follows. Usually set only when one does: the page is then full and the cursor is
    /// its last item. But an adapter may end a page early to bound its work (the DynamoDB
    /// adapter caps its requests per call, see `dynamodb::MAX_QUERY_REQUESTS`): such a
    /// page holds the live items found so far, maybe none, and a cursor past them, at
    /// where the walk stopped, whatever follows.
    pub next: Option<Cursor>,
}

/// One page of a walk over the whole table ([`Store::scan`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanPage {
    /// The live items the page looked at.
    pub live: Vec<Item>,
    /// The keys of the expired items it looked at, which DynamoDB's TTL has not deleted
    /// yet: named so that they can be deleted (with [`Condition::Absent`], which an
    /// expired item meets and a live one written since does not). Their contents stay
    /// unread: an expired item is absent.
    pub expired: Vec<Key>,
    /// Where the walk goes on: pass it back as the next call's `after`. None when the
    /// walk has reached the end of the table. It may be set on a page that holds fewer
    /// items than asked for (DynamoDB stops a page at 1 MB), and the page after it may
    /// be empty.
    pub next: Option<Key>,
}

/// One operation of a transactional write.
#[derive(Clone, Debug, PartialEq)]
pub enum WriteOp {
    Put {
        item: Item,
        condition: Condition,
    },
    Delete {
        key: Key,
        condition: Condition,
    },
    Check {
        key: Key,
        condition: Condition,
    },
    /// Adds `delta` (negative to subtract) to the counter of the item at `key`, leaving
    /// the rest of it as it is (its version too: an add is no read-modify-write). With no
    /// item there, it creates one: `data` `{}`, version 0, counter `delta`. An expired item
    /// that DynamoDB has not deleted yet fails it as a failed condition (the transaction is
    /// cancelled naming this operation): counting on from a dead item's counter would be
    /// wrong, and DynamoDB cannot replace it in the same update. Counters are items that
    /// do not expire. An add is not idempotent: a writer that may repeat one (a retry
    /// after an error) pairs it with a conditional write in the same transaction, so that
    /// a repeat is cancelled instead of counted twice.
    Add {
        key: Key,
        delta: i64,
    },
}

impl WriteOp {
    pub fn key(&self) -> &Key {
        match self {
            WriteOp::Put { item, .. } => &item.key,
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } | WriteOp::Add { key, .. } => {
                key
            }
        }
    }
}

/// The most operations one transactional write may hold (DynamoDB's limit).
pub const MAX_TRANSACTION_OPS: usize = 100;

// DynamoDB's size limits, held by the kernel so that both adapters reject the same
// requests (the embedded store has no limits of its own). Sizes are in bytes, as
// [`item_size`] counts them; key sizes are the UTF-8 lengths of their strings.

/// The largest item: 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// The longest partition key, of the table and of the index.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// The longest sort key, of the table and of the index.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// The most one transaction may write: 4 MB, the sum of its puts' item sizes.
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition did not hold for `current`, the live item at the key (None when
    /// there is none: an expired item is none). A writer that retried a write whose
    /// answer was lost finds its own item here, and can tell it from another writer's
    /// by something it put in the item (a write id).
    #[error("condition failed")]
    ConditionFailed { current: Option<Box<Item>> },
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

    /// Writes `item` if `condition` holds for the live item at its key; otherwise fails
    /// with [`StoreError::ConditionFailed`] holding that item.
    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()>;

    /// Deletes the item at `key` if `condition` holds, returning the live item it
    /// removed (None when there was none); otherwise fails with
    /// [`StoreError::ConditionFailed`] holding the live item.
    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>>;

    /// One page of live items of a partition.
    async fn query(&self, query: Query) -> StoreResult<Page>;

    /// One page of a walk over every item of the table, right after the item at `after`
    /// (the start when None), in an order of the adapter's own that a cursor resumes,
    /// even when the item at `after` was deleted since: at most `limit` items looked at,
    /// live or expired. The one read that crosses partitions, tenants' included, and the
    /// one that names expired items: for the operations sweep (the cleanup worker, the
    /// ops CLI), never for answering a tenant.
    async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage>;

    /// All operations or none. At most [`MAX_TRANSACTION_OPS`], each on a distinct key.
    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()>;
}

/// Checks what both adapters reject before touching storage: besides the operations'
/// count and distinct keys, every key and put item (see [`validate_key`],
/// [`validate_item`]) and the transaction's total size: its puts' sizes (an add's item
/// is not known before it is written; counters are small).
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
    let mut total = 0;
    for op in ops {
        match op {
            WriteOp::Put { item, .. } => total += validate_item(item)?,
            WriteOp::Delete { key, .. } | WriteOp::Check { key, .. } | WriteOp::Add { key, .. } => {
                validate_key(key)?
            }
        }
    }
    if total > MAX_TRANSACTION_BYTES {
        return Err(StoreError::Invalid(format!(
            "a transaction writes at most {MAX_TRANSACTION_BYTES} bytes (DynamoDB's 4 MB \
             limit), not {total}"
        )));
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

pub(crate) fn validate_scan(after: Option<&Key>, limit: usize) -> StoreResult<()> {
    if limit == 0 {
        return Err(StoreError::Invalid(
            "a scan's limit must be at least 1".into(),
        ));
    }
    after.map_or(Ok(()), validate_key)
}

/// A key DynamoDB accepts, of the table or of the index: both parts non-empty, within
/// their size limits.
pub(crate) fn validate_key(key: &Key) -> StoreResult<()> {
    if key.pk.is_empty() || key.sk.is_empty() {
        return Err(StoreError::Invalid("key attributes cannot be empty".into()));
    }
    for (part, limit, name) in [
        (&key.pk, MAX_PARTITION_KEY_BYTES, "partition"),
        (&key.sk, MAX_SORT_KEY_BYTES, "sort"),
    ] {
        if part.len() > limit {
            return Err(StoreError::Invalid(format!(
                "a {name} key is at most {limit} bytes (DynamoDB's limit), not {}",
                part.len()
            )));
        }
    }
    Ok(())
}

/// An item DynamoDB accepts: valid keys, within [`MAX_ITEM_BYTES`]. Returns its size.
pub(crate) fn validate_item(item: &Item) -> StoreResult<usize> {
    validate_key(&item.key)?;
    if let Some(gsi1) = &item.gsi1 {
        validate_key(gsi1)?;
    }
    let size = item_size(item);
    if size > MAX_ITEM_BYTES {
        return Err(StoreError::Invalid(format!(
            "an item is at most {MAX_ITEM_BYTES} bytes (DynamoDB's 400 KB limit), not {size}"
        )));
    }
    Ok(size)
}

/// The size DynamoDB counts for `item` as the DynamoDB adapter stores it (the attributes
/// pk, sk, gsi1pk, gsi1sk, expires_at, version, data and counter, the JSON data as
/// serde_dynamo converts it), by DynamoDB's documented rules ("DynamoDB item sizes and
/// formats"): an attribute is its name's UTF-8 bytes plus its value's size.
pub fn item_size(item: &Item) -> usize {
    use dynamodb::attributes::{COUNTER, DATA, EXPIRES_AT, GSI1PK, GSI1SK, PK, SK, VERSION};
    let string = |name: &str, value: &str| name.len() + value.len();
    let number = |name: &str, value: String| name.len() + number_size(&value);
    let mut size = string(PK, &item.key.pk) + string(SK, &item.key.sk);
    if let Some(gsi1) = &item.gsi1 {
        size += string(GSI1PK, &gsi1.pk) + string(GSI1SK, &gsi1.sk);
    }
    if let Some(expires_at) = item.expires_at {
        size += number(EXPIRES_AT, expires_at.to_string());
    }
    if item.counter != 0 {
        size += number(COUNTER, item.counter.to_string());
    }
    size + number(VERSION, item.version.to_string()) + DATA.len() + value_size(&item.data)
}

/// A value's size without a name: a string its UTF-8 bytes, null and booleans 1 byte, a
/// list or map 3 bytes plus 1 per element plus its elements (a map's with their names).
fn value_size(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(number) => number_size(&number.to_string()),
        Value::String(text) => text.len(),
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Object(map) => {
            3 + map
                .iter()
                .map(|(name, v)| 1 + name.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

/// A number: 1 byte per two significant digits (leading and trailing zeros trimmed),
/// plus 1.
fn number_size(text: &str) -> usize {
    let mantissa = text.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn item_size_follows_dynamodbs_documented_rules() {
        // pk "p" (2 + 1), sk "s" (2 + 1), version 0 (7 + 1), data {} (4 + 3)
        let bare = Item::new(Key::new("p", "s"), json!({}));
        assert_eq!(item_size(&bare), 3 + 3 + 8 + 7);

        let full = Item::new(
            Key::new("p", "s"),
            json!({
                "é": "ação",       // 1 + 2 + 6
                "n": 12345,         // 1 + 1 + (3 + 1)
                "z": 1200.0,        // 1 + 1 + (1 + 1): 2 significant digits
                "b": true,          // 1 + 1 + 1
                "x": null,          // 1 + 1 + 1
                "l": [1, "ab", []], // 1 + 1 + (3 + (1 + 2) + (1 + 2) + (1 + 3))
            }),
        )
        .with_gsi1(Key::new("g", "h")) // (6 + 1) + (6 + 1)
        .expiring_at(1_700_000_000) // 10 + (1 + 1): "17" significant
        .with_version(42); // 7 + (1 + 1)
        let data = 3 + 9 + 6 + 4 + 3 + 3 + 15;
        assert_eq!(item_size(&full), 3 + 3 + 14 + 12 + 9 + 4 + data);

        // A counter of 0 is not stored; any other is a number attribute.
        let counted = Item {
            counter: -1234,
            ..bare.clone()
        };
        assert_eq!(item_size(&counted), item_size(&bare) + 7 + (2 + 1));
    }

    #[test]
    fn numbers_count_their_significant_digits() {
        for (text, size) in [
            ("0", 1),
            ("7", 2),
            ("-7", 2),
            ("42", 2),
            ("123", 3),
            ("0.5", 2),
            ("2.50", 2),
            ("12345", 4),
            ("1e300", 2),
            ("1.25E-7", 3),
            ("1700000000", 2),
        ] {
            assert_eq!(number_size(text), size, "{text}");
        }
    }
}
