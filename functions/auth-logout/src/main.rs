//! The `auth-logout` Lambda: init builds the store and the session keys once.

use std::sync::Arc;

use shared::adapters::Adapters;
use shared::config::{Config, Profile};
use shared::handlers::auth_logout::AuthLogout;
use shared::lambda::log_init_error;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::telemetry::init("auth-logout");
    let config = Config::load(Profile::Lambda)
        .await
        .inspect_err(log_init_error)?;
    let store = Adapters::aws(&config)
        .await
        .inspect_err(log_init_error)?
        .store;
    let sessions = shared::auth::setup::sessions(&config, store).inspect_err(log_init_error)?;
    let logout = Arc::new(AuthLogout::new(sessions));
    shared::lambda::serve_http(move |request| {
        let logout = Arc::clone(&logout);
        async move { logout.handle(request).await }
    })
    .await
}
