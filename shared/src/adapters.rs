//! The adapters a Lambda function uses, built once at init: DynamoDB and SQS. (The local
//! runner builds its own mix of embedded and AWS adapters, so Lambda binaries never link
//! the embedded database.)

use std::sync::Arc;

use crate::config::{Config, ConfigError, QueueBackend, StoreBackend};
use crate::queue::Queue;
use crate::queue::sqs::SqsQueue;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;

#[derive(Clone)]
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub webhook_queue: Arc<dyn Queue>,
}

impl Adapters {
    /// DynamoDB and SQS, as `config` names them, through the SDK configuration `sdk`.
    pub fn aws(config: &Config, sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let StoreBackend::DynamoDb { table } = &config.store else {
            return Err(ConfigError::Invalid {
                name: "STORE_BACKEND",
                reason: "a Lambda function stores in DynamoDB".into(),
            });
        };
        let QueueBackend::Sqs {
            queue_url,
            dead_letter_url,
        } = &config.queue
        else {
            return Err(ConfigError::Invalid {
                name: "QUEUE_BACKEND",
                reason: "a Lambda function queues in SQS".into(),
            });
        };
        Ok(Self {
            store: Arc::new(dynamo_store(sdk, table)),
            webhook_queue: Arc::new(sqs_queue(sdk, queue_url, dead_letter_url.clone())),
        })
    }
}

pub fn dynamo_store(sdk: &aws_config::SdkConfig, table: &str) -> DynamoStore {
    DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), table)
}

pub fn sqs_queue(
    sdk: &aws_config::SdkConfig,
    queue_url: &str,
    dead_letter_url: Option<String>,
) -> SqsQueue {
    SqsQueue::new(aws_sdk_sqs::Client::new(sdk), queue_url, dead_letter_url)
}
