//! Self-test of the Lambda Runtime API emulator and process harness, against the tiny
//! `echo_lambda` function (tests/src/bin/echo_lambda.rs) and a hand-driven fake runtime.

use std::time::{Duration, Instant};

use sellerhub_tests::runtime_api::{
    FunctionProcess, HarnessError, Outcome, RuntimeApi, apigw_rest_event,
};
use serde_json::json;

const ECHO: &str = env!("CARGO_BIN_EXE_echo_lambda");
const TIMEOUT: Duration = Duration::from_secs(10);

fn get(path: &str) -> serde_json::Value {
    apigw_rest_event("GET", path, path, &[], &[], None)
}

#[tokio::test]
async fn echo_answers_a_rest_event_and_stays_warm() {
    let mut function = FunctionProcess::spawn(ECHO, &[]).await.unwrap();
    let init = function.wait_ready(TIMEOUT).await.unwrap();
    assert_eq!(function.init_duration(), Some(init));

    let event = apigw_rest_event(
        "POST",
        "/v1/things/abc",
        "/v1/things/{id}",
        &[("content-type", "application/json")],
        &[("limit", "5")],
        Some(r#"{"hello":"world"}"#),
    );
    let first = function.invoke(event, TIMEOUT).await.unwrap();
    assert_eq!(
        first.status_code(),
        Some(200),
        "{first:?}\n{}",
        function.output()
    );
    assert_eq!(first.header("X-Echo").as_deref(), Some("1"));
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/json")
    );
    let seen = first.body_json().unwrap();
    assert_eq!(seen["invocation"], 1);
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["raw_path"], "/v1/things/abc");
    // lambda_http puts the REST API stage in front of the URI path.
    assert_eq!(seen["uri_path"], "/prod/v1/things/abc");
    assert_eq!(seen["query"], "limit=5");
    assert_eq!(seen["path_parameters"], json!({"id": "abc"}));
    assert_eq!(seen["body"], r#"{"hello":"world"}"#);
    assert_eq!(seen["request_id"], first.request_id);
    assert_eq!(seen["function_arn"], function.api().function_arn());
    assert!(
        function
            .api()
            .function_arn()
            .ends_with(":function:echo_lambda")
    );
    assert_eq!(seen["memory_mb"], 128);
    assert!(seen["deadline_ms"].as_u64().unwrap() > 1_600_000_000_000);

    // Warm: the same process answers the second event.
    let second = function.invoke(get("/second"), TIMEOUT).await.unwrap();
    assert_eq!(second.status_code(), Some(200));
    let seen_again = second.body_json().unwrap();
    assert_eq!(seen_again["invocation"], 2);
    assert_eq!(seen_again["pid"], seen["pid"]);
    assert_eq!(seen_again["pid"], function.pid());
    assert_ne!(second.request_id, first.request_id);
    assert!(second.duration <= second.latency);

    // Init happened once; the function is polling for the third event by now or soon.
    assert_eq!(function.init_duration(), Some(init));
    assert!(function.api().polls() >= 2);
    let rss = function.peak_rss_kib().unwrap();
    assert!(rss > 0);
    for line in [
        "echo_lambda init done",
        "echo_lambda handled POST /v1/things/abc",
    ] {
        assert!(
            function.wait_for_output(line, TIMEOUT).await,
            "{line:?} missing from\n{}",
            function.output()
        );
    }
    assert!(function.api().unexpected_requests().is_empty());
    eprintln!(
        "echo_lambda (debug): init {init:?}, first invocation {:?}, peak RSS {rss} KiB",
        first.duration
    );
}

#[tokio::test]
async fn handler_errors_and_panics_are_invocation_errors_and_the_sandbox_survives() {
    let mut function = FunctionProcess::spawn(ECHO, &[]).await.unwrap();

    let failed = function.invoke(get("/error"), TIMEOUT).await.unwrap();
    let error = failed.error().expect("an /error report");
    assert!(matches!(failed.outcome, Outcome::Error(_)));
    assert_eq!(error.error_type.as_deref(), Some("unhandled"));
    assert_eq!(error.message(), Some("echo_lambda: asked to fail"));
    assert_eq!(failed.status_code(), None);

    let panicked = function.invoke(get("/panic"), TIMEOUT).await.unwrap();
    let error = panicked.error().expect("an /error report for the panic");
    assert!(
        error
            .message()
            .unwrap_or_default()
            .contains("asked to panic"),
        "{error}"
    );

    let ok = function.invoke(get("/fine"), TIMEOUT).await.unwrap();
    assert_eq!(ok.status_code(), Some(200));
    assert_eq!(ok.body_json().unwrap()["pid"], function.pid());
    assert!(function.try_exit_status().is_none());
}

#[tokio::test]
async fn init_failure_is_reported_promptly_not_a_hang() {
    let mut function = FunctionProcess::spawn(ECHO, &[("ECHO_FAIL_INIT", "1")])
        .await
        .unwrap();
    let started = Instant::now();
    let error = function
        .invoke(get("/health"), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    match &error {
        HarnessError::ProcessExited { status, logs, .. } => {
            assert!(status.contains('1'), "{status}");
            assert!(logs.contains("init failed on purpose"), "{logs}");
        }
        other => panic!("expected ProcessExited, got {other:?}"),
    }
    assert!(error.to_string().contains("init failed on purpose"));
    assert_eq!(function.init_duration(), None);
    assert!(function.try_exit_status().is_some());

    // wait_ready reports the same, also without waiting for its timeout.
    let mut again = FunctionProcess::spawn(ECHO, &[("ECHO_FAIL_INIT", "1")])
        .await
        .unwrap();
    let started = Instant::now();
    let error = again.wait_ready(Duration::from_secs(30)).await.unwrap_err();
    assert!(
        matches!(error, HarnessError::ProcessExited { .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn streamed_responses_are_collected_with_their_prelude() {
    let mut function = FunctionProcess::spawn(ECHO, &[("ECHO_STREAMING", "1")])
        .await
        .unwrap();
    let invocation = function.invoke(get("/stream"), TIMEOUT).await.unwrap();
    let Outcome::Streamed(streamed) = &invocation.outcome else {
        panic!("expected a streamed response: {invocation:?}");
    };
    assert_eq!(
        streamed.content_type.as_deref(),
        Some("application/vnd.awslambda.http-integration-response")
    );
    assert!(streamed.error.is_none());
    assert_eq!(invocation.status_code(), Some(201));
    assert_eq!(
        invocation.header("content-type").as_deref(),
        Some("text/plain")
    );
    let body = invocation.body_text().unwrap();
    assert!(body.starts_with("chunk-1;chunk-2;{"), "{body}");
    assert!(body.contains(r#""raw_path":"/stream""#), "{body}");
}

/// Drives the emulator by hand, as a runtime client would.
#[tokio::test]
async fn raw_protocol_next_response_and_unknown_ids() {
    let api = RuntimeApi::start().await.unwrap();
    let base = format!("http://{}/2018-06-01/runtime", api.address());
    let client = reqwest::Client::new();

    let next = tokio::spawn({
        let client = client.clone();
        let base = base.clone();
        async move { client.get(format!("{base}/invocation/next")).send().await }
    });
    let invoke = api.invoke(json!({"answer": 42}), TIMEOUT);
    let runtime = async {
        let next = next.await.unwrap().unwrap();
        assert_eq!(next.status(), 200);
        let headers = next.headers().clone();
        let request_id = headers["lambda-runtime-aws-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let deadline: u128 = headers["lambda-runtime-deadline-ms"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(deadline > 1_600_000_000_000);
        assert_eq!(
            headers["lambda-runtime-invoked-function-arn"],
            api.function_arn()
        );
        assert!(
            headers["lambda-runtime-trace-id"]
                .to_str()
                .unwrap()
                .starts_with("Root=1-")
        );
        let event: serde_json::Value = next.json().await.unwrap();
        assert_eq!(event, json!({"answer": 42}));

        let unknown = client
            .post(format!("{base}/invocation/nope/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);

        let done = client
            .post(format!("{base}/invocation/{request_id}/response"))
            .body(r#"{"ok":true}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), 202);
        // A second response for the same id is rejected.
        let twice = client
            .post(format!("{base}/invocation/{request_id}/response"))
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(twice.status(), 400);
        request_id
    };
    let (invocation, request_id) = tokio::join!(invoke, runtime);
    let invocation = invocation.unwrap();
    assert_eq!(invocation.request_id, request_id);
    assert_eq!(invocation.response(), Some(&json!({"ok": true})));
    assert!(api.first_poll().is_some());
    assert_eq!(api.polls(), 1);

    let other = client
        .get(format!(
            "http://{}/2020-01-01/extension/register",
            api.address()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    assert_eq!(
        api.unexpected_requests(),
        vec!["GET /2020-01-01/extension/register"]
    );
}

#[tokio::test]
async fn init_error_endpoint_fails_the_invocation_at_once() {
    let api = RuntimeApi::start().await.unwrap();
    let reported = reqwest::Client::new()
        .post(format!(
            "http://{}/2018-06-01/runtime/init/error",
            api.address()
        ))
        .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
        .body(r#"{"errorType":"ConfigError","errorMessage":"missing TABLE_NAME"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reported.status(), 202);
    let init_error = api.init_error().unwrap();
    assert_eq!(init_error.error_type.as_deref(), Some("Runtime.InitError"));
    assert_eq!(init_error.kind(), Some("ConfigError"));

    let started = Instant::now();
    let error = api
        .invoke(json!({}), Duration::from_secs(30))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    match error {
        HarnessError::InitError { error, .. } => {
            assert_eq!(error.message(), Some("missing TABLE_NAME"))
        }
        other => panic!("expected InitError, got {other:?}"),
    }
    let error = api.wait_first_poll(TIMEOUT).await.unwrap_err();
    assert!(error.to_string().contains("missing TABLE_NAME"), "{error}");
}

#[tokio::test]
async fn invoke_times_out_and_a_timed_out_event_is_never_delivered() {
    let api = RuntimeApi::start().await.unwrap();
    let started = Instant::now();
    let error = api
        .invoke(json!({"stale": true}), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(error, HarnessError::Timeout { .. }), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // A function polling now must not receive the abandoned event.
    let next = reqwest::Client::new()
        .get(format!(
            "http://{}/2018-06-01/runtime/invocation/next",
            api.address()
        ))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(next.is_err(), "the stale event was delivered: {next:?}");
}
