//! The `me` Lambda: init builds the store and the session keys once.

use std::sync::Arc;

use shared::adapters::Adapters;
use shared::auth::Authenticator;
use shared::config::{Config, Profile};
use shared::handlers::me::Me;
use shared::lambda::log_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("me");
    let config = Config::load(Profile::Lambda)
        .await
        .inspect_err(log_init_error)?;
    let store = Adapters::aws(&config)
        .await
        .inspect_err(log_init_error)?
        .store;
    let sessions =
        shared::auth::setup::sessions(&config, Arc::clone(&store)).inspect_err(log_init_error)?;
    let me = Arc::new(Me::new(Authenticator::new(sessions), store));
    shared::lambda::serve_http(move |request| {
        let me = Arc::clone(&me);
        async move { me.handle(request).await }
    })
    .await
}
