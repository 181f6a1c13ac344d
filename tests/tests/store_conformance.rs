//! The storage kernel's conformance suite against the DynamoDB adapter, on moto, with a
//! table created from template.yaml's definition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::{
    BeforeDeserializationInterceptorContextMut, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use sellerhub_tests::moto;
use serde_json::json;
use shared::clock::{Clock, SystemClock};
use shared::events::Events;
use shared::store::dynamodb::{DynamoStore, MAX_QUERY_REQUESTS};
use shared::store::{Condition, Item, Key, Query, Store, StoreError, WriteOp, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_store_passes_the_conformance_suite() {
    let table = moto::create_table().await;
    let store = DynamoStore::new(moto::dynamodb().await, table);
    conformance::run_all(&store).await;
}

#[tokio::test]
async fn a_missing_table_is_unavailable_not_a_panic() {
    let store = DynamoStore::new(moto::dynamodb().await, "no-such-table");
    let result = store.get(&Key::new("p", "s")).await;
    match result {
        Err(StoreError::Unavailable(message)) => assert!(
            message.contains("ResourceNotFoundException"),
            "the message names the error: {message}"
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_endpoint_is_unavailable_without_secrets_in_the_message() {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url("http://127.0.0.1:1")
        .region(aws_config::Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), "table");
    match store.get(&Key::new("p", "s")).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(
                message.starts_with("GetItem: "),
                "names the operation: {message}"
            );
            assert!(
                message.contains("Connection refused"),
                "names the cause: {message}"
            );
            // test_credentials() uses these dummy values; a real key must never show up either.
            assert!(!message.contains("ANOTREAL"), "no credentials: {message}");
            assert!(
                !message.contains("notrealrnrELgWzOk3IfjzDKtFBhDby"),
                "no credentials: {message}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

// ------------------------------------------------------------------ the wire

/// What a client's requests looked like on the wire, and a way to lose an answer.
#[derive(Debug, Default)]
struct Wire {
    /// The Limit of each Query request sent.
    query_limits: Mutex<Vec<i64>>,
    /// Every request sent: its operation (`GetItem`, …) and its body.
    requests: Mutex<Vec<(String, serde_json::Value)>>,
    /// When set, the next answer is replaced by a 500 (the write behind it done), as
    /// when a response is lost: the SDK's standard retries send the request again.
    lose_next_answer: AtomicBool,
}

impl Wire {
    fn take_query_limits(&self) -> Vec<i64> {
        std::mem::take(&mut self.query_limits.lock().unwrap())
    }
}

#[derive(Debug)]
struct WireTap(Arc<Wire>);

impl Intercept for WireTap {
    fn name(&self) -> &'static str {
        "WireTap"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_slice(request.body().bytes().unwrap_or_default())?;
        if target.ends_with(".Query") {
            let limit = body["Limit"].as_i64().ok_or("a Query without a Limit")?;
            self.0.query_limits.lock().unwrap().push(limit);
        }
        let operation = target.rsplit('.').next().unwrap_or_default().to_owned();
        self.0.requests.lock().unwrap().push((operation, body));
        Ok(())
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0.lose_next_answer.swap(false, Ordering::SeqCst) {
            *context.response_mut().status_mut() = 500.try_into()?;
        }
        Ok(())
    }
}

/// A DynamoStore on a fresh table whose client's requests go through a [`WireTap`].
async fn tapped_store() -> (DynamoStore, Arc<Wire>) {
    let table = moto::create_table().await;
    let wire = Arc::new(Wire::default());
    let config = aws_sdk_dynamodb::config::Builder::from(&moto::sdk_config().await)
        .interceptor(WireTap(Arc::clone(&wire)))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    (DynamoStore::new(client, table), wire)
}

#[tokio::test]
async fn a_query_over_a_long_expired_tail_makes_a_bounded_number_of_requests() {
    let (store, wire) = tapped_store().await;
    let now = SystemClock.now_secs();
    // Expired items stay in moto, as in DynamoDB until its TTL process deletes them.
    let indexed =
        |sk: &str| Item::new(Key::new("tail", sk), json!({})).with_gsi1(Key::new("tail-gsi", sk));
    for sk in ["a", "b", "z"] {
        store.put(indexed(sk), Condition::Absent).await.unwrap();
    }
    for n in 0..100 {
        let expired = indexed(&format!("m#{n:03}")).expiring_at(now - 60);
        store.put(expired, Condition::Always).await.unwrap();
    }

    let walks = [
        (Query::partition("tail"), ["a", "b", "z"]),
        (Query::partition("tail").backward(), ["z", "b", "a"]),
        (Query::partition("tail-gsi").on_gsi1(), ["a", "b", "z"]),
    ];
    for (walk, expected) in walks {
        let mut q = walk.limit(2);
        let mut found = Vec::new();
        let mut cut_short = 0;
        wire.take_query_limits();
        for call in 0.. {
            assert!(call < 100, "{q:?}: the walk does not end");
            let page = store.query(q.clone()).await.unwrap();
            let limits = wire.take_query_limits();
            assert!(
                !limits.is_empty() && limits.len() <= MAX_QUERY_REQUESTS,
                "{q:?}: one call made {} requests",
                limits.len()
            );
            assert!(
                limits.iter().all(|limit| *limit == 3),
                "{q:?}: each request asks for the page and one more item: {limits:?}"
            );
            if page.items.len() < 2 && page.next.is_some() {
                assert_eq!(
                    limits.len(),
                    MAX_QUERY_REQUESTS,
                    "only the cap cuts a page short"
                );
                cut_short += 1;
            }
            found.extend(page.items.into_iter().map(|item| item.key.sk));
            match page.next {
                Some(cursor) => q.after = Some(cursor),
                None => break,
            }
        }
        assert_eq!(found, expected, "{q:?}: each live item once, in order");
        assert!(
            cut_short > 0,
            "{q:?}: the tail is long enough to meet the cap"
        );
    }
}

// ------------------------------------------------------------------ adds

/// Concurrent adds lose nothing only if each goes to DynamoDB as one ADD, which DynamoDB
/// applies atomically: never as a read and a write. (moto's ADD is not atomic, so the
/// conformance suite holds only the embedded store to concurrent adds.)
#[tokio::test]
async fn an_add_goes_to_dynamodb_as_one_atomic_add() {
    let (store, wire) = tapped_store().await;
    let key = Key::new("counters", "unread");
    for delta in [1, -1, 5] {
        let add = WriteOp::Add {
            key: key.clone(),
            delta,
        };
        store.transact(vec![add]).await.unwrap();
    }
    let requests = std::mem::take(&mut *wire.requests.lock().unwrap());
    let operations: Vec<&str> = requests.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        operations, ["TransactWriteItems"; 3],
        "one request per add, nothing read first"
    );
    for ((_, body), delta) in requests.iter().zip([1, -1, 5]) {
        let items = body["TransactItems"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        let update = &items[0]["Update"];
        let expression = update["UpdateExpression"].as_str().unwrap();
        assert!(
            expression.ends_with("ADD #counter :delta"),
            "an ADD: {expression}"
        );
        assert_eq!(update["ExpressionAttributeNames"]["#counter"], "counter");
        assert_eq!(
            update["ExpressionAttributeValues"][":delta"],
            json!({ "N": delta.to_string() })
        );
    }
    let counter = store.get(&key).await.unwrap().unwrap().counter;
    assert_eq!(counter, 5);
}

// ------------------------------------------------------------------ a lost answer

#[tokio::test]
async fn a_put_retried_after_its_answer_was_lost_fails_with_its_own_item() {
    let (store, wire) = tapped_store().await;
    let item = Item::new(Key::new("lost", "answer"), json!({"write_id": "w-1"}));
    wire.lose_next_answer.store(true, Ordering::SeqCst);
    match store.put(item.clone(), Condition::Absent).await {
        Err(StoreError::ConditionFailed { current }) => assert_eq!(
            current.as_deref(),
            Some(&item),
            "the failure holds the item the first attempt wrote"
        ),
        other => panic!("expected the retry to fail its condition, got {other:?}"),
    }
    assert!(
        !wire.lose_next_answer.load(Ordering::SeqCst),
        "an answer was lost"
    );
}

#[tokio::test]
async fn an_event_whose_answer_was_lost_is_recorded_once() {
    let (store, wire) = tapped_store().await;
    let store = Arc::new(store);
    let events = Events::new(store.clone());
    wire.lose_next_answer.store(true, Ordering::SeqCst);
    events
        .record("t1", "question", json!({"n": 1}), SystemClock.now_secs())
        .await
        .expect("the retry recognises the event it wrote");
    assert!(
        !wire.lose_next_answer.load(Ordering::SeqCst),
        "an answer was lost"
    );
    let page = store
        .query(Query::partition("TENANT#t1").limit(10))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1, "one event: {:?}", page.items);
}
