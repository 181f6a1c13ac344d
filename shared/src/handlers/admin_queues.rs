//! GET /v1/admin/queues (served by the `health` function): the webhook queue's health
//! for a signed-in operator — its depths (ready, in flight, delayed, dead letters, the
//! oldest message's age where the backend knows it), the verdict (healthy while fewer
//! than `HEALTH_MAX_WAITING` wait and fewer than `HEALTH_MAX_DEAD_LETTERS` died), the
//! caller's parked webhooks, and how to move dead letters back.
//!
//! Any signed-in seller may read it: depths are the same for everyone and name nobody;
//! the parked count is the caller's own.

use std::sync::Arc;

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;

use crate::auth::Authenticator;
use crate::config::HealthSettings;
use crate::http::{ApiError, json};
use crate::queue::{Queue, QueueStats};
use crate::webhooks::parking::Parking;

/// Parked webhooks are counted up to this many.
const PARKED_COUNTED: usize = 1000;

pub struct AdminQueues {
    authenticator: Authenticator,
    queue: Arc<dyn Queue>,
    parking: Parking,
    settings: HealthSettings,
}

#[derive(Serialize)]
struct QueuesBody {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    webhooks: QueueStats,
    /// The caller's webhooks waiting for their seller to sign in again (counted up to
    /// 1000).
    parked: usize,
    thresholds: Thresholds,
    redrive: Redrive,
}

#[derive(Serialize)]
struct Thresholds {
    max_waiting: u64,
    max_dead_letters: u64,
}

#[derive(Serialize)]
struct Redrive {
    aws: &'static str,
    local: &'static str,
}

impl AdminQueues {
    pub fn new(
        authenticator: Authenticator,
        queue: Arc<dyn Queue>,
        parking: Parking,
        settings: HealthSettings,
    ) -> Self {
        Self {
            authenticator,
            queue,
            parking,
            settings,
        }
    }

    pub async fn handle(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        let principal = self.authenticator.authenticate(request).await?;
        let (stats, parked) = tokio::join!(
            self.queue.stats(),
            self.parking.count(principal.tenant(), PARKED_COUNTED)
        );
        let stats =
            stats.map_err(|error| ApiError::Unavailable(format!("queue stats: {error}")))?;
        let reason = self
            .settings
            .queue_verdict(stats.visible, stats.dead_letters.unwrap_or(0));
        json(
            StatusCode::OK,
            &QueuesBody {
                status: if reason.is_some() {
                    "unhealthy"
                } else {
                    "healthy"
                },
                reason,
                webhooks: stats,
                parked: parked?,
                thresholds: Thresholds {
                    max_waiting: self.settings.max_waiting,
                    max_dead_letters: self.settings.max_dead_letters,
                },
                redrive: Redrive {
                    aws: "aws sqs start-message-move-task --source-arn <WebhookDeadLetterQueue ARN>",
                    local: "cargo run -p local -- redrive",
                },
            },
        )
    }
}
