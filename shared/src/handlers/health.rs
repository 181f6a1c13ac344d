//! `health`: GET /health — a check per dependency with its latency; 503 when any fails,
//! "degraded" (still 200) while the rate limiter answers from its per-instance fallback.
//! The result is cached for a few seconds so a load balancer's probes cost nothing.
//! The store check reads the cleanup worker's last run, shown in the report (it does not
//! change the status: its failures page through their own alarm).
//! The function also serves GET /v1/admin/queues (`super::admin_queues`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tokio::sync::Mutex;

use super::HttpHandler;
use super::admin_queues::AdminQueues;
use crate::cleanup::{self, CleanupState};
use crate::clock::Clock;
use crate::config::{ConfigError, HealthSettings};
use crate::http::{ApiError, json, resource_path, rfc3339};
use crate::queue::{Queue, QueueStats};
use crate::ratelimit::upstash::UpstashError;
use crate::services::{Services, SharedLimiter};
use crate::store::{Condition, Item, Key, Store};
use crate::webhooks::parking::Parking;

const ADMIN_QUEUES: &str = "/v1/admin/queues";

/// A check slower than this fails.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the store's probe item lives: it is rewritten by every check.
const PROBE_TTL_SECS: i64 = 300;

/// From best to worst: a report is as bad as its worst check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Degraded,
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
    /// The shared limiter (its script on Redis, and whether the fallback is in use), when
    /// one is configured.
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
    /// The cleanup worker's last run, once it ran (and while the store answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup: Option<CleanupStatus>,
}

/// When the cleanup worker last ran, whether a step of it failed (after its retries),
/// and what it did.
#[derive(Clone, Debug, Serialize)]
pub struct CleanupStatus {
    pub last_run_at: String,
    pub result: &'static str,
    #[serde(flatten)]
    pub report: cleanup::Report,
}

pub struct Health {
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    cleanup: CleanupState,
    queue: Arc<dyn Queue>,
    limiter: Option<SharedLimiter>,
    settings: HealthSettings,
    version: &'static str,
    started: Instant,
    cached: Mutex<Option<(Instant, Arc<Report>)>>,
    /// GET /v1/admin/queues, when built from the services.
    queues: Option<AdminQueues>,
}

impl HttpHandler for Health {
    const FUNCTION: &'static str = "health";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        let queues = AdminQueues::new(
            services.authenticator()?,
            services.webhook_queue(),
            Parking::new(services.store()),
            services.config().health.clone(),
        );
        Ok(Self {
            queues: Some(queues),
            ..Self::new(
                services.clock(),
                services.store(),
                services.webhook_queue(),
                services.shared_limiter()?,
                services.config().health.clone(),
                services.config().version,
            )
        })
    }

    /// GET /health, and GET /v1/admin/queues.
    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        if resource_path(&request) == ADMIN_QUEUES {
            return match &self.queues {
                Some(queues) => queues.handle(&request).await,
                None => Err(ApiError::NotFound),
            };
        }
        let report = self.report().await;
        let status = match report.status {
            Status::Ok | Status::Degraded => StatusCode::OK,
            Status::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
        };
        json(status, &*report)
    }
}

impl Health {
    /// `limiter` is the limiter shared by every instance, if there is one.
    pub fn new(
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        limiter: Option<SharedLimiter>,
        settings: HealthSettings,
        version: &'static str,
    ) -> Self {
        Self {
            clock,
            cleanup: CleanupState::new(Arc::clone(&store)),
            store,
            queue,
            limiter,
            settings,
            version,
            started: Instant::now(),
            cached: Mutex::new(None),
            queues: None,
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
        let ((store, cleanup), queue, limiter) =
            tokio::join!(self.check_store(), self.check_queue(), self.check_limiter());
        let status = [Some(&store), Some(&queue), limiter.as_ref()]
            .into_iter()
            .flatten()
            .map(|check| check.status)
            .max()
            .unwrap_or(Status::Ok);
        Report {
            status,
            version: self.version,
            uptime_seconds: self.started.elapsed().as_secs(),
            checked_at: rfc3339(self.clock.now_secs()),
            checks: Checks {
                store,
                queue,
                limiter,
            },
            cleanup,
        }
    }

    /// Writes a probe item (a store that still answers reads but cannot write, the
    /// embedded one on a full disk, is unhealthy), then reads the cleanup's last run: the
    /// read probe, and what the report shows of it.
    async fn check_store(&self) -> (Check, Option<CleanupStatus>) {
        let now = self.clock.now_secs();
        let write_then_read = async {
            let item = Item::new(
                Key::new("health", "probe"),
                serde_json::json!({ "checked_at": now }),
            )
            .expiring_at(now.saturating_add(PROBE_TTL_SECS));
            self.store.put(item, Condition::Always).await?;
            self.cleanup.last_run().await
        };
        let (check, last_run) = probe("store", write_then_read).await;
        let status = last_run.flatten().map(|run| CleanupStatus {
            last_run_at: rfc3339(run.at),
            result: if run.failed() { "failed" } else { "ok" },
            report: run.report,
        });
        (check, status)
    }

    /// Runs the limiter's script (PING would pass with a read-only token or an exhausted
    /// quota, while every check fails and falls back).
    async fn check_limiter(&self) -> Option<Check> {
        let limiter = self.limiter.as_ref()?;
        let script = limiter.redis.probe(self.clock.now_ms());
        let (check, _) = probe_with("limiter", script, |error| match error {
            UpstashError::Unauthorized | UpstashError::Rejected(_) => "rejected",
            UpstashError::Unavailable(_) | UpstashError::Protocol(_) => "unreachable",
        })
        .await;
        Some(if limiter.fallback.in_fallback() {
            check.degraded("fallback in use")
        } else {
            check
        })
    }

    async fn check_queue(&self) -> Check {
        let (mut check, stats) = probe("queue", self.queue.stats()).await;
        if let Some(stats) = stats {
            check = check.failing(
                self.settings
                    .queue_verdict(stats.visible, stats.dead_letters.unwrap_or(0)),
            );
            check.queue = Some(stats);
        }
        check
    }
}

/// Runs `dependency`'s probe under [`CHECK_TIMEOUT`]: its check, and what it answered.
async fn probe<T, E: std::fmt::Display>(
    dependency: &'static str,
    probe: impl std::future::Future<Output = Result<T, E>>,
) -> (Check, Option<T>) {
    probe_with(dependency, probe, |_| "unreachable").await
}

/// [`probe`], with the published reason for a failure chosen by `reason`.
async fn probe_with<T, E: std::fmt::Display>(
    dependency: &'static str,
    probe: impl std::future::Future<Output = Result<T, E>>,
    reason: impl FnOnce(&E) -> &'static str,
) -> (Check, Option<T>) {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, probe).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    let (reason, answer) = match outcome {
        Ok(Ok(answer)) => (None, Some(answer)),
        Ok(Err(error)) => {
            tracing::warn!(dependency, error = %error, "health check failed");
            (Some(reason(&error)), None)
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

    /// This check, degraded for `reason` unless it is already worse.
    fn degraded(mut self, reason: &'static str) -> Self {
        if self.status == Status::Ok {
            self.status = Status::Degraded;
            self.reason = Some(reason);
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
    use crate::ratelimit::Limiter;
    use crate::ratelimit::fallback::{FallbackLimiter, FallbackSettings};
    use crate::ratelimit::redis::RedisLimiter;
    use crate::ratelimit::upstash::Upstash;
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
            limiter: Option<SharedLimiter>,
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
    async fn a_store_that_cannot_write_is_unhealthy_until_the_disk_has_room_again() {
        let dir = tempfile::tempdir().unwrap();
        let full = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let db = crate::embedded_db::full_disk::open(dir.path(), &full);
        let store = Arc::new(EmbeddedStore::open(db.clone()).unwrap());
        let queue = Arc::new(EmbeddedQueue::open_with_dead_letters(db, "q", "q-dlq", 5).unwrap());
        let health = Health::new(
            Arc::new(crate::clock::SystemClock),
            store,
            queue,
            None,
            HealthSettings {
                cache_for: Duration::ZERO,
                max_waiting: 1000,
                max_dead_letters: 100,
            },
            "1.2.3",
        );
        assert_eq!(get(&health).await.0, StatusCode::OK);

        full.store(true, std::sync::atomic::Ordering::SeqCst);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["checks"]["store"]["status"], "unhealthy");

        full.store(false, std::sync::atomic::Ordering::SeqCst);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["checks"]["store"]["status"], "ok");
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
    async fn the_cleanup_workers_last_run_is_shown_without_changing_the_status() {
        let f = fixture(false);
        let health = f.health(None, Duration::ZERO, 1000);
        let (_, body) = get(&health).await;
        assert!(body.get("cleanup").is_none(), "never ran: {body}");

        let state = CleanupState::new(f.store.clone());
        let mut run = cleanup::LastRun {
            at: 1_700_000_000,
            report: cleanup::Report {
                expired_purged: 3,
                walk_finished: true,
                ..cleanup::Report::default()
            },
        };
        state.record(&run).await.unwrap();
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["cleanup"]["last_run_at"], "2023-11-14T22:13:20Z");
        assert_eq!(body["cleanup"]["result"], "ok");
        assert_eq!(body["cleanup"]["expired_purged"], 3);
        assert_eq!(body["cleanup"]["failures"], 0);

        run.report.failures = 2;
        state.record(&run).await.unwrap();
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body["status"], "ok",
            "its failures page through their alarm"
        );
        assert_eq!(body["cleanup"]["result"], "failed");
        assert_eq!(body["cleanup"]["failures"], 2);
    }

    #[tokio::test]
    async fn an_unreachable_limiter_redis_answers_503() {
        let f = fixture(false);
        let health = f.health(
            Some(shared_limiter(UNREACHABLE, false).await),
            Duration::ZERO,
            1000,
        );
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["limiter"]["status"], "unhealthy");
        assert_eq!(body["checks"]["limiter"]["reason"], "unreachable");
        assert_eq!(body["checks"]["store"]["status"], "ok");
    }

    #[tokio::test]
    async fn a_refused_script_is_unhealthy_though_ping_answers() {
        // What a read-only token gets from Upstash.
        let url = fake_upstash(|command| match command[0].as_str() {
            "PING" => (StatusCode::OK, serde_json::json!({"result": "PONG"})),
            verb => (
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": format!(
                    "NOPERM this user has no permissions to run the '{}' command",
                    verb.to_lowercase()
                )}),
            ),
        })
        .await;
        upstash(&url).command(&["PING"]).await.expect("PING passes");
        let f = fixture(false);
        let health = f.health(
            Some(shared_limiter(&url, false).await),
            Duration::ZERO,
            1000,
        );
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["checks"]["limiter"]["status"], "unhealthy");
        assert_eq!(body["checks"]["limiter"]["reason"], "rejected");
    }

    #[tokio::test]
    async fn a_limiter_answering_from_its_fallback_is_degraded() {
        let url = fake_upstash(|_| {
            (
                StatusCode::OK,
                serde_json::json!({"result": [1, 0, 499, 2]}),
            )
        })
        .await;
        let f = fixture(false);
        let health = f.health(
            Some(shared_limiter(&url, false).await),
            Duration::ZERO,
            1000,
        );
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["status"], "ok");
        assert_eq!(body["checks"]["limiter"]["status"], "ok");

        let health = f.health(Some(shared_limiter(&url, true).await), Duration::ZERO, 1000);
        let (status, body) = get(&health).await;
        assert_eq!(status, StatusCode::OK, "the fallback still limits: {body}");
        assert_eq!(body["status"], "degraded");
        assert_eq!(body["checks"]["limiter"]["status"], "degraded");
        assert_eq!(body["checks"]["limiter"]["reason"], "fallback in use");
        assert_eq!(body["checks"]["store"]["status"], "ok");
    }

    const UNREACHABLE: &str = "http://127.0.0.1:1";

    fn upstash(url: &str) -> Upstash {
        Upstash::new(crate::ratelimit::upstash::UpstashConfig {
            url: url.into(),
            token: "token".into(),
            connect_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(300),
            tls: crate::tls::Tls::default(),
        })
        .unwrap()
    }

    /// The shared limiter on the Upstash at `url`; with `falling_back`, its fallback in use
    /// (its primary failed a check).
    async fn shared_limiter(url: &str, falling_back: bool) -> SharedLimiter {
        let primary = RedisLimiter::new(upstash(if falling_back { UNREACHABLE } else { url }));
        let fallback = FallbackLimiter::new(
            Arc::new(primary),
            FallbackSettings {
                share: 0.1,
                timeout: Duration::from_secs(1),
                retry_primary_after: Duration::from_secs(60),
            },
        )
        .with_metric_sink(|_, _| {});
        if falling_back {
            let check = crate::ratelimit::Check {
                key: "k".into(),
                rule: crate::ratelimit::Rule::new(10, Duration::from_secs(1), 5),
            };
            fallback.check(&[check], 0).await.unwrap();
            assert!(fallback.in_fallback());
        }
        SharedLimiter {
            redis: RedisLimiter::new(upstash(url)),
            fallback: Arc::new(fallback),
        }
    }

    /// An Upstash answering each command (`["PING"]`) with `answer`'s status and body.
    async fn fake_upstash(answer: fn(&[String]) -> (StatusCode, serde_json::Value)) -> String {
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::body::Bytes| async move {
                let command: Vec<String> = serde_json::from_slice(&body).unwrap();
                let (status, body) = answer(&command);
                (status, body.to_string())
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}
