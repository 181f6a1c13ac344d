//! The local runner over real HTTP: the binary a user starts with `cargo run -p local`.

use std::time::Duration;

use sellerhub_tests::local_runner::LocalRunner;
use shared::embedded_db::EmbeddedDb;
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::queue::{OutMessage, Queue};

async fn get(url: &str) -> (u16, String, serde_json::Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.expect("a JSON body");
    (status, content_type, body)
}

#[tokio::test]
async fn a_fresh_runner_is_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let response = reqwest::get(runner.url("/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(body["checks"]["store"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["dead_letters"], 0);
    assert!(body["checks"]["store"]["latency_ms"].is_number());
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_json() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let (status, content_type, body) = get(&runner.url("/v1/nothing-here")).await;
    assert_eq!(
        (status, content_type.as_str()),
        (404, "application/problem+json")
    );
    assert_eq!(body["status"], 404);

    let response = reqwest::Client::new()
        .delete(runner.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

async fn queued(runner: &LocalRunner) -> serde_json::Value {
    let (status, _, body) = get(&runner.url("/health")).await;
    assert_eq!(status, 200, "{body}");
    body["checks"]["queue"].clone()
}

#[tokio::test]
async fn data_survives_a_restart_and_sigterm_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = EmbeddedDb::open(dir.path()).unwrap();
        let queue =
            EmbeddedQueue::open_with_dead_letters(db, WEBHOOK_QUEUE, WEBHOOK_DEAD_LETTER_QUEUE, 5)
                .unwrap();
        // Delayed, so that the runner's queue consumer leaves them alone.
        queue
            .send_batch(vec![
                OutMessage::new("one").delayed(900),
                OutMessage::new("two").delayed(900),
            ])
            .await
            .unwrap();
    }
    let env = [("HEALTH_CACHE_MS", "0")];

    let runner = LocalRunner::start(dir.path(), &env);
    assert_eq!(queued(&runner).await["delayed"], 2);
    let status = runner.terminate();
    assert!(
        status.success(),
        "SIGTERM ends the runner cleanly: {status:?}"
    );

    let runner = LocalRunner::start(dir.path(), &env);
    assert_eq!(
        queued(&runner).await["delayed"],
        2,
        "the messages are still there after a restart"
    );
    let log = runner.log();
    assert!(log.iter().any(|line| line.contains("\"listening\"")));
    drop(runner);

    // And the runner's own file is what holds them.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let db = EmbeddedDb::open(dir.path()).unwrap();
    let queue =
        EmbeddedQueue::open_with_dead_letters(db, WEBHOOK_QUEUE, WEBHOOK_DEAD_LETTER_QUEUE, 5)
            .unwrap();
    assert_eq!(queue.stats().await.unwrap().delayed, 2);
}

/// A second runner on a data dir another one holds stops on the database's lock before
/// it could write secrets of its own over the first one's.
#[tokio::test]
async fn a_runner_that_cannot_take_the_data_dir_writes_nothing_there() {
    let dir = tempfile::tempdir().unwrap();
    let held = EmbeddedDb::open(dir.path()).unwrap();

    let (status, output) = LocalRunner::run_to_exit(dir.path(), &[]);

    assert!(!status.success(), "{output}");
    assert!(output.contains("sellerhub.redb"), "{output}");
    assert!(
        !dir.path().join("local-secrets.json").exists(),
        "the secrets the first runner will write were not written first"
    );
    drop(held);
}

/// The data dir holds login states, PKCE verifiers and the runner's keys.
#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_its_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join(".data");
    let runner = LocalRunner::start(&dir, &[]);
    let mode = |name: &str| {
        std::fs::metadata(dir.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700);
    assert_eq!(mode("sellerhub.redb"), 0o600);
    assert_eq!(mode("local-secrets.json"), 0o600);
    drop(runner);
}
