//! The `events` Lambda binary as Lambda runs it: under the Runtime API emulator, fed real
//! API Gateway events, answering with a streamed response (the HTTP integration prelude,
//! then the body as it is produced), its table on moto. Events are written to moto by the
//! test while the stream is open, as the webhook worker would.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::{
    FunctionProcess, Invocation, LiveBody, Outcome, apigw_rest_event, function_binary,
};
use shared::auth::{SessionKeys, Sessions};
use shared::clock::{Clock, SystemClock};
use shared::events::Events;
use shared::store::Store;

struct Deployment {
    vars: Vec<(&'static str, String)>,
    signing_key: SecretString,
    store: Arc<dyn Store>,
}

impl Deployment {
    async fn on_moto() -> Self {
        let table = moto::create_table().await;
        let (queue_url, dlq_url) = moto::create_queues(5).await;
        let signing_key = SecretString::from(shared::auth::random_token(32));
        let vars = vec![
            ("AWS_ENDPOINT_URL", moto::endpoint()),
            ("TABLE_NAME", table.clone()),
            ("WEBHOOK_QUEUE_URL", queue_url),
            ("WEBHOOK_DLQ_URL", dlq_url),
            ("LOG_LEVEL", "info".into()),
            (
                "SESSION_SIGNING_KEY",
                signing_key.expose_secret().to_owned(),
            ),
            // Short, so that a test sees them; EVENTS_STREAM_MS stays long: the invocation's
            // deadline must end each stream.
            ("EVENTS_POLL_MS", "100".into()),
            ("EVENTS_SETTLE_MS", "300".into()),
            ("EVENTS_HEARTBEAT_MS", "300".into()),
            ("EVENTS_RETRY_MS", "900".into()),
        ];
        let store: Arc<dyn Store> = Arc::new(shared::adapters::dynamo_store(
            &moto::sdk_config().await,
            &table,
        ));
        Self {
            vars,
            signing_key,
            store,
        }
    }

    async fn spawn(&self) -> FunctionProcess {
        let env: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        FunctionProcess::spawn(function_binary("events", false), &env)
            .await
            .unwrap()
    }

    async fn token(&self, tenant: &str) -> String {
        let keys = SessionKeys::new(&self.signing_key, "sellerhub").unwrap();
        let sessions = Sessions::new(
            Arc::clone(&self.store),
            Arc::new(keys),
            Duration::from_secs(3600),
        );
        let session = sessions
            .start(&format!("ml:{tenant}"), tenant, SystemClock.now_secs())
            .await
            .unwrap();
        session.token.expose_secret().to_owned()
    }

    async fn record(&self, tenant: &str, n: u64) {
        Events::new(Arc::clone(&self.store))
            .record(
                tenant,
                "test",
                serde_json::json!({ "n": n }),
                SystemClock.now_secs(),
            )
            .await
            .unwrap();
    }
}

fn events_request(token: Option<&str>, last_event_id: Option<&str>) -> serde_json::Value {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let mut headers: Vec<(&str, &str)> = vec![("Accept", "text/event-stream")];
    if let Some(authorization) = &authorization {
        headers.push(("Authorization", authorization));
    }
    if let Some(id) = last_event_id {
        headers.push(("Last-Event-ID", id));
    }
    apigw_rest_event("GET", "/v1/events", "/v1/events", &headers, &[], None)
}

/// The (id, n) of each event in a stream's text.
fn events(text: &str) -> Vec<(String, u64)> {
    text.split("\n\n")
        .filter_map(|block| {
            let id = block.lines().find_map(|line| line.strip_prefix("id: "))?;
            let data = block.lines().find_map(|line| line.strip_prefix("data: "))?;
            let data: serde_json::Value = serde_json::from_str(data).unwrap();
            Some((id.to_owned(), data["data"]["n"].as_u64().unwrap()))
        })
        .collect()
}

fn numbers(events: &[(String, u64)]) -> Vec<u64> {
    events.iter().map(|(_, n)| *n).collect()
}

fn streamed_body(invocation: &Invocation) -> String {
    match &invocation.outcome {
        Outcome::Streamed(streamed) => {
            assert!(streamed.error.is_none(), "{:?}", streamed.error);
            assert_eq!(
                streamed.content_type.as_deref(),
                Some("application/vnd.awslambda.http-integration-response")
            );
            String::from_utf8(streamed.body.to_vec()).unwrap()
        }
        other => panic!("not a streamed response: {other:?}"),
    }
}

#[tokio::test]
async fn the_events_binary_streams_its_tenants_events_live_and_ends_before_its_deadline() {
    let deployment = Deployment::on_moto().await;
    let (a, b) = (
        deployment.token("tenant-a").await,
        deployment.token("tenant-b").await,
    );
    for n in 0..3 {
        deployment.record("tenant-a", n).await;
    }
    deployment.record("tenant-b", 100).await;
    let mut function = deployment.spawn().await;

    // From the start of A's log; the invocation's deadline is 10 s away, and the stream
    // (EVENTS_STREAM_MS: 14 min) must end before it.
    let start = "0".repeat(32);
    let (chunks, mut body) = LiveBody::channel();
    let invocation = function.invoke_streaming(
        events_request(Some(&a), Some(&start)),
        Duration::from_secs(10),
        chunks,
    );
    let watch = async {
        body.until("\"n\":2}", Duration::from_secs(30))
            .await
            .unwrap();
        // Written while the stream is open: they arrive on it.
        for n in 3..6 {
            deployment.record("tenant-a", n).await;
        }
        deployment.record("tenant-b", 101).await;
        body.until("\"n\":5}", Duration::from_secs(30))
            .await
            .unwrap()
    };
    let (invocation, live) = tokio::join!(invocation, watch);
    let invocation = invocation.unwrap_or_else(|error| panic!("{error}"));
    assert!(
        numbers(&events(&live)).contains(&5),
        "streamed before the invocation ended"
    );

    assert_eq!(invocation.status_code(), Some(200), "{}", function.output());
    assert_eq!(
        invocation.header("content-type").as_deref(),
        Some("text/event-stream; charset=utf-8")
    );
    let text = streamed_body(&invocation);
    assert!(
        text.starts_with(&format!("retry: 900\nid: {start}\n\n")),
        "{text}"
    );
    assert!(text.contains("\n\n: heartbeat\n\n"), "{text}");
    let streamed = events(&text);
    assert_eq!(
        numbers(&streamed),
        [0, 1, 2, 3, 4, 5],
        "A's events only: {text}"
    );
    let ids: Vec<&String> = streamed.iter().map(|(id, _)| id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    // The browser reconnects with the last id it got, or an earlier one: it gets the
    // rest, once. The sandbox is warm: a second invocation, as Lambda reuses it.
    let (third, _) = &streamed[2];
    let resumed = function
        .invoke(
            events_request(Some(&a), Some(third)),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(numbers(&events(&streamed_body(&resumed))), [3, 4, 5]);

    // B, whatever it sends (here the id of A's last event), reads B's log only.
    let theirs = function
        .invoke(
            events_request(Some(&b), Some(&streamed[5].0)),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(numbers(&events(&streamed_body(&theirs))), [101]);
}

#[tokio::test]
async fn the_events_binary_answers_problems_through_the_stream() {
    let deployment = Deployment::on_moto().await;
    let token = deployment.token("tenant-a").await;
    let mut function = deployment.spawn().await;

    let anonymous = function
        .invoke(events_request(None, None), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(anonymous.status_code(), Some(401), "{}", function.output());
    assert_eq!(
        anonymous.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(anonymous.body_json().unwrap()["status"], 401);

    let bad = function
        .invoke(
            events_request(Some(&token), Some("not-an-event-id")),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(bad.status_code(), Some(400));
    assert_eq!(bad.body_json().unwrap()["status"], 400);
    assert!(
        !function.output().contains(&token),
        "the token reached the log"
    );
}
