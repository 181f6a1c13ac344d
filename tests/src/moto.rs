//! DynamoDB and SQS through moto's server, for the adapters' conformance runs.
//!
//! The README's test command starts `moto_server` on loopback and exports
//! `MOTO_ENDPOINT`. Without it these helpers panic: a run that was meant to test the
//! real protocols must fail, never skip.
//!
//! Every table and queue gets a unique name, so tests can share one moto process
//! concurrently and never need a reset.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, ProvisionedThroughput,
    ScalarAttributeType, TimeToLiveSpecification, WriteRequest,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_norway::Value;

/// moto's base URL, from `MOTO_ENDPOINT`. Panics when it is unset or nothing answers
/// there.
pub fn endpoint() -> String {
    static CHECKED: OnceLock<String> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            crate::emulator::required("MOTO_ENDPOINT", "moto")
                .trim_end_matches('/')
                .to_owned()
        })
        .clone()
}

/// The SDK configuration for moto: its endpoint, us-east-1, dummy credentials.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await
}

pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config().await)
}

pub async fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

// ------------------------------------------------------------------ the table

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
}

/// `Resources.Table.Properties` of template.yaml. The file's CloudFormation tags (`!Ref`,
/// `!GetAtt`, ...) parse as tagged values; the table's properties must not need them.
fn table_properties() -> Value {
    let path = template_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let template: Value = serde_norway::from_str(&text)
        .unwrap_or_else(|error| panic!("{} is not YAML: {error}", path.display()));
    template
        .get("Resources")
        .and_then(|resources| resources.get("Table"))
        .and_then(|table| table.get("Properties"))
        .cloned()
        .unwrap_or_else(|| panic!("{} declares no Resources.Table.Properties", path.display()))
}

fn field<'v>(value: &'v Value, name: &str, context: &str) -> &'v Value {
    value
        .get(name)
        .unwrap_or_else(|| panic!("template.yaml Table: {context} has no {name}"))
}

fn text<'v>(value: &'v Value, name: &str, context: &str) -> &'v str {
    field(value, name, context)
        .as_str()
        .unwrap_or_else(|| panic!("template.yaml Table: {context}.{name} is not a plain string"))
}

fn list<'v>(value: &'v Value, name: &str, context: &str) -> &'v [Value] {
    field(value, name, context)
        .as_sequence()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("template.yaml Table: {context}.{name} is not a list"))
}

fn key_schema(value: &Value, context: &str) -> Vec<KeySchemaElement> {
    list(value, "KeySchema", context)
        .iter()
        .map(|element| {
            KeySchemaElement::builder()
                .attribute_name(text(element, "AttributeName", "KeySchema"))
                .key_type(KeyType::from(text(element, "KeyType", "KeySchema")))
                .build()
                .unwrap_or_else(|error| panic!("{context} KeySchema: {error}"))
        })
        .collect()
}

fn throughput(value: &Value, context: &str) -> Option<ProvisionedThroughput> {
    let throughput = value.get("ProvisionedThroughput")?;
    let units = |name: &str| {
        field(throughput, name, context)
            .as_u64()
            .and_then(|units| i64::try_from(units).ok())
            .unwrap_or_else(|| panic!("template.yaml Table: {context}.{name} is not a number"))
    };
    let built = ProvisionedThroughput::builder()
        .read_capacity_units(units("ReadCapacityUnits"))
        .write_capacity_units(units("WriteCapacityUnits"))
        .build()
        .unwrap_or_else(|error| panic!("{context} ProvisionedThroughput: {error}"));
    Some(built)
}

fn global_secondary_index(value: &Value) -> GlobalSecondaryIndex {
    let name = text(value, "IndexName", "GlobalSecondaryIndexes");
    let projection = field(value, "Projection", name);
    let non_key = projection.get("NonKeyAttributes").map(|attributes| {
        attributes
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|attribute| attribute.as_str().map(str::to_owned))
            .collect::<Vec<_>>()
    });
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(key_schema(value, name)))
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::from(text(
                    projection,
                    "ProjectionType",
                    name,
                )))
                .set_non_key_attributes(non_key)
                .build(),
        )
        .set_provisioned_throughput(throughput(value, name))
        .build()
        .unwrap_or_else(|error| panic!("GlobalSecondaryIndex {name}: {error}"))
}

/// Creates a uniquely named table as template.yaml declares `Table` (key schema,
/// attribute definitions, global secondary indexes, billing mode, then its TTL), and
/// returns its name.
pub async fn create_table() -> String {
    let properties = table_properties();
    assert!(
        properties.get("LocalSecondaryIndexes").is_none(),
        "template.yaml Table has LocalSecondaryIndexes: teach tests/src/moto.rs to create them"
    );
    let definitions = list(&properties, "AttributeDefinitions", "Properties")
        .iter()
        .map(|definition| {
            AttributeDefinition::builder()
                .attribute_name(text(definition, "AttributeName", "AttributeDefinitions"))
                .attribute_type(ScalarAttributeType::from(text(
                    definition,
                    "AttributeType",
                    "AttributeDefinitions",
                )))
                .build()
                .unwrap_or_else(|error| panic!("AttributeDefinitions: {error}"))
        })
        .collect();
    let indexes = properties.get("GlobalSecondaryIndexes").map(|_| {
        list(&properties, "GlobalSecondaryIndexes", "Properties")
            .iter()
            .map(global_secondary_index)
            .collect()
    });
    let billing = properties
        .get("BillingMode")
        .map(|_| BillingMode::from(text(&properties, "BillingMode", "Properties")));

    let name = unique_name("sellerhub-table");
    let client = dynamodb().await;
    client
        .create_table()
        .table_name(&name)
        .set_attribute_definitions(Some(definitions))
        .set_key_schema(Some(key_schema(&properties, "Properties")))
        .set_global_secondary_indexes(indexes)
        .set_billing_mode(billing)
        .set_provisioned_throughput(throughput(&properties, "Properties"))
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "CreateTable on moto: {}",
                aws_sdk_dynamodb::error::DisplayErrorContext(&error)
            )
        });

    if let Some(ttl) = properties.get("TimeToLiveSpecification") {
        let context = "TimeToLiveSpecification";
        let enabled = field(ttl, "Enabled", context)
            .as_bool()
            .unwrap_or_else(|| panic!("template.yaml Table: {context}.Enabled is not a boolean"));
        let specification = TimeToLiveSpecification::builder()
            .attribute_name(text(ttl, "AttributeName", context))
            .enabled(enabled)
            .build()
            .unwrap_or_else(|error| panic!("{context}: {error}"));
        client
            .update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(specification)
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "UpdateTimeToLive on moto: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                )
            });
    }
    name
}

/// A table's primary keys (pk, sk), read by scanning it.
pub async fn table_keys(table: &str) -> HashSet<(String, String)> {
    let client = dynamodb().await;
    let mut keys = HashSet::new();
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .projection_expression("pk, sk")
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap_or_else(|error| {
                panic!(
                    "Scan on moto: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                )
            });
        for item in page.items() {
            let text = |name: &str| {
                item.get(name)
                    .and_then(|value| value.as_s().ok())
                    .unwrap_or_else(|| panic!("an item without a string {name}"))
                    .clone()
            };
            keys.insert((text("pk"), text("sk")));
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            return keys;
        }
    }
}

/// Deletes every item of `table` whose key is not in `keep`.
///
/// For benches that write a growing table on moto: moto copies the whole table on every
/// TransactWriteItems (to roll it back on a cancellation), so its calls slow down as the
/// table grows, which DynamoDB's do not. Emptying it of what each step wrote keeps every
/// step's work the same.
pub async fn delete_all_but(table: &str, keep: &HashSet<(String, String)>) {
    let client = dynamodb().await;
    let doomed: Vec<_> = table_keys(table)
        .await
        .into_iter()
        .filter(|key| !keep.contains(key))
        .collect();
    for chunk in doomed.chunks(25) {
        let requests = chunk
            .iter()
            .map(|(pk, sk)| {
                let key = DeleteRequest::builder()
                    .key("pk", AttributeValue::S(pk.clone()))
                    .key("sk", AttributeValue::S(sk.clone()))
                    .build()
                    .expect("a key");
                WriteRequest::builder().delete_request(key).build()
            })
            .collect();
        let mut unprocessed = HashMap::from([(table.to_owned(), requests)]);
        while !unprocessed.is_empty() {
            unprocessed = client
                .batch_write_item()
                .set_request_items(Some(unprocessed))
                .send()
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "BatchWriteItem on moto: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                    )
                })
                .unprocessed_items
                .unwrap_or_default();
        }
    }
}

// ------------------------------------------------------------------ the queues

/// Creates a uniquely named queue and its dead-letter queue, which the queue redrives
/// to after `max_receive_count` receives. Returns (queue url, dead-letter queue url).
pub async fn create_queues(max_receive_count: u32) -> (String, String) {
    let client = sqs().await;
    let name = unique_name("sellerhub-queue");
    let dead_letter_url = create_queue(&client, &format!("{name}-dlq"), None).await;
    let dead_letter_arn = client
        .get_queue_attributes()
        .queue_url(&dead_letter_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "GetQueueAttributes on moto: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&error)
            )
        })
        .attributes
        .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_else(|| panic!("moto returned no QueueArn"));
    let redrive_policy = serde_json::json!({
        "deadLetterTargetArn": dead_letter_arn,
        "maxReceiveCount": max_receive_count,
    });
    let queue_url = create_queue(&client, &name, Some(redrive_policy.to_string())).await;
    (queue_url, dead_letter_url)
}

async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    redrive_policy: Option<String>,
) -> String {
    let mut request = client.create_queue().queue_name(name);
    if let Some(policy) = redrive_policy {
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy);
    }
    request
        .send()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "CreateQueue on moto: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&error)
            )
        })
        .queue_url
        .unwrap_or_else(|| panic!("CreateQueue on moto returned no queue url"))
}
