//! Refreshing a grant before its access token expires. Refresh tokens are single-use, so
//! a refresh first takes a lease on the grant (a versioned write), spends the token, and
//! writes the new pair under the lease's version: two refreshers, or a refresher and a
//! worker refreshing on demand, never spend one token twice. A refused refresh token
//! (`invalid_grant`) marks the grant "needs reconnect" and is never retried. Every time
//! is read from the clock when it is used: a lease runs from when it is taken, however
//! long the run took to get there.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::grant_cipher::Sealed;
use super::grants::{GrantError, GrantInfo, GrantStatus, GrantTokens, Grants};
use crate::clock::{Clock, SystemClock};
use crate::events::Events;
use crate::store::{Condition, EpochSeconds, StoreError};
use crate::telemetry::emf;
use crate::upstream::{ClientCredentials, MercadoLivre, TokenSet, UpstreamError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshOutcome {
    Refreshed {
        expires_at: EpochSeconds,
    },
    /// Not within the refresh window yet.
    NotDue,
    /// Another refresher holds the lease (or won the race for it).
    Busy,
    NeedsReconnect,
    /// The tenant has no grant.
    Missing,
}

impl RefreshOutcome {
    pub fn label(self) -> &'static str {
        match self {
            RefreshOutcome::Refreshed { .. } => "refreshed",
            RefreshOutcome::NotDue => "not_due",
            RefreshOutcome::Busy => "busy",
            RefreshOutcome::NeedsReconnect => "needs_reconnect",
            RefreshOutcome::Missing => "missing",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("refreshing the grant: {0}")]
    Upstream(#[source] UpstreamError),
}

impl From<StoreError> for RefreshError {
    fn from(error: StoreError) -> Self {
        RefreshError::Grant(GrantError::Store(error))
    }
}

#[derive(Clone)]
pub struct Refresher {
    grants: Grants,
    events: Events,
    mercadolivre: Arc<MercadoLivre>,
    credentials: Arc<ClientCredentials>,
    /// Grants expiring within this window are due.
    window: Duration,
    lease: Duration,
    clock: Arc<dyn Clock>,
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}

impl Refresher {
    pub fn new(
        grants: Grants,
        events: Events,
        mercadolivre: Arc<MercadoLivre>,
        credentials: Arc<ClientCredentials>,
        window: Duration,
        lease: Duration,
    ) -> Self {
        Self {
            grants,
            events,
            mercadolivre,
            credentials,
            window,
            lease,
            clock: Arc::new(SystemClock),
        }
    }

    /// The same refresher reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Refreshes `tenant`'s grant if it expires within the window.
    pub async fn refresh_if_due(&self, tenant: &str) -> Result<RefreshOutcome, RefreshError> {
        self.refresh(tenant, false).await
    }

    /// Refreshes `tenant`'s grant whatever its expiry: Mercado Livre refused its access
    /// token.
    pub async fn refresh_now(&self, tenant: &str) -> Result<RefreshOutcome, RefreshError> {
        self.refresh(tenant, true).await
    }

    async fn refresh(&self, tenant: &str, force: bool) -> Result<RefreshOutcome, RefreshError> {
        let Some(grant) = self.grants.load(tenant).await? else {
            return Ok(RefreshOutcome::Missing);
        };
        let info = grant.info;
        if info.status == GrantStatus::NeedsReconnect {
            return Ok(RefreshOutcome::NeedsReconnect);
        }
        let now = self.clock.now_secs();
        if !force && info.expires_at > now.saturating_add(secs(self.window)) {
            return Ok(RefreshOutcome::NotDue);
        }
        if info.lease_until.is_some_and(|until| until > now) {
            return Ok(RefreshOutcome::Busy);
        }

        let leased = GrantInfo {
            lease_until: Some(now.saturating_add(secs(self.lease))),
            version: info.version + 1,
            ..info.clone()
        };
        match self
            .grants
            .update_info(&leased, &grant.sealed, Condition::VersionIs(info.version))
            .await
        {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => return Ok(RefreshOutcome::Busy),
            Err(error) => return Err(error.into()),
        }

        let refreshed = self
            .mercadolivre
            .refresh_grant(
                &self.credentials,
                &grant.tokens.refresh_token,
                info.seller_id,
            )
            .await;
        let after_lease = Condition::VersionIs(leased.version);
        match refreshed {
            Ok(tokens) => self.store_refreshed(&leased, tokens, after_lease).await,
            Err(UpstreamError::InvalidGrant) => {
                self.mark_needs_reconnect(&leased, &grant.sealed, after_lease)
                    .await?;
                Ok(RefreshOutcome::NeedsReconnect)
            }
            Err(error) => {
                // The token may or may not have been spent; the next run finds out. Give
                // the grant back now rather than when the lease runs out.
                let released = GrantInfo {
                    lease_until: None,
                    version: leased.version + 1,
                    ..leased
                };
                if let Err(release) = self
                    .grants
                    .update_info(&released, &grant.sealed, after_lease)
                    .await
                {
                    tracing::warn!(tenant, error = %release, "could not release the grant's lease");
                }
                Err(RefreshError::Upstream(error))
            }
        }
    }

    async fn store_refreshed(
        &self,
        leased: &GrantInfo,
        tokens: TokenSet,
        after_lease: Condition,
    ) -> Result<RefreshOutcome, RefreshError> {
        // The new access token lives from when Mercado Livre issued it: just now.
        let expires_at = self
            .clock
            .now_secs()
            .saturating_add(secs(tokens.expires_in));
        let info = GrantInfo {
            scopes: tokens.scopes.clone(),
            expires_at,
            lease_until: None,
            version: leased.version + 1,
            ..leased.clone()
        };
        let tokens = GrantTokens {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        };
        if let Err(error) = self.grants.write(&info, &tokens, after_lease).await {
            // Mercado Livre spent the old refresh token and the new one could not be
            // kept: the seller will have to reconnect.
            tracing::error!(
                tenant = %info.tenant,
                error = %error,
                "refreshed tokens could not be stored"
            );
            emf::emit(&[], &[emf::Metric::count("GrantRefreshLost", 1.0)]);
            return Err(error.into());
        }
        tracing::info!(tenant = %info.tenant, expires_at, "grant refreshed");
        emf::emit(&[], &[emf::Metric::count("GrantsRefreshed", 1.0)]);
        Ok(RefreshOutcome::Refreshed { expires_at })
    }

    async fn mark_needs_reconnect(
        &self,
        leased: &GrantInfo,
        sealed: &Sealed,
        after_lease: Condition,
    ) -> Result<(), RefreshError> {
        let info = GrantInfo {
            status: GrantStatus::NeedsReconnect,
            lease_until: None,
            version: leased.version + 1,
            ..leased.clone()
        };
        self.grants.update_info(&info, sealed, after_lease).await?;
        tracing::warn!(
            tenant = %info.tenant,
            seller_id = info.seller_id,
            "Mercado Livre refused the refresh token: the seller must reconnect"
        );
        emf::emit(&[], &[emf::Metric::count("GrantsNeedReconnect", 1.0)]);
        self.events
            .record(
                &info.tenant,
                "grant.needs_reconnect",
                json!({ "provider": "mercadolivre", "seller_id": info.seller_id }),
                self.clock.now_secs(),
            )
            .await?;
        Ok(())
    }
}
