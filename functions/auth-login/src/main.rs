//! The `auth-login` Lambda: init builds the store and the shared limiter once; each
//! invocation runs the shared handler.

use std::sync::Arc;

use shared::handlers::auth_login::AuthLogin;
use shared::lambda::log_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, adapters) = shared::lambda::init("auth-login").await?;
    let limiter = shared::ratelimit::setup::shared_limiter(&config).inspect_err(log_init_error)?;
    let login =
        Arc::new(AuthLogin::new(&config, adapters.store, limiter).inspect_err(log_init_error)?);
    shared::lambda::serve_http(move |request| {
        let login = Arc::clone(&login);
        async move { login.handle(request).await }
    })
    .await
}
