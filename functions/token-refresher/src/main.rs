//! The `token-refresher` Lambda, run by an EventBridge schedule every 5 minutes: init
//! builds the store, the Mercado Livre client and the grant cipher once; each run
//! refreshes the grants due and returns its report.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use shared::auth::setup;
use shared::handlers::token_refresher::TokenRefresher;
use shared::lambda::log_init_error;
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let (config, adapters) = shared::lambda::init("token-refresher").await?;
    let store = adapters.store;
    let limiter = shared::ratelimit::setup::shared_limiter(&config).inspect_err(log_init_error)?;
    let mercadolivre = setup::mercadolivre(&config, limiter).inspect_err(log_init_error)?;
    let refresher = setup::refresher(&config, store, mercadolivre).inspect_err(log_init_error)?;
    let worker = Arc::new(TokenRefresher::new(refresher));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let worker = Arc::clone(&worker);
        let id = event.context.request_id.clone();
        let span = shared::telemetry::invocation_span(&id, &id);
        async move {
            worker
                .run(shared::store::now_epoch_seconds())
                .await
                .inspect_err(|error| tracing::error!(error = %error, "token refresh run failed"))
                .map_err(lambda_runtime::Error::from)
        }
        .instrument(span)
    }))
    .await
}
