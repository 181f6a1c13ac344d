//! The `health` Lambda binary, as Lambda runs it: started under a Runtime API emulator,
//! fed a real API Gateway REST proxy event, its DynamoDB and SQS on moto.

use std::time::Duration;

use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, function_binary};
use sellerhub_tests::upstash_shim::UpstashShim;
use shared::ratelimit::upstash::Upstash;

fn health_event() -> serde_json::Value {
    apigw_rest_event(
        "GET",
        "/health",
        "/health",
        &[("accept", "application/json")],
        &[],
        None,
    )
}

/// What template.yaml gives the function, with the table and queues on moto.
struct Deployment {
    endpoint: String,
    table: String,
    queue_url: String,
    dlq_url: String,
    /// SESSION_SIGNING_KEY: GET /v1/admin/queues checks sessions.
    signing_key: String,
}

impl Deployment {
    async fn on_moto(table: Option<&str>) -> Self {
        let table = match table {
            Some(table) => table.to_owned(),
            None => moto::create_table().await,
        };
        let (queue_url, dlq_url) = moto::create_queues(5).await;
        Self {
            endpoint: moto::endpoint(),
            table,
            queue_url,
            dlq_url,
            signing_key: shared::auth::random_token(48),
        }
    }

    fn env(&self) -> [(&str, &str); 6] {
        [
            ("AWS_ENDPOINT_URL", &self.endpoint),
            ("TABLE_NAME", &self.table),
            ("WEBHOOK_QUEUE_URL", &self.queue_url),
            ("WEBHOOK_DLQ_URL", &self.dlq_url),
            ("LOG_LEVEL", "info"),
            ("SESSION_SIGNING_KEY", &self.signing_key),
        ]
    }
}

#[tokio::test]
async fn answers_an_api_gateway_event_with_every_check_ok() {
    let deployment = Deployment::on_moto(None).await;
    let mut function = FunctionProcess::spawn(function_binary("health", false), &deployment.env())
        .await
        .unwrap();

    let first = function
        .invoke(health_event(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        first.status_code(),
        Some(200),
        "{first:?}\n{}",
        function.output()
    );
    let body = first.body_json().expect("a JSON body");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["store"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["status"], "ok");
    assert_eq!(body["checks"]["queue"]["dead_letters"], 0);
    assert!(first.header("x-request-id").is_some());

    // Warm: the same process answers again.
    let second = function
        .invoke(health_event(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(second.status_code(), Some(200));

    let init = function.init_duration().expect("init was timed");
    for field in ["\"cold_start\":true", "\"function\":\"health\""] {
        assert!(
            function
                .wait_for_output(field, Duration::from_secs(5))
                .await,
            "{field} missing from\n{}",
            function.output()
        );
    }
    println!(
        "health init {init:?}, peak RSS {:?} KiB",
        function.peak_rss_kib()
    );
}

#[tokio::test]
async fn the_limiter_check_runs_the_script_so_a_read_only_token_fails_it() {
    let deployment = Deployment::on_moto(None).await;
    let shim = UpstashShim::start().await;
    let mut env = deployment.env().to_vec();
    env.extend([
        ("UPSTASH_REDIS_REST_URL", shim.url()),
        ("UPSTASH_REDIS_REST_TOKEN", shim.token()),
        ("HEALTH_CACHE_MS", "0"),
    ]);
    let mut function = FunctionProcess::spawn(function_binary("health", false), &env)
        .await
        .unwrap();
    let healthy = function
        .invoke(health_event(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        healthy.status_code(),
        Some(200),
        "{healthy:?}\n{}",
        function.output()
    );
    assert_eq!(
        healthy.body_json().unwrap()["checks"]["limiter"]["status"],
        "ok"
    );

    shim.set_read_only(true);
    let ping = Upstash::new(shim.config())
        .unwrap()
        .command(&["PING"])
        .await;
    assert_eq!(ping.unwrap(), "PONG", "a read-only token still passes PING");
    let refused = function
        .invoke(health_event(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(refused.status_code(), Some(503), "{refused:?}");
    let body = refused.body_json().unwrap();
    assert_eq!(body["checks"]["limiter"]["status"], "unhealthy");
    assert_eq!(body["checks"]["limiter"]["reason"], "rejected");
    assert_eq!(body["checks"]["store"]["status"], "ok");
}

#[tokio::test]
async fn reports_503_when_its_table_is_missing() {
    let deployment = Deployment::on_moto(Some("no-such-table")).await;
    let mut function = FunctionProcess::spawn(function_binary("health", false), &deployment.env())
        .await
        .unwrap();
    let invocation = function
        .invoke(health_event(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(invocation.status_code(), Some(503));
    let body = invocation.body_json().unwrap();
    assert_eq!(body["checks"]["store"]["status"], "unhealthy");
    assert_eq!(body["checks"]["store"]["reason"], "unreachable");
    assert_eq!(body["checks"]["queue"]["status"], "ok");
}

#[tokio::test]
async fn a_missing_variable_fails_init_naming_it() {
    let mut function = FunctionProcess::spawn(
        function_binary("health", false),
        &[("AWS_REGION", "us-east-1")],
    )
    .await
    .unwrap();
    let outcome = function
        .invoke(health_event(), Duration::from_secs(10))
        .await;
    assert!(
        outcome.is_err(),
        "a function without TABLE_NAME must not answer: {outcome:?}"
    );
    let output = function.output();
    assert!(output.contains("TABLE_NAME is not set"), "{output}");
}

#[tokio::test]
async fn queue_health_is_for_signed_in_callers_and_counts_what_waits() {
    use std::sync::Arc;

    use shared::auth::{SessionKeys, Sessions};
    use shared::clock::{Clock, SystemClock};

    let deployment = Deployment::on_moto(None).await;
    let sqs = moto::sqs().await;
    for _ in 0..3 {
        sqs.send_message()
            .queue_url(&deployment.queue_url)
            .message_body("{}")
            .send()
            .await
            .unwrap();
    }
    let store = Arc::new(shared::adapters::dynamo_store(
        &moto::sdk_config().await,
        &deployment.table,
    ));
    let keys = SessionKeys::new(&deployment.signing_key.clone().into(), "sellerhub").unwrap();
    let sessions = Sessions::new(store, Arc::new(keys), Duration::from_secs(3600));
    let session = sessions
        .start("ml:1", "t1", SystemClock.now_secs())
        .await
        .unwrap();
    let token = secrecy::ExposeSecret::expose_secret(&session.token).to_owned();

    let mut function = FunctionProcess::spawn(function_binary("health", false), &deployment.env())
        .await
        .unwrap();
    let queues = |token: Option<&str>| {
        let authorization = token.map(|token| format!("Bearer {token}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|value| ("authorization", value.as_str()))
            .collect();
        apigw_rest_event(
            "GET",
            "/v1/admin/queues",
            "/v1/admin/queues",
            &headers,
            &[],
            None,
        )
    };
    let anonymous = function
        .invoke(queues(None), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(anonymous.status_code(), Some(401), "{}", function.output());

    let answered = function
        .invoke(queues(Some(&token)), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(answered.status_code(), Some(200), "{}", function.output());
    let body = answered.body_json().unwrap();
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["webhooks"]["visible"], 3);
    assert_eq!(body["webhooks"]["dead_letters"], 0);
    assert_eq!(body["parked"], 0);
    assert_eq!(body["thresholds"]["max_waiting"], 1000);
}
