//! The cleanup sweep, for the hourly `cleanup` worker (`crate::handlers::cleanup`) and the
//! ops CLI: a walk over the whole table, a page at a time, that on each page
//! - ends a seller's extra sessions when more than one is live, keeping the newest: the
//!   rule is one live session per seller (`crate::auth::sessions`), and only a write cut
//!   short could break it;
//! - purges the expired items DynamoDB's TTL has not deleted yet (it takes up to days);
//! - trims the events kept past their retention ([`EVENT_TTL_SECS`]).
//!
//! The walk is the storage kernel's scan, not a query per tenant: what expires lives in
//! every kind of partition (login states, revocations, receipts, sessions, events), most
//! of them no tenant's, and the one secondary index holds only what its features put
//! there. A scan reads each item once per walk, a bounded page per call, and its cursor
//! resumes it in a later run.
//!
//! Every removal is idempotent: an expired item is deleted only while it is still expired
//! (a live item written at its key since is kept), and ending a session twice, or deleting
//! an event twice, changes nothing the second time. So a page swept twice (a run cut
//! short, two runs at once) does no harm.
//!
//! Each store call is retried with exponential backoff (full jitter) up to
//! [`CleanupSettings::retry`]'s attempts; one that still fails is logged as critical,
//! counted in the report's `failures`, and ends the page there: a failing store is not
//! hammered item after item (each call already carries the SDK's own retries). What the
//! page did not get to is swept on the next walk; DynamoDB's TTL goes on meanwhile.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::sessions::SessionRecord;
use crate::auth::{Claims, Sessions};
use crate::config::RetryPolicy;
use crate::events::EVENT_TTL_SECS;
use crate::store::{Condition, EpochSeconds, Item, Key, ScanPage, Store, StoreError, StoreResult};

/// How a user's session items are keyed (`crate::auth::sessions`): `USER#<user>`,
/// `SESSION#<session id>`. A test holds these to what `Sessions::start` writes.
const USER_PREFIX: &str = "USER#";
const SESSION_PREFIX: &str = "SESSION#";
/// How events are keyed (`crate::events::event_item`): `TENANT#<tenant>`,
/// `EVENT#<id>`, with the time they happened as `at`. A test holds these too.
const TENANT_PREFIX: &str = "TENANT#";
const EVENT_PREFIX: &str = "EVENT#";

/// Where the worker keeps its walk's position and its last run: no tenant's partition.
const STATE_PARTITION: &str = "OPS#cleanup";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupSettings {
    /// Items one page looks at (the scan's limit).
    pub page_items: usize,
    /// Pages one run of the worker sweeps at most: its bound.
    pub pages_per_run: usize,
    /// How each store call is retried.
    pub retry: RetryPolicy,
}

impl Default for CleanupSettings {
    /// 25 pages of 100 items: 2500 items an hour, in well under a minute; DynamoDB's TTL
    /// does most of the deleting, the sweep only catches up behind it.
    fn default() -> Self {
        Self {
            page_items: 100,
            pages_per_run: 25,
            retry: RetryPolicy {
                max_attempts: 5,
                base_delay: Duration::from_millis(200),
                max_delay: Duration::from_secs(5),
            },
        }
    }
}

/// What a sweep did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub pages: u32,
    /// Items looked at, live or expired.
    pub items_seen: u32,
    pub sessions_ended: u32,
    pub expired_purged: u32,
    pub events_trimmed: u32,
    /// Store calls given up on after their retries (each logged as critical).
    pub failures: u32,
    /// The walk reached the end of the table: the next run starts over at its beginning.
    pub walk_finished: bool,
}

impl Report {
    /// Items removed, of every kind (sessions ended count once each).
    pub fn removed(&self) -> u32 {
        self.sessions_ended + self.expired_purged + self.events_trimmed
    }
}

/// What a page is swept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steps {
    /// Extra sessions, expired items and old events: the worker.
    All,
    /// Expired items and old events only: the ops CLI's purge-expired.
    Purge,
}

/// A store call was given up on after its retries (logged as critical and counted in the
/// report's `failures`).
#[derive(Debug)]
pub struct GaveUp;

pub struct Sweep {
    store: Arc<dyn Store>,
    sessions: Sessions,
    settings: CleanupSettings,
}

impl Sweep {
    pub fn new(store: Arc<dyn Store>, sessions: Sessions, settings: CleanupSettings) -> Self {
        Self {
            store,
            sessions,
            settings,
        }
    }

    pub fn settings(&self) -> &CleanupSettings {
        &self.settings
    }

    /// The walk's kept position and last run.
    pub fn state(&self) -> CleanupState {
        CleanupState::new(Arc::clone(&self.store))
    }

    /// Sweeps the page of the walk right after `after` (the table's start when None) for
    /// `steps` at `now`, counting in `report`; returns where the walk goes on (None at
    /// its end), or fails when the page could not be read. A store call given up on ends
    /// the page early (see the module's doc): the caller sees it in `report.failures`.
    pub async fn page(
        &self,
        after: Option<Key>,
        steps: Steps,
        now: EpochSeconds,
        report: &mut Report,
    ) -> Result<Option<Key>, GaveUp> {
        let limit = self.settings.page_items;
        let page = self
            .retried("scan", || self.store.scan(after.clone(), limit))
            .await
            .map_err(|error| self.gave_up("scan", after.as_ref(), &error, report))?;
        report.pages += 1;
        report.items_seen += count(page.live.len() + page.expired.len());
        // Ended early or not, the walk goes on after this page.
        let _ended_early = self.sweep(&page, steps, now, report).await;
        Ok(page.next)
    }

    async fn sweep(
        &self,
        page: &ScanPage,
        steps: Steps,
        now: EpochSeconds,
        report: &mut Report,
    ) -> Result<(), GaveUp> {
        if steps == Steps::All {
            let users: BTreeSet<&str> = page.live.iter().filter_map(session_user).collect();
            for user in users {
                report.sessions_ended += self
                    .retried("sessions", || {
                        end_sessions(&self.sessions, user, Keep::Newest, now)
                    })
                    .await
                    .map_err(|error| self.gave_up("sessions", None, &error, report))?;
            }
        }
        for key in &page.expired {
            // Absent holds for an expired item, not for a live one written there since.
            match self
                .retried("purge", || self.store.delete(key, Condition::Absent))
                .await
            {
                Ok(_) => report.expired_purged += 1,
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(error) => return Err(self.gave_up("purge", Some(key), &error, report)),
            }
        }
        for event in page.live.iter().filter(|item| past_retention(item, now)) {
            self.retried("events", || {
                self.store.delete(&event.key, Condition::Always)
            })
            .await
            .map_err(|error| self.gave_up("events", Some(&event.key), &error, report))?;
            report.events_trimmed += 1;
        }
        Ok(())
    }

    /// `call` until it succeeds, fails for good, or has made its attempts.
    pub async fn retried<T, F, Fut>(&self, step: &'static str, call: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        call.retry(self.settings.retry.backoff())
            .when(may_retry)
            .notify(|error: &StoreError, delay: Duration| {
                tracing::warn!(
                    step,
                    error = %error,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "cleanup step failed; retrying"
                );
            })
            .await
    }

    /// The critical log line of a store call given up on, counted in `report`.
    pub fn gave_up(
        &self,
        step: &'static str,
        key: Option<&Key>,
        error: &StoreError,
        report: &mut Report,
    ) -> GaveUp {
        report.failures += 1;
        tracing::error!(
            severity = "critical",
            step,
            pk = key.map(|key| key.pk.as_str()),
            sk = key.map(|key| key.sk.as_str()),
            attempts = self.settings.retry.max_attempts,
            error = %error,
            "cleanup step failed after its retries"
        );
        GaveUp
    }
}

/// Whether another attempt may succeed: the store was unreachable, or a transaction met a
/// concurrent one. A refused or unreadable request fails the same way every time.
fn may_retry(error: &StoreError) -> bool {
    matches!(
        error,
        StoreError::Unavailable(_) | StoreError::TransactionCancelled { .. }
    )
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The user a session item belongs to, if `item` is one.
fn session_user(item: &Item) -> Option<&str> {
    item.key
        .sk
        .starts_with(SESSION_PREFIX)
        .then(|| item.key.pk.strip_prefix(USER_PREFIX))
        .flatten()
}

/// Whether `item` is an event that happened longer ago than events are kept.
fn past_retention(item: &Item, now: EpochSeconds) -> bool {
    item.key.pk.starts_with(TENANT_PREFIX)
        && item.key.sk.starts_with(EVENT_PREFIX)
        && item.data["at"]
            .as_i64()
            .is_some_and(|at| at.saturating_add(EVENT_TTL_SECS) <= now)
}

/// Which of a user's live sessions [`end_sessions`] keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The newest (the one the user's last login started): the cleanup.
    Newest,
    /// None: the ops CLI's revoke-sessions.
    None,
}

/// Ends `user`'s live sessions but the one `keep` names, each as a logout does (its token
/// revoked, its registry entry deleted); returns how many it ended. Sessions are ordered
/// by when they started: a login in progress only ever adds a newer one (and ends the
/// others itself).
pub async fn end_sessions(
    sessions: &Sessions,
    user: &str,
    keep: Keep,
    now: EpochSeconds,
) -> StoreResult<u32> {
    let mut ended = 0;
    loop {
        // One page of the user's sessions per round; each round ends at least one, so a
        // registry longer than a page takes more rounds.
        let mut live = sessions.active(user).await?;
        live.sort_by(|a, b| (a.iat, &a.sid).cmp(&(b.iat, &b.sid)));
        if keep == Keep::Newest {
            live.pop();
        }
        if live.is_empty() {
            return Ok(ended);
        }
        for record in live {
            sessions.end(&claims(sessions, user, record), now).await?;
            ended += 1;
        }
    }
}

/// The claims of the token `record` was issued with: what ending it revokes.
fn claims(sessions: &Sessions, user: &str, record: SessionRecord) -> Claims {
    Claims {
        iss: sessions.keys().issuer().to_owned(),
        sub: user.to_owned(),
        tenant: record.tenant,
        sid: record.sid,
        jti: record.jti,
        iat: record.iat,
        exp: record.exp,
        nbf: None,
    }
}

/// The last run of the worker, as GET /health shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    pub at: EpochSeconds,
    pub report: Report,
}

impl LastRun {
    pub fn failed(&self) -> bool {
        self.report.failures > 0
    }
}

/// The worker's state in the store: where its walk goes on, and its last run.
#[derive(Clone)]
pub struct CleanupState {
    store: Arc<dyn Store>,
}

fn position_key() -> Key {
    Key::new(STATE_PARTITION, "POSITION")
}

fn last_run_key() -> Key {
    Key::new(STATE_PARTITION, "LAST_RUN")
}

impl CleanupState {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Where the walk goes on: None at the table's start.
    pub async fn position(&self) -> StoreResult<Option<Key>> {
        let Some(item) = self.store.get(&position_key()).await? else {
            return Ok(None);
        };
        serde_json::from_value(item.data["after"].clone())
            .map_err(|error| StoreError::Corrupt(format!("cleanup position: {error}")))
    }

    pub async fn save_position(&self, after: Option<&Key>) -> StoreResult<()> {
        let item = Item::new(position_key(), json!({ "after": after }));
        self.store.put(item, Condition::Always).await
    }

    /// The worker's last run, if it ever ran (an unreadable record counts as none).
    pub async fn last_run(&self) -> StoreResult<Option<LastRun>> {
        let Some(item) = self.store.get(&last_run_key()).await? else {
            return Ok(None);
        };
        match serde_json::from_value(item.data) {
            Ok(run) => Ok(Some(run)),
            Err(error) => {
                tracing::warn!(error = %error, "the cleanup's last run record is unreadable");
                Ok(None)
            }
        }
    }

    pub async fn record(&self, run: &LastRun) -> StoreResult<()> {
        let data =
            serde_json::to_value(run).map_err(|error| StoreError::Invalid(error.to_string()))?;
        self.store
            .put(Item::new(last_run_key(), data), Condition::Always)
            .await
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;
    use crate::auth::SessionKeys;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::events::event_item;
    use crate::store::Query;
    use crate::store::embedded::EmbeddedStore;

    fn store_and_sessions() -> (tempfile::TempDir, Arc<dyn Store>, Sessions) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(Arc::clone(&store), Arc::new(keys), Duration::from_secs(60));
        (dir, store, sessions)
    }

    #[tokio::test]
    async fn the_sweep_knows_session_items_as_sessions_start_them() {
        let (_dir, store, sessions) = store_and_sessions();
        let now = SystemClock.now_secs();
        sessions.start("ml:7", "t7", now).await.unwrap();
        let page = store
            .query(Query::partition(format!("{USER_PREFIX}ml:7")).limit(10))
            .await
            .unwrap();
        let users: Vec<_> = page.items.iter().filter_map(session_user).collect();
        assert_eq!(users, ["ml:7"], "the session, not the registry's head");
    }

    #[test]
    fn the_sweep_knows_events_as_they_are_recorded_and_when_they_are_past_retention() {
        let now = 1_800_000_000;
        let event = event_item("t1", "question", json!({}), now - EVENT_TTL_SECS);
        assert_eq!(
            event.expires_at,
            Some(now),
            "an event expires when its retention ends"
        );
        assert!(past_retention(&event, now));
        assert!(!past_retention(&event, now - 1));
        let not_an_event = Item::new(Key::new("TENANT#t1", "PROFILE"), json!({"at": 0}));
        assert!(!past_retention(&not_an_event, now));
    }

    #[tokio::test]
    async fn ending_every_session_of_a_user_revokes_each_and_leaves_others_alone() {
        let (_dir, _store, sessions) = store_and_sessions();
        let now = SystemClock.now_secs();
        let mine = sessions.start("ml:1", "t1", now).await.unwrap();
        let theirs = sessions.start("ml:2", "t2", now).await.unwrap();

        let ended = end_sessions(&sessions, "ml:1", Keep::None, now)
            .await
            .unwrap();
        assert_eq!(ended, 1);
        assert!(sessions.is_revoked(&mine.claims).await.unwrap());
        assert!(sessions.active("ml:1").await.unwrap().is_empty());
        assert!(!sessions.is_revoked(&theirs.claims).await.unwrap());
        assert_eq!(
            end_sessions(&sessions, "ml:1", Keep::None, now)
                .await
                .unwrap(),
            0,
            "nothing left to end"
        );
        // The seller can sign in again.
        let again = sessions.start("ml:1", "t1", now).await.unwrap();
        assert!(!sessions.is_revoked(&again.claims).await.unwrap());
    }
}
