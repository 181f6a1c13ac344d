//! What every function's main.rs shares once init is done: running the Lambda runtime
//! with a handler wrapped in the shared HTTP plumbing.

use std::convert::Infallible;
use std::future::Future;

use lambda_http::{Body, Request, Response, service_fn};

use crate::http::{ApiError, serve};

/// Runs an HTTP function until the runtime stops it.
pub async fn serve_http<H, Fut>(handler: H) -> Result<(), lambda_http::Error>
where
    H: Fn(Request) -> Fut + Sync,
    Fut: Future<Output = Result<Response<Body>, ApiError>> + Send,
{
    lambda_http::run(service_fn(|request| {
        let response = serve(request, &handler);
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

/// Logs why init failed, before main returns the error and the process exits.
pub fn log_init_error(error: &impl std::fmt::Display) {
    tracing::error!(error = %error, "init failed");
}
