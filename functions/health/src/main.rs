//! The `health` Lambda: init builds the adapters once; each invocation runs the shared
//! handler.

use std::sync::Arc;

use shared::handlers::health::Health;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, adapters) = shared::lambda::init("health").await?;
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
