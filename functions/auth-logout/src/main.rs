//! The `auth-logout` Lambda: init builds the store and the session keys once.

use std::sync::Arc;

use shared::handlers::auth_logout::AuthLogout;
use shared::lambda::log_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    let (config, adapters) = shared::lambda::init("auth-logout").await?;
    let store = adapters.store;
    let sessions = shared::auth::setup::sessions(&config, store).inspect_err(log_init_error)?;
    let logout = Arc::new(AuthLogout::new(sessions));
    shared::lambda::serve_http(move |request| {
        let logout = Arc::clone(&logout);
        async move { logout.handle(request).await }
    })
    .await
}
