//! The seller's Mercado Livre grant, one per tenant: the public part (seller, status,
//! expiry, scopes) in clear, the access and refresh tokens sealed with
//! [`GrantCipher`] under the record's own identity.
//!
//! A grant that can be refreshed is also on the `gsi1` expiry index, so the refresher
//! finds the ones due without scanning.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::grant_cipher::{CipherError, GrantCipher, Sealed};
use crate::store::{
    Condition, Cursor, EpochSeconds, Item, Key, Query, SortKey, Store, StoreError, StoreResult,
};

const PROVIDER: &str = "mercadolivre";
const EXPIRY_INDEX: &str = "GRANTS#mercadolivre";

/// Attempts at replacing a grant on login against concurrent refreshes and leases.
const CONNECT_ATTEMPTS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    Ok,
    /// Mercado Livre refused the refresh token (the seller revoked the app, or it was
    /// spent): only a new login fixes it.
    NeedsReconnect,
}

/// A grant's public part: everything but the tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantInfo {
    #[serde(skip)]
    pub tenant: String,
    pub seller_id: u64,
    pub nickname: String,
    pub scopes: Vec<String>,
    pub status: GrantStatus,
    /// When the access token expires.
    pub expires_at: EpochSeconds,
    /// Set while a refresher is spending the refresh token.
    #[serde(default)]
    pub lease_until: Option<EpochSeconds>,
    #[serde(skip)]
    pub version: u64,
}

pub struct GrantTokens {
    pub access_token: SecretString,
    pub refresh_token: SecretString,
}

impl std::fmt::Debug for GrantTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantTokens { .. }")
    }
}

#[derive(Debug)]
pub struct Grant {
    pub info: GrantInfo,
    pub tokens: GrantTokens,
    /// The tokens as stored, for rewriting the public part without sealing them again.
    pub sealed: Sealed,
}

#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("grant of tenant {tenant}: {error}")]
    Cipher { tenant: String, error: CipherError },
}

#[derive(Serialize, Deserialize)]
struct SealedTokens {
    access_token: String,
    refresh_token: String,
}

#[derive(Clone)]
pub struct Grants {
    store: Arc<dyn Store>,
    cipher: Arc<GrantCipher>,
}

fn key(tenant: &str) -> Key {
    Key::new(format!("TENANT#{tenant}"), format!("GRANT#{PROVIDER}"))
}

/// What the sealed tokens are bound to: this tenant's grant record.
fn record(tenant: &str) -> String {
    format!("{PROVIDER}-grant:{tenant}")
}

fn tenant_of_expiry_entry(sk: &str) -> Option<&str> {
    sk.split_once('#').map(|(_, tenant)| tenant)
}

impl Grants {
    pub fn new(store: Arc<dyn Store>, cipher: Arc<GrantCipher>) -> Self {
        Self { store, cipher }
    }

    /// The grant with its tokens opened.
    pub async fn load(&self, tenant: &str) -> Result<Option<Grant>, GrantError> {
        let Some(item) = self.store.get(&key(tenant)).await? else {
            return Ok(None);
        };
        let sealed: Sealed = serde_json::from_value(item.data["sealed"].clone())
            .map_err(|error| StoreError::Corrupt(format!("sealed grant: {error}")))?;
        let info = info_of(tenant, item)?;
        let cipher_error = |error| GrantError::Cipher {
            tenant: tenant.to_owned(),
            error,
        };
        let plaintext = self
            .cipher
            .open(&sealed, &record(tenant))
            .map_err(cipher_error)?;
        let tokens: SealedTokens = serde_json::from_slice(&plaintext)
            .map_err(|_| cipher_error(CipherError::Unopenable))?;
        Ok(Some(Grant {
            info,
            tokens: GrantTokens {
                access_token: tokens.access_token.into(),
                refresh_token: tokens.refresh_token.into(),
            },
            sealed,
        }))
    }

    /// Stores the grant a login just obtained, replacing the tenant's earlier one
    /// (whatever its status or lease: the new tokens supersede it). If a concurrent
    /// writer (another login of the seller, a refresh) stores a healthy grant first, that
    /// one is as fresh as ours and is kept: the seller is connected either way.
    pub async fn connect(&self, info: GrantInfo, tokens: &GrantTokens) -> Result<(), GrantError> {
        let mut current = self.store.get(&key(&info.tenant)).await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (version, condition) = match &current {
                Some(item) => (item.version + 1, Condition::VersionIs(item.version)),
                None => (1, Condition::Absent),
            };
            let info = GrantInfo {
                version,
                lease_until: None,
                ..info.clone()
            };
            let winner = match self.write(&info, tokens, condition).await {
                Err(GrantError::Store(StoreError::ConditionFailed { current })) => current,
                result => return result,
            };
            let healthy = winner
                .as_deref()
                .and_then(|item| info_of(&info.tenant, item.clone()).ok())
                .is_some_and(|won| {
                    won.seller_id == info.seller_id
                        && won.status == GrantStatus::Ok
                        && won.lease_until.is_none()
                });
            if healthy {
                return Ok(());
            }
            if attempt >= CONNECT_ATTEMPTS {
                return Err(StoreError::ConditionFailed { current: winner }.into());
            }
            super::pause_after_conflict(attempt).await;
            current = match winner {
                Some(item) => Some(*item),
                None => self.store.get(&key(&info.tenant)).await?,
            };
        }
    }

    /// Writes `info` (its `version` the new one) with `tokens` if `condition` holds.
    pub async fn write(
        &self,
        info: &GrantInfo,
        tokens: &GrantTokens,
        condition: Condition,
    ) -> Result<(), GrantError> {
        let sealed_tokens = SealedTokens {
            access_token: tokens.access_token.expose_secret().to_owned(),
            refresh_token: tokens.refresh_token.expose_secret().to_owned(),
        };
        let plaintext = serde_json::to_vec(&sealed_tokens)
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        let sealed = self
            .cipher
            .seal(&plaintext, &record(&info.tenant))
            .map_err(|error| GrantError::Cipher {
                tenant: info.tenant.clone(),
                error,
            })?;
        self.store.put(item(info, &sealed)?, condition).await?;
        Ok(())
    }

    /// Rewrites the public part only, with the tokens `sealed` as they were loaded (a
    /// lease, or a status change).
    pub async fn update_info(
        &self,
        info: &GrantInfo,
        sealed: &Sealed,
        condition: Condition,
    ) -> StoreResult<()> {
        self.store.put(item(info, sealed)?, condition).await
    }

    /// One page of the tenants whose grant expires before `before` and can be refreshed,
    /// soonest first.
    pub async fn due(
        &self,
        before: EpochSeconds,
        after: Option<Cursor>,
        limit: usize,
    ) -> StoreResult<(Vec<String>, Option<Cursor>)> {
        let page = self
            .store
            .query(
                Query::partition(EXPIRY_INDEX)
                    .on_gsi1()
                    .sort(SortKey::Lt(format!("{:012}#", before.max(0))))
                    .limit(limit)
                    .after(after),
            )
            .await?;
        let tenants = page
            .items
            .iter()
            .filter_map(|item| item.gsi1.as_ref())
            .filter_map(|gsi1| tenant_of_expiry_entry(&gsi1.sk))
            .map(str::to_owned)
            .collect();
        Ok((tenants, page.next))
    }
}

/// The stored item of a grant: a refreshable grant is on the expiry index.
fn item(info: &GrantInfo, sealed: &Sealed) -> StoreResult<Item> {
    let mut data =
        serde_json::to_value(info).map_err(|error| StoreError::Invalid(error.to_string()))?;
    data["sealed"] = json!(sealed);
    let mut item = Item::new(key(&info.tenant), data).with_version(info.version);
    if info.status == GrantStatus::Ok {
        item = item.with_gsi1(Key::new(
            EXPIRY_INDEX,
            format!("{:012}#{}", info.expires_at.max(0), info.tenant),
        ));
    }
    Ok(item)
}

/// The grants' public part (seller, status, expiry, scopes): reading it needs no key.
#[derive(Clone)]
pub struct GrantInfos {
    store: Arc<dyn Store>,
}

impl GrantInfos {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn get(&self, tenant: &str) -> StoreResult<Option<GrantInfo>> {
        match self.store.get(&key(tenant)).await? {
            Some(item) => info_of(tenant, item).map(Some),
            None => Ok(None),
        }
    }
}

fn info_of(tenant: &str, item: Item) -> StoreResult<GrantInfo> {
    let version = item.version;
    let mut info: GrantInfo = serde_json::from_value(item.data)
        .map_err(|error| StoreError::Corrupt(format!("grant of {tenant}: {error}")))?;
    info.tenant = tenant.to_owned();
    info.version = version;
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::embedded_db::EmbeddedDb;
    use crate::store::embedded::EmbeddedStore;

    pub(crate) fn grants() -> (tempfile::TempDir, Grants) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        let cipher = GrantCipher::parse(&GrantCipher::generate_key("k1")).unwrap();
        (dir, Grants::new(Arc::new(store), Arc::new(cipher)))
    }

    pub(crate) fn info(tenant: &str, expires_at: EpochSeconds) -> GrantInfo {
        GrantInfo {
            tenant: tenant.into(),
            seller_id: 468_424_240,
            nickname: "SELLER".into(),
            scopes: vec!["offline_access".into(), "read".into(), "write".into()],
            status: GrantStatus::Ok,
            expires_at,
            lease_until: None,
            version: 0,
        }
    }

    pub(crate) fn tokens(n: u32) -> GrantTokens {
        GrantTokens {
            access_token: format!("APP_USR-access-{n}").into(),
            refresh_token: format!("TG-refresh-{n}").into(),
        }
    }

    #[tokio::test]
    async fn tokens_are_stored_sealed_and_come_back_opened() {
        let (_dir, grants) = grants();
        grants.connect(info("t1", 1000), &tokens(1)).await.unwrap();

        let raw = grants.store.get(&key("t1")).await.unwrap().unwrap();
        let text = raw.data.to_string();
        assert!(
            !text.contains("APP_USR-access-1") && !text.contains("TG-refresh-1"),
            "{text}"
        );

        let grant = grants.load("t1").await.unwrap().unwrap();
        assert_eq!(
            grant.tokens.access_token.expose_secret(),
            "APP_USR-access-1"
        );
        assert_eq!(grant.tokens.refresh_token.expose_secret(), "TG-refresh-1");
        assert_eq!(grant.info.version, 1);
        assert_eq!(grant.info.status, GrantStatus::Ok);
        assert!(!format!("{grant:?}").contains("APP_USR"));
    }

    #[tokio::test]
    async fn a_grant_copied_onto_another_tenant_does_not_open() {
        let (_dir, grants) = grants();
        grants.connect(info("t1", 1000), &tokens(1)).await.unwrap();
        let mut stolen = grants.store.get(&key("t1")).await.unwrap().unwrap();
        stolen.key = key("t2");
        stolen.gsi1 = None;
        grants.store.put(stolen, Condition::Always).await.unwrap();
        assert!(matches!(
            grants.load("t2").await,
            Err(GrantError::Cipher {
                error: CipherError::Unopenable,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn due_lists_grants_expiring_before_a_time_soonest_first() {
        let (_dir, grants) = grants();
        grants
            .connect(info("late", 5000), &tokens(1))
            .await
            .unwrap();
        grants
            .connect(info("soon", 1000), &tokens(2))
            .await
            .unwrap();
        grants
            .connect(info("sooner", 900), &tokens(3))
            .await
            .unwrap();
        let mut reconnect = info("gone", 100);
        reconnect.status = GrantStatus::NeedsReconnect;
        grants.connect(reconnect, &tokens(4)).await.unwrap();

        let (due, _) = grants.due(2000, None, 50).await.unwrap();
        assert_eq!(due, ["sooner", "soon"]);

        let (first, next) = grants.due(9999, None, 1).await.unwrap();
        assert_eq!(first, ["sooner"]);
        let (second, _) = grants.due(9999, next, 5).await.unwrap();
        assert_eq!(second, ["soon", "late"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_logins_of_one_seller_all_connect() {
        let (_dir, grants) = grants();
        grants.connect(info("t1", 100), &tokens(0)).await.unwrap();
        let logins = (1..=20).map(|n| {
            let grants = grants.clone();
            tokio::spawn(async move { grants.connect(info("t1", 9000), &tokens(n)).await })
        });
        for login in logins {
            login.await.unwrap().unwrap();
        }
        let grant = grants.load("t1").await.unwrap().unwrap();
        assert_eq!(grant.info.status, GrantStatus::Ok);
        assert_ne!(grant.tokens.refresh_token.expose_secret(), "TG-refresh-0");
    }

    #[tokio::test]
    async fn a_login_supersedes_a_refreshers_lease() {
        let (_dir, grants) = grants();
        grants.connect(info("t1", 100), &tokens(1)).await.unwrap();
        let leased = grants.load("t1").await.unwrap().unwrap();
        let lease = GrantInfo {
            lease_until: Some(i64::MAX),
            version: leased.info.version + 1,
            ..leased.info.clone()
        };
        grants
            .update_info(
                &lease,
                &leased.sealed,
                Condition::VersionIs(leased.info.version),
            )
            .await
            .unwrap();
        grants.connect(info("t1", 9000), &tokens(2)).await.unwrap();
        let grant = grants.load("t1").await.unwrap().unwrap();
        assert_eq!(grant.info.lease_until, None);
        assert_eq!(grant.tokens.refresh_token.expose_secret(), "TG-refresh-2");
    }

    #[tokio::test]
    async fn a_login_replaces_the_grant_and_its_status() {
        let (_dir, grants) = grants();
        let mut broken = info("t1", 100);
        broken.status = GrantStatus::NeedsReconnect;
        grants.connect(broken, &tokens(1)).await.unwrap();
        grants.connect(info("t1", 9000), &tokens(2)).await.unwrap();
        let grant = grants.load("t1").await.unwrap().unwrap();
        assert_eq!(grant.info.status, GrantStatus::Ok);
        assert_eq!(grant.info.version, 2);
        assert_eq!(grant.tokens.refresh_token.expose_secret(), "TG-refresh-2");
    }
}
