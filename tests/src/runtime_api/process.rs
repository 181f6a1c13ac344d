//! [`FunctionProcess`]: a function binary under its own emulator, its captured output and
//! its `/proc` memory figures.

use std::future::Future;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::{HarnessError, Invocation, REGION, RuntimeApi, lock, random_hex};

/// How long the tail of a function's output kept in an error message is.
const LOG_TAIL: usize = 4096;

/// A captured pipe: the bytes so far, and whether the pipe reached end of file.
#[derive(Clone)]
struct OutputBuffer {
    bytes: Arc<Mutex<Vec<u8>>>,
    eof: watch::Receiver<bool>,
}

impl OutputBuffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.bytes)).into_owned()
    }
}

/// Copies `pipe` into a buffer on a thread of its own until end of file.
fn drain(mut pipe: impl Read + Send + 'static) -> OutputBuffer {
    let bytes = Arc::new(Mutex::new(Vec::new()));
    let (eof_tx, eof) = watch::channel(false);
    let buffer = bytes.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => lock(&buffer).extend_from_slice(&chunk[..n]),
            }
        }
        let _ = eof_tx.send(true);
    });
    OutputBuffer { bytes, eof }
}

/// A function binary running under its own [`RuntimeApi`], like one Lambda sandbox.
///
/// The child gets a clean environment: `PATH`, the variables Lambda sets for a
/// `provided.al2023` function (`AWS_LAMBDA_RUNTIME_API`, `AWS_LAMBDA_FUNCTION_NAME`,
/// `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128`, `AWS_LAMBDA_FUNCTION_VERSION=$LATEST`, `AWS_REGION`,
/// `AWS_DEFAULT_REGION`, `_HANDLER=bootstrap`, `LAMBDA_TASK_ROOT`, log group/stream, `TZ`,
/// dummy credentials as Lambda always provides credentials in the environment), then the
/// caller's `env`, which wins. Stdout and stderr are captured. The child is killed on drop.
pub struct FunctionProcess {
    api: RuntimeApi,
    child: Child,
    binary: PathBuf,
    spawned_at: Instant,
    stdout: OutputBuffer,
    stderr: OutputBuffer,
}

impl std::fmt::Debug for FunctionProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionProcess")
            .field("binary", &self.binary)
            .field("pid", &self.child.id())
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Drop for FunctionProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FunctionProcess {
    /// Starts an emulator and spawns `binary` against it. Returns as soon as the process
    /// exists; use [`Self::wait_ready`] or just [`Self::invoke`].
    pub async fn spawn(
        binary: impl AsRef<Path>,
        env: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        // Absolute, as the child runs in the task root (its own directory).
        let binary = std::fs::canonicalize(binary.as_ref()).map_err(|source| HarnessError::Io {
            context: format!("locating {}", binary.as_ref().display()),
            source,
        })?;
        let file_name = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "function".into());
        let function_name = env
            .iter()
            .rev()
            .find(|(key, _)| *key == "AWS_LAMBDA_FUNCTION_NAME")
            .map(|(_, value)| (*value).to_owned())
            .unwrap_or(file_name);
        let api = RuntimeApi::start_for(&function_name).await?;
        let task_root = binary
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        let log_stream = format!("2025/01/01/[$LATEST]{}", random_hex(32));

        let mut command = Command::new(&binary);
        command
            .env_clear()
            .current_dir(&task_root)
            .env("PATH", path)
            .env("LANG", "en_US.UTF-8")
            .env("TZ", ":UTC")
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", &function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function_name}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream)
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env(
                "AWS_SECRET_ACCESS_KEY",
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            )
            .env("AWS_SESSION_TOKEN", "harness-session-token")
            .env("_HANDLER", "bootstrap")
            .env("LAMBDA_TASK_ROOT", &task_root)
            .env("LAMBDA_RUNTIME_DIR", &task_root)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());

        let spawned_at = Instant::now();
        let mut child = command.spawn().map_err(|source| HarnessError::Io {
            context: format!("spawning {}", binary.display()),
            source,
        })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HarnessError::Emulator(
                "the child's output pipes are missing".into(),
            ));
        };
        let (stdout, stderr) = (drain(stdout), drain(stderr));
        Ok(FunctionProcess {
            api,
            child,
            binary,
            spawned_at,
            stdout,
            stderr,
        })
    }

    /// The emulator this process talks to.
    pub fn api(&self) -> &RuntimeApi {
        &self.api
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Init time: spawn → first `GET /next`, once the function has polled.
    pub fn init_duration(&self) -> Option<Duration> {
        self.api
            .first_poll()
            .map(|at| at.saturating_duration_since(self.spawned_at))
    }

    /// Waits for the end of init (first `GET /next`) and returns the init time. Fails fast
    /// when the process exits or reports an init error.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<Duration, HarnessError> {
        let result = {
            let Self { api, child, .. } = self;
            race_exit(child, "its first GET /next", api.wait_first_poll(timeout)).await
        };
        match result {
            Ok(first_poll) => Ok(first_poll.saturating_duration_since(self.spawned_at)),
            Err(error) => Err(self.with_logs(error).await),
        }
    }

    /// Invokes the function with `event` (see [`RuntimeApi::invoke`]); a cold function is
    /// given the same `timeout` to finish init. Fails fast when the process exits.
    pub async fn invoke(
        &mut self,
        event: Value,
        timeout: Duration,
    ) -> Result<Invocation, HarnessError> {
        self.invoke_with(event, timeout, None).await
    }

    /// [`Self::invoke`], also sending each chunk of a streamed response to `chunks` as it
    /// arrives (see [`super::LiveBody`]).
    pub async fn invoke_streaming(
        &mut self,
        event: Value,
        timeout: Duration,
        chunks: tokio::sync::mpsc::UnboundedSender<axum::body::Bytes>,
    ) -> Result<Invocation, HarnessError> {
        self.invoke_with(event, timeout, Some(chunks)).await
    }

    async fn invoke_with(
        &mut self,
        event: Value,
        timeout: Duration,
        chunks: Option<tokio::sync::mpsc::UnboundedSender<axum::body::Bytes>>,
    ) -> Result<Invocation, HarnessError> {
        let result = {
            let Self { api, child, .. } = self;
            race_exit(
                child,
                "answering the invocation",
                api.invoke_with(event, timeout, chunks),
            )
            .await
        };
        match result {
            Ok(invocation) => Ok(invocation),
            Err(error) => Err(self.with_logs(error).await),
        }
    }

    /// Peak resident set size (`VmHWM` in `/proc/<pid>/status`) in KiB, while the process runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    /// Current resident set size (`VmRSS`) in KiB, while the process runs.
    pub fn rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmRSS:")
    }

    /// The exit status if the process has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process now (also done on drop) and returns its exit status; the captured
    /// output is complete afterwards (waits at most 1 s for the pipes to close).
    pub async fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        self.settle_output(Duration::from_secs(1)).await;
        status
    }

    /// Waits (bounded) until both output pipes reached end of file, i.e. everything the
    /// exited process wrote has been captured.
    async fn settle_output(&self, timeout: Duration) {
        let mut stdout_eof = self.stdout.eof.clone();
        let mut stderr_eof = self.stderr.eof.clone();
        let _ = tokio::time::timeout(timeout, async {
            let _ = stdout_eof.wait_for(|eof| *eof).await;
            let _ = stderr_eof.wait_for(|eof| *eof).await;
        })
        .await;
    }

    /// Everything the function wrote to stdout so far (Lambda ships stdout and stderr to
    /// CloudWatch Logs alike; tracing JSON logs go to stdout).
    pub fn stdout(&self) -> String {
        self.stdout.text()
    }

    /// Whether stdout or stderr shows `needle` within `timeout`: the pipes are read on
    /// threads of their own, so a line written just before a response may reach the
    /// buffer just after it.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout().contains(needle) || self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Everything the function wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Stdout then stderr, labelled.
    pub fn output(&self) -> String {
        format!("[stdout]\n{}\n[stderr]\n{}", self.stdout(), self.stderr())
    }

    fn logs_tail(&self) -> String {
        let output = self.output();
        match output.char_indices().nth_back(LOG_TAIL) {
            Some((at, _)) => format!("…{}", &output[at..]),
            None => output,
        }
    }

    /// Adds the output tail to an error (and turns an exit after `/init/error` into an
    /// init error). After an exit, first lets the output pipes drain.
    async fn with_logs(&self, error: HarnessError) -> HarnessError {
        if matches!(
            error,
            HarnessError::ProcessExited { .. } | HarnessError::InitError { .. }
        ) {
            self.settle_output(Duration::from_secs(1)).await;
        }
        let logs = self.logs_tail();
        match error {
            HarnessError::ProcessExited { status, during, .. } => match self.api.init_error() {
                Some(error) => HarnessError::InitError { error, logs },
                None => HarnessError::ProcessExited {
                    status,
                    during,
                    logs,
                },
            },
            HarnessError::InitError { error, .. } => HarnessError::InitError { error, logs },
            HarnessError::Timeout { what, after, .. } => {
                HarnessError::Timeout { what, after, logs }
            }
            other => other,
        }
    }
}

/// Runs `work` while watching the child: an exit ends the wait at once.
async fn race_exit<T>(
    child: &mut Child,
    during: &'static str,
    work: impl Future<Output = Result<T, HarnessError>>,
) -> Result<T, HarnessError> {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            result = &mut work => return result,
            _ = tick.tick() => {
                let exited = child.try_wait().map_err(|source| HarnessError::Io {
                    context: "waiting for the function process".into(),
                    source,
                })?;
                if let Some(status) = exited {
                    return Err(HarnessError::ProcessExited {
                        status: status.to_string(),
                        during,
                        logs: String::new(),
                    });
                }
            }
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_figures_from_proc_status() {
        let pid = std::process::id();
        let peak = proc_status_kib(pid, "VmHWM:").unwrap();
        let current = proc_status_kib(pid, "VmRSS:").unwrap();
        assert!(peak > 0 && current > 0);
        assert_eq!(proc_status_kib(pid, "NoSuchField:"), None);
    }
}
