//! One module per function: the handler logic. Every handler is built the same way, by
//! its trait's `build` from the composition root ([`crate::services::Services`]), and run
//! by the serve helper of its trigger (`crate::lambda`); the Lambda binary and the local
//! runner build and call the same handlers.

pub mod admin_queues;
pub mod auth_callback;
pub mod auth_login;
pub mod auth_logout;
pub mod channels;
pub mod cleanup;
pub mod conversations;
pub mod events;
pub mod health;
pub mod me;
pub mod notifications;
pub mod questions;
pub mod reconciler;
pub mod token_refresher;
pub mod web;
pub mod webhook_mercadolivre;
pub mod webhook_meta;
pub mod webhook_worker;

use std::future::Future;

use lambda_http::{Body, Request, Response};

use crate::config::ConfigError;
use crate::http::{ApiError, StreamingBody};
use crate::services::Services;
use crate::store::EpochSeconds;

/// The handler of an HTTP function (API Gateway REST proxy events).
pub trait HttpHandler: Sized + Send + Sync + 'static {
    /// The function: its crate and binary under functions/, and its routes' function in
    /// `crate::routes::ROUTES`.
    const FUNCTION: &'static str;

    /// The handler, from the services (once per process, at init).
    fn build(services: &Services) -> Result<Self, ConfigError>;

    fn handle(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// The handler of an HTTP function whose response body is streamed as it is produced
/// (Server-Sent Events): in Lambda through response streaming (API Gateway's STREAM
/// transfer mode), in the local runner straight to the connection.
pub trait StreamingHandler: Sized + Send + Sync + 'static {
    const FUNCTION: &'static str;

    fn build(services: &Services) -> Result<Self, ConfigError>;

    /// The response head is sent once this returns; the body as it comes. An error is a
    /// whole problem response, as with [`HttpHandler`].
    fn handle(
        &self,
        request: Request,
    ) -> impl Future<Output = Result<Response<StreamingBody>, ApiError>> + Send;
}

/// The handler of a scheduled function (an EventBridge rule at the rate
/// `crate::routes::WORKERS` gives it).
pub trait ScheduledHandler: Sized + Send + Sync + 'static {
    const FUNCTION: &'static str;

    /// What a run reports (the invocation's result, and a log line).
    type Report: serde::Serialize + std::fmt::Debug + Send;
    type Error: std::error::Error + Send + Sync + 'static;

    fn build(services: &Services) -> Result<Self, ConfigError>;

    /// One run at `now`.
    fn run(
        &self,
        now: EpochSeconds,
    ) -> impl Future<Output = Result<Self::Report, Self::Error>> + Send;
}

/// The handler of an SQS-triggered function: one record at a time, the records of a
/// batch concurrently. An error (or a panic) fails that record only: it is reported in the
/// batch response, so SQS delivers it again and the rest of the batch is done.
pub trait QueueHandler: Sized + Send + Sync + 'static {
    const FUNCTION: &'static str;

    type Error: std::error::Error + Send + Sync + 'static;

    fn build(services: &Services) -> Result<Self, ConfigError>;

    /// Processes one record of an invocation that times out at `deadline_ms` (milliseconds
    /// since the epoch).
    fn process(
        &self,
        record: aws_lambda_events::sqs::SqsMessage,
        deadline_ms: i64,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
