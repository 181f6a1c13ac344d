//! The token-refresher worker (every 5 minutes): refreshes each grant whose access
//! token expires within the refresh window, a page at a time, the page's grants
//! concurrently. A grant that fails is left for the next run; one that needs the seller
//! to reconnect leaves the index.

use serde::Serialize;
use tokio::task::JoinSet;

use super::ScheduledHandler;
use crate::auth::refresh::{RefreshOutcome, Refresher};
use crate::config::ConfigError;
use crate::services::Services;
use crate::store::{EpochSeconds, StoreError};
use crate::telemetry::emf;

/// Grants refreshed at once (one page of the expiry index).
const CONCURRENCY: usize = 10;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RefreshReport {
    pub refreshed: u32,
    pub not_due: u32,
    pub busy: u32,
    pub needs_reconnect: u32,
    pub missing: u32,
    pub failed: u32,
}

impl RefreshReport {
    fn count(&mut self, outcome: RefreshOutcome) {
        let counter = match outcome {
            RefreshOutcome::Refreshed { .. } => &mut self.refreshed,
            RefreshOutcome::NotDue => &mut self.not_due,
            RefreshOutcome::Busy => &mut self.busy,
            RefreshOutcome::NeedsReconnect => &mut self.needs_reconnect,
            RefreshOutcome::Missing => &mut self.missing,
        };
        *counter += 1;
    }
}

pub struct TokenRefresher {
    refresher: Refresher,
}

impl TokenRefresher {
    pub fn new(refresher: Refresher) -> Self {
        Self { refresher }
    }
}

impl ScheduledHandler for TokenRefresher {
    const FUNCTION: &'static str = "token-refresher";
    type Report = RefreshReport;
    type Error = StoreError;

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self::new(services.refresher()?))
    }

    /// One run at `now`. Fails only when the expiry index cannot be read.
    async fn run(&self, now: EpochSeconds) -> Result<RefreshReport, StoreError> {
        let window = i64::try_from(self.refresher.window().as_secs()).unwrap_or(i64::MAX);
        let due_before = now.saturating_add(window).saturating_add(1);
        let mut report = RefreshReport::default();
        let mut cursor = None;
        loop {
            let (tenants, next) = self
                .refresher
                .grants()
                .due(due_before, cursor, CONCURRENCY)
                .await?;
            let mut refreshes = JoinSet::new();
            for tenant in tenants {
                let refresher = self.refresher.clone();
                refreshes.spawn(async move {
                    let outcome = refresher.refresh_if_due(&tenant).await;
                    (tenant, outcome)
                });
            }
            while let Some(joined) = refreshes.join_next().await {
                match joined {
                    Ok((_, Ok(outcome))) => report.count(outcome),
                    Ok((tenant, Err(error))) => {
                        tracing::error!(tenant = %tenant, error = %error, "grant refresh failed");
                        report.failed += 1;
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "grant refresh task failed");
                        report.failed += 1;
                    }
                }
            }
            cursor = next;
            if cursor.is_none() {
                break;
            }
        }
        tracing::info!(
            refreshed = report.refreshed,
            busy = report.busy,
            needs_reconnect = report.needs_reconnect,
            failed = report.failed,
            "token refresh run finished"
        );
        emf::emit(
            &[],
            &[
                emf::Metric::count("GrantRefreshFailures", f64::from(report.failed)),
                emf::Metric::count("GrantsDueRefreshed", f64::from(report.refreshed)),
            ],
        );
        Ok(report)
    }
}
