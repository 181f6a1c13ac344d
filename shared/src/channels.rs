//! The WhatsApp phone numbers linked to tenants. A Meta change names the phone number it
//! was sent to (`metadata.phone_number_id`); its link says whose inbox it belongs to. One
//! number belongs to one tenant.

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use crate::store::{
    Condition, EpochSeconds, Item, Key, Query, SortKey, Store, StoreError, WriteOp,
};

/// The most phone numbers one tenant links: their list is one page.
pub const MAX_LINKS: usize = 20;

const WHATSAPP: &str = "whatsapp";

/// Which tenant holds a phone number.
fn owner_key(phone_number_id: &str) -> Key {
    Key::new(format!("CHANNEL#{WHATSAPP}#{phone_number_id}"), "TENANT")
}

fn link_key(tenant: &str, phone_number_id: &str) -> Key {
    Key::new(
        format!("TENANT#{tenant}"),
        format!("CHANNEL#{WHATSAPP}#{phone_number_id}"),
    )
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Link {
    pub channel: &'static str,
    pub phone_number_id: String,
    pub linked_at: EpochSeconds,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("phone_number_id must be 1 to 32 digits")]
    InvalidPhoneNumberId,
    #[error("this phone number is linked to another account")]
    HeldByAnotherTenant,
    #[error("an account links at most {MAX_LINKS} phone numbers")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Clone)]
pub struct Channels {
    store: Arc<dyn Store>,
}

impl Channels {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Links `phone_number_id` to `tenant`. Returns the link and whether it is new (a
    /// number already linked to this tenant stays as it was).
    pub async fn link_whatsapp(
        &self,
        tenant: &str,
        phone_number_id: &str,
        now: EpochSeconds,
    ) -> Result<(Link, bool), ChannelError> {
        if phone_number_id.is_empty()
            || phone_number_id.len() > 32
            || !phone_number_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ChannelError::InvalidPhoneNumberId);
        }
        let links = self.list(tenant).await?;
        if let Some(link) = links
            .iter()
            .find(|link| link.phone_number_id == phone_number_id)
        {
            return Ok((link.clone(), false));
        }
        if links.len() >= MAX_LINKS {
            return Err(ChannelError::TooMany);
        }
        let link = Link {
            channel: WHATSAPP,
            phone_number_id: phone_number_id.to_owned(),
            linked_at: now,
        };
        let written = self
            .store
            .transact(vec![
                WriteOp::Put {
                    item: Item::new(owner_key(phone_number_id), json!({ "tenant": tenant })),
                    condition: Condition::Absent,
                },
                WriteOp::Put {
                    item: Item::new(
                        link_key(tenant, phone_number_id),
                        json!({ "phone_number_id": phone_number_id, "linked_at": now }),
                    ),
                    condition: Condition::Always,
                },
            ])
            .await;
        match written {
            Ok(()) => Ok((link, true)),
            Err(StoreError::TransactionCancelled { failed }) if failed.contains(&0) => {
                match self.whatsapp_tenant(phone_number_id).await? {
                    // This tenant's own link, made concurrently: done.
                    Some(owner) if owner == tenant => Ok((link, false)),
                    _ => Err(ChannelError::HeldByAnotherTenant),
                }
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The tenant's links, oldest phone number id first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<Link>, StoreError> {
        let page = self
            .store
            .query(
                Query::partition(format!("TENANT#{tenant}"))
                    .sort(SortKey::BeginsWith(format!("CHANNEL#{WHATSAPP}#")))
                    .limit(MAX_LINKS),
            )
            .await?;
        page.items
            .iter()
            .map(|item| {
                Ok(Link {
                    channel: WHATSAPP,
                    phone_number_id: item.data["phone_number_id"]
                        .as_str()
                        .ok_or_else(|| StoreError::Corrupt(format!("{:?}: no number", item.key)))?
                        .to_owned(),
                    linked_at: item.data["linked_at"].as_i64().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The tenant a WhatsApp phone number is linked to.
    pub async fn whatsapp_tenant(
        &self,
        phone_number_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let Some(item) = self.store.get(&owner_key(phone_number_id)).await? else {
            return Ok(None);
        };
        item.data["tenant"]
            .as_str()
            .map(|tenant| Some(tenant.to_owned()))
            .ok_or_else(|| StoreError::Corrupt(format!("phone {phone_number_id} has no tenant")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded_db::EmbeddedDb;
    use crate::store::embedded::EmbeddedStore;

    fn channels() -> (Channels, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        (Channels::new(Arc::new(store)), dir)
    }

    #[tokio::test]
    async fn a_number_belongs_to_one_tenant() {
        let (channels, _dir) = channels();
        let (link, created) = channels
            .link_whatsapp("t1", "106540352242922", 10)
            .await
            .unwrap();
        assert!(created);
        assert_eq!(link.phone_number_id, "106540352242922");
        let (_, again) = channels
            .link_whatsapp("t1", "106540352242922", 20)
            .await
            .unwrap();
        assert!(!again, "linking it again changes nothing");
        assert!(matches!(
            channels.link_whatsapp("t2", "106540352242922", 30).await,
            Err(ChannelError::HeldByAnotherTenant)
        ));
        assert_eq!(
            channels
                .whatsapp_tenant("106540352242922")
                .await
                .unwrap()
                .as_deref(),
            Some("t1")
        );
        assert_eq!(channels.list("t1").await.unwrap(), [link]);
        assert!(channels.list("t2").await.unwrap().is_empty());
        assert_eq!(channels.whatsapp_tenant("999").await.unwrap(), None);
    }

    #[tokio::test]
    async fn concurrent_links_of_one_number_have_one_winner() {
        let (channels, _dir) = channels();
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let channels = channels.clone();
                tokio::spawn(
                    async move { channels.link_whatsapp(&format!("t{n}"), "555", 0).await },
                )
            })
            .collect();
        let mut winners = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok((_, true)) => winners += 1,
                Err(ChannelError::HeldByAnotherTenant) => {}
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(winners, 1);
    }

    #[tokio::test]
    async fn bad_numbers_and_too_many_links_are_refused() {
        let (channels, _dir) = channels();
        for bad in ["", "12a", "+5511", &"1".repeat(33)] {
            assert!(matches!(
                channels.link_whatsapp("t1", bad, 0).await,
                Err(ChannelError::InvalidPhoneNumberId)
            ));
        }
        for n in 0..MAX_LINKS {
            channels
                .link_whatsapp("t1", &n.to_string(), 0)
                .await
                .unwrap();
        }
        assert!(matches!(
            channels.link_whatsapp("t1", "99999", 0).await,
            Err(ChannelError::TooMany)
        ));
        assert_eq!(channels.list("t1").await.unwrap().len(), MAX_LINKS);
    }
}
