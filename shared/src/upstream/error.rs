//! What can go wrong calling Mercado Livre, typed by what the caller should do about it.

use std::time::Duration;

use crate::ratelimit::LimiterError;

/// What a worker should do with work that failed with an [`UpstreamError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Not the work's fault and the wait is known: put it back for this long without
    /// counting a failed attempt.
    Defer(Duration),
    /// A transient failure: try again later, counting an attempt.
    Retry,
    /// The seller's access token was refused: refresh the grant (or have the seller
    /// reconnect), then try again.
    Reauthorize,
    /// Trying again cannot help.
    GiveUp,
}

/// Never carries an access token: requests are described by operation and path only.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Our limiter denied the call, or Mercado Livre answered 429 (the account is then
    /// blocked in the limiter until `retry_after`).
    #[error("rate limited for {} ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    #[error("Mercado Livre unavailable: {cause}")]
    Unavailable {
        cause: UnavailableCause,
        retry_after: Option<Duration>,
    },
    #[error("Mercado Livre refused the access token")]
    Unauthorized,
    /// The token endpoint refused the grant (`invalid_grant`): the authorization code or
    /// refresh token is expired, revoked or already used. Retrying or refreshing cannot
    /// help: the seller needs to reconnect (log in with Mercado Livre again).
    #[error("Mercado Livre refused the grant (invalid_grant): the seller needs to reconnect")]
    InvalidGrant,
    /// A collaborator (operator) account authorized the application, or its token was
    /// used (`invalid_operator_user_id`): only the account's owner (administrator) can.
    #[error("Mercado Livre refused a collaborator account (invalid_operator_user_id)")]
    OperatorUser,
    /// The grant lacks a scope sellerhub needs: the application's settings on Mercado
    /// Livre do not include it (a grant without `offline_access` has no refresh token).
    #[error("Mercado Livre granted no {0} scope: the application's settings must include it")]
    MissingScope(&'static str),
    #[error("not found on Mercado Livre")]
    NotFound,
    #[error("Mercado Livre rejected the request with status {status}: {message}")]
    Rejected { status: u16, message: String },
    #[error("unexpected response from Mercado Livre: {0}")]
    Malformed(String),
    #[error("not a Mercado Livre API path: {0:?}")]
    InvalidPath(String),
    /// The limiter itself failed (even its fallback): no call is made without it.
    #[error("rate limiter failed: {0}")]
    Limiter(#[source] LimiterError),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnavailableCause {
    /// Too many recent failures: calls fail fast without reaching Mercado Livre.
    #[error("circuit open")]
    CircuitOpen,
    #[error("status {0}")]
    Status(u16),
    #[error("timed out")]
    Timeout,
    #[error("could not connect")]
    Connect,
    #[error("transport error: {0}")]
    Transport(String),
}

impl UpstreamError {
    pub fn disposition(&self) -> Disposition {
        match self {
            UpstreamError::RateLimited { retry_after } => Disposition::Defer(*retry_after),
            UpstreamError::Unavailable {
                retry_after: Some(wait),
                ..
            } => Disposition::Defer(*wait),
            UpstreamError::Unavailable {
                retry_after: None, ..
            }
            | UpstreamError::Limiter(_) => Disposition::Retry,
            UpstreamError::Unauthorized => Disposition::Reauthorize,
            UpstreamError::InvalidGrant
            | UpstreamError::OperatorUser
            | UpstreamError::MissingScope(_)
            | UpstreamError::NotFound
            | UpstreamError::Rejected { .. }
            | UpstreamError::Malformed(_)
            | UpstreamError::InvalidPath(_) => Disposition::GiveUp,
        }
    }

    /// The wait Mercado Livre or the limiter asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::RateLimited { retry_after } => Some(*retry_after),
            UpstreamError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_tells_the_worker_what_to_do() {
        let wait = Duration::from_secs(42);
        let cases = [
            (
                UpstreamError::RateLimited { retry_after: wait },
                Disposition::Defer(wait),
            ),
            (
                UpstreamError::Unavailable {
                    cause: UnavailableCause::CircuitOpen,
                    retry_after: Some(wait),
                },
                Disposition::Defer(wait),
            ),
            (
                UpstreamError::Unavailable {
                    cause: UnavailableCause::Timeout,
                    retry_after: None,
                },
                Disposition::Retry,
            ),
            (
                UpstreamError::Limiter(LimiterError::Unavailable("down".into())),
                Disposition::Retry,
            ),
            (UpstreamError::Unauthorized, Disposition::Reauthorize),
            (UpstreamError::InvalidGrant, Disposition::GiveUp),
            (UpstreamError::OperatorUser, Disposition::GiveUp),
            (
                UpstreamError::MissingScope("offline_access"),
                Disposition::GiveUp,
            ),
            (UpstreamError::NotFound, Disposition::GiveUp),
            (
                UpstreamError::Rejected {
                    status: 400,
                    message: "bad".into(),
                },
                Disposition::GiveUp,
            ),
            (UpstreamError::Malformed("x".into()), Disposition::GiveUp),
            (UpstreamError::InvalidPath("x".into()), Disposition::GiveUp),
        ];
        for (error, disposition) in cases {
            assert_eq!(error.disposition(), disposition, "{error}");
        }
    }
}
