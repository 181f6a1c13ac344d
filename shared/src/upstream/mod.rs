//! The Mercado Livre API client. Every call goes through the shared rate limiter (the
//! application's and the seller account's budgets, checked atomically), a circuit
//! breaker and a per-call timeout; transient failures are retried with exponential
//! backoff and full jitter; a 429 blocks the application's budget and the account's in
//! the limiter for every instance (see [`UpstreamLimits::throttled_keys`]).
//! Errors say what the caller should do next ([`UpstreamError::disposition`]). The
//! OAuth calls (code exchange, refresh, `/users/me`) go through the same pipeline.

mod backoff;
mod breaker;
mod client;
mod error;
mod messages;
mod missed_feeds;
mod oauth;
mod orders;
mod questions;
mod retry_after;
pub(crate) mod wire;

pub use backoff::RetryPolicy;
pub use breaker::{BreakerPolicy, CircuitBreaker, CircuitState, Permit, Refusal};
pub use client::{
    DEFAULT_THROTTLE, DEPENDENCY, GLOBAL_KEY, MercadoLivre, UpstreamLimits, account_key,
};
pub use error::{Disposition, UnavailableCause, UpstreamError};
pub use messages::PostSaleMessage;
pub use missed_feeds::{MissedFeed, MissedFeeds};
pub use oauth::{ClientCredentials, OFFLINE_ACCESS, SellerIdentity, TokenSet};
pub use orders::{Order, OrderBuyer, OrderItem};
pub use questions::{Answer, Asker, PublishedAnswer, Question, QuestionStatus};
pub use retry_after::{MAX_RETRY_AFTER, parse as parse_retry_after};

#[cfg(test)]
mod tests;
