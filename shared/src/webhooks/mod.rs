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

use crate::telemetry::emf;

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

/// The metric every webhook is counted in, by `Source` and `Outcome`.
pub const METRIC: &str = "Webhooks";

/// Counts a webhook by source and outcome (`Accepted`, `Deferred`, `Parked`, …) in
/// [`METRIC`].
pub fn count(source: Source, outcome: &str) {
    emf::emit(
        &[("Source", source.as_str()), ("Outcome", outcome)],
        &[emf::Metric::count(METRIC, 1.0)],
    );
}

/// Counts a webhook refused at ingest (Outcome `Rejected`), in total and by `Reason`.
pub fn count_rejected(source: Source, error: &crate::http::ApiError) {
    emf::emit_detailed(
        &[("Source", source.as_str()), ("Outcome", "Rejected")],
        ("Reason", rejection_reason(error)),
        &[emf::Metric::count(METRIC, 1.0)],
    );
}

/// Counts an envelope the worker is done with (Outcome `Processed`), in total and by
/// `Result`: what applying it did (`Created`, `Updated`, `Unchanged`, `UnknownMessage`)
/// or why nothing was to be done (`UnlinkedSeller`, `UnlinkedChannel`, `IgnoredTopic`,
/// `IgnoredField`).
pub fn count_processed(source: Source, result: &str) {
    emf::emit_detailed(
        &[("Source", source.as_str()), ("Outcome", "Processed")],
        ("Result", result),
        &[emf::Metric::count(METRIC, 1.0)],
    );
}

/// (Source, Outcome, Reason or Result) of each [`METRIC`] line among `lines`, checking
/// that each publishes its total by (Source, Outcome) and, with a Reason or Result, its
/// part by that as well.
#[cfg(test)]
pub(crate) fn counted(lines: &[serde_json::Value]) -> Vec<(String, String, String)> {
    use emf::capture;
    capture::of(lines, METRIC)
        .into_iter()
        .map(|line| {
            let text = |key: &str| line[key].as_str().map(str::to_owned);
            let detail = ["Reason", "Result"]
                .into_iter()
                .find_map(|key| text(key).map(|value| (key, value)));
            let mut sets = vec![serde_json::json!(["Source", "Outcome"])];
            if let Some((key, _)) = &detail {
                sets.push(serde_json::json!(["Source", "Outcome", key]));
            }
            assert_eq!(capture::dimension_sets(line), serde_json::json!(sets));
            assert_eq!(line[METRIC], 1.0);
            (
                text("Source").unwrap_or_default(),
                text("Outcome").unwrap_or_default(),
                detail.map(|(_, value)| value).unwrap_or_default(),
            )
        })
        .collect()
}

/// Why an ingest function refused a webhook, as the `Reason` of its count: the answer's
/// kind, never its text (a bounded set of values).
pub fn rejection_reason(error: &crate::http::ApiError) -> &'static str {
    use crate::http::ApiError;
    match error {
        ApiError::Unauthorized => "BadSignature",
        ApiError::Denied(_) => "ForeignApplication",
        ApiError::BadRequest(_) => "Malformed",
        ApiError::PayloadTooLarge { .. } => "TooLarge",
        _ => "Other",
    }
}
