//! The embedded default: every function of the route table served by one process on
//! 127.0.0.1, with the embedded store and queue unless configured otherwise.

mod adapters;
mod convert;
mod functions;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{MethodFilter, on};
use shared::config::Config;
use shared::http::ApiError;
use shared::routes::ROUTES;
use tokio::net::TcpListener;

pub use functions::Functions;

/// The router serving every route of the route table with its function's handler.
pub fn router(functions: Arc<Functions>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let handler = functions.handler(route.function);
        let method = MethodFilter::try_from(
            http::Method::from_bytes(route.method.as_bytes()).unwrap_or(http::Method::GET),
        )
        .unwrap_or(MethodFilter::GET);
        router = router.route(
            route.path,
            on(method, move |peer, path, request| {
                convert::call(route, Arc::clone(&handler), peer, path, request)
            }),
        );
    }
    router
        .fallback(|request| convert::problem(request, ApiError::NotFound))
        .method_not_allowed_fallback(|request| {
            convert::problem(request, ApiError::MethodNotAllowed)
        })
}

/// Serves until `shutdown` resolves, then drains the requests in flight.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let adapters = adapters::build(config).await?;
    let functions = Arc::new(Functions::new(config, &adapters)?);
    let app = router(functions).into_make_service_with_connect_info::<SocketAddr>();
    tracing::info!(address = %listener.local_addr()?, data_dir = %config.data_dir.display(), "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!("stopped");
    Ok(())
}
