//! The session registry and the revocation list.
//!
//! Each user has a head item naming their one active session, and an item per session.
//! Starting a session rewrites the head under a version condition, in the same
//! transaction that deletes the earlier sessions and revokes their tokens: two logins at
//! once cannot both win, and the loser retries against the winner's session. So a seller
//! has exactly one active session.
//!
//! A revocation is keyed on the token's issuer and id (not a hash of the token: a
//! re-encoded token would hash differently) and expires [`EXPIRY_MARGIN_SECS`] after the
//! token, as does the registry's entry for a session.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use serde_json::json;

use super::session_token::{Claims, SessionKeys, TokenError};
use crate::store::{
    Condition, EpochSeconds, Item, Key, Query, SortKey, Store, StoreError, StoreResult, WriteOp,
};

/// Attempts at starting a session against concurrent logins of the same user.
const START_ATTEMPTS: u32 = 12;

/// Earlier sessions ended per start (each costs two operations of the transaction).
const MAX_ENDED_PER_START: usize = 40;

/// How long a revocation, and the registry's entry for a session, outlive the token.
/// The token verifies until its `exp` by the verifying instance's clock; the store
/// drops an item at its `expires_at` by another clock (DynamoDB's, or the reading
/// instance's). Without a margin a revoked token would be good again in the gap.
pub const EXPIRY_MARGIN_SECS: i64 = 300;

/// When the records of a token expiring at `exp` may go.
fn record_expiry(exp: i64) -> EpochSeconds {
    exp.saturating_add(EXPIRY_MARGIN_SECS)
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// A session just started: its token (for the cookie) and claims.
pub struct IssuedSession {
    pub token: SecretString,
    pub claims: Claims,
}

/// One entry of a user's registry.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SessionRecord {
    pub sid: String,
    pub jti: String,
    pub tenant: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    keys: Arc<SessionKeys>,
    ttl: Duration,
}

fn head_key(user: &str) -> Key {
    Key::new(format!("USER#{user}"), "SESSIONS")
}

fn session_key(user: &str, sid: &str) -> Key {
    Key::new(format!("USER#{user}"), format!("SESSION#{sid}"))
}

fn revocation_key(issuer: &str, jti: &str) -> Key {
    Key::new(format!("REVOKED#{issuer}#{jti}"), "REVOKED")
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, keys: Arc<SessionKeys>, ttl: Duration) -> Self {
        Self { store, keys, ttl }
    }

    pub fn keys(&self) -> &SessionKeys {
        &self.keys
    }

    /// Starts a session for `user` of `tenant`, ending every earlier one of theirs.
    pub async fn start(
        &self,
        user: &str,
        tenant: &str,
        now: EpochSeconds,
    ) -> Result<IssuedSession, SessionError> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: self.keys.issuer().to_owned(),
            sub: user.to_owned(),
            tenant: tenant.to_owned(),
            sid: uuid::Uuid::now_v7().simple().to_string(),
            jti: super::random_token(16),
            iat: now,
            exp: now.saturating_add(ttl),
            nbf: None,
        };
        let token = self.keys.sign(&claims)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .store
                .transact(self.start_ops(&claims, now).await?)
                .await
            {
                Ok(()) => break,
                Err(StoreError::TransactionCancelled { .. }) if attempt < START_ATTEMPTS => {
                    // Another login of this user won the head: end theirs on the next try.
                    super::pause_after_conflict(attempt).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        tracing::info!(user, tenant, sid = %claims.sid, "session started");
        Ok(IssuedSession { token, claims })
    }

    /// The transaction that makes `claims` the user's one session.
    async fn start_ops(&self, claims: &Claims, now: EpochSeconds) -> StoreResult<Vec<WriteOp>> {
        let user = &claims.sub;
        let head = self.store.get(&head_key(user)).await?;
        let mut ended: Vec<SessionRecord> = Vec::new();
        if let Some(current) = head
            .as_ref()
            .and_then(|head| serde_json::from_value::<SessionRecord>(head.data.clone()).ok())
        {
            ended.push(current);
        }
        // Sessions the head no longer names (none, unless a past write was cut short).
        for record in self.active(user).await? {
            if ended.len() >= MAX_ENDED_PER_START {
                break;
            }
            if !ended.iter().any(|known| known.sid == record.sid) {
                ended.push(record);
            }
        }

        let record = json!({
            "sid": claims.sid, "jti": claims.jti, "tenant": claims.tenant,
            "iat": claims.iat, "exp": claims.exp,
        });
        let mut ops = vec![
            match &head {
                Some(head) => WriteOp::Put {
                    item: Item::new(head_key(user), record.clone()).with_version(head.version + 1),
                    condition: Condition::VersionIs(head.version),
                },
                None => WriteOp::Put {
                    item: Item::new(head_key(user), record.clone()).with_version(1),
                    condition: Condition::Absent,
                },
            },
            WriteOp::Put {
                item: Item::new(session_key(user, &claims.sid), record)
                    .expiring_at(record_expiry(claims.exp)),
                condition: Condition::Absent,
            },
        ];
        for old in ended.iter().filter(|old| record_expiry(old.exp) > now) {
            ops.push(WriteOp::Delete {
                key: session_key(user, &old.sid),
                condition: Condition::Always,
            });
            ops.push(self.revocation(&old.jti, &old.sid, user, old.exp, now));
        }
        Ok(ops)
    }

    fn revocation(&self, jti: &str, sid: &str, user: &str, exp: i64, now: EpochSeconds) -> WriteOp {
        WriteOp::Put {
            item: Item::new(
                revocation_key(self.keys.issuer(), jti),
                json!({ "sid": sid, "user": user, "revoked_at": now }),
            )
            .expiring_at(record_expiry(exp)),
            condition: Condition::Always,
        }
    }

    /// Ends the session of `claims` (logout): its token is revoked and its registry entry
    /// deleted. Ending an ended session changes nothing.
    pub async fn end(&self, claims: &Claims, now: EpochSeconds) -> StoreResult<()> {
        self.store
            .transact(vec![
                self.revocation(&claims.jti, &claims.sid, &claims.sub, claims.exp, now),
                WriteOp::Delete {
                    key: session_key(&claims.sub, &claims.sid),
                    condition: Condition::Always,
                },
            ])
            .await?;
        tracing::info!(user = %claims.sub, sid = %claims.sid, "session ended");
        Ok(())
    }

    /// Whether the token of `claims` was revoked: the one storage read of an
    /// authenticated request.
    pub async fn is_revoked(&self, claims: &Claims) -> StoreResult<bool> {
        let key = revocation_key(&claims.iss, &claims.jti);
        Ok(self.store.get(&key).await?.is_some())
    }

    /// The user's active sessions.
    pub async fn active(&self, user: &str) -> StoreResult<Vec<SessionRecord>> {
        let page = self
            .store
            .query(
                Query::partition(format!("USER#{user}"))
                    .sort(SortKey::BeginsWith("SESSION#".into()))
                    .limit(MAX_ENDED_PER_START),
            )
            .await?;
        page.items
            .into_iter()
            .map(|item| {
                serde_json::from_value(item.data)
                    .map_err(|error| StoreError::Corrupt(format!("session record: {error}")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::clock::{Clock, ManualClock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::http::ApiError;
    use crate::store::embedded::EmbeddedStore;

    fn sessions() -> (tempfile::TempDir, Sessions) {
        sessions_on(Arc::new(SystemClock))
    }

    /// Sessions on a store that decides expiry by `store_clock`.
    fn sessions_on(store_clock: Arc<dyn Clock>) -> (tempfile::TempDir, Sessions) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap())
            .unwrap()
            .with_clock(store_clock);
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(Arc::new(store), Arc::new(keys), Duration::from_secs(3600));
        (dir, sessions)
    }

    #[tokio::test]
    async fn a_new_session_revokes_the_previous_one() {
        let (_dir, sessions) = sessions();
        let now = SystemClock.now_secs();
        let first = sessions.start("ml:1", "t1", now).await.unwrap();
        assert!(!sessions.is_revoked(&first.claims).await.unwrap());

        let second = sessions.start("ml:1", "t1", now).await.unwrap();
        assert!(sessions.is_revoked(&first.claims).await.unwrap());
        assert!(!sessions.is_revoked(&second.claims).await.unwrap());
        let active = sessions.active("ml:1").await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].sid, second.claims.sid);

        let verified = sessions
            .keys()
            .verify(second.token.expose_secret(), now)
            .unwrap();
        assert_eq!(verified, second.claims);
    }

    #[tokio::test]
    async fn concurrent_logins_of_one_seller_leave_exactly_one_session() {
        let (_dir, sessions) = sessions();
        let now = SystemClock.now_secs();
        let logins = (0..6).map(|_| {
            let sessions = sessions.clone();
            tokio::spawn(async move { sessions.start("ml:9", "t9", now).await.unwrap() })
        });
        let mut issued = Vec::new();
        for login in logins {
            issued.push(login.await.unwrap());
        }
        let mut live = Vec::new();
        for session in &issued {
            if !sessions.is_revoked(&session.claims).await.unwrap() {
                live.push(session.claims.sid.clone());
            }
        }
        assert_eq!(live.len(), 1, "live sessions: {live:?}");
        let active = sessions.active("ml:9").await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].sid, live[0]);
    }

    #[tokio::test]
    async fn other_users_sessions_are_untouched() {
        let (_dir, sessions) = sessions();
        let now = SystemClock.now_secs();
        let a = sessions.start("ml:1", "t1", now).await.unwrap();
        sessions.start("ml:2", "t2", now).await.unwrap();
        assert!(!sessions.is_revoked(&a.claims).await.unwrap());
    }

    #[tokio::test]
    async fn ending_a_session_revokes_it_and_is_idempotent() {
        let (_dir, sessions) = sessions();
        let now = SystemClock.now_secs();
        let session = sessions.start("ml:1", "t1", now).await.unwrap();
        sessions.end(&session.claims, now).await.unwrap();
        sessions.end(&session.claims, now).await.unwrap();
        assert!(sessions.is_revoked(&session.claims).await.unwrap());
        assert!(sessions.active("ml:1").await.unwrap().is_empty());
        // The next login still works after a logout.
        let next = sessions.start("ml:1", "t1", now).await.unwrap();
        assert!(!sessions.is_revoked(&next.claims).await.unwrap());
    }

    fn bearer(token: &SecretString) -> lambda_http::Request {
        http::Request::builder()
            .header("authorization", format!("Bearer {}", token.expose_secret()))
            .body(lambda_http::Body::Empty)
            .unwrap()
    }

    #[tokio::test]
    async fn a_revoked_token_stays_revoked_to_its_last_second_whatever_the_stores_clock() {
        const START_MS: i64 = 1_800_000_000_000;
        // The store drops items by its own clock (DynamoDB's TTL, another instance's
        // reads), here a minute ahead of the clock the token is verified by.
        let verifier = Arc::new(ManualClock::at(START_MS));
        let store_clock = Arc::new(ManualClock::at(START_MS + 60_000));
        let (_dir, sessions) = sessions_on(store_clock.clone());
        let authenticator =
            super::super::Authenticator::new(sessions.clone()).with_clock(verifier.clone());
        let now = verifier.now_secs();
        let session = sessions.start("ml:1", "t1", now).await.unwrap();
        let live = bearer(&session.token);
        assert!(authenticator.authenticate(&live).await.is_ok());
        sessions.end(&session.claims, now).await.unwrap();

        // The token's last second by the verifier's clock: it still verifies, and is
        // refused only because its revocation is still there.
        let to_last_second = Duration::from_secs(3600 - 1);
        verifier.advance(to_last_second);
        store_clock.advance(to_last_second);
        assert_eq!(verifier.now_secs(), session.claims.exp - 1);
        assert!(
            sessions
                .keys()
                .verify(session.token.expose_secret(), verifier.now_secs())
                .is_ok()
        );
        assert!(sessions.is_revoked(&session.claims).await.unwrap());
        assert!(matches!(
            authenticator.authenticate(&live).await,
            Err(ApiError::Unauthorized)
        ));

        // From its expiry on, the token itself is refused.
        verifier.advance(Duration::from_secs(1));
        assert!(
            sessions
                .keys()
                .verify(session.token.expose_secret(), verifier.now_secs())
                .is_err()
        );
        assert!(matches!(
            authenticator.authenticate(&live).await,
            Err(ApiError::Unauthorized)
        ));
    }

    #[tokio::test]
    async fn a_session_at_its_last_second_is_still_ended_by_the_next_login() {
        const START_MS: i64 = 1_800_000_000_000;
        let clock = Arc::new(ManualClock::at(START_MS));
        let (_dir, sessions) = sessions_on(clock.clone());
        let first = sessions
            .start("ml:1", "t1", clock.now_secs())
            .await
            .unwrap();
        clock.advance(Duration::from_secs(3600));
        // The registry still lists it, and the next login revokes it.
        assert_eq!(sessions.active("ml:1").await.unwrap().len(), 1);
        sessions
            .start("ml:1", "t1", clock.now_secs())
            .await
            .unwrap();
        assert!(sessions.is_revoked(&first.claims).await.unwrap());
    }
}
