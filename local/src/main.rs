//! `cargo run -p local`: the whole system on 127.0.0.1:3000 with the embedded adapters.
//! `cargo run -p local -- redrive`: moves the webhook dead letters back to the queue.

use shared::config::{Config, Profile};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Log and metric lines go through one buffered writer on its own thread: a server
    // under load would otherwise make a write call per line. The guard flushes on exit.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stdout());
    let metrics = writer.clone();
    shared::telemetry::emf::write_to(move |line| {
        let _ = std::io::Write::write_all(&mut metrics.clone(), line);
    });
    shared::telemetry::init_with_writer("local", writer);
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
