//! Why the runner could not start, in one line that names the variable, path or address at
//! fault and what to do about it: the form configuration errors have
//! (`PORT is invalid: …`), logged once as the "init failed" line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use shared::config::ConfigError;
use shared::embedded_db::EmbeddedError;
use tokio::net::TcpListener;

#[derive(Debug)]
pub struct StartupError(String);

impl std::fmt::Display for StartupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartupError {}

impl From<ConfigError> for StartupError {
    fn from(error: ConfigError) -> Self {
        Self(error.to_string())
    }
}

impl StartupError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Listens on `address` (HOST and PORT).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(address).await.map_err(|error| {
        use std::io::ErrorKind;
        let fix = match error.kind() {
            ErrorKind::AddrInUse => {
                return StartupError(format!(
                    "{address} is already in use (another local runner, or another program): \
                     stop it, or set PORT= to a free port (PORT=0 picks one)"
                ));
            }
            ErrorKind::AddrNotAvailable => {
                "HOST is not an address of this machine: set HOST=127.0.0.1 (this machine \
                 only) or HOST=0.0.0.0 (every interface)"
            }
            ErrorKind::PermissionDenied => "set PORT= to 1024 or above (lower ports need root)",
            _ => "set HOST= and PORT= to an address this machine can listen on",
        };
        StartupError(format!("cannot listen on {address}: {error}: {fix}"))
    })
}

/// The embedded store and queue could not be opened in `data_dir` (DATA_DIR).
pub fn data_dir_error(data_dir: &Path, error: EmbeddedError) -> StartupError {
    let dir = absolute(data_dir);
    match error {
        EmbeddedError::Locked { path } => StartupError(format!(
            "DATA_DIR {} is in use by another local runner (its database {} is locked): stop \
             that runner, or set DATA_DIR= to another directory",
            dir.display(),
            path.display()
        )),
        EmbeddedError::Open { path, reason } => StartupError(format!(
            "DATA_DIR {}: cannot open {} ({reason}): make it a directory you can write to, or \
             set DATA_DIR= to one",
            dir.display(),
            path.display()
        )),
        other => StartupError(format!("DATA_DIR {}: {other}", dir.display())),
    }
}

/// The generated secrets' file in `data_dir` could not be read or written.
pub fn secrets_file_error(path: &Path, error: std::io::Error) -> StartupError {
    StartupError(format!(
        "cannot keep the runner's generated secrets in {}: {error}: make DATA_DIR a directory \
         you can write to, or set DATA_DIR= to one",
        absolute(path).display()
    ))
}

/// `path` made absolute against the working directory (for messages: where it really is).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}
