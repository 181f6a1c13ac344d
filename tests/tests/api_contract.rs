//! The HTTP API against its OpenAPI document (`shared/openapi.json`): schemathesis,
//! installed by `infra/emulators.sh install` and named by SCHEMATHESIS (the test command
//! sets it), drives every operation of the local runner, signed in, with generated and
//! boundary inputs, and fails on any 5xx or any response the document does not describe
//! (status, content type, body schema). The runner holds a question and a conversation,
//! so the list operations answer with items.
//!
//! Without SCHEMATHESIS this test fails: the contract is part of the suite.

use std::process::Command;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{browser, sign_in};
use sellerhub_tests::whatsapp;
use serde_json::json;

const SELLER: u64 = 468_424_240;
const PHONE: &str = "106540352242922";
const META_SECRET: &str = "api-contract-meta-app-secret";

fn schemathesis(runner: &LocalRunner, token: &str, operations: &[&str]) {
    let executable = std::env::var("SCHEMATHESIS")
        .expect("SCHEMATHESIS names the schemathesis executable (bash infra/test.sh sets it)");
    let report = tempfile::tempdir().unwrap();
    let output = Command::new(&executable)
        .arg("run")
        .arg(runner.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance",
        ])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args([
            "--max-examples",
            "25",
            "--seed",
            "20261201",
            "--workers",
            "1",
        ])
        .args(["--max-redirects", "0", "--request-timeout", "10"])
        .args(["--generation-database", "none", "--no-color"])
        .arg("--report-dir")
        .arg(report.path())
        // Its cache of failures goes to the working directory: a throwaway one.
        .current_dir(report.path())
        .args(operations)
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap_or_else(|error| panic!("running {executable}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found responses the document does not allow:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("No operations"),
        "schemathesis tested nothing:\n{stdout}"
    );
}

#[tokio::test]
async fn every_operation_answers_as_the_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    // Event streams end after a second, so that each of schemathesis's requests to GET
    // /v1/events gets its whole response.
    let runner = LocalRunner::start(
        dir.path(),
        &[
            ("META_APP_SECRET", META_SECRET),
            ("EVENTS_STREAM_MS", "1000"),
        ],
    );
    let client = browser();
    let token = sign_in(&runner, &client, SELLER).await;

    let served: serde_json::Value = client
        .get(runner.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        served,
        serde_json::from_str::<serde_json::Value>(shared::routes::OPENAPI).unwrap()
    );

    // Something in every list: a linked number, a question, a WhatsApp conversation.
    let linked = client
        .put(runner.url("/v1/channels/whatsapp"))
        .bearer_auth(&token)
        .json(&json!({ "phone_number_id": PHONE }))
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), 201);
    let asked = client
        .post(runner.url("/sandbox/mercadolivre/questions"))
        .json(&json!({"seller_id": SELLER, "item_id": "MLB3859205311", "text": "Tem azul?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 201);
    let message = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/meta/whatsapp-message.json"
    ))
    .unwrap();
    let signature = whatsapp::signature(&message, META_SECRET);
    let sent = client
        .post(runner.url("/webhooks/meta"))
        .header("x-hub-signature-256", signature)
        .body(message)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    for path in ["/v1/questions", "/v1/conversations"] {
        loop {
            let listed: serde_json::Value = client
                .get(runner.url(path))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if listed["items"]
                .as_array()
                .is_some_and(|items| !items.is_empty())
            {
                break;
            }
            assert!(Instant::now() < deadline, "{path} stayed empty");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Every operation but signing out, then signing out (it revokes the token).
    schemathesis(&runner, &token, &["--exclude-path", "/auth/logout"]);
    schemathesis(&runner, &token, &["--include-path", "/auth/logout"]);
    assert!(runner.terminate().success());
}
