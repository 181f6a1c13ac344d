//! Builds the adapters a configuration names, once, at init.

use std::sync::Arc;

use tokio::sync::OnceCell;

use crate::config::{Config, QueueBackend, StoreBackend};
use crate::embedded_db::{EmbeddedDb, EmbeddedError};
use crate::queue::Queue;
use crate::queue::embedded::EmbeddedQueue;
use crate::queue::sqs::SqsQueue;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;
use crate::store::embedded::EmbeddedStore;

/// The embedded queue names: what WEBHOOK_QUEUE_URL / WEBHOOK_DLQ_URL name in AWS.
pub const WEBHOOK_QUEUE: &str = "webhooks";
pub const WEBHOOK_DEAD_LETTER_QUEUE: &str = "webhooks-dlq";

#[derive(Clone)]
pub struct Adapters {
    pub store: Arc<dyn Store>,
    pub webhook_queue: Arc<dyn Queue>,
}

impl Adapters {
    /// Builds each adapter the configuration names; the AWS SDK configuration and the
    /// embedded database are made once, and only if some adapter uses them.
    pub async fn build(config: &Config) -> Result<Self, EmbeddedError> {
        let sdk = OnceCell::new();
        let aws = || sdk.get_or_init(crate::aws::sdk_config);
        let mut embedded: Option<EmbeddedDb> = None;
        let mut embedded_db = || -> Result<EmbeddedDb, EmbeddedError> {
            if let Some(db) = &embedded {
                return Ok(db.clone());
            }
            let db = EmbeddedDb::open(&config.data_dir)?;
            embedded = Some(db.clone());
            Ok(db)
        };

        let store: Arc<dyn Store> = match &config.store {
            StoreBackend::DynamoDb { table } => Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(aws().await),
                table,
            )),
            StoreBackend::Embedded => Arc::new(EmbeddedStore::open(embedded_db()?)?),
        };
        let webhook_queue: Arc<dyn Queue> = match &config.queue {
            QueueBackend::Sqs {
                queue_url,
                dead_letter_url,
            } => Arc::new(SqsQueue::new(
                aws_sdk_sqs::Client::new(aws().await),
                queue_url,
                dead_letter_url.clone(),
            )),
            QueueBackend::Embedded { max_receive_count } => {
                Arc::new(EmbeddedQueue::open_with_dead_letters(
                    embedded_db()?,
                    WEBHOOK_QUEUE,
                    WEBHOOK_DEAD_LETTER_QUEUE,
                    *max_receive_count,
                )?)
            }
        };
        Ok(Self {
            store,
            webhook_queue,
        })
    }
}
