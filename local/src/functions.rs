//! The handlers of every function, built once from the shared adapters, by name.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use shared::adapters::Adapters;
use shared::config::{Config, ConfigError};
use shared::handlers::health::Health;
use shared::http::ApiError;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, ApiError>> + Send>>;
pub type Handler = Arc<dyn Fn(Request) -> HandlerFuture + Send + Sync>;

pub struct Functions(BTreeMap<&'static str, Handler>);

impl Functions {
    pub fn new(config: &Config, adapters: &Adapters) -> Result<Self, ConfigError> {
        let mut functions: BTreeMap<&'static str, Handler> = BTreeMap::new();

        let health = Arc::new(Health::new(
            Arc::clone(&adapters.store),
            Arc::clone(&adapters.webhook_queue),
            shared::ratelimit::setup::upstash(config)?,
            config.health.clone(),
            config.version,
        ));
        functions.insert(
            "health",
            Arc::new(move |request| {
                let health = Arc::clone(&health);
                Box::pin(async move { health.handle(request).await })
            }),
        );

        Ok(Self(functions))
    }

    /// The handler of `function`. Every function the route table names has one: the
    /// local runner refuses to start otherwise.
    pub fn handler(&self, function: &str) -> Handler {
        match self.0.get(function) {
            Some(handler) => Arc::clone(handler),
            None => panic!(
                "the local runner has no handler for function {function:?} of the route table"
            ),
        }
    }
}
