//! The scheduled workers of the worker table, as EventBridge would run them in AWS: each
//! at its rate, the first run at start.

use std::sync::Arc;
use std::time::Duration;

use shared::clock::Clock;
use shared::routes::{Trigger, WORKERS};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::functions::Functions;

/// Runs every schedule until `stop` turns true; a run in progress finishes first.
pub async fn run(functions: Arc<Functions>, clock: Arc<dyn Clock>, stop: watch::Receiver<bool>) {
    let mut schedules = JoinSet::new();
    for worker in WORKERS {
        let Trigger::Every { minutes } = worker.trigger;
        let every = Duration::from_secs(u64::from(minutes) * 60);
        let run = functions.scheduled(worker.function);
        let clock = Arc::clone(&clock);
        let mut stop = stop.clone();
        schedules.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stop.wait_for(|stop| *stop) => return,
                }
                if let Err(error) = run(clock.now_secs()).await {
                    tracing::error!(function = worker.function, error = %error, "scheduled run failed");
                }
            }
        });
    }
    schedules.join_all().await;
}
