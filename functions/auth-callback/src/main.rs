//! The `auth-callback` Lambda: init builds the store, the Mercado Livre client (behind
//! the shared limiter), the grant cipher and the session keys once.

use std::sync::Arc;

use shared::auth::setup;
use shared::handlers::auth_callback::AuthCallback;
use shared::lambda::log_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, adapters) = shared::lambda::init("auth-callback").await?;
    let store = adapters.store;
    let limiter = shared::ratelimit::setup::shared_limiter(&config).inspect_err(log_init_error)?;
    let mercadolivre = setup::mercadolivre(&config, limiter).inspect_err(log_init_error)?;
    let grants = setup::grants(&config, Arc::clone(&store)).inspect_err(log_init_error)?;
    let sessions = setup::sessions(&config, Arc::clone(&store)).inspect_err(log_init_error)?;
    let callback = Arc::new(
        AuthCallback::new(&config, store, mercadolivre, grants, sessions)
            .inspect_err(log_init_error)?,
    );
    shared::lambda::serve_http(move |request| {
        let callback = Arc::clone(&callback);
        async move { callback.handle(request).await }
    })
    .await
}
