//! `cargo run -p local`: the whole system on 127.0.0.1:3000 with the embedded adapters.
//! `cargo run -p local -- redrive`: moves the webhook dead letters back to the queue.

use shared::config::{Config, Profile};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    shared::telemetry::init("local");
    let config = Config::load(Profile::Local)
        .await
        .inspect_err(shared::lambda::log_init_error)?;
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("redrive") => {
            local::redrive(&config, &mut std::io::stdout()).await?;
            return Ok(());
        }
        Some(other) => return Err(format!("unknown command {other:?}; known: redrive").into()),
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    local::serve(&config, listener, shutdown_signal()).await
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return interrupt.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: draining requests in flight");
}
