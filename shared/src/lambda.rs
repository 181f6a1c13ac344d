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

/// What every function's init starts with: JSON logging, the configuration (with its
/// secret) and the AWS adapters. A failure is logged before it is returned.
pub async fn init(
    function: &'static str,
) -> Result<(crate::config::Config, crate::adapters::Adapters), crate::config::ConfigError> {
    crate::telemetry::init(function);
    let config = crate::config::Config::load(crate::config::Profile::Lambda)
        .await
        .inspect_err(log_init_error)?;
    let adapters = crate::adapters::Adapters::aws(&config)
        .await
        .inspect_err(log_init_error)?;
    Ok((config, adapters))
}

/// Logs why init failed, before main returns the error and the process exits.
pub fn log_init_error(error: &impl std::fmt::Display) {
    tracing::error!(error = %error, "init failed");
}
