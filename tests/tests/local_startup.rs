//! The local runner as a person starts it: what it prints (text logs at a terminal,
//! LOG_FORMAT=text here), the `.env` it reads, and each way it can fail to start — one
//! line naming what is wrong and what to do, exit code 1, nothing printed twice, no
//! `Debug` output.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::runtime_api::function_binary;
use shared::embedded_db::EmbeddedDb;

/// The runner's command, in `work_dir` (where it looks for `.env`), its data in
/// `data_dir`, on a free port.
fn command(work_dir: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(function_binary("local", false));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("PORT", "0")
        .current_dir(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

/// Runs the runner expecting it to stop by itself: how it exited and all it wrote.
fn run_to_exit(work_dir: &Path, data_dir: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = command(work_dir, data_dir, env).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the local runner did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// Asserts the runner stopped at start with exit code 1, saying each of `says` in its one
/// error line, once, without Rust's `Debug` form of an error.
fn assert_refused(status: ExitStatus, output: &str, says: &[&str]) {
    assert_eq!(status.code(), Some(1), "{output}");
    let failures: Vec<&str> = output
        .lines()
        .filter(|line| line.contains("init failed"))
        .collect();
    assert_eq!(failures.len(), 1, "one error line: {output}");
    for text in says {
        assert!(failures[0].contains(text), "{text:?} not in {output}");
        assert_eq!(
            output.matches(text).count(),
            1,
            "{text:?} twice in {output}"
        );
    }
    for debug in ["Error: ", "Os {", "kind: ", "Invalid {", "Missing("] {
        assert!(
            !output.contains(debug),
            "Debug output {debug:?} in {output}"
        );
    }
}

#[test]
fn a_port_in_use_is_named_with_the_variable_to_change() {
    let work = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (status, output) = run_to_exit(work.path(), &work.path().join("data"), &[("PORT", &port)]);
    assert_refused(
        status,
        &output,
        &[
            &format!("127.0.0.1:{port} is already in use"),
            "set PORT= to a free port",
        ],
    );
}

#[test]
fn a_data_dir_that_cannot_be_made_is_named_with_the_variable_to_change() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data_dir = file.join("data");
    let (status, output) = run_to_exit(work.path(), &data_dir, &[]);
    assert_refused(
        status,
        &output,
        &[
            &format!("DATA_DIR {}: cannot open", data_dir.display()),
            "set DATA_DIR= to one",
        ],
    );
}

#[test]
fn a_data_dir_another_runner_holds_is_reported_as_such() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let held = EmbeddedDb::open(&data_dir).unwrap();
    let (status, output) = run_to_exit(work.path(), &data_dir, &[]);
    assert_refused(
        status,
        &output,
        &[
            &format!(
                "DATA_DIR {} is in use by another local runner",
                data_dir.display()
            ),
            "stop that runner, or set DATA_DIR= to another directory",
        ],
    );
    drop(held);
}

#[test]
fn host_localhost_listens_on_loopback_and_a_name_asks_for_an_ip() {
    let work = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(&work.path().join("a"), &[("HOST", "localhost")]);
    assert!(
        runner.base_url.starts_with("http://127.0.0.1:"),
        "{}",
        runner.base_url
    );
    drop(runner);

    let (status, output) = run_to_exit(
        work.path(),
        &work.path().join("b"),
        &[("HOST", "sellerhub.example")],
    );
    assert_refused(
        status,
        &output,
        &[
            "HOST is invalid",
            "expected an IP address, such as 127.0.0.1",
        ],
    );
}

#[test]
fn an_invalid_log_level_or_format_fails_at_init_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let (status, output) = run_to_exit(work.path(), &data_dir, &[("LOG_LEVEL", "loud")]);
    assert_refused(
        status,
        &output,
        &["LOG_LEVEL is invalid", "loud", "expected a level"],
    );
    let (status, output) = run_to_exit(work.path(), &data_dir, &[("LOG_FORMAT", "pretty")]);
    assert_refused(status, &output, &["LOG_FORMAT is invalid"]);
}

#[test]
fn a_real_mercado_livre_needs_its_credentials_named_at_once_never_the_sandboxs() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let real = ("MERCADOLIVRE_API_URL", "https://api.mercadolibre.com");
    let (status, output) = run_to_exit(work.path(), &data_dir, &[real]);
    assert_refused(
        status,
        &output,
        &[
            "MERCADOLIVRE_CLIENT_ID, MERCADOLIVRE_CLIENT_SECRET, MERCADOLIVRE_REDIRECT_URI are not set",
            "MERCADOLIVRE_API_URL is set, so the sandbox provider is off",
        ],
    );

    // A sandbox run generates the sandbox's client secret into DATA_DIR...
    let runner = LocalRunner::start(&data_dir, &[]);
    assert!(runner.terminate().success());
    assert!(
        std::fs::read_to_string(data_dir.join("local-secrets.json"))
            .unwrap()
            .contains("MERCADOLIVRE_CLIENT_SECRET")
    );
    // ...which a real application never gets.
    let (status, output) = run_to_exit(
        work.path(),
        &data_dir,
        &[
            real,
            ("MERCADOLIVRE_CLIENT_ID", "5123456789012345"),
            (
                "MERCADOLIVRE_REDIRECT_URI",
                "https://app.example.com/auth/callback",
            ),
        ],
    );
    assert_refused(status, &output, &["MERCADOLIVRE_CLIENT_SECRET is not set"]);
}

#[test]
fn dotenv_in_the_working_directory_is_read_and_the_environment_wins() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    std::fs::write(
        work.path().join(".env"),
        "# as .env.example\nLOG_LEVEL=loud\n",
    )
    .unwrap();
    let (status, output) = run_to_exit(work.path(), &data_dir, &[]);
    assert_refused(status, &output, &["LOG_LEVEL is invalid", "loud"]);

    let runner = Runner::spawn(work.path(), &data_dir, &[("LOG_LEVEL", "info")]);
    assert!(
        runner.wait_for("listening", Duration::from_secs(30)),
        "{}",
        runner.output()
    );

    std::fs::write(work.path().join(".env"), "NOT A LINE\n").unwrap();
    let (status, output) = run_to_exit(work.path(), &data_dir, &[]);
    assert_refused(status, &output, &["/.env cannot be read: line 1"]);
}

/// The runner running, its stdout collected line by line.
struct Runner {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Runner {
    fn spawn(work_dir: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Runner {
        let mut child = command(work_dir, data_dir, env).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Runner { child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn text_logs_start_with_what_a_person_needs_and_leave_metrics_out() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    let runner = Runner::spawn(work.path(), &data_dir, &[("LOG_FORMAT", "text")]);
    assert!(
        runner.wait_for("Ctrl-C stops", Duration::from_secs(30)),
        "{}",
        runner.output()
    );
    let banner = runner.output();
    let origin = banner
        .lines()
        .find_map(|line| line.trim().strip_prefix("Open"))
        .and_then(|rest| rest.trim().strip_suffix("/auth/login (sign in)"))
        .unwrap_or_else(|| panic!("no URL to open in:\n{banner}"))
        .to_owned();
    assert!(origin.starts_with("http://127.0.0.1:"), "{banner}");
    let data_dir = std::fs::canonicalize(&data_dir).unwrap();
    for expected in [
        format!("{}", data_dir.join("sellerhub.redb").display()),
        format!("{}", data_dir.join("local-secrets.json").display()),
        "Sandbox   on, because MERCADOLIVRE_API_URL is unset".to_owned(),
        format!("GET    {origin}/health"),
        format!("POST   {origin}/webhooks/mercadolivre"),
    ] {
        assert!(banner.contains(&expected), "{expected:?} not in:\n{banner}");
    }
    assert!(
        !banner.lines().any(|line| line.starts_with('{')),
        "JSON in text mode:\n{banner}"
    );

    // A buyer's question: the sandbox notifies the runner's webhook, which counts it (an
    // EMF metric line in JSON mode) and logs it.
    let response = reqwest::Client::new()
        .post(format!("{origin}/sandbox/mercadolivre/questions"))
        .json(&serde_json::json!({
            "seller_id": 468424240, "item_id": "MLB3859205311", "text": "Tem pronta entrega?"
        }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{response:?}");
    assert!(
        runner.wait_for("webhook", Duration::from_secs(10)),
        "{}",
        runner.output()
    );
    let output = runner.output();
    assert!(
        !output.contains("_aws"),
        "a metric line in text mode:\n{output}"
    );
    assert!(
        output.lines().any(|line| line.contains(" INFO  listening")),
        "{output}"
    );
}
