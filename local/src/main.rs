//! `cargo run -p local`: the whole system on 127.0.0.1:3000 with the embedded adapters.
//! `cargo run -p local -- <command>`: an operations command (`--help` lists them; see
//! `local::ops`).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use local::StartupError;
use local::ops::{Invocation, Op};
use shared::config::{Config, ConfigError, Profile};
use shared::telemetry::LogFormat;

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything reads the environment: `.env` adds what the environment lacks.
    let dotenv = local::dotenv::load();
    match Invocation::from_args() {
        Invocation::Serve => serve(dotenv).await,
        Invocation::Ops(op) => operate(&op, dotenv).await,
    }
}

/// Runs the whole system; why it could not start is logged once ("init failed"), exit 1.
async fn serve(dotenv: Result<Option<PathBuf>, String>) -> ExitCode {
    let shutdown = shutdown_signal();
    let terminal = std::io::stdout().is_terminal();
    let format = LogFormat::choose(std::env::var("LOG_FORMAT").ok().as_deref(), terminal);
    let text = format == Ok(LogFormat::Text) || (format.is_err() && terminal);
    // JSON: log and metric lines are written out in batches by one thread
    // (local::log_writer); the guard flushes on exit. Text, for a person: written as they
    // come, and no metric lines (they are CloudWatch's input, not reading).
    let (writer, _flush_on_exit) = local::log_writer::batched_stdout();
    if text {
        shared::telemetry::emf::silence();
        shared::telemetry::init_with_format("local", LogFormat::Text, std::io::stdout);
    } else {
        let metrics = writer.clone();
        shared::telemetry::emf::write_to(move |line| {
            let _ = std::io::Write::write_all(&mut metrics.clone(), line);
        });
        shared::telemetry::init_with_format("local", LogFormat::Json, move || writer.clone());
    }
    let started = async {
        let shutdown = shutdown.map_err(|error| {
            StartupError::new(format!(
                "cannot install the SIGTERM/SIGINT handlers: {error}"
            ))
        })?;
        if let Some(path) = dotenv.map_err(StartupError::new)? {
            tracing::info!(path = %path.display(), "read .env (the environment wins)");
        }
        format.map_err(|reason| ConfigError::Invalid {
            name: "LOG_FORMAT",
            reason,
        })?;
        let config = Config::load(Profile::Local).await?;
        let listener = local::bind(config.listen).await?;
        Ok((local::start(&config, listener).await?, shutdown))
    }
    .await;
    let outcome = match started {
        Ok((started, shutdown)) => {
            if text {
                println!("{}", started.banner());
            }
            started.run(shutdown).await
        }
        Err(error) => Err(error),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            shared::lambda::log_init_error(&error);
            ExitCode::FAILURE
        }
    }
}

/// Runs `op`: its report on stdout, its logs on stderr; why it failed, if it did, last.
async fn operate(op: &Op, dotenv: Result<Option<PathBuf>, String>) -> ExitCode {
    shared::telemetry::emf::write_to(|line| {
        let _ = std::io::stderr().write_all(line);
    });
    shared::telemetry::init_with_writer("local", std::io::stderr);
    let outcome = match dotenv {
        Err(error) => Err(error.into()),
        Ok(_) => match Config::load(Profile::Local).await {
            Ok(config) => local::ops::run(op, &config, &mut std::io::stdout()).await,
            Err(error) => Err(error.into()),
        },
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
