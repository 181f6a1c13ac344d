//! The seller's inbox page in a real browser: headless Chromium (Debian's `chromium`,
//! named by CHROMIUM) driven by playwright-core (`tests/browser/`, pinned by its
//! package-lock.json); both installed by `infra/emulators.sh install`, and CHROMIUM set by
//! the test command. The local runner runs with its sandbox Mercado Livre; the script
//! (`tests/browser/walk.mjs`) walks as a seller would — signed out, sign in with the
//! keyboard, authorize on the sandbox, a question arriving live, answering it, a signed
//! WhatsApp message arriving live, the event stream ended and its reconnection held while a
//! question and messages arrive (each shown once after the resume), "load more", the tabs
//! by keyboard, a notification read, sign out — and fails on any console error, uncaught
//! exception or CSP violation of that page. A second page of the same browser shows what
//! only an error status can: a refused reconnection (the page resumes by itself) and a 429
//! shown by its title; its console must log exactly those two failed loads.
//! Screenshots of every step are kept in a temp folder (printed).
//!
//! Without CHROMIUM this test fails: the page is part of the suite.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;

const META_SECRET: &str = "browser-walk-meta-app-secret";
/// The whole walk, Chromium's start included; each step has its own, shorter timeout.
const WALK_TIMEOUT: Duration = Duration::from_secs(300);

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

#[test]
fn a_seller_signs_in_sees_questions_and_messages_arrive_live_answers_and_signs_out() {
    let chromium = std::env::var("CHROMIUM")
        .expect("CHROMIUM names the browser (bash infra/test.sh sets it; infra/emulators.sh install installs it)");
    assert!(
        Path::new(&chromium).is_file(),
        "CHROMIUM={chromium}: no such file"
    );
    let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        scripts.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {} (bash infra/emulators.sh install)",
        scripts.display()
    );

    // The browser reaches the runner through the script's proxy, on `proxy`: the login
    // must come back there.
    let proxy = free_port();
    let callback = format!("http://127.0.0.1:{proxy}/auth/callback");
    let data = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(
        data.path(),
        &[
            ("META_APP_SECRET", META_SECRET),
            ("MERCADOLIVRE_REDIRECT_URI", &callback),
        ],
    );
    let screenshots = tempfile::Builder::new()
        .prefix("sellerhub-browser-")
        .tempdir()
        .unwrap()
        .keep();
    eprintln!("browser walk: screenshots in {}", screenshots.display());

    let mut walk = Command::new("node")
        .arg("walk.mjs")
        .current_dir(&scripts)
        .env("RUNNER_URL", &runner.base_url)
        .env("PROXY_PORT", proxy.to_string())
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOTS", &screenshots)
        .env("META_APP_SECRET", META_SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node (Node.js >= 20)");
    let (lines, output) = mpsc::channel();
    for stream in [
        Box::new(walk.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(walk.stderr.take().unwrap()),
    ] {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
    }
    drop(lines);

    let deadline = Instant::now() + WALK_TIMEOUT;
    let mut said = Vec::new();
    let status = loop {
        while let Ok(line) = output.recv_timeout(Duration::from_millis(50)) {
            eprintln!("{line}");
            said.push(line);
        }
        if let Some(status) = walk.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = walk.kill();
            let _ = walk.wait();
            panic!(
                "the walk did not end within {WALK_TIMEOUT:?}:\n{}",
                said.join("\n")
            );
        }
    };
    // What the walk wrote last: its pipes close once it exited.
    for line in output.iter() {
        eprintln!("{line}");
        said.push(line);
    }
    assert!(
        status.success(),
        "the walk failed ({status}); screenshots in {}:\n{}\n\nthe runner's log:\n{}",
        screenshots.display(),
        said.join("\n"),
        runner.log().join("\n")
    );
    assert!(
        said.iter().any(|line| line.starts_with("walk: done")),
        "the walk ended without finishing"
    );
    assert!(runner.terminate().success());
}
