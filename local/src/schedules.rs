//! The scheduled workers, as EventBridge would run them in AWS: the token refresher
//! every 5 minutes (first at start).

use std::sync::Arc;
use std::time::Duration;

use shared::handlers::token_refresher::TokenRefresher;
use tokio::sync::watch;

pub const TOKEN_REFRESH_EVERY: Duration = Duration::from_secs(300);

/// Runs the schedules until `stop` turns true; a run in progress finishes first.
pub async fn run(token_refresher: Arc<TokenRefresher>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(TOKEN_REFRESH_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(error) = token_refresher
            .run(shared::store::now_epoch_seconds())
            .await
        {
            tracing::error!(error = %error, "token refresh run failed");
        }
    }
}
