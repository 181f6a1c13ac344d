//! A seller's tenant: made on their first login, found again on every later one.

use std::sync::Arc;

use serde_json::json;

use crate::store::{Condition, EpochSeconds, Item, Key, Store, StoreError, StoreResult, WriteOp};

/// The seller → tenant index entry.
fn seller_key(seller_id: u64) -> Key {
    Key::new(format!("SELLER#ml#{seller_id}"), "TENANT")
}

pub fn profile_key(tenant: &str) -> Key {
    Key::new(format!("TENANT#{tenant}"), "PROFILE")
}

/// The sellers' tenants.
#[derive(Clone)]
pub struct Tenants {
    store: Arc<dyn Store>,
}

impl Tenants {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// The tenant of Mercado Livre seller `seller_id`, created (with its profile) when
    /// this is their first login. Two first logins at once agree on one tenant.
    pub async fn for_seller(
        &self,
        seller_id: u64,
        nickname: &str,
        now: EpochSeconds,
    ) -> StoreResult<String> {
        if let Some(tenant) = self.find(seller_id).await? {
            return Ok(tenant);
        }
        let tenant = uuid::Uuid::now_v7().simple().to_string();
        let created = self
            .store
            .transact(vec![
                WriteOp::Put {
                    item: Item::new(seller_key(seller_id), json!({ "tenant": tenant })),
                    condition: Condition::Absent,
                },
                WriteOp::Put {
                    item: Item::new(
                        profile_key(&tenant),
                        json!({ "seller_id": seller_id, "nickname": nickname, "created_at": now }),
                    ),
                    condition: Condition::Absent,
                },
            ])
            .await;
        match created {
            Ok(()) => {
                tracing::info!(tenant = %tenant, seller_id, "tenant created");
                Ok(tenant)
            }
            // Another login of this seller created it first.
            Err(StoreError::TransactionCancelled { .. }) => self
                .find(seller_id)
                .await?
                .ok_or_else(|| StoreError::Unavailable("tenant creation conflicted".into())),
            Err(error) => Err(error),
        }
    }

    /// The tenant of Mercado Livre seller `seller_id`, if they ever signed in.
    pub async fn find(&self, seller_id: u64) -> StoreResult<Option<String>> {
        let Some(item) = self.store.get(&seller_key(seller_id)).await? else {
            return Ok(None);
        };
        item.data["tenant"]
            .as_str()
            .map(|tenant| Some(tenant.to_owned()))
            .ok_or_else(|| StoreError::Corrupt(format!("seller {seller_id} has no tenant")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::embedded_db::EmbeddedDb;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn a_seller_keeps_one_tenant_even_when_first_logins_race() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = Tenants::new(Arc::new(
            EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap(),
        ));
        let logins = (0..6).map(|_| {
            let tenants = tenants.clone();
            tokio::spawn(async move { tenants.for_seller(7, "SELLER", 0).await })
        });
        let mut found = Vec::new();
        for login in logins {
            found.push(login.await.unwrap().unwrap());
        }
        found.dedup();
        assert_eq!(found.len(), 1, "{found:?}");
        let other = tenants.for_seller(8, "OTHER", 0).await.unwrap();
        assert_ne!(other, found[0]);
        assert_eq!(tenants.for_seller(7, "SELLER", 1).await.unwrap(), found[0]);
    }
}
