//! Starts the local runner binary (`local`) on an ephemeral loopback port, for tests that
//! talk to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::runtime_api::function_binary;

pub struct LocalRunner {
    child: Child,
    pub base_url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl LocalRunner {
    /// Starts `local` with its data in `data_dir`, on a free port, and waits until it
    /// listens. `env` adds or overrides variables.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> LocalRunner {
        Self::start_binary(&function_binary("local", false), data_dir, env)
    }

    /// [`Self::start`] with another build of the runner (a benchmark's).
    pub fn start_binary(binary: &Path, data_dir: &Path, env: &[(&str, &str)]) -> LocalRunner {
        let mut child = command(binary, data_dir, env)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the local runner");
        let stdout = child.stdout.take().expect("piped stdout");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                    && value["message"] == "listening"
                    && let Some(address) = value["address"].as_str()
                {
                    let _ = address_tx.send(address.to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let address = match address_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the local runner did not start listening; its log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        LocalRunner {
            child,
            base_url: format!("http://{address}"),
            log,
        }
    }

    /// Runs `local` as [`LocalRunner::start`] does, expecting it to stop before it
    /// listens: how it exited, and what it wrote (log and error).
    pub fn run_to_exit(data_dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
        let mut child = command(&function_binary("local", false), data_dir, env)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the local runner");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child
            .try_wait()
            .expect("wait for the local runner")
            .is_none()
        {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the local runner did not stop by itself");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child.wait_with_output().expect("the runner's output");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status, text)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(self) -> ExitStatus {
        self.signal("TERM");
        self.wait(Duration::from_secs(10))
    }

    /// Sends `signal` (`TERM`, `INT`, ...) without waiting.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit by itself, failing the test after `within`.
    pub fn wait(mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the local runner") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the local runner did not stop; its log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process (SIGKILL: nothing of it runs after) and waits for it to be gone.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL the local runner");
        self.child.wait().expect("wait for the local runner");
    }

    /// Whether a log line containing `text` appears within `within`.
    pub fn wait_for_log(&self, text: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains(text))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

/// The runner's command: its data in `data_dir`, on a free port, stdout piped; `env`
/// adds or overrides variables.
fn command(binary: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(binary);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("PORT", "0")
        .env("LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

impl Drop for LocalRunner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
