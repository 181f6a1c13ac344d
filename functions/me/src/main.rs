//! The `me` Lambda: init builds the store and the session keys once.

use std::sync::Arc;

use shared::auth::Authenticator;
use shared::handlers::me::Me;
use shared::lambda::log_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, adapters) = shared::lambda::init("me").await?;
    let store = adapters.store;
    let sessions =
        shared::auth::setup::sessions(&config, Arc::clone(&store)).inspect_err(log_init_error)?;
    let me = Arc::new(Me::new(Authenticator::new(sessions), store));
    shared::lambda::serve_http(move |request| {
        let me = Arc::clone(&me);
        async move { me.handle(request).await }
    })
    .await
}
