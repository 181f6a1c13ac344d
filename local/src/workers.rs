//! The workers of the worker table, as AWS would run them: each scheduled worker at its
//! rate (EventBridge; the first run at start), and each queue worker fed by consumers of
//! the webhook queue with Lambda's event source mapping semantics (`shared::queue::
//! consumer`: batches of 10, partial batch responses, visibility timeout, redrive).

use std::sync::Arc;
use std::time::Duration;

use shared::clock::Clock;
use shared::queue::Queue;
use shared::queue::consumer::{self, ConsumerSettings};
use shared::routes::{Trigger, WORKERS};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::functions::Functions;

/// Batches handled at once: the event source mapping's MaximumConcurrency.
const CONSUMERS: usize = 2;

/// Runs every worker until `stop` turns true; runs and batches in progress finish first.
/// A queue worker's batch may run for `worker_timeout` (its Lambda function's Timeout).
pub async fn run(
    functions: Arc<Functions>,
    clock: Arc<dyn Clock>,
    webhook_queue: Arc<dyn Queue>,
    worker_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let mut workers = JoinSet::new();
    for worker in WORKERS {
        match worker.trigger {
            Trigger::Every { minutes } => {
                let every = Duration::from_secs(u64::from(minutes) * 60);
                workers.spawn(schedule(
                    worker.function,
                    every,
                    Arc::clone(&functions),
                    Arc::clone(&clock),
                    stop.clone(),
                ));
            }
            Trigger::WebhookQueue => {
                for _ in 0..CONSUMERS {
                    workers.spawn(consume(
                        worker.function,
                        Arc::clone(&functions),
                        Arc::clone(&clock),
                        Arc::clone(&webhook_queue),
                        worker_timeout,
                        stop.clone(),
                    ));
                }
            }
        }
    }
    workers.join_all().await;
}

async fn schedule(
    function: &'static str,
    every: Duration,
    functions: Arc<Functions>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
) {
    let run = functions.scheduled(function);
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
        if let Err(error) = run(clock.now_secs()).await {
            tracing::error!(function, error = %error, "scheduled run failed");
        }
    }
}

async fn consume(
    function: &'static str,
    functions: Arc<Functions>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn Queue>,
    timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let batch = functions.queued(function);
    let settings = ConsumerSettings {
        batch_size: shared::queue::MAX_BATCH,
        // As template.yaml's WebhookQueue: 6 times the worker's timeout.
        visibility_timeout: timeout * 6,
        wait: Duration::from_secs(1),
        queue_arn: "arn:aws:sqs:local:000000000000:webhooks".into(),
        region: "local".into(),
    };
    let deadline = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
    let handler = |event| {
        let response = batch(event, clock.now_ms() + deadline);
        async move { Ok::<_, std::convert::Infallible>(response.await) }
    };
    consumer::run(queue.as_ref(), settings, handler, stop).await;
}
