//! `cleanup` (hourly): the cleanup sweep (`crate::cleanup`) run a bounded number of pages
//! at a time. Each run goes on from the position the last one kept (saved after every
//! page, so a run cut short loses at most a page, swept again), stops at the end of the
//! table (the next run starts over) or after a page where a store call was given up on
//! (the store is failing: the next run tries again), keeps its report for GET /health,
//! and emits its counts as metrics: `CleanupFailures` (store calls given up on after
//! their retries) is alarmed in template.yaml.
//!
//! A run never fails as an invocation: what went wrong is in its report, its critical
//! log lines and its metric, and the next run picks up where it stopped.

use std::convert::Infallible;

use super::ScheduledHandler;
use crate::cleanup::{CleanupSettings, CleanupState, GaveUp, LastRun, Report, Steps, Sweep};
use crate::config::ConfigError;
use crate::services::Services;
use crate::store::EpochSeconds;
use crate::telemetry::emf;

/// The metric of store calls given up on (alarmed in template.yaml), in the namespace
/// every metric shares, with no dimension but the function's.
pub const FAILURES_METRIC: &str = "CleanupFailures";

pub struct Cleanup {
    sweep: Sweep,
}

impl Cleanup {
    pub fn new(sweep: Sweep) -> Self {
        Self { sweep }
    }
}

impl ScheduledHandler for Cleanup {
    const FUNCTION: &'static str = "cleanup";

    type Report = Report;
    type Error = Infallible;

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self::new(Sweep::new(
            services.store(),
            services.sessions()?,
            CleanupSettings::default(),
        )))
    }

    async fn run(&self, now: EpochSeconds) -> Result<Report, Infallible> {
        let mut report = Report::default();
        let state = self.sweep.state();
        // Stopped early or not, the run is reported the same way.
        let _stopped = self.walk(&state, now, &mut report).await;

        let run = LastRun {
            at: now,
            report: report.clone(),
        };
        if let Err(error) = self.sweep.retried("report", || state.record(&run)).await {
            self.sweep.gave_up("report", None, &error, &mut report);
        }
        tracing::info!(report = ?report, "cleanup run finished");
        emf::emit(
            &[],
            &[
                emf::Metric::count("CleanupSessionsEnded", f64::from(report.sessions_ended)),
                emf::Metric::count("CleanupExpiredPurged", f64::from(report.expired_purged)),
                emf::Metric::count("CleanupEventsTrimmed", f64::from(report.events_trimmed)),
                emf::Metric::count(FAILURES_METRIC, f64::from(report.failures)),
            ],
        );
        Ok(report)
    }
}

impl Cleanup {
    /// Sweeps from the kept position, keeping it after each page, until the run's bound,
    /// the table's end, or a page where a store call was given up on.
    async fn walk(
        &self,
        state: &CleanupState,
        now: EpochSeconds,
        report: &mut Report,
    ) -> Result<(), GaveUp> {
        let sweep = &self.sweep;
        let mut after = sweep
            .retried("position", || state.position())
            .await
            .map_err(|error| sweep.gave_up("position", None, &error, report))?;
        for _ in 0..sweep.settings().pages_per_run {
            let next = sweep.page(after, Steps::All, now, report).await?;
            sweep
                .retried("position", || state.save_position(next.as_ref()))
                .await
                .map_err(|error| sweep.gave_up("position", None, &error, report))?;
            if next.is_none() {
                report.walk_finished = true;
                break;
            }
            if report.failures > 0 {
                break;
            }
            after = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use secrecy::SecretString;
    use serde_json::json;

    use super::*;
    use crate::auth::{Claims, SessionKeys, Sessions};
    use crate::clock::{Clock, SystemClock};
    use crate::config::RetryPolicy;
    use crate::embedded_db::EmbeddedDb;
    use crate::events::{EVENT_TTL_SECS, event_item};
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{
        Condition, Item, Key, Page, Query, ScanPage, Store, StoreError, StoreResult, WriteOp,
    };

    /// The embedded store, whose scans fail while `scans_fail` is set, and whose deletes
    /// of `failing_key` always fail, as an unreachable DynamoDB's would.
    struct Flaky {
        inner: EmbeddedStore,
        scans_fail: AtomicBool,
        scans: AtomicUsize,
        failing_key: Mutex<Option<Key>>,
        failed_deletes: AtomicUsize,
    }

    fn down() -> StoreError {
        StoreError::Unavailable("connection refused".into())
    }

    #[async_trait::async_trait]
    impl Store for Flaky {
        async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
            self.inner.get(key).await
        }
        async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
            self.inner.put(item, condition).await
        }
        async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
            if self.failing_key.lock().unwrap().as_ref() == Some(key) {
                self.failed_deletes.fetch_add(1, Ordering::SeqCst);
                return Err(down());
            }
            self.inner.delete(key, condition).await
        }
        async fn query(&self, query: Query) -> StoreResult<Page> {
            self.inner.query(query).await
        }
        async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
            self.scans.fetch_add(1, Ordering::SeqCst);
            if self.scans_fail.load(Ordering::SeqCst) {
                return Err(down());
            }
            self.inner.scan(after, limit).await
        }
        async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
            self.inner.transact(ops).await
        }
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<Flaky>,
        sessions: Sessions,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Flaky {
            inner: EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap(),
            scans_fail: AtomicBool::new(false),
            scans: AtomicUsize::new(0),
            failing_key: Mutex::new(None),
            failed_deletes: AtomicUsize::new(0),
        });
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(store.clone(), Arc::new(keys), Duration::from_secs(3600));
        Fixture {
            _dir: dir,
            store,
            sessions,
        }
    }

    impl Fixture {
        fn worker(&self, page_items: usize, pages_per_run: usize) -> Cleanup {
            let settings = CleanupSettings {
                page_items,
                pages_per_run,
                retry: RetryPolicy {
                    max_attempts: 5,
                    base_delay: Duration::from_millis(1),
                    max_delay: Duration::from_millis(2),
                },
            };
            Cleanup::new(Sweep::new(
                self.store.clone(),
                self.sessions.clone(),
                settings,
            ))
        }

        async fn put(&self, item: Item) {
            self.store.put(item, Condition::Always).await.unwrap();
        }

        async fn get(&self, key: &Key) -> Option<Item> {
            self.store.get(key).await.unwrap()
        }

        /// The keys of the expired items still stored, from a walk of the whole table.
        async fn expired_left(&self) -> Vec<Key> {
            let mut expired = Vec::new();
            let mut after = None;
            loop {
                let page = self.store.inner.scan(after, 50).await.unwrap();
                expired.extend(page.expired);
                match page.next {
                    Some(next) => after = Some(next),
                    None => return expired,
                }
            }
        }

        fn state(&self) -> CleanupState {
            CleanupState::new(self.store.clone())
        }
    }

    fn expired(pk: &str, now: EpochSeconds) -> Item {
        Item::new(Key::new(pk, "STATE"), json!({})).expiring_at(now - 1)
    }

    /// The log lines written while `run` runs on this thread.
    async fn logged<T>(run: impl Future<Output = T>) -> (T, Vec<serde_json::Value>) {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber =
            crate::telemetry::subscriber("cleanup", "info".parse().unwrap(), move || sink.clone());
        let output = {
            let _logging = tracing::subscriber::set_default(subscriber);
            run.await
        };
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let lines = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        (output, lines)
    }

    #[tokio::test]
    async fn a_run_ends_extra_sessions_purges_expired_items_and_trims_old_events_once() {
        crate::telemetry::emf::silence();
        let f = fixture();
        let now = SystemClock.now_secs();
        // Seller 1 signed in twice (the second login ended the first), and a session the
        // registry kept from a write cut short; seller 2 has one session.
        f.sessions.start("ml:1", "t1", now - 20).await.unwrap();
        let current = f.sessions.start("ml:1", "t1", now - 10).await.unwrap();
        let stray = Claims {
            iss: "sellerhub".into(),
            sub: "ml:1".into(),
            tenant: "t1".into(),
            sid: "stray".into(),
            jti: "stray-jti".into(),
            iat: now - 15,
            exp: now + 3600,
            nbf: None,
        };
        f.put(
            Item::new(
                Key::new("USER#ml:1", "SESSION#stray"),
                json!({"sid": "stray", "jti": "stray-jti", "tenant": "t1",
                       "iat": stray.iat, "exp": stray.exp}),
            )
            .expiring_at(stray.exp),
        )
        .await;
        let other = f.sessions.start("ml:2", "t2", now).await.unwrap();
        assert_eq!(f.sessions.active("ml:1").await.unwrap().len(), 2);

        for n in 0..4 {
            f.put(expired(&format!("LOGIN#{n}"), now)).await;
        }
        let live = Item::new(Key::new("TENANT#t1", "PROFILE"), json!({"n": 1}));
        f.put(live.clone()).await;
        let old = now - EVENT_TTL_SECS - 60;
        // Kept past its retention (written when events were kept longer).
        let kept_too_long = event_item("t1", "question", json!({}), old).expiring_at(now + 3600);
        // Expired: purged as any expired item.
        let expired_event = event_item("t1", "question", json!({}), old);
        let recent = event_item("t1", "question", json!({}), now - 60);
        for event in [&kept_too_long, &expired_event, &recent] {
            f.put(event.clone()).await;
        }

        let worker = f.worker(3, 100);
        let report = worker.run(now).await.unwrap();
        assert_eq!(
            (
                report.sessions_ended,
                report.expired_purged,
                report.events_trimmed,
                report.failures
            ),
            (1, 5, 1, 0),
            "{report:?}"
        );
        assert!(report.walk_finished, "{report:?}");
        assert!(report.pages > 1, "paged: {report:?}");

        let active = f.sessions.active("ml:1").await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(
            active[0].sid, current.claims.sid,
            "the newest session stays"
        );
        assert!(
            f.sessions.is_revoked(&stray).await.unwrap(),
            "the extra one is revoked"
        );
        assert!(!f.sessions.is_revoked(&current.claims).await.unwrap());
        assert!(!f.sessions.is_revoked(&other.claims).await.unwrap());
        assert_eq!(f.sessions.active("ml:2").await.unwrap().len(), 1);
        assert_eq!(f.expired_left().await, Vec::<Key>::new());
        assert_eq!(f.get(&live.key).await, Some(live));
        assert_eq!(f.get(&kept_too_long.key).await, None);
        assert_eq!(f.get(&recent.key).await, Some(recent.clone()));

        let again = worker.run(now).await.unwrap();
        assert_eq!((again.removed(), again.failures), (0, 0), "{again:?}");
        assert_eq!(f.get(&recent.key).await, Some(recent));
        assert_eq!(f.sessions.active("ml:1").await.unwrap().len(), 1);

        let last = f.state().last_run().await.unwrap().expect("a last run");
        assert_eq!((last.at, last.report), (now, again));
    }

    #[tokio::test]
    async fn a_run_is_bounded_and_the_next_goes_on_where_it_stopped() {
        crate::telemetry::emf::silence();
        let f = fixture();
        let now = SystemClock.now_secs();
        for n in 0..20 {
            f.put(expired(&format!("LOGIN#{n:02}"), now)).await;
        }
        let worker = f.worker(3, 2);
        let mut purged = 0;
        let mut runs = 0;
        loop {
            runs += 1;
            assert!(runs <= 20, "the walk does not end");
            let report = worker.run(now).await.unwrap();
            assert!(report.pages <= 2 && report.items_seen <= 6, "{report:?}");
            purged += report.expired_purged;
            if report.walk_finished {
                break;
            }
            assert!(
                f.state().position().await.unwrap().is_some(),
                "a run that stopped early keeps where"
            );
        }
        assert!(runs > 3, "no run swept more than its bound ({runs} runs)");
        assert_eq!(purged, 20, "each expired item purged once");
        assert_eq!(f.expired_left().await, Vec::<Key>::new());
        assert_eq!(
            f.state().position().await.unwrap(),
            None,
            "the next walk starts over"
        );
    }

    #[tokio::test]
    async fn a_step_that_keeps_failing_is_tried_five_times_logged_critical_and_reported() {
        crate::telemetry::emf::silence();
        let f = fixture();
        let now = SystemClock.now_secs();
        for pk in ["LOGIN#a", "LOGIN#b", "LOGIN#c"] {
            f.put(expired(pk, now)).await;
        }
        *f.store.failing_key.lock().unwrap() = Some(Key::new("LOGIN#b", "STATE"));

        let worker = f.worker(10, 10);
        let (report, lines) = logged(worker.run(now)).await;
        let report = report.unwrap();
        assert_eq!(
            (report.expired_purged, report.failures),
            (1, 1),
            "what came before is purged, the page ends there: {report:?}"
        );
        assert_eq!(f.store.failed_deletes.load(Ordering::SeqCst), 5);
        let critical: Vec<_> = lines
            .iter()
            .filter(|line| line["severity"] == "critical")
            .collect();
        assert_eq!(critical.len(), 1, "{lines:?}");
        assert_eq!(critical[0]["level"], "ERROR");
        assert_eq!(critical[0]["step"], "purge");
        assert_eq!(critical[0]["pk"], "LOGIN#b");
        let last = f.state().last_run().await.unwrap().unwrap();
        assert!(last.failed());
        assert_eq!(f.expired_left().await.len(), 2);

        // The next run tries it again, and purges it once the store takes it.
        *f.store.failing_key.lock().unwrap() = None;
        let next = worker.run(now).await.unwrap();
        assert_eq!((next.expired_purged, next.failures), (2, 0));
        assert_eq!(f.expired_left().await, Vec::<Key>::new());
        assert!(!f.state().last_run().await.unwrap().unwrap().failed());
    }

    #[tokio::test]
    async fn a_page_that_cannot_be_read_stops_the_run_where_it_was() {
        crate::telemetry::emf::silence();
        let f = fixture();
        let now = SystemClock.now_secs();
        for n in 0..6 {
            f.put(expired(&format!("LOGIN#{n}"), now)).await;
        }
        let worker = f.worker(2, 1);
        let first = worker.run(now).await.unwrap();
        assert_eq!(first.expired_purged, 2);
        let position = f.state().position().await.unwrap();
        assert!(position.is_some());

        f.store.scans_fail.store(true, Ordering::SeqCst);
        let scans = f.store.scans.load(Ordering::SeqCst);
        let failed = worker.run(now).await.unwrap();
        assert_eq!((failed.pages, failed.failures), (0, 1), "{failed:?}");
        assert_eq!(
            f.store.scans.load(Ordering::SeqCst) - scans,
            5,
            "5 attempts"
        );
        assert_eq!(f.state().position().await.unwrap(), position, "kept");

        f.store.scans_fail.store(false, Ordering::SeqCst);
        let resumed = worker.run(now).await.unwrap();
        assert_eq!((resumed.expired_purged, resumed.failures), (2, 0));
    }
}
