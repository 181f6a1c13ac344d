//! The handlers of every function, built once from the shared adapters, by name.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use shared::adapters::Adapters;
use shared::auth::{Authenticator, setup};
use shared::config::{Config, ConfigError};
use shared::handlers::auth_callback::AuthCallback;
use shared::handlers::auth_login::AuthLogin;
use shared::handlers::auth_logout::AuthLogout;
use shared::handlers::health::Health;
use shared::handlers::me::Me;
use shared::handlers::token_refresher::TokenRefresher;
use shared::http::ApiError;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;
pub type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

/// The HTTP functions by name, and the scheduled workers.
pub struct Functions {
    http: BTreeMap<&'static str, Handler>,
    pub token_refresher: Arc<TokenRefresher>,
}

/// A handler calling `handle` on a state built once.
fn handler<S, F, Fut>(state: S, handle: F) -> Handler
where
    S: Send + Sync + 'static,
    F: Fn(Arc<S>, Request) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Response<Body>, ApiError>> + Send + 'static,
{
    let state = Arc::new(state);
    Arc::new(move |request| Box::pin(handle(Arc::clone(&state), request)))
}

impl Functions {
    pub fn new(config: &Config, adapters: &Adapters) -> Result<Self, ConfigError> {
        let store = &adapters.store;
        let limiter = shared::ratelimit::setup::local_limiter(config)?;
        let mercadolivre = setup::mercadolivre(config, Arc::clone(&limiter))?;
        let sessions = setup::sessions(config, Arc::clone(store))?;
        let mut http: BTreeMap<&'static str, Handler> = BTreeMap::new();

        let health = Health::new(
            Arc::clone(store),
            Arc::clone(&adapters.webhook_queue),
            shared::ratelimit::setup::upstash(config)?,
            config.health.clone(),
            config.version,
        );
        http.insert(
            "health",
            handler(health, |health, request| async move {
                health.handle(request).await
            }),
        );

        let login = AuthLogin::new(config, Arc::clone(store), limiter)?;
        http.insert(
            "auth-login",
            handler(login, |login, request| async move {
                login.handle(request).await
            }),
        );

        let callback = AuthCallback::new(
            config,
            Arc::clone(store),
            Arc::clone(&mercadolivre),
            setup::grants(config, Arc::clone(store))?,
            sessions.clone(),
        )?;
        http.insert(
            "auth-callback",
            handler(callback, |callback, request| async move {
                callback.handle(request).await
            }),
        );

        let logout = AuthLogout::new(sessions.clone());
        http.insert(
            "auth-logout",
            handler(logout, |logout, request| async move {
                logout.handle(request).await
            }),
        );

        let me = Me::new(Authenticator::new(sessions), Arc::clone(store));
        http.insert(
            "me",
            handler(me, |me, request| async move { me.handle(request).await }),
        );

        let token_refresher = Arc::new(TokenRefresher::new(setup::refresher(
            config,
            Arc::clone(store),
            mercadolivre,
        )?));

        Ok(Self {
            http,
            token_refresher,
        })
    }

    /// The handler of `function`. Every function the route table names has one: the
    /// local runner refuses to start otherwise.
    pub fn handler(&self, function: &str) -> Handler {
        match self.http.get(function) {
            Some(handler) => Arc::clone(handler),
            None => panic!(
                "the local runner has no handler for function {function:?} of the route table"
            ),
        }
    }
}
