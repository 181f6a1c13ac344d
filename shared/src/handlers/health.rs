//! `health`: GET /health — a check per dependency with its latency; 503 when any fails.
//! The result is cached for a few seconds so a load balancer's probes cost nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tokio::sync::Mutex;

use crate::config::HealthSettings;
use crate::http::{ApiError, json};
use crate::queue::{Queue, QueueStats};
use crate::store::{Key, Store};

/// A check slower than this fails.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Unhealthy,
}

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub status: Status,
    pub latency_ms: f64,
    /// Why it failed, in words safe to publish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueStats>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Checks {
    pub store: Check,
    pub queue: Check,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub status: Status,
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub checked_at: String,
    pub checks: Checks,
}

pub struct Health {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    settings: HealthSettings,
    version: &'static str,
    started: Instant,
    cached: Mutex<Option<(Instant, Arc<Report>)>>,
}

impl Health {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        settings: HealthSettings,
        version: &'static str,
    ) -> Self {
        Self {
            store,
            queue,
            settings,
            version,
            started: Instant::now(),
            cached: Mutex::new(None),
        }
    }

    /// GET /health.
    pub async fn handle(&self, _request: Request) -> Result<Response<Body>, ApiError> {
        let report = self.report().await;
        let status = match report.status {
            Status::Ok => StatusCode::OK,
            Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        };
        json(status, &*report)
    }

    /// The cached report, or a fresh one when it is older than the cache time. Concurrent
    /// callers wait for one refresh instead of each probing the dependencies.
    pub async fn report(&self) -> Arc<Report> {
        let mut cached = self.cached.lock().await;
        if let Some((at, report)) = cached.as_ref()
            && at.elapsed() < self.settings.cache_for
        {
            return Arc::clone(report);
        }
        let report = Arc::new(self.check_all().await);
        *cached = Some((Instant::now(), Arc::clone(&report)));
        report
    }

    async fn check_all(&self) -> Report {
        let (store, queue) = tokio::join!(self.check_store(), self.check_queue());
        let healthy = [&store, &queue]
            .iter()
            .all(|check| check.status == Status::Ok);
        Report {
            status: if healthy {
                Status::Ok
            } else {
                Status::Unhealthy
            },
            version: self.version,
            uptime_seconds: self.started.elapsed().as_secs(),
            checked_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            checks: Checks { store, queue },
        }
    }

    async fn check_store(&self) -> Check {
        let probe = Key::new("health", "probe");
        let (latency_ms, outcome) = timed(self.store.get(&probe)).await;
        let reason = match outcome {
            Some(Ok(_)) => None,
            Some(Err(error)) => {
                tracing::warn!(error = %error, "health: store check failed");
                Some("unreachable")
            }
            None => Some("timed out"),
        };
        Check {
            status: if reason.is_none() {
                Status::Ok
            } else {
                Status::Unhealthy
            },
            latency_ms,
            reason,
            queue: None,
        }
    }

    async fn check_queue(&self) -> Check {
        let (latency_ms, outcome) = timed(self.queue.stats()).await;
        let (reason, stats) = match outcome {
            Some(Ok(stats)) => (self.queue_verdict(&stats), Some(stats)),
            Some(Err(error)) => {
                tracing::warn!(error = %error, "health: queue check failed");
                (Some("unreachable"), None)
            }
            None => (Some("timed out"), None),
        };
        Check {
            status: if reason.is_none() {
                Status::Ok
            } else {
                Status::Unhealthy
            },
            latency_ms,
            reason,
            queue: stats,
        }
    }

    /// Healthy while fewer than `max_waiting` wait and fewer than `max_dead_letters` died.
    fn queue_verdict(&self, stats: &QueueStats) -> Option<&'static str> {
        if stats.visible >= self.settings.max_waiting {
            Some("backlog")
        } else if stats.dead_letters.unwrap_or(0) >= self.settings.max_dead_letters {
            Some("dead letters")
        } else {
            None
        }
    }
}

/// Runs a check under [`CHECK_TIMEOUT`]; None when it timed out.
async fn timed<F: std::future::Future>(check: F) -> (f64, Option<F::Output>) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, check).await.ok();
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    (latency_ms, outcome)
}
