//! The process's outbound HTTP client, for every dependency spoken to over HTTPS
//! (Mercado Livre, Upstash). One per process: its pooled connections outlive a Lambda
//! invocation, so warm invocations skip the TCP and TLS handshakes.

use std::sync::OnceLock;
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

/// The process's one client; the first caller's connect timeout wins.
pub fn shared_http_client(connect_timeout: Duration) -> reqwest::Result<reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(client) = CLIENT.get() {
        return Ok(client.clone());
    }
    let client = http_client(connect_timeout)?;
    Ok(CLIENT.get_or_init(|| client).clone())
}
