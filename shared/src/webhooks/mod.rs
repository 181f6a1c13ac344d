//! Webhooks in: what the providers send, how it is authenticated, and the envelope that
//! carries it through the queue to the worker.
//!
//! The ingest functions only check, wrap and enqueue — no storage on that path — so a
//! provider gets its 200 quickly and nothing accepted is lost: once SendMessage has
//! succeeded the worker applies it or it ends in the dead-letter queue.

pub mod deferral;
pub mod envelope;
pub mod mercadolivre;
pub mod meta;
pub mod parking;
pub mod receipts;

pub use envelope::{Envelope, Source};

/// Why a webhook was refused. Nothing is enqueued for it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("the body is not a valid {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("the notification is for application {0}, not ours")]
    ForeignApplication(u64),
    #[error("the signature is missing or does not match the body")]
    BadSignature,
}

impl From<WebhookError> for crate::http::ApiError {
    fn from(error: WebhookError) -> Self {
        use crate::http::ApiError;
        match error {
            WebhookError::Malformed { .. } => ApiError::BadRequest(error.to_string()),
            WebhookError::ForeignApplication(_) => ApiError::Denied(error.to_string()),
            WebhookError::BadSignature => ApiError::Unauthorized,
        }
    }
}

/// Why envelopes could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error("envelope: {0}")]
    Envelope(#[from] serde_json::Error),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
}

impl From<EnqueueError> for crate::http::ApiError {
    /// A provider answered 503 delivers the whole webhook again; envelopes already sent
    /// are applied once anyway (the worker dedupes by key).
    fn from(error: EnqueueError) -> Self {
        use crate::http::ApiError;
        use crate::queue::QueueError;
        match error {
            // Our envelope of an accepted body: a change too big for one message.
            EnqueueError::Queue(QueueError::Invalid(reason)) => ApiError::BadRequest(format!(
                "a change of this webhook cannot be queued: {reason}"
            )),
            EnqueueError::Envelope(error) => ApiError::Internal(format!("envelope: {error}")),
            EnqueueError::Queue(other) => {
                ApiError::Unavailable(format!("enqueueing a webhook: {other}"))
            }
        }
    }
}

/// Sends `envelopes` to the webhook queue, [`crate::queue::MAX_BATCH`] at a time.
pub async fn enqueue(
    queue: &dyn crate::queue::Queue,
    envelopes: &[Envelope],
) -> Result<(), EnqueueError> {
    for batch in envelopes.chunks(crate::queue::MAX_BATCH) {
        let messages = batch
            .iter()
            .map(Envelope::to_message)
            .collect::<Result<Vec<_>, _>>()?;
        queue.send_batch(messages).await?;
    }
    Ok(())
}

/// Counts a webhook by source and outcome (`Accepted`, `Rejected`, …) as an EMF metric.
pub fn count(source: Source, outcome: &str) {
    crate::telemetry::emf::emit(
        &[("Source", source.as_str()), ("Outcome", outcome)],
        &[crate::telemetry::emf::Metric::count("Webhooks", 1.0)],
    );
}
