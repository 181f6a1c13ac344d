//! The storage kernel's conformance suite against the DynamoDB adapter, on moto, with a
//! table created from template.yaml's definition.

use sellerhub_tests::moto;
use shared::store::dynamodb::DynamoStore;
use shared::store::{Key, Store, StoreError, conformance};

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
