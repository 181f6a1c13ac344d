//! The outbound HTTP client of every dependency spoken to over HTTPS (Mercado Livre,
//! Upstash), each with its own connect timeout. One per dependency per process (see
//! `crate::services`): its pooled connections outlive a Lambda invocation, so warm
//! invocations skip the TCP and TLS handshakes.

use std::time::Duration;

/// A new client. Redirects are not followed: no API we call answers with one, and a
/// token must never follow a redirect elsewhere.
pub fn http_client(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        // Below the ~60 s after which load balancers drop idle connections, so a thawed
        // Lambda rarely picks a dead one.
        .pool_idle_timeout(Duration::from_secs(50))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("sellerhub/", env!("CARGO_PKG_VERSION")))
        .build()
}
