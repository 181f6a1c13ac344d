//! The outbound HTTP client of every dependency spoken to over HTTPS (Mercado Livre,
//! Upstash), each with its own connect timeout. One per dependency per process (see
//! `crate::services`): its pooled connections outlive a Lambda invocation, so warm
//! invocations skip the TCP and TLS handshakes. All of them trust the process's roots
//! ([`crate::tls`]) through one rustls configuration.

use std::time::Duration;

use crate::tls::{Tls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// A new client trusting `tls`'s roots. Redirects are not followed: no API we call answers
/// with one, and a token must never follow a redirect elsewhere.
pub fn http_client(tls: &Tls, connect_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    Ok(reqwest::Client::builder()
        .tls_backend_preconfigured(tls.client_config()?)
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // Below the ~60 s after which load balancers drop idle connections, so a thawed
        // Lambda rarely picks a dead one.
        .pool_idle_timeout(Duration::from_secs(50))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sellerhub/", env!("CARGO_PKG_VERSION")))
        .build()?)
}
