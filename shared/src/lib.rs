//! Everything the sellerhub functions share: configuration, telemetry, the HTTP
//! plumbing, the route table, the storage and queue kernels with their adapters, and
//! the handlers every function (and the local runner) calls.

pub mod adapters;
pub mod auth;
pub mod aws;
pub mod channels;
pub mod cleanup;
pub mod clock;
pub mod config;
pub mod embedded_db;
pub mod events;
pub mod handlers;
pub mod http;
pub mod inbox;
pub mod lambda;
pub mod outbound;
pub mod queue;
pub mod ratelimit;
pub mod routes;
pub mod services;
pub mod store;
pub mod telemetry;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tls;
pub mod upstream;
pub mod webhooks;
