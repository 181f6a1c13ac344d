//! Receipts: how the worker applies each webhook once, however often it is delivered.
//!
//! Before applying an envelope the worker claims its dedupe key with a conditional put
//! (IN_PROGRESS, expiring when the invocation would be over, so a crashed worker's claim
//! lapses); the change it applies is written in one transaction with the receipt's
//! completion (COMPLETED, kept past the providers' retry windows). A delivery that finds
//! COMPLETED does nothing. A receipt is keyed by the webhook, not by a tenant: the tenant
//! is only known after the claim.
//!
//! When the worker gives up on an envelope it turns its claim into DEAD (naming the
//! message it dead-letters) before sending it to the dead-letter queue: a stray copy of
//! the envelope (a deferral re-sent before its original was deleted) then stops there
//! instead of applying what was declared dead. Only a redriven dead letter revives it.

use std::sync::Arc;

use serde_json::json;

use crate::store::{Condition, EpochSeconds, Item, Key, Store, StoreError, StoreResult, WriteOp};

/// How long a completed receipt is kept: Meta retries for up to 7 days, Mercado Livre's
/// `missed_feeds` lists about 2 days.
pub const COMPLETED_TTL_SECS: i64 = 8 * 24 * 3600;

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
const DEAD: &str = "dead";

fn key(dedupe_key: &str) -> Key {
    Key::new(format!("WEBHOOK#{dedupe_key}"), "RECEIPT")
}

/// A claim this attempt holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    key: Key,
    version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This attempt applies the envelope.
    Claimed(Receipt),
    /// Already applied: nothing to do.
    Completed,
    /// Another attempt holds it now (until its claim lapses).
    Busy,
    /// Given up on: message `message_id` carries it to the dead-letter queue (`sent` once
    /// it is there).
    Dead {
        version: u64,
        message_id: String,
        sent: bool,
    },
}

#[derive(Clone)]
pub struct Receipts {
    store: Arc<dyn Store>,
}

impl Receipts {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Claims `dedupe_key` for `attempt` (an id of this delivery attempt) until `until`.
    /// A claim the store wrote but whose answer was lost is recognised by its attempt id.
    pub async fn claim(
        &self,
        dedupe_key: &str,
        attempt: &str,
        until: EpochSeconds,
    ) -> StoreResult<Claim> {
        self.claim_if(dedupe_key, attempt, until, Condition::Absent)
            .await
    }

    /// Claims a dead receipt again, for its redriven dead letter (`dead_version` from
    /// [`Claim::Dead`]).
    pub async fn revive(
        &self,
        dedupe_key: &str,
        dead_version: u64,
        attempt: &str,
        until: EpochSeconds,
    ) -> StoreResult<Claim> {
        self.claim_if(
            dedupe_key,
            attempt,
            until,
            Condition::VersionIs(dead_version),
        )
        .await
    }

    async fn claim_if(
        &self,
        dedupe_key: &str,
        attempt: &str,
        until: EpochSeconds,
        condition: Condition,
    ) -> StoreResult<Claim> {
        // A random version: the holder of a claim that lapsed can never complete the
        // claim that replaced it (a counter would start again at the same number).
        let version = fastrand::u64(1..u64::MAX / 2);
        let item = Item::new(
            key(dedupe_key),
            json!({ "status": IN_PROGRESS, "attempt": attempt }),
        )
        .expiring_at(until)
        .with_version(version);
        match self.store.put(item.clone(), condition).await {
            Ok(()) => Ok(Claim::Claimed(Receipt {
                key: item.key,
                version,
            })),
            Err(StoreError::ConditionFailed {
                current: Some(found),
            }) => Ok(if found.data["status"] == COMPLETED {
                Claim::Completed
            } else if found.data["status"] == DEAD {
                Claim::Dead {
                    version: found.version,
                    message_id: found.data["message_id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    sent: found.data["sent"] == true,
                }
            } else if found.data["attempt"] == attempt {
                Claim::Claimed(Receipt {
                    key: found.key,
                    version: found.version,
                })
            } else {
                Claim::Busy
            }),
            // It lapsed between the check and the answer: someone may be taking it.
            Err(StoreError::ConditionFailed { current: None }) => Ok(Claim::Busy),
            Err(error) => Err(error),
        }
    }

    /// The write that completes `receipt`, to commit with the change it applied; it
    /// fails (cancelling that change) if the claim was lost meanwhile.
    pub fn completion(&self, receipt: &Receipt, outcome: &str, now: EpochSeconds) -> WriteOp {
        WriteOp::Put {
            item: Item::new(
                receipt.key.clone(),
                json!({ "status": COMPLETED, "outcome": outcome, "at": now }),
            )
            .expiring_at(now + COMPLETED_TTL_SECS)
            .with_version(receipt.version + 1),
            condition: Condition::VersionIs(receipt.version),
        }
    }

    /// Completes `receipt` with nothing else to write (the envelope changed nothing).
    pub async fn complete(
        &self,
        receipt: &Receipt,
        outcome: &str,
        now: EpochSeconds,
    ) -> StoreResult<()> {
        self.store
            .transact(vec![self.completion(receipt, outcome, now)])
            .await
    }

    /// Turns `receipt` into DEAD, for message `message_id` about to be dead-lettered: the
    /// receipt of that burial, or None when the claim was lost meanwhile (another attempt
    /// holds the envelope).
    pub async fn bury(
        &self,
        receipt: &Receipt,
        message_id: &str,
        now: EpochSeconds,
    ) -> StoreResult<Option<Receipt>> {
        self.write_dead(receipt, message_id, false, now).await
    }

    /// Records that the dead letter of `burial` is in the dead-letter queue, so that its
    /// message, delivered again, is not dead-lettered twice.
    pub async fn buried_and_sent(
        &self,
        burial: &Receipt,
        message_id: &str,
        now: EpochSeconds,
    ) -> StoreResult<()> {
        self.write_dead(burial, message_id, true, now)
            .await
            .map(|_| ())
    }

    async fn write_dead(
        &self,
        receipt: &Receipt,
        message_id: &str,
        sent: bool,
        now: EpochSeconds,
    ) -> StoreResult<Option<Receipt>> {
        let version = receipt.version + 1;
        let item = Item::new(
            receipt.key.clone(),
            json!({ "status": DEAD, "message_id": message_id, "sent": sent, "at": now }),
        )
        .expiring_at(now + COMPLETED_TTL_SECS)
        .with_version(version);
        match self
            .store
            .put(item, Condition::VersionIs(receipt.version))
            .await
        {
            Ok(()) => Ok(Some(Receipt {
                key: receipt.key.clone(),
                version,
            })),
            Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The burial of message `message_id` found dead in a claim (`version` from
    /// [`Claim::Dead`]).
    pub fn burial(dedupe_key: &str, version: u64) -> Receipt {
        Receipt {
            key: key(dedupe_key),
            version,
        }
    }

    /// Gives the claim up, so that the next delivery can apply the envelope at once.
    pub async fn release(&self, receipt: &Receipt) -> StoreResult<()> {
        match self
            .store
            .delete(&receipt.key, Condition::VersionIs(receipt.version))
            .await
        {
            Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Whether `dedupe_key` has been applied.
    pub async fn is_completed(&self, dedupe_key: &str) -> StoreResult<bool> {
        Ok(self
            .store
            .get(&key(dedupe_key))
            .await?
            .is_some_and(|item| item.data["status"] == COMPLETED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::faulty::FaultyStore;

    fn receipts() -> (Receipts, Arc<FaultyStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        let store = Arc::new(FaultyStore::new(Arc::new(embedded)));
        (Receipts::new(store.clone()), store, dir)
    }

    #[tokio::test]
    async fn one_attempt_claims_and_a_completed_receipt_stops_the_rest() {
        let (receipts, store, _dir) = receipts();
        let now = SystemClock.now_secs();
        let Claim::Claimed(receipt) = receipts.claim("k", "m1:1", now + 30).await.unwrap() else {
            panic!("the first claim wins");
        };
        assert_eq!(
            receipts.claim("k", "m2:1", now + 30).await.unwrap(),
            Claim::Busy
        );
        store
            .transact(vec![receipts.completion(&receipt, "created", now)])
            .await
            .unwrap();
        assert_eq!(
            receipts.claim("k", "m2:2", now + 30).await.unwrap(),
            Claim::Completed
        );
        assert!(receipts.is_completed("k").await.unwrap());
    }

    #[tokio::test]
    async fn a_retried_claim_is_recognised_as_its_own() {
        let (receipts, store, _dir) = receipts();
        store.set_puts_retried(true);
        let claim = receipts
            .claim("k", "m1:1", SystemClock.now_secs() + 30)
            .await
            .unwrap();
        assert!(matches!(claim, Claim::Claimed(_)), "{claim:?}");
    }

    #[tokio::test]
    async fn a_released_or_lapsed_claim_can_be_taken_again() {
        let (receipts, store, _dir) = receipts();
        let now = SystemClock.now_secs();
        let claim = |attempt: &'static str, until| {
            let receipts = receipts.clone();
            async move {
                match receipts.claim("k", attempt, until).await.unwrap() {
                    Claim::Claimed(receipt) => receipt,
                    other => panic!("{attempt}: {other:?}"),
                }
            }
        };
        let first = claim("a", now + 30).await;
        receipts.release(&first).await.unwrap();
        // b's claim lapses at once, as a crashed worker's does: c takes it over, and b
        // can no longer complete it.
        let lapsed = claim("b", now - 1).await;
        let current = claim("c", now + 30).await;
        let cancelled = store
            .transact(vec![receipts.completion(&lapsed, "x", now)])
            .await;
        assert!(matches!(
            cancelled,
            Err(StoreError::TransactionCancelled { .. })
        ));
        store
            .transact(vec![receipts.completion(&current, "created", now)])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_buried_receipt_stops_copies_until_its_dead_letter_revives_it() {
        let (receipts, _store, _dir) = receipts();
        let now = SystemClock.now_secs();
        let Claim::Claimed(receipt) = receipts.claim("k", "m1:3", now + 30).await.unwrap() else {
            panic!("claim")
        };
        let burial = receipts.bury(&receipt, "m1", now).await.unwrap().unwrap();
        let dead = receipts.claim("k", "m2:1", now + 30).await.unwrap();
        let Claim::Dead {
            message_id, sent, ..
        } = dead
        else {
            panic!("a copy finds it dead: {dead:?}")
        };
        assert_eq!((message_id.as_str(), sent), ("m1", false));
        assert!(
            receipts.bury(&receipt, "m1", now).await.unwrap().is_none(),
            "a claim is buried once"
        );
        receipts.buried_and_sent(&burial, "m1", now).await.unwrap();
        let Claim::Dead { version, sent, .. } =
            receipts.claim("k", "m1:4", now + 30).await.unwrap()
        else {
            panic!("still dead")
        };
        assert!(sent, "its dead letter is recorded as sent");
        let revived = receipts
            .revive("k", version, "m3:1", now + 30)
            .await
            .unwrap();
        assert!(matches!(revived, Claim::Claimed(_)), "{revived:?}");
        assert_eq!(
            receipts.claim("k", "m4:1", now + 30).await.unwrap(),
            Claim::Busy
        );
    }
}
