//! `health`: GET /health — a check per dependency with its latency; 503 when any fails.
//! The result is cached for a few seconds so a load balancer's probes cost nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tokio::sync::Mutex;

use super::HttpHandler;
use crate::clock::Clock;
use crate::config::{ConfigError, HealthSettings};
use crate::http::{ApiError, json, rfc3339};
use crate::queue::{Queue, QueueStats};
use crate::ratelimit::upstash::Upstash;
use crate::services::Services;
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
    /// The shared limiter's Redis, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limiter: Option<Check>,
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
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    limiter: Option<Upstash>,
    settings: HealthSettings,
    version: &'static str,
    started: Instant,
    cached: Mutex<Option<(Instant, Arc<Report>)>>,
}

impl HttpHandler for Health {
    const FUNCTION: &'static str = "health";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self::new(
            services.clock(),
            services.store(),
            services.webhook_queue(),
            services.upstash()?,
            services.config().health.clone(),
            services.config().version,
        ))
    }

    /// GET /health.
    async fn handle(&self, _request: Request) -> Result<Response<Body>, ApiError> {
        let report = self.report().await;
        let status = match report.status {
            Status::Ok => StatusCode::OK,
            Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        };
        json(status, &*report)
    }
}

impl Health {
    /// `limiter` is the Upstash client the shared limiter uses, if there is one.
    pub fn new(
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        limiter: Option<Upstash>,
        settings: HealthSettings,
        version: &'static str,
    ) -> Self {
        Self {
            clock,
            store,
            queue,
            limiter,
            settings,
            version,
            started: Instant::now(),
            cached: Mutex::new(None),
        }
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
        let (store, queue, limiter) =
            tokio::join!(self.check_store(), self.check_queue(), self.check_limiter());
        let healthy = [Some(&store), Some(&queue), limiter.as_ref()]
            .into_iter()
            .flatten()
            .all(|check| check.status == Status::Ok);
        Report {
            status: if healthy {
                Status::Ok
            } else {
                Status::Unhealthy
            },
            version: self.version,
            uptime_seconds: self.started.elapsed().as_secs(),
            checked_at: rfc3339(self.clock.now_secs()),
            checks: Checks {
                store,
                queue,
                limiter,
            },
        }
    }

    async fn check_store(&self) -> Check {
        probe("store", self.store.get(&Key::new("health", "probe")))
            .await
            .0
    }

    async fn check_limiter(&self) -> Option<Check> {
        let upstash = self.limiter.as_ref()?;
        Some(probe("limiter", upstash.command(&["PING"])).await.0)
    }

    async fn check_queue(&self) -> Check {
        let (mut check, stats) = probe("queue", self.queue.stats()).await;
        if let Some(stats) = stats {
            check = check.failing(self.queue_verdict(&stats));
            check.queue = Some(stats);
        }
        check
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

/// Runs `dependency`'s probe under [`CHECK_TIMEOUT`]: its check, and what it answered.
async fn probe<T, E: std::fmt::Display>(
    dependency: &'static str,
    probe: impl std::future::Future<Output = Result<T, E>>,
) -> (Check, Option<T>) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let (reason, answer) = match outcome {
        Ok(Ok(answer)) => (None, Some(answer)),
        Ok(Err(error)) => {
            tracing::warn!(dependency, error = %error, "health check failed");
            (Some("unreachable"), None)
        }
        Err(_) => (Some("timed out"), None),
    };
    let check = Check {
        status: Status::Ok,
        latency_ms,
        reason: None,
        queue: None,
    };
    (check.failing(reason), answer)
}

impl Check {
    /// This check, unhealthy for `reason` if there is one.
    fn failing(mut self, reason: Option<&'static str>) -> Self {
        if reason.is_some() {
            self.status = Status::Unhealthy;
            self.reason = reason;
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded_db::EmbeddedDb;
    use crate::queue::OutMessage;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::faulty::FaultyStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<FaultyStore>,
        queue: Arc<EmbeddedQueue>,
    }

    fn fixture(down: bool) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let store = Arc::new(FaultyStore::new(Arc::new(
            EmbeddedStore::open(db.clone()).unwrap(),
        )));
        store.set_down(down);
        let queue = Arc::new(EmbeddedQueue::open_with_dead_letters(db, "q", "q-dlq", 5).unwrap());
        Fixture {
            _dir: dir,
            store,
            queue,
        }
    }

    impl Fixture {
        fn health(
            &self,
            limiter: Option<Upstash>,
            cache_for: Duration,
            max_waiting: u64,
        ) -> Health {
            let settings = HealthSettings {
                cache_for,
                max_waiting,
                max_dead_letters: 100,
            };
            Health::new(
                Arc::new(crate::clock::SystemClock),
                self.store.clone(),
                self.queue.clone(),
                limiter,
                settings,
                "1.2.3",
            )
        }
    }

    async fn get(health: &Health) -> (StatusCode, serde_json::Value) {
        let request = http::Request::builder()
            .uri("/health")
            .body(Body::Empty)
            .unwrap();
        let response = health.handle(request).await.unwrap();
        let body = serde_json::from_slice(response.body().as_ref()).unwrap();
        (response.status(), body)
    }

    #[tokio::test]
    async fn healthy_dependencies_answer_200_with_their_latency() {
        let f = fixture(false);
        let health = f.health(None, Duration::ZERO, 1000);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["version"], "1.2.3");
        assert!(body["checks"]["store"]["latency_ms"].as_f64().is_some());
        assert_eq!(body["checks"]["queue"]["visible"], 0);
        assert_eq!(body["checks"]["queue"]["dead_letters"], 0);
    }

    #[tokio::test]
    async fn a_failing_dependency_answers_503_without_its_internals() {
        let f = fixture(true);
        let health = f.health(None, Duration::ZERO, 1000);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["checks"]["store"]["status"], "unhealthy");
        assert_eq!(body["checks"]["store"]["reason"], "unreachable");
        assert_eq!(body["checks"]["queue"]["status"], "ok");
        assert!(!body.to_string().contains("10.1.2.3"), "{body}");
    }

    #[tokio::test]
    async fn a_backlog_makes_the_queue_unhealthy() {
        let f = fixture(false);
        let messages = (0..3).map(|n| OutMessage::new(format!("m{n}"))).collect();
        f.queue.send_batch(messages).await.unwrap();
        let health = f.health(None, Duration::ZERO, 3);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["queue"]["reason"], "backlog");
        assert_eq!(body["checks"]["queue"]["visible"], 3);
    }

    #[tokio::test]
    async fn results_are_cached_for_the_configured_time() {
        let f = fixture(false);
        let cached = f.health(None, Duration::from_secs(60), 1000);
        for _ in 0..3 {
            assert_eq!(get(&cached).await.0, StatusCode::OK);
        }
        assert_eq!(f.store.reads(), 1, "one probe serves the cache time");

        let uncached = f.health(None, Duration::ZERO, 1000);
        for _ in 0..3 {
            get(&uncached).await;
        }
        assert_eq!(f.store.reads(), 4);
    }

    #[tokio::test]
    async fn an_unreachable_limiter_redis_answers_503() {
        let f = fixture(false);
        let upstash = Upstash::new(crate::ratelimit::upstash::UpstashConfig {
            url: "http://127.0.0.1:1".into(),
            token: "token".into(),
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(300),
        })
        .unwrap();
        let health = f.health(Some(upstash), Duration::ZERO, 1000);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["limiter"]["status"], "unhealthy");
        assert_eq!(body["checks"]["store"]["status"], "ok");
    }
}
