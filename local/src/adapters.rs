//! The local runner's adapters: each embedded unless configured to use the real
//! service. The AWS SDK configuration and the embedded database are made once, and only
//! if some adapter uses them.

use std::sync::Arc;

use shared::adapters::{Adapters, dynamo_store, sqs_queue};
use shared::config::{Config, QueueBackend, StoreBackend};
use shared::embedded_db::{EmbeddedDb, EmbeddedError};
use shared::queue::Queue;
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::store::Store;
use shared::store::embedded::EmbeddedStore;
use tokio::sync::OnceCell;

pub async fn build(config: &Config) -> Result<Adapters, EmbeddedError> {
    let sdk = OnceCell::new();
    let aws = || sdk.get_or_init(|| shared::aws::sdk_config(&config.tls));
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
        StoreBackend::DynamoDb { table } => Arc::new(dynamo_store(aws().await, table)),
        StoreBackend::Embedded => Arc::new(EmbeddedStore::open(embedded_db()?)?),
    };
    let webhook_queue: Arc<dyn Queue> = match &config.queue {
        QueueBackend::Sqs {
            queue_url,
            dead_letter_url,
        } => Arc::new(sqs_queue(aws().await, queue_url, dead_letter_url.clone())),
        QueueBackend::Embedded { max_receive_count } => {
            Arc::new(EmbeddedQueue::open_with_dead_letters(
                embedded_db()?,
                WEBHOOK_QUEUE,
                WEBHOOK_DEAD_LETTER_QUEUE,
                *max_receive_count,
            )?)
        }
    };
    Ok(Adapters {
        store,
        webhook_queue,
    })
}
