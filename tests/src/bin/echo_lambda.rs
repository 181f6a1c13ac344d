//! A tiny Lambda function for the Runtime API harness's self-test: answers an API Gateway
//! event with what it saw. Not deployed anywhere.
//!
//! * `ECHO_FAIL_INIT=1`: fail during init (exit with an error before `run`).
//! * `ECHO_STREAMING=1`: answer with a streamed response (chunked body, HTTP prelude).
//! * path `/error`: the handler returns an error; `/panic`: the handler panics.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use lambda_http::{Body, Error, Request, RequestExt, Response, service_fn};
use lambda_runtime::streaming;
use serde_json::json;

static INVOCATIONS: AtomicU64 = AtomicU64::new(0);

fn describe(request: &Request) -> serde_json::Value {
    let context = request.lambda_context();
    let body = String::from_utf8_lossy(request.body().as_ref()).into_owned();
    json!({
        "invocation": INVOCATIONS.fetch_add(1, Ordering::SeqCst) + 1,
        "pid": std::process::id(),
        "method": request.method().as_str(),
        "uri_path": request.uri().path(),
        "raw_path": request.raw_http_path(),
        "query": request.uri().query(),
        "path_parameters": request.path_parameters().iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<std::collections::BTreeMap<_, _>>(),
        "body": body,
        "request_id": context.request_id,
        "function_arn": context.invoked_function_arn,
        "deadline_ms": context.deadline,
        "memory_mb": context.env_config.memory,
    })
}

async fn echo(request: Request) -> Result<Response<Body>, Error> {
    match request.raw_http_path() {
        "/error" => return Err("echo_lambda: asked to fail".into()),
        "/panic" => panic!("echo_lambda: asked to panic"),
        _ => {}
    }
    let seen = describe(&request);
    println!(
        "echo_lambda handled {} {}",
        request.method(),
        request.raw_http_path()
    );
    Ok(Response::builder()
        .status(200)
        .header(CONTENT_TYPE, "application/json")
        .header("x-echo", "1")
        .body(Body::Text(seen.to_string()))?)
}

async fn echo_streaming(request: Request) -> Result<Response<streaming::Body>, Error> {
    let seen = describe(&request);
    let (mut sender, body) = streaming::channel();
    tokio::spawn(async move {
        for chunk in [
            "chunk-1;".to_owned(),
            "chunk-2;".to_owned(),
            seen.to_string(),
        ] {
            if sender.send_data(Bytes::from(chunk)).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    });
    let mut response = Response::new(body);
    *response.status_mut() = http::StatusCode::CREATED;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    if std::env::var("ECHO_FAIL_INIT").is_ok_and(|v| v == "1") {
        return Err("echo_lambda: init failed on purpose (ECHO_FAIL_INIT=1)".into());
    }
    eprintln!("echo_lambda init done");
    if std::env::var("ECHO_STREAMING").is_ok_and(|v| v == "1") {
        lambda_http::run_with_streaming_response(service_fn(echo_streaming)).await
    } else {
        lambda_http::run(service_fn(echo)).await
    }
}
