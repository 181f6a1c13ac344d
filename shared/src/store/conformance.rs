//! The storage kernel's conformance suite: what every [`Store`] adapter must do, as plain
//! async functions that panic with a message naming the broken rule.
//!
//! Each check works in partitions of its own (random names), so the checks can run
//! concurrently and the suite can share a table with other suites and with itself; it
//! never needs an empty table.

use std::sync::Arc;

use serde_json::json;

use super::{
    Condition, Cursor, Index, Item, Key, MAX_ITEM_BYTES, MAX_PARTITION_KEY_BYTES,
    MAX_SORT_KEY_BYTES, MAX_TRANSACTION_BYTES, Query, SortKey, Store, StoreError, WriteOp,
    item_size,
};
use crate::clock::{Clock, SystemClock};

/// Runs every check that every adapter passes against `store`, one after the other:
/// moto's TransactWriteItems snapshots the whole table and restores that snapshot when a
/// transaction is cancelled, losing writes made meanwhile by concurrent requests (real
/// DynamoDB and the embedded store have no such problem).
pub async fn run_all(store: &dyn Store) {
    get_of_a_missing_key_is_none(store).await;
    put_then_get_round_trips_every_field(store).await;
    put_honours_conditions(store).await;
    delete_honours_conditions_and_returns_the_old_item(store).await;
    an_expired_item_is_absent_everywhere(store).await;
    query_applies_sort_key_conditions(store).await;
    query_orders_sort_keys_by_utf8_bytes(store).await;
    query_walks_forward_and_backward(store).await;
    query_pages_return_every_item_exactly_once(store).await;
    a_long_expired_tail_is_walked_to_its_end(store).await;
    a_cursor_outlives_its_item(store).await;
    items_inserted_between_pages(store).await;
    query_on_gsi1(store).await;
    a_query_never_leaves_its_partition(store).await;
    scan_walks_every_item_once_and_names_the_expired(store).await;
    transact_is_all_or_nothing(store).await;
    transact_mixes_puts_deletes_and_checks(store).await;
    an_add_creates_its_counter_and_changes_nothing_else(store).await;
    an_add_commits_or_rolls_back_with_its_transaction(store).await;
    invalid_requests_are_rejected(store).await;
    dynamodbs_size_limits_are_held(store).await;
}

/// What the embedded adapter is held to besides [`run_all`], and the DynamoDB adapter is
/// not:
/// - its pages are full until the last, each cursor at its page's last item: the DynamoDB
///   adapter may end a page early, as it caps its requests per call;
/// - concurrent conditional writes on one key have exactly one winner, and concurrent
///   adds to one counter lose nothing: the DynamoDB adapter's test double, moto, serves
///   requests on parallel threads with no lock around a conditional write's check and
///   its write, nor around an ADD's read of the old value and its write (it loses an add
///   in about one run of this suite in twenty), so it cannot be held to this. DynamoDB
///   itself guarantees both; the DynamoDB adapter's own tests check that an add goes to
///   it as one ADD, never as a read and a write.
pub async fn run_embedded_only(store: Arc<dyn Store>) {
    pages_are_full_until_the_last(store.as_ref()).await;
    concurrent_adds_lose_nothing(store.as_ref()).await;
    concurrent_conditional_writes_have_one_winner(store).await;
}

/// A partition no other check (nor another run) uses.
fn partition(name: &str) -> String {
    format!("conformance#{name}#{}", uuid::Uuid::new_v4())
}

fn item(pk: &str, sk: &str) -> Item {
    Item::new(Key::new(pk, sk), json!({ "sk": sk }))
}

async fn get(store: &dyn Store, key: &Key) -> Option<Item> {
    match store.get(key).await {
        Ok(item) => item,
        Err(error) => panic!("get {key:?} failed: {error}"),
    }
}

async fn put(store: &dyn Store, item: Item, condition: Condition) {
    let key = item.key.clone();
    if let Err(error) = store.put(item, condition).await {
        panic!("put {key:?} with {condition:?} failed: {error}");
    }
}

async fn query(store: &dyn Store, query: Query) -> super::Page {
    match store.query(query.clone()).await {
        Ok(page) => page,
        Err(error) => panic!("{query:?} failed: {error}"),
    }
}

fn sort_keys(items: &[Item]) -> Vec<&str> {
    items.iter().map(|item| item.key.sk.as_str()).collect()
}

/// Asserts a condition failure that reports `current` as the live item at the key.
fn assert_condition_failed<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    current: Option<&Item>,
    what: &str,
) {
    match result {
        Err(StoreError::ConditionFailed { current: found }) => assert_eq!(
            found.as_deref(),
            current,
            "{what}: the failure must hold the live item at the key (None for none)"
        ),
        other => panic!("{what}: expected ConditionFailed, got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Invalid(_))),
        "{what}: expected Invalid, got {result:?}"
    );
}

fn assert_cancelled(result: Result<(), StoreError>, failed: &[usize], what: &str) {
    match result {
        Err(StoreError::TransactionCancelled { failed: reported }) => assert_eq!(
            reported, failed,
            "{what}: the cancellation must name the operations whose condition failed"
        ),
        other => {
            panic!("{what}: expected TransactionCancelled {{ failed: {failed:?} }}, got {other:?}")
        }
    }
}

fn assert_invalid_naming<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    limit: usize,
    what: &str,
) {
    match result {
        Err(StoreError::Invalid(message)) => assert!(
            message.contains(&limit.to_string()),
            "{what}: the error names the limit {limit}: {message}"
        ),
        other => panic!("{what}: expected Invalid, got {other:?}"),
    }
}

/// How much [`walk`] holds a store's pages to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pages {
    /// What every adapter does: no page over the limit, no cursor before its page's last
    /// item (it may lie past it: where a walk stopped early), no cursor outside the
    /// queried partition, and an end.
    Any,
    /// Also: every page followed by a cursor is full, the cursor at its last item.
    Full,
}

/// Every page of `query` from its start, following cursors, as every adapter pages.
async fn all_pages(store: &dyn Store, q: Query) -> Vec<Item> {
    walk(store, q, Pages::Any).await
}

async fn walk(store: &dyn Store, mut q: Query, pages: Pages) -> Vec<Item> {
    let mut items = Vec::new();
    for _ in 0..1000 {
        let page = query(store, q.clone()).await;
        assert!(page.items.len() <= q.limit, "{q:?}: page over the limit");
        items.extend(page.items.iter().cloned());
        let Some(cursor) = page.next else {
            return items;
        };
        let partition = match q.index {
            Index::Primary => Some(&cursor.key.pk),
            Index::Gsi1 => cursor.gsi1.as_ref().map(|gsi1| &gsi1.pk),
        };
        assert_eq!(
            partition,
            Some(&q.partition),
            "{q:?}: a cursor in the queried partition"
        );
        let last = page.items.last().map(|item| Cursor {
            key: item.key.clone(),
            gsi1: item.gsi1.clone(),
        });
        if let Some(last) = &last {
            assert!(
                !walk_order(&q, &cursor, last).is_lt(),
                "{q:?}: the cursor {cursor:?} lies before the page's last item {last:?}"
            );
        }
        if pages == Pages::Full {
            assert_eq!(
                page.items.len(),
                q.limit,
                "{q:?}: a page followed by a cursor must be full"
            );
            assert_eq!(
                Some(cursor.clone()),
                last,
                "the cursor is the last item's position"
            );
        }
        q.after = Some(cursor);
    }
    panic!("{q:?}: paging did not end after 1000 pages");
}

/// How position `a` compares to `b` in the walk of `q`, by the sort key it walks (items
/// that share an index sort key come in no documented order, so they compare equal).
fn walk_order(q: &Query, a: &Cursor, b: &Cursor) -> std::cmp::Ordering {
    let sort_key = |position: &Cursor| match q.index {
        Index::Primary => position.key.sk.clone(),
        Index::Gsi1 => position
            .gsi1
            .as_ref()
            .map(|gsi1| gsi1.sk.clone())
            .unwrap_or_default(),
    };
    let order = sort_key(a).cmp(&sort_key(b));
    if q.forward { order } else { order.reverse() }
}

/// The four walks of a partition `pk` whose items are indexed in `gsi`: both ways, on the
/// table and on the index.
fn four_walks(pk: &str, gsi: &str) -> [Query; 4] {
    [
        Query::partition(pk),
        Query::partition(pk).backward(),
        Query::partition(gsi).on_gsi1(),
        Query::partition(gsi).on_gsi1().backward(),
    ]
}

/// `sort_keys` in the order `q` walks them.
fn in_walk_order<'a>(q: &Query, sort_keys: &[&'a str]) -> Vec<&'a str> {
    let mut ordered = sort_keys.to_vec();
    ordered.sort();
    if !q.forward {
        ordered.reverse();
    }
    ordered
}

// ------------------------------------------------------------------ get, put, delete

pub async fn get_of_a_missing_key_is_none(store: &dyn Store) {
    let key = Key::new(partition("missing"), "nothing");
    assert_eq!(get(store, &key).await, None, "get of a key never written");
}

pub async fn put_then_get_round_trips_every_field(store: &dyn Store) {
    let pk = partition("round-trip");
    let full = Item::new(
        Key::new(&pk, "full"),
        json!({
            "name": "Loja Ação ✓",
            "count": 42,
            "negative": -7,
            "ratio": 2.5,
            "flag": true,
            "nothing": null,
            "empty": "",
            "tags": ["a", "b", 3, {"deep": [1, 2, {"deeper": "yes"}]}],
            "nested": {"a": {"b": {"c": []}}, "empty_map": {}},
        }),
    )
    .with_gsi1(Key::new(partition("round-trip-gsi"), "2024-01-01#x"))
    .expiring_at(SystemClock.now_secs() + 3600)
    .with_version(7);
    let full = Item {
        counter: -42,
        ..full
    };
    put(store, full.clone(), Condition::Absent).await;
    assert_eq!(
        get(store, &full.key).await,
        Some(full),
        "every field round-trips"
    );

    let bare = Item::new(Key::new(&pk, "bare"), json!("just a string"));
    put(store, bare.clone(), Condition::Always).await;
    assert_eq!(
        get(store, &bare.key).await,
        Some(bare),
        "an item without gsi1 nor expiry round-trips as such"
    );
}

pub async fn put_honours_conditions(store: &dyn Store) {
    let pk = partition("put-conditions");
    let key = Key::new(&pk, "item");
    let v1 = item(&pk, "item").with_version(1);

    assert_condition_failed(
        store.put(v1.clone(), Condition::Present).await,
        None,
        "put Present on a missing key",
    );
    assert_condition_failed(
        store.put(v1.clone(), Condition::VersionIs(0)).await,
        None,
        "put VersionIs on a missing key",
    );
    assert_eq!(get(store, &key).await, None, "a failed put writes nothing");

    put(store, v1.clone(), Condition::Absent).await;
    assert_condition_failed(
        store
            .put(v1.clone().with_version(9), Condition::Absent)
            .await,
        Some(&v1),
        "put Absent over a live item",
    );

    let v2 = Item::new(key.clone(), json!({"step": 2})).with_version(2);
    assert_condition_failed(
        store.put(v2.clone(), Condition::VersionIs(5)).await,
        Some(&v1),
        "put VersionIs with the wrong version",
    );
    assert_eq!(
        get(store, &key).await,
        Some(v1),
        "a failed put leaves the item as it was"
    );
    put(store, v2.clone(), Condition::VersionIs(1)).await;
    assert_eq!(get(store, &key).await, Some(v2.clone()));
    assert_condition_failed(
        store
            .put(v2.clone().with_version(3), Condition::VersionIs(1))
            .await,
        Some(&v2),
        "put VersionIs with a version that was replaced",
    );

    let v3 = Item::new(key.clone(), json!({"step": 3})).with_version(3);
    put(store, v3.clone(), Condition::Present).await;
    assert_eq!(get(store, &key).await, Some(v3));
    let v4 = Item::new(key.clone(), json!({"step": 4}));
    put(store, v4.clone(), Condition::Always).await;
    assert_eq!(get(store, &key).await, Some(v4), "put Always overwrites");

    // A writer that writes again after losing the answer finds its own item.
    let own = Item::new(
        Key::new(&pk, "own"),
        json!({"write_id": uuid::Uuid::new_v4().to_string()}),
    )
    .expiring_at(SystemClock.now_secs() + 600);
    put(store, own.clone(), Condition::Absent).await;
    assert_condition_failed(
        store.put(own.clone(), Condition::Absent).await,
        Some(&own),
        "put Absent of an item already written",
    );
}

pub async fn delete_honours_conditions_and_returns_the_old_item(store: &dyn Store) {
    let pk = partition("delete");
    let key = Key::new(&pk, "item");
    let missing = Key::new(&pk, "missing");

    let deleted = store.delete(&missing, Condition::Always).await;
    assert!(
        matches!(deleted, Ok(None)),
        "delete of a missing key: {deleted:?}"
    );
    let deleted = store.delete(&missing, Condition::Absent).await;
    assert!(
        matches!(deleted, Ok(None)),
        "delete Absent of a missing key: {deleted:?}"
    );
    assert_condition_failed(
        store.delete(&missing, Condition::Present).await,
        None,
        "delete Present of a missing key",
    );

    let stored = item(&pk, "item")
        .with_version(4)
        .with_gsi1(Key::new(partition("delete-gsi"), "g"));
    put(store, stored.clone(), Condition::Absent).await;
    assert_condition_failed(
        store.delete(&key, Condition::Absent).await,
        Some(&stored),
        "delete Absent of a live item",
    );
    assert_condition_failed(
        store.delete(&key, Condition::VersionIs(3)).await,
        Some(&stored),
        "delete VersionIs with the wrong version",
    );
    assert_eq!(
        get(store, &key).await,
        Some(stored.clone()),
        "a failed delete keeps the item"
    );

    let deleted = store.delete(&key, Condition::VersionIs(4)).await;
    assert_eq!(
        deleted.ok(),
        Some(Some(stored.clone())),
        "delete returns the item it removed"
    );
    assert_eq!(get(store, &key).await, None, "a deleted item is gone");

    put(store, stored.clone(), Condition::Absent).await;
    let deleted = store.delete(&key, Condition::Present).await;
    assert_eq!(
        deleted.ok(),
        Some(Some(stored.clone())),
        "delete Present returns the old item"
    );
    put(store, stored.clone(), Condition::Absent).await;
    let deleted = store.delete(&key, Condition::Always).await;
    assert_eq!(
        deleted.ok(),
        Some(Some(stored)),
        "delete Always returns the old item"
    );
    let deleted = store.delete(&key, Condition::Always).await;
    assert!(
        matches!(deleted, Ok(None)),
        "a second delete finds nothing: {deleted:?}"
    );
}

// ------------------------------------------------------------------ expiry

pub async fn an_expired_item_is_absent_everywhere(store: &dyn Store) {
    let pk = partition("expired");
    let gsi = partition("expired-gsi");
    let now = SystemClock.now_secs();
    let expired = |sk: &str| {
        item(&pk, sk)
            .with_gsi1(Key::new(&gsi, sk))
            .expiring_at(now - 60)
            .with_version(1)
    };
    for sk in ["a", "b", "c", "d", "e"] {
        put(store, expired(sk), Condition::Always).await;
    }
    let live = item(&pk, "live")
        .with_gsi1(Key::new(&gsi, "live"))
        .expiring_at(now + 3600);
    put(store, live.clone(), Condition::Absent).await;

    let key = |sk: &str| Key::new(&pk, sk);
    assert_eq!(get(store, &key("a")).await, None, "get of an expired item");
    let page = query(store, Query::partition(&pk)).await;
    assert_eq!(page.items, vec![live.clone()], "query skips expired items");
    let page = query(store, Query::partition(&gsi).on_gsi1()).await;
    assert_eq!(
        page.items,
        vec![live.clone()],
        "a gsi1 query skips expired items"
    );
    let page = query(store, Query::partition(&pk).limit(1)).await;
    assert_eq!(page.items, vec![live], "expired items do not use up a page");
    assert_eq!(page.next, None, "expired items are not 'more items'");

    assert_condition_failed(
        store.put(expired("a"), Condition::Present).await,
        None,
        "put Present over an expired item",
    );
    assert_condition_failed(
        store.put(expired("a"), Condition::VersionIs(1)).await,
        None,
        "put VersionIs over an expired item",
    );
    assert_condition_failed(
        store.delete(&key("b"), Condition::Present).await,
        None,
        "delete Present of an expired item",
    );
    assert_condition_failed(
        store.delete(&key("b"), Condition::VersionIs(1)).await,
        None,
        "delete VersionIs of an expired item",
    );
    let deleted = store.delete(&key("b"), Condition::Always).await;
    assert!(
        matches!(deleted, Ok(None)),
        "delete of an expired item returns None: {deleted:?}"
    );
    let deleted = store.delete(&key("c"), Condition::Absent).await;
    assert!(
        matches!(deleted, Ok(None)),
        "delete Absent of an expired item: {deleted:?}"
    );

    let fresh = item(&pk, "a").with_version(2);
    put(store, fresh.clone(), Condition::Absent).await;
    assert_eq!(
        get(store, &key("a")).await,
        Some(fresh),
        "put Absent replaces an expired item"
    );

    let result = store
        .transact(vec![
            WriteOp::Check {
                key: key("d"),
                condition: Condition::Present,
            },
            WriteOp::Put {
                item: item(&pk, "e"),
                condition: Condition::VersionIs(1),
            },
        ])
        .await;
    assert_cancelled(
        result,
        &[0, 1],
        "Present / VersionIs on expired items in a transaction",
    );
    let replacement = item(&pk, "e").with_version(5);
    store
        .transact(vec![
            WriteOp::Check {
                key: key("d"),
                condition: Condition::Absent,
            },
            WriteOp::Put {
                item: replacement.clone(),
                condition: Condition::Absent,
            },
        ])
        .await
        .unwrap_or_else(|error| panic!("Absent on expired items in a transaction: {error}"));
    assert_eq!(get(store, &key("e")).await, Some(replacement));
}

// ------------------------------------------------------------------ query

pub async fn query_applies_sort_key_conditions(store: &dyn Store) {
    let pk = partition("sort");
    let all = ["a#01", "a#02", "a#03", "a#04", "b#01", "b#02", "c"];
    for sk in all {
        put(store, item(&pk, sk), Condition::Absent).await;
    }
    let cases: Vec<(SortKey, Vec<&str>)> = vec![
        (SortKey::Any, all.to_vec()),
        (SortKey::Eq("a#03".into()), vec!["a#03"]),
        (SortKey::Eq("a#0".into()), vec![]),
        (
            SortKey::BeginsWith("a#".into()),
            vec!["a#01", "a#02", "a#03", "a#04"],
        ),
        (SortKey::BeginsWith("b#0".into()), vec!["b#01", "b#02"]),
        (SortKey::BeginsWith("z".into()), vec![]),
        (SortKey::BeginsWith(String::new()), all.to_vec()),
        (
            SortKey::Between("a#02".into(), "b#01".into()),
            vec!["a#02", "a#03", "a#04", "b#01"],
        ),
        (SortKey::Between("a#03".into(), "a#03".into()), vec!["a#03"]),
        (SortKey::Between("b".into(), "a".into()), vec![]),
        (SortKey::Lt("a#03".into()), vec!["a#01", "a#02"]),
        (SortKey::Le("a#03".into()), vec!["a#01", "a#02", "a#03"]),
        (SortKey::Gt("b#01".into()), vec!["b#02", "c"]),
        (SortKey::Ge("b#01".into()), vec!["b#01", "b#02", "c"]),
        (SortKey::Lt("a".into()), vec![]),
    ];
    for (sort, expected) in cases {
        let page = query(store, Query::partition(&pk).sort(sort.clone()).limit(50)).await;
        assert_eq!(
            sort_keys(&page.items),
            expected,
            "sort key condition {sort:?}"
        );
        assert_eq!(page.next, None, "{sort:?}: everything fit in one page");
    }
}

pub async fn query_walks_forward_and_backward(store: &dyn Store) {
    let pk = partition("order");
    // Written out of order: the order comes from the sort key, not from writes.
    for sk in ["03", "01", "05", "02", "04"] {
        put(store, item(&pk, sk), Condition::Absent).await;
    }
    let forward = query(store, Query::partition(&pk)).await;
    assert_eq!(
        sort_keys(&forward.items),
        ["01", "02", "03", "04", "05"],
        "forward order"
    );
    let backward = query(store, Query::partition(&pk).backward()).await;
    assert_eq!(
        sort_keys(&backward.items),
        ["05", "04", "03", "02", "01"],
        "backward order"
    );

    let first = query(store, Query::partition(&pk).limit(2)).await;
    assert_eq!(
        sort_keys(&first.items),
        ["01", "02"],
        "a forward page starts at the lowest"
    );
    assert!(
        first.next.is_some(),
        "a full page with more to come has a cursor"
    );
    let last = query(store, Query::partition(&pk).backward().limit(2)).await;
    assert_eq!(
        sort_keys(&last.items),
        ["05", "04"],
        "a backward page starts at the highest"
    );
    let next = query(
        store,
        Query::partition(&pk).backward().limit(2).after(last.next),
    )
    .await;
    assert_eq!(
        sort_keys(&next.items),
        ["03", "02"],
        "a backward cursor continues downwards"
    );

    let bounded = query(
        store,
        Query::partition(&pk)
            .sort(SortKey::Le("03".into()))
            .backward()
            .limit(2),
    )
    .await;
    assert_eq!(
        sort_keys(&bounded.items),
        ["03", "02"],
        "backward with an upper bound"
    );
}

pub async fn query_pages_return_every_item_exactly_once(store: &dyn Store) {
    let pk = partition("paging");
    let now = SystemClock.now_secs();
    let mut expected = Vec::new();
    for n in 0..25 {
        let sk = format!("item#{n:03}");
        put(store, item(&pk, &sk), Condition::Absent).await;
        expected.push(sk);
        // Expired items between the live ones must not shorten pages.
        if n % 3 == 0 {
            let expired = item(&pk, &format!("item#{n:03}#expired")).expiring_at(now - 5);
            put(store, expired, Condition::Always).await;
        }
    }

    for limit in [1, 7, 25, 50] {
        let items = all_pages(store, Query::partition(&pk).limit(limit)).await;
        assert_eq!(
            sort_keys(&items),
            expected,
            "forward pages of {limit}: each item once, in order"
        );
    }
    let mut reversed = expected.clone();
    reversed.reverse();
    let items = all_pages(store, Query::partition(&pk).backward().limit(7)).await;
    assert_eq!(
        sort_keys(&items),
        reversed,
        "backward pages of 7: each item once, in order"
    );

    let items = all_pages(
        store,
        Query::partition(&pk)
            .sort(SortKey::Between("item#005".into(), "item#016".into()))
            .limit(4),
    )
    .await;
    assert_eq!(
        sort_keys(&items),
        expected[5..=16].to_vec(),
        "pages within a sort key range"
    );
}

pub async fn query_orders_sort_keys_by_utf8_bytes(store: &dyn Store) {
    let pk = partition("utf8");
    let gsi = partition("utf8-gsi");
    // DynamoDB orders string keys by their UTF-8 bytes, which is code point order (and
    // Rust's). UTF-16 order would differ: it puts "😀" (a surrogate pair) before U+E000.
    let ordered = [
        "Zebra", "apple", "zz", "ção", "éclair", "ñandu", "中", "中文", "\u{e000}", "\u{fffd}",
        "😀",
    ];
    for sk in ordered.iter().rev() {
        let indexed = item(&pk, sk).with_gsi1(Key::new(&gsi, *sk));
        put(store, indexed, Condition::Absent).await;
    }
    for q in four_walks(&pk, &gsi) {
        let expected = in_walk_order(&q, &ordered);
        let page = query(store, q.clone().limit(50)).await;
        assert_eq!(sort_keys(&page.items), expected, "{q:?}: UTF-8 byte order");
        let items = all_pages(store, q.clone().limit(3)).await;
        assert_eq!(sort_keys(&items), expected, "{q:?}: pages of 3");
    }
    let cases: Vec<(SortKey, Vec<&str>)> = vec![
        (SortKey::BeginsWith("é".into()), vec!["éclair"]),
        (SortKey::BeginsWith("中".into()), vec!["中", "中文"]),
        (
            SortKey::Between("ç".into(), "中".into()),
            vec!["ção", "éclair", "ñandu", "中"],
        ),
        (SortKey::Lt("ç".into()), vec!["Zebra", "apple", "zz"]),
        (SortKey::Gt("\u{fffd}".into()), vec!["😀"]),
        (
            SortKey::Ge("\u{e000}".into()),
            vec!["\u{e000}", "\u{fffd}", "😀"],
        ),
    ];
    for (sort, expected) in cases {
        let page = query(store, Query::partition(&pk).sort(sort.clone()).limit(50)).await;
        assert_eq!(sort_keys(&page.items), expected, "{sort:?} on UTF-8 keys");
    }
}

/// A partition whose few live items are separated by long runs of expired ones, indexed
/// in a gsi1 partition of its own: (pk, gsi, the live items' sort keys).
async fn long_expired_tail(store: &dyn Store) -> (String, String, [&'static str; 4]) {
    let pk = partition("expired-tail");
    let gsi = partition("expired-tail-gsi");
    let live = ["a", "b", "c", "z"];
    let now = SystemClock.now_secs();
    let expired = (0..12)
        .map(|n| format!("0#{n:02}"))
        .chain((0..40).map(|n| format!("m#{n:02}")));
    for sk in expired {
        let gone = item(&pk, &sk)
            .with_gsi1(Key::new(&gsi, &sk))
            .expiring_at(now - 60);
        put(store, gone, Condition::Always).await;
    }
    for sk in live {
        let indexed = item(&pk, sk).with_gsi1(Key::new(&gsi, sk));
        put(store, indexed, Condition::Absent).await;
    }
    (pk, gsi, live)
}

pub async fn a_long_expired_tail_is_walked_to_its_end(store: &dyn Store) {
    let (pk, gsi, live) = long_expired_tail(store).await;
    for q in four_walks(&pk, &gsi) {
        for limit in [1, 2, 5] {
            let items = all_pages(store, q.clone().limit(limit)).await;
            assert_eq!(
                sort_keys(&items),
                in_walk_order(&q, &live),
                "{q:?} in pages of {limit}: every live item once, past the expired ones"
            );
        }
    }
}

pub async fn a_cursor_outlives_its_item(store: &dyn Store) {
    let all = ["1", "2", "3", "4", "5", "6"];
    for walk in 0..4 {
        let pk = partition("deleted-cursor");
        let gsi = partition("deleted-cursor-gsi");
        for sk in all {
            let indexed = item(&pk, sk).with_gsi1(Key::new(&gsi, sk));
            put(store, indexed, Condition::Absent).await;
        }
        let q = four_walks(&pk, &gsi)[walk].clone().limit(2);
        let order = in_walk_order(&q, &all);
        let first = query(store, q.clone()).await;
        assert_eq!(sort_keys(&first.items), order[..2], "{q:?}: the first page");
        let cursor = first.next.expect("a cursor after the first page");
        let deleted = store.delete(&cursor.key, Condition::Present).await;
        assert!(
            matches!(deleted, Ok(Some(_))),
            "{q:?}: delete the cursor's item: {deleted:?}"
        );
        let next = query(store, q.clone().after(Some(cursor))).await;
        assert_eq!(
            sort_keys(&next.items),
            order[2..4],
            "{q:?}: the next page starts right after the deleted item's position"
        );
    }
}

pub async fn items_inserted_between_pages(store: &dyn Store) {
    let first = ["b", "d", "f", "h"];
    let later = ["a", "c", "e", "g"];
    for walk in 0..4 {
        let pk = partition("inserted");
        let gsi = partition("inserted-gsi");
        let indexed = |sk: &str| item(&pk, sk).with_gsi1(Key::new(&gsi, sk));
        for sk in first {
            put(store, indexed(sk), Condition::Absent).await;
        }
        let q = four_walks(&pk, &gsi)[walk].clone().limit(2);
        let page = query(store, q.clone()).await;
        let cursor = page.next.expect("a cursor after the first page");
        let at = sort_keys(&page.items)
            .last()
            .copied()
            .unwrap_or_default()
            .to_owned();
        for sk in later {
            put(store, indexed(sk), Condition::Absent).await;
        }
        // Forward after "d": e f g h; backward after "f": e d c b a.
        let expected: Vec<&str> = in_walk_order(&q, &[first, later].concat())
            .into_iter()
            .filter(|sk| {
                if q.forward {
                    *sk > at.as_str()
                } else {
                    *sk < at.as_str()
                }
            })
            .collect();
        let rest = all_pages(store, q.clone().after(Some(cursor))).await;
        assert_eq!(
            sort_keys(&rest),
            expected,
            "{q:?}: items inserted past the cursor appear, those before it do not"
        );
    }
}

pub async fn query_on_gsi1(store: &dyn Store) {
    let gsi = partition("gsi1");
    let other_gsi = partition("gsi1-other");
    // The index groups items of several table partitions; two share a gsi1 sort key.
    let entries = [
        (partition("gsi1-a"), "x", "2024-03"),
        (partition("gsi1-b"), "y", "2024-01"),
        (partition("gsi1-c"), "z", "2024-02"),
        (partition("gsi1-d"), "w", "2024-02"),
        (partition("gsi1-e"), "v", "2025-01"),
    ];
    for (pk, sk, gsi1sk) in &entries {
        let indexed = item(pk, sk).with_gsi1(Key::new(&gsi, *gsi1sk));
        put(store, indexed, Condition::Absent).await;
    }
    let (pk, _, _) = &entries[0];
    put(store, item(pk, "not-indexed"), Condition::Absent).await;
    put(
        store,
        item(pk, "elsewhere").with_gsi1(Key::new(&other_gsi, "2024-01")),
        Condition::Absent,
    )
    .await;

    let gsi1_sort_keys = |items: &[Item]| -> Vec<String> {
        items
            .iter()
            .map(|item| item.gsi1.as_ref().map(|k| k.sk.clone()).unwrap_or_default())
            .collect()
    };
    let page = query(store, Query::partition(&gsi).on_gsi1()).await;
    assert_eq!(
        gsi1_sort_keys(&page.items),
        ["2024-01", "2024-02", "2024-02", "2024-03", "2025-01"],
        "a gsi1 query returns the index partition's items by gsi1 sort key"
    );
    assert_eq!(
        page.items[0],
        item(&entries[1].0, "y").with_gsi1(Key::new(&gsi, "2024-01"))
    );

    let page = query(store, Query::partition(&gsi).on_gsi1().backward().limit(2)).await;
    assert_eq!(
        gsi1_sort_keys(&page.items),
        ["2025-01", "2024-03"],
        "gsi1 backward"
    );
    let page = query(
        store,
        Query::partition(&gsi)
            .on_gsi1()
            .sort(SortKey::BeginsWith("2024-0".into())),
    )
    .await;
    assert_eq!(page.items.len(), 4, "gsi1 with a sort key condition");
    let page = query(
        store,
        Query::partition(&gsi)
            .on_gsi1()
            .sort(SortKey::Lt("2024-02".into())),
    )
    .await;
    assert_eq!(gsi1_sort_keys(&page.items), ["2024-01"], "gsi1 with Lt");

    for limit in [1, 2] {
        let items = all_pages(store, Query::partition(&gsi).on_gsi1().limit(limit)).await;
        let mut keys: Vec<&Key> = items.iter().map(|item| &item.key).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(items.len(), 5, "gsi1 pages of {limit} return every item");
        assert_eq!(
            keys.len(),
            5,
            "gsi1 pages of {limit} return each item once (shared sort keys too)"
        );
        let items = all_pages(
            store,
            Query::partition(&gsi).on_gsi1().backward().limit(limit),
        )
        .await;
        assert_eq!(
            items.len(),
            5,
            "gsi1 backward pages of {limit} return every item"
        );
    }
}

pub async fn a_query_never_leaves_its_partition(store: &dyn Store) {
    let pk = partition("isolation");
    // Partitions whose names extend `pk`: next to it in any byte order.
    let neighbours = [format!("{pk}0"), format!("{pk}#"), format!("{pk} ")];
    for sk in ["a", "b"] {
        put(store, item(&pk, sk), Condition::Absent).await;
    }
    for neighbour in &neighbours {
        for sk in ["a", "b", "c"] {
            put(
                store,
                item(neighbour, sk).with_gsi1(Key::new(&pk, sk)),
                Condition::Absent,
            )
            .await;
        }
    }
    let page = query(store, Query::partition(&pk).limit(50)).await;
    assert_eq!(
        sort_keys(&page.items),
        ["a", "b"],
        "only the queried partition's items"
    );
    let page = query(store, Query::partition(&pk).backward().limit(50)).await;
    assert_eq!(
        sort_keys(&page.items),
        ["b", "a"],
        "backward: only the queried partition"
    );

    // A cursor taken from another partition cannot move a query into it.
    let foreign = query(store, Query::partition(&neighbours[0]).limit(1)).await;
    let page = query(store, Query::partition(&pk).limit(50).after(foreign.next)).await;
    assert!(
        page.items.iter().all(|item| item.key.pk == pk),
        "a foreign cursor leaked items of another partition: {:?}",
        page.items
    );
}

// ------------------------------------------------------------------ scans

/// Live items of three partitions and expired ones among them; the table is walked
/// whole, in pages of 5, and one page's cursor item is deleted before the walk goes on
/// from it. Other checks' items share the table: only this check's are compared.
pub async fn scan_walks_every_item_once_and_names_the_expired(store: &dyn Store) {
    let now = SystemClock.now_secs();
    let partitions = [
        partition("scan-a"),
        partition("scan-b"),
        partition("scan-c"),
    ];
    let mut live = Vec::new();
    let mut expired = Vec::new();
    for (p, pk) in partitions.iter().enumerate() {
        for n in 0..6 {
            let item = item(pk, &format!("item#{n}")).with_version(n);
            if (n + p as u64).is_multiple_of(3) {
                let item = item.expiring_at(now - 60);
                expired.push(item.key.clone());
                put(store, item, Condition::Always).await;
            } else {
                let item = item.expiring_at(now + 3600);
                live.push(item.clone());
                put(store, item, Condition::Absent).await;
            }
        }
    }
    let ours = |key: &Key| partitions.contains(&key.pk);

    let (mut found_live, mut found_expired) = (Vec::new(), Vec::new());
    let mut after = None;
    let mut deleted = None;
    for pages in 0.. {
        assert!(pages < 100_000, "the scan did not end");
        let page = match store.scan(after.clone(), 5).await {
            Ok(page) => page,
            Err(error) => panic!("scan after {after:?} failed: {error}"),
        };
        assert!(
            page.live.len() + page.expired.len() <= 5,
            "a page looks at no more items than its limit"
        );
        assert!(
            page.expired
                .iter()
                .all(|key| !page.live.iter().any(|item| &item.key == key)),
            "an item is live or expired, not both"
        );
        found_live.extend(page.live.into_iter().filter(|item| ours(&item.key)));
        found_expired.extend(page.expired.into_iter().filter(|key| ours(key)));
        let Some(next) = page.next else { break };
        // The walk goes on from a cursor whose item is gone since.
        if deleted.is_none() && ours(&next) {
            store
                .delete(&next, Condition::Always)
                .await
                .unwrap_or_else(|error| panic!("delete {next:?} failed: {error}"));
            deleted = Some(next.clone());
        }
        after = Some(next);
    }

    let sorted = |mut keys: Vec<Key>| {
        keys.sort();
        keys
    };
    let found_keys = sorted(found_live.iter().map(|item| item.key.clone()).collect());
    assert_eq!(
        found_keys,
        sorted(live.iter().map(|item| item.key.clone()).collect()),
        "every live item once"
    );
    for item in &live {
        let found = found_live.iter().find(|found| found.key == item.key);
        assert_eq!(found, Some(item), "a live item is read whole");
    }
    assert_eq!(
        sorted(found_expired),
        sorted(expired),
        "every expired item named once, by its key"
    );
    assert!(
        deleted.is_some(),
        "a page ended at one of this check's items (each partition holds 6 in a row)"
    );

    assert_invalid(store.scan(None, 0).await, "a scan with limit 0");
    assert_invalid(
        store.scan(Some(Key::new("", "s")), 5).await,
        "a scan after an empty key",
    );
}

// ------------------------------------------------------------------ transactions

pub async fn transact_is_all_or_nothing(store: &dyn Store) {
    let pk = partition("transact-atomic");
    let existing = item(&pk, "existing").with_version(1);
    put(store, existing.clone(), Condition::Absent).await;
    let key = |sk: &str| Key::new(&pk, sk);

    let result = store
        .transact(vec![
            WriteOp::Put {
                item: item(&pk, "new"),
                condition: Condition::Absent,
            },
            WriteOp::Put {
                item: item(&pk, "missing"),
                condition: Condition::VersionIs(5),
            },
            WriteOp::Delete {
                key: key("existing"),
                condition: Condition::Present,
            },
        ])
        .await;
    assert_cancelled(result, &[1], "one failing condition");
    assert_eq!(
        get(store, &key("new")).await,
        None,
        "a cancelled transaction puts nothing"
    );
    assert_eq!(get(store, &key("missing")).await, None);
    assert_eq!(
        get(store, &key("existing")).await,
        Some(existing.clone()),
        "a cancelled transaction deletes nothing"
    );

    let result = store
        .transact(vec![
            WriteOp::Check {
                key: key("existing"),
                condition: Condition::Absent,
            },
            WriteOp::Put {
                item: item(&pk, "new"),
                condition: Condition::Always,
            },
            WriteOp::Delete {
                key: key("missing"),
                condition: Condition::VersionIs(1),
            },
        ])
        .await;
    assert_cancelled(result, &[0, 2], "two failing conditions");
    assert_eq!(
        get(store, &key("new")).await,
        None,
        "a cancelled transaction puts nothing"
    );
    assert_eq!(get(store, &key("existing")).await, Some(existing));
}

pub async fn transact_mixes_puts_deletes_and_checks(store: &dyn Store) {
    let pk = partition("transact-mixed");
    let key = |sk: &str| Key::new(&pk, sk);
    let a = item(&pk, "a").with_version(1);
    let b = item(&pk, "b");
    let d = item(&pk, "d").with_version(3);
    for stored in [&a, &b, &d] {
        put(store, stored.clone(), Condition::Absent).await;
    }

    let a2 = Item::new(key("a"), json!({"updated": true})).with_version(2);
    let e = item(&pk, "e").with_gsi1(Key::new(partition("transact-gsi"), "e"));
    store
        .transact(vec![
            WriteOp::Put {
                item: a2.clone(),
                condition: Condition::VersionIs(1),
            },
            WriteOp::Delete {
                key: key("b"),
                condition: Condition::Present,
            },
            WriteOp::Check {
                key: key("c"),
                condition: Condition::Absent,
            },
            WriteOp::Check {
                key: key("d"),
                condition: Condition::VersionIs(3),
            },
            WriteOp::Put {
                item: e.clone(),
                condition: Condition::Always,
            },
            WriteOp::Check {
                key: key("f"),
                condition: Condition::Always,
            },
        ])
        .await
        .unwrap_or_else(|error| panic!("a transaction whose conditions hold: {error}"));
    assert_eq!(
        get(store, &key("a")).await,
        Some(a2),
        "the transaction's put"
    );
    assert_eq!(
        get(store, &key("b")).await,
        None,
        "the transaction's delete"
    );
    assert_eq!(get(store, &key("c")).await, None, "a check writes nothing");
    assert_eq!(
        get(store, &key("d")).await,
        Some(d),
        "a check changes nothing"
    );
    assert_eq!(get(store, &key("e")).await, Some(e));
    assert_eq!(get(store, &key("f")).await, None, "a check writes nothing");

    let single = item(&pk, "single");
    store
        .transact(vec![WriteOp::Put {
            item: single.clone(),
            condition: Condition::Absent,
        }])
        .await
        .unwrap_or_else(|error| panic!("a one-operation transaction: {error}"));
    assert_eq!(get(store, &key("single")).await, Some(single));
}

// ------------------------------------------------------------------ counters

/// Adds `delta` to the counter at `key` in a transaction of its own, retried while it
/// is cancelled by a conflict with a concurrent transaction (DynamoDB cancels concurrent
/// transactions on one item; the kernel reports that as no failed condition).
async fn add(store: &dyn Store, key: &Key, delta: i64) {
    for _ in 0..50 {
        let op = WriteOp::Add {
            key: key.clone(),
            delta,
        };
        match store.transact(vec![op]).await {
            Ok(()) => return,
            Err(StoreError::TransactionCancelled { failed }) if failed.is_empty() => {
                tokio::time::sleep(std::time::Duration::from_millis(fastrand::u64(1..=20))).await;
            }
            Err(error) => panic!("add {delta} to {key:?} failed: {error}"),
        }
    }
    panic!("add {delta} to {key:?} kept conflicting");
}

async fn counter(store: &dyn Store, key: &Key) -> Option<i64> {
    get(store, key).await.map(|item| item.counter)
}

pub async fn an_add_creates_its_counter_and_changes_nothing_else(store: &dyn Store) {
    let pk = partition("add");
    let key = Key::new(&pk, "counter");
    add(store, &key, 3).await;
    assert_eq!(
        get(store, &key).await,
        Some(Item {
            counter: 3,
            ..Item::new(key.clone(), json!({}))
        }),
        "an add to no item creates one: data {{}}, version 0, the counter at the delta"
    );
    add(store, &key, -5).await;
    add(store, &key, 1).await;
    assert_eq!(counter(store, &key).await, Some(-1), "adds accumulate");

    let stored = item(&pk, "item")
        .with_gsi1(Key::new(partition("add-gsi"), "g"))
        .expiring_at(SystemClock.now_secs() + 3600)
        .with_version(4);
    put(store, stored.clone(), Condition::Absent).await;
    add(store, &stored.key, 7).await;
    assert_eq!(
        get(store, &stored.key).await,
        Some(Item {
            counter: 7,
            ..stored.clone()
        }),
        "an add to a live item changes its counter only (not its version)"
    );
    put(store, stored.clone(), Condition::VersionIs(4)).await;
    assert_eq!(
        counter(store, &stored.key).await,
        Some(0),
        "a put writes the counter as given"
    );

    let expired = item(&pk, "expired").expiring_at(SystemClock.now_secs() - 60);
    put(store, expired.clone(), Condition::Always).await;
    let result = store
        .transact(vec![
            WriteOp::Put {
                item: item(&pk, "beside"),
                condition: Condition::Absent,
            },
            WriteOp::Add {
                key: expired.key.clone(),
                delta: 1,
            },
        ])
        .await;
    assert_cancelled(result, &[1], "an add to an expired item");
    assert_eq!(get(store, &expired.key).await, None, "still absent");
    assert_eq!(get(store, &Key::new(&pk, "beside")).await, None);
}

pub async fn an_add_commits_or_rolls_back_with_its_transaction(store: &dyn Store) {
    let pk = partition("add-transact");
    let key = |sk: &str| Key::new(&pk, sk);
    let counted = |sk: &str| WriteOp::Put {
        item: item(&pk, sk),
        condition: Condition::Absent,
    };
    let plus_one = || WriteOp::Add {
        key: key("counter"),
        delta: 1,
    };

    store
        .transact(vec![counted("a"), plus_one()])
        .await
        .unwrap_or_else(|error| panic!("a put and an add: {error}"));
    assert_eq!(counter(store, &key("counter")).await, Some(1), "committed");
    assert!(get(store, &key("a")).await.is_some());

    let result = store.transact(vec![counted("a"), plus_one()]).await;
    assert_cancelled(result, &[0], "a put that fails its condition");
    assert_eq!(
        counter(store, &key("counter")).await,
        Some(1),
        "a cancelled transaction adds nothing"
    );
    let result = store
        .transact(vec![
            WriteOp::Add {
                key: key("new-counter"),
                delta: 5,
            },
            counted("a"),
        ])
        .await;
    assert_cancelled(result, &[1], "an add beside a failing put");
    assert_eq!(
        get(store, &key("new-counter")).await,
        None,
        "a cancelled transaction creates no counter"
    );

    store
        .transact(vec![
            counted("b"),
            plus_one(),
            WriteOp::Add {
                key: key("other-counter"),
                delta: -2,
            },
        ])
        .await
        .unwrap_or_else(|error| panic!("a put and two adds: {error}"));
    assert_eq!(counter(store, &key("counter")).await, Some(2));
    assert_eq!(counter(store, &key("other-counter")).await, Some(-2));
}

pub async fn invalid_requests_are_rejected(store: &dyn Store) {
    let pk = partition("invalid");
    let key = Key::new(&pk, "k");

    assert_invalid(store.transact(vec![]).await, "an empty transaction");
    assert_invalid(
        store
            .transact(vec![
                WriteOp::Put {
                    item: item(&pk, "k"),
                    condition: Condition::Absent,
                },
                WriteOp::Check {
                    key: key.clone(),
                    condition: Condition::Absent,
                },
            ])
            .await,
        "a transaction touching one key twice",
    );
    assert_invalid(
        store
            .transact(vec![
                WriteOp::Put {
                    item: item(&pk, "k"),
                    condition: Condition::Absent,
                },
                WriteOp::Add {
                    key: key.clone(),
                    delta: 1,
                },
            ])
            .await,
        "a transaction putting and adding to one key",
    );
    let too_many = (0..=super::MAX_TRANSACTION_OPS)
        .map(|n| WriteOp::Check {
            key: Key::new(&pk, format!("{n}")),
            condition: Condition::Absent,
        })
        .collect();
    assert_invalid(
        store.transact(too_many).await,
        "a transaction over the operation limit",
    );
    let cursor_without_gsi1 = Cursor {
        key: key.clone(),
        gsi1: None,
    };
    assert_invalid(
        store
            .query(
                Query::partition(&pk)
                    .on_gsi1()
                    .after(Some(cursor_without_gsi1)),
            )
            .await,
        "a gsi1 query whose cursor holds no gsi1 key",
    );
    assert_invalid(
        store
            .transact(vec![WriteOp::Put {
                item: item(&pk, ""),
                condition: Condition::Always,
            }])
            .await,
        "a transaction putting an empty sort key",
    );
    assert_eq!(
        get(store, &key).await,
        None,
        "an invalid transaction writes nothing"
    );

    assert_invalid(
        store.put(item("", "k"), Condition::Always).await,
        "put with an empty pk",
    );
    assert_invalid(
        store.put(item(&pk, ""), Condition::Always).await,
        "put with an empty sk",
    );
    assert_invalid(
        store
            .put(
                item(&pk, "k").with_gsi1(Key::new(&pk, "")),
                Condition::Always,
            )
            .await,
        "put with an empty gsi1 sort key",
    );
    assert_invalid(
        store.query(Query::partition(&pk).limit(0)).await,
        "a query with limit 0",
    );

    for (empty, what) in [
        (Key::new("", "k"), "an empty pk"),
        (Key::new(&pk, ""), "an empty sk"),
    ] {
        assert_invalid(store.get(&empty).await, &format!("get of {what}"));
        assert_invalid(
            store.delete(&empty, Condition::Always).await,
            &format!("delete of {what}"),
        );
        for op in [
            WriteOp::Check {
                key: empty.clone(),
                condition: Condition::Absent,
            },
            WriteOp::Delete {
                key: empty.clone(),
                condition: Condition::Always,
            },
            WriteOp::Add {
                key: empty.clone(),
                delta: 1,
            },
        ] {
            assert_invalid(
                store.transact(vec![op.clone()]).await,
                &format!("{op:?} of {what}"),
            );
        }
    }
}

pub async fn dynamodbs_size_limits_are_held(store: &dyn Store) {
    let pk = partition("limits");
    let key = |sk: &str| Key::new(&pk, sk);
    // An item of exactly `size` bytes by DynamoDB's rules.
    let sized = |sk: &str, size: usize| {
        let empty = Item::new(key(sk), json!({ "blob": "" }));
        let blob = "x".repeat(size - item_size(&empty));
        let item = Item::new(key(sk), json!({ "blob": blob }));
        assert_eq!(item_size(&item), size);
        item
    };

    let over = sized("over", MAX_ITEM_BYTES + 1);
    assert_invalid_naming(
        store.put(over.clone(), Condition::Always).await,
        MAX_ITEM_BYTES,
        "put of an item 1 byte over 400 KB",
    );
    assert_invalid_naming(
        store
            .transact(vec![WriteOp::Put {
                item: over,
                condition: Condition::Always,
            }])
            .await,
        MAX_ITEM_BYTES,
        "a transaction putting an item 1 byte over 400 KB",
    );
    assert_eq!(get(store, &key("over")).await, None, "nothing written");
    let under = sized("under", 300 * 1024);
    put(store, under.clone(), Condition::Absent).await;
    assert_eq!(
        get(store, &key("under")).await,
        Some(under),
        "a 300 KB item"
    );

    // Key limits count bytes, not characters: "é" is 2 bytes.
    let longest_pk = "é".repeat(MAX_PARTITION_KEY_BYTES / 2);
    let longest_sk = "é".repeat(MAX_SORT_KEY_BYTES / 2);
    let longest = Item::new(Key::new(&longest_pk, &longest_sk), json!({}))
        .with_gsi1(Key::new(&longest_pk, &longest_sk));
    put(store, longest.clone(), Condition::Always).await;
    assert_eq!(
        get(store, &longest.key).await,
        Some(longest),
        "keys at their limits"
    );
    let long_pk = format!("{longest_pk}x");
    let long_sk = format!("{longest_sk}x");
    let cases = [
        (Key::new(&long_pk, "k"), None, MAX_PARTITION_KEY_BYTES, "pk"),
        (key(&long_sk), None, MAX_SORT_KEY_BYTES, "sk"),
        (
            key("k"),
            Some(Key::new(&long_pk, "g")),
            MAX_PARTITION_KEY_BYTES,
            "gsi1 pk",
        ),
        (
            key("k"),
            Some(Key::new("g", &long_sk)),
            MAX_SORT_KEY_BYTES,
            "gsi1 sk",
        ),
    ];
    for (key, gsi1, limit, what) in cases {
        let mut oversize = Item::new(key.clone(), json!({}));
        oversize.gsi1 = gsi1.clone();
        let what = format!("a {what} 1 byte over {limit} bytes");
        assert_invalid_naming(
            store.put(oversize.clone(), Condition::Always).await,
            limit,
            &format!("put with {what}"),
        );
        assert_invalid_naming(
            store
                .transact(vec![WriteOp::Put {
                    item: oversize,
                    condition: Condition::Always,
                }])
                .await,
            limit,
            &format!("a transaction putting {what}"),
        );
        if gsi1.is_none() {
            assert_invalid_naming(store.get(&key).await, limit, &format!("get of {what}"));
            assert_invalid_naming(
                store.delete(&key, Condition::Always).await,
                limit,
                &format!("delete of {what}"),
            );
            let check = WriteOp::Check {
                key,
                condition: Condition::Absent,
            };
            assert_invalid_naming(
                store.transact(vec![check]).await,
                limit,
                &format!("a transaction checking {what}"),
            );
        }
    }

    // Eleven items of 390 KB: each within its limit, together over 4 MB.
    let puts: Vec<WriteOp> = (0..11)
        .map(|n| WriteOp::Put {
            item: sized(&format!("big#{n:02}"), 390 * 1024),
            condition: Condition::Absent,
        })
        .collect();
    assert_invalid_naming(
        store.transact(puts).await,
        MAX_TRANSACTION_BYTES,
        "a transaction writing over 4 MB",
    );
    assert_eq!(
        get(store, &key("big#00")).await,
        None,
        "an oversize transaction writes nothing"
    );
}

// ------------------------------------------------------------------ embedded only

pub async fn pages_are_full_until_the_last(store: &dyn Store) {
    let (pk, gsi, live) = long_expired_tail(store).await;
    for q in four_walks(&pk, &gsi) {
        for limit in [1, 2, 5] {
            let items = walk(store, q.clone().limit(limit), Pages::Full).await;
            assert_eq!(
                sort_keys(&items),
                in_walk_order(&q, &live),
                "{q:?}: pages of {limit}"
            );
        }
    }
}

pub async fn concurrent_adds_lose_nothing(store: &dyn Store) {
    const WRITERS: i64 = 20;
    const ADDS: i64 = 5;
    let key = Key::new(partition("add-concurrent"), "counter");
    // Even writers add 2, odd ones take 1 away.
    let delta = |writer: i64| if writer % 2 == 0 { 2 } else { -1 };
    let writers = (0..WRITERS).map(|writer| {
        let key = &key;
        async move {
            for _ in 0..ADDS {
                add(store, key, delta(writer)).await;
            }
        }
    });
    futures_util::future::join_all(writers).await;
    let expected: i64 = (0..WRITERS).map(|writer| ADDS * delta(writer)).sum();
    assert_eq!(
        counter(store, &key).await,
        Some(expected),
        "{WRITERS} writers adding {ADDS} times each at once"
    );
}

pub async fn concurrent_conditional_writes_have_one_winner(store: Arc<dyn Store>) {
    const WRITERS: usize = 20;
    let key = Key::new(partition("contended"), "k");
    let start = Arc::new(tokio::sync::Barrier::new(WRITERS));

    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        let item = Item::new(key.clone(), json!({ "writer": writer }));
        writers.spawn(async move {
            start.wait().await;
            let result = store.put(item.clone(), Condition::Absent).await;
            (item, result)
        });
    }
    let results = writers.join_all().await;
    let winners: Vec<&Item> = results
        .iter()
        .filter(|(_, result)| result.is_ok())
        .map(|(item, _)| item)
        .collect();
    assert_eq!(
        winners.len(),
        1,
        "one put Absent of {WRITERS} wins: {results:?}"
    );
    let winner = winners[0].clone();
    for (_, result) in results.into_iter().filter(|(_, result)| result.is_err()) {
        assert_condition_failed(result, Some(&winner), "a concurrent put Absent that lost");
    }
    assert_eq!(get(store.as_ref(), &key).await, Some(winner.clone()));

    let mut takers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (store, start, key) = (Arc::clone(&store), Arc::clone(&start), key.clone());
        takers.spawn(async move {
            start.wait().await;
            store.delete(&key, Condition::Present).await
        });
    }
    let results = takers.join_all().await;
    let mut taken = 0;
    for result in results {
        match result {
            Ok(found) => {
                assert_eq!(found, Some(winner.clone()), "the delete that took the item");
                taken += 1;
            }
            failed => {
                assert_condition_failed(failed, None, "a concurrent delete Present that lost")
            }
        }
    }
    assert_eq!(taken, 1, "one delete Present of {WRITERS} takes the item");
}
