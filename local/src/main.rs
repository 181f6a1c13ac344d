//! `cargo run -p local`: the whole system on 127.0.0.1:3000 with the embedded adapters.
//! `cargo run -p local -- <command>`: an operations command (`--help` lists them; see
//! `local::ops`).

use std::io::Write;
use std::process::ExitCode;

use local::ops::{Invocation, Op};
use shared::config::{Config, Profile};

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    match Invocation::from_args() {
        Invocation::Serve => serve().await.map(|()| ExitCode::SUCCESS),
        Invocation::Ops(op) => Ok(operate(&op).await),
    }
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
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
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    local::serve(&config, listener, shutdown).await
}

/// Runs `op`: its report on stdout, its logs on stderr; why it failed, if it did, last.
async fn operate(op: &Op) -> ExitCode {
    shared::telemetry::emf::write_to(|line| {
        let _ = std::io::stderr().write_all(line);
    });
    shared::telemetry::init_with_writer("local", std::io::stderr);
    let outcome = match Config::load(Profile::Local).await {
        Ok(config) => local::ops::run(op, &config, &mut std::io::stdout()).await,
        Err(error) => Err(error.into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}: {error}", op.name());
            ExitCode::FAILURE
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM. The handlers are installed here, not when the future is
/// first polled: a signal that comes while the runner starts must stop it gracefully too,
/// not by the default disposition.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = interrupt.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
