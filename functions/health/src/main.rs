//! The `health` Lambda: init builds the adapters once; each invocation runs the shared
//! handler.

use std::sync::Arc;

use shared::adapters::Adapters;
use shared::config::{Config, Profile};
use shared::handlers::health::Health;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("health");
    let config = Config::load(Profile::Lambda)
        .await
        .inspect_err(shared::lambda::log_init_error)?;
    let adapters = Adapters::aws(&config)
        .await
        .inspect_err(shared::lambda::log_init_error)?;
    let limiter =
        shared::ratelimit::setup::upstash(&config).inspect_err(shared::lambda::log_init_error)?;
    let health = Arc::new(Health::new(
        adapters.store,
        adapters.webhook_queue,
        limiter,
        config.health.clone(),
        config.version,
    ));
    shared::lambda::serve_http(move |request| {
        let health = Arc::clone(&health);
        async move { health.handle(request).await }
    })
    .await
}
