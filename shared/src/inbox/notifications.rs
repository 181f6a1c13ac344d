//! The tenant's notifications, read side: newest first, all of them or the unread ones;
//! how many are unread (the counter [`super::Inbox`] adds to with each new one); and
//! marking one read, which takes it off the unread index and the count exactly once.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{ATTEMPTS, keys};
use crate::store::{Condition, Cursor, Item, Query, Store, StoreError, StoreResult, WriteOp};

/// Which notifications a list walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Unread,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// A UUIDv7 in simple form: later notifications have greater ids.
    pub id: String,
    /// `question.new`, `message.new`, `order.updated`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it was made, in milliseconds since the epoch.
    pub at_ms: i64,
    pub read: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at_ms: Option<i64>,
    /// What it is about (the question, message or order).
    pub data: Value,
}

/// One page of a list: the notifications, and where the next page starts.
#[derive(Debug)]
pub struct Listed {
    pub items: Vec<Notification>,
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    /// The tenant has no notification with this id (whoever else may have one).
    #[error("no such notification")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Notifications {
    store: Arc<dyn Store>,
}

impl Notifications {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Up to `limit` of the tenant's notifications, newest first, after `after`.
    pub async fn list(
        &self,
        tenant: &str,
        filter: Filter,
        limit: usize,
        after: Option<Cursor>,
    ) -> StoreResult<Listed> {
        let query = match filter {
            Filter::All => Query::partition(keys::notifications(tenant)),
            Filter::Unread => Query::partition(keys::unread_notifications(tenant)).on_gsi1(),
        };
        let page = self
            .store
            .query(query.backward().limit(limit).after(after))
            .await?;
        Ok(Listed {
            items: page
                .items
                .iter()
                .map(notification)
                .collect::<Result<_, _>>()?,
            next: page.next,
        })
    }

    /// How many of the tenant's notifications are unread.
    pub async fn unread_count(&self, tenant: &str) -> StoreResult<i64> {
        let counter = self.store.get(&keys::unread_count(tenant)).await?;
        Ok(counter.map_or(0, |item| item.counter))
    }

    /// Marks the tenant's notification `id` read (at `now_ms`, the first time) and
    /// returns it. However often and concurrently it is called, one call takes the
    /// notification off the unread count: the write is conditional on the version it
    /// read, and a call that loses the race reads it again and finds it read.
    pub async fn mark_read(
        &self,
        tenant: &str,
        id: &str,
        now_ms: i64,
    ) -> Result<Notification, NotificationError> {
        if !is_notification_id(id) {
            return Err(NotificationError::NotFound);
        }
        let key = keys::notification(tenant, id);
        for attempt in 1..=ATTEMPTS {
            let old = self
                .store
                .get(&key)
                .await?
                .ok_or(NotificationError::NotFound)?;
            if notification(&old)?.read {
                return Ok(notification(&old)?);
            }
            let mut read = old.clone().with_version(old.version + 1);
            read.gsi1 = None;
            read.data["read"] = json!(true);
            read.data["read_at_ms"] = json!(now_ms);
            let marked = notification(&read)?;
            let written = self
                .store
                .transact(vec![
                    WriteOp::Put {
                        item: read,
                        condition: Condition::VersionIs(old.version),
                    },
                    WriteOp::Add {
                        key: keys::unread_count(tenant),
                        delta: -1,
                    },
                ])
                .await;
            match written {
                Ok(()) => return Ok(marked),
                // Another call marked it first: read it again.
                Err(StoreError::TransactionCancelled { failed }) if !failed.is_empty() => {}
                // A conflict with a concurrent transaction (on DynamoDB, one that adds to
                // the same counter): try again shortly.
                Err(StoreError::TransactionCancelled { .. }) => {
                    let jitter = fastrand::u64(5..=25) * u64::from(attempt);
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(StoreError::Unavailable("marking a notification read kept conflicting".into()).into())
    }
}

/// Whether `id` can name a notification: the simple form of a UUID (what
/// [`super::Inbox`] makes).
fn is_notification_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn notification(item: &Item) -> StoreResult<Notification> {
    serde_json::from_value(item.data.clone())
        .map_err(|error| StoreError::Corrupt(format!("{:?}: notification: {error}", item.key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::inbox::{Inbox, OrderUpdate};
    use crate::store::embedded::EmbeddedStore;

    fn notifications() -> (Notifications, Inbox, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        (
            Notifications::new(Arc::clone(&store)),
            Inbox::new(store),
            dir,
        )
    }

    async fn order(inbox: &Inbox, tenant: &str, order_id: u64) {
        let order = OrderUpdate {
            order_id,
            status: "paid".into(),
            total: None,
            currency: None,
        };
        inbox
            .apply_order(tenant, &order, SystemClock.now_ms(), &[])
            .await
            .unwrap();
    }

    fn order_ids(listed: &Listed) -> Vec<u64> {
        listed
            .items
            .iter()
            .map(|n| n.data["order_id"].as_u64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn newest_first_all_or_unread_and_marked_read_once() {
        let (notifications, inbox, _dir) = notifications();
        for order_id in 1..=4 {
            order(&inbox, "t1", order_id).await;
        }
        order(&inbox, "t2", 99).await;
        let all = notifications
            .list("t1", Filter::All, 10, None)
            .await
            .unwrap();
        assert_eq!(order_ids(&all), [4, 3, 2, 1], "newest first, own tenant's");
        assert_eq!(notifications.unread_count("t1").await.unwrap(), 4);

        let second = all.items[2].id.clone();
        let marked = notifications.mark_read("t1", &second, 77).await.unwrap();
        assert!(marked.read);
        assert_eq!(marked.read_at_ms, Some(77));
        let again = notifications.mark_read("t1", &second, 88).await.unwrap();
        assert_eq!(again, marked, "marking it again changes nothing");
        assert_eq!(notifications.unread_count("t1").await.unwrap(), 3);

        let unread = notifications
            .list("t1", Filter::Unread, 10, None)
            .await
            .unwrap();
        assert_eq!(order_ids(&unread), [4, 3, 1]);
        let all = notifications
            .list("t1", Filter::All, 10, None)
            .await
            .unwrap();
        assert_eq!(order_ids(&all), [4, 3, 2, 1], "a read one is still listed");
        assert!(all.items[2].read);

        assert!(matches!(
            notifications.mark_read("t2", &second, 0).await,
            Err(NotificationError::NotFound)
        ));
        assert_eq!(notifications.unread_count("t2").await.unwrap(), 1);
        for bad in ["", "nope", &second.to_uppercase(), &format!("{second}0")] {
            assert!(matches!(
                notifications.mark_read("t1", bad, 0).await,
                Err(NotificationError::NotFound)
            ));
        }
        assert_eq!(notifications.unread_count("t3").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn concurrent_marks_count_one_notification_down_once() {
        let (notifications, inbox, _dir) = notifications();
        order(&inbox, "t1", 1).await;
        order(&inbox, "t1", 2).await;
        let listed = notifications
            .list("t1", Filter::All, 10, None)
            .await
            .unwrap();
        let id = listed.items[0].id.clone();
        let marks: Vec<_> = (0..20)
            .map(|n| {
                let (notifications, id) = (notifications.clone(), id.clone());
                tokio::spawn(async move { notifications.mark_read("t1", &id, n).await })
            })
            .collect();
        let mut marked_at = Vec::new();
        for mark in marks {
            marked_at.push(mark.await.unwrap().unwrap().read_at_ms);
        }
        marked_at.dedup();
        assert_eq!(marked_at.len(), 1, "one mark won: {marked_at:?}");
        assert_eq!(notifications.unread_count("t1").await.unwrap(), 1);
    }
}
