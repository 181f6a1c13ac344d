//! The ingest Lambda binaries, as Lambda runs them: started under a Runtime API emulator,
//! fed real API Gateway REST proxy events, their queue on moto. What they accept is on
//! the queue as an envelope; what they refuse leaves the queue empty.

use std::time::Duration;

use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, function_binary};
use sellerhub_tests::whatsapp;
use shared::webhooks::Envelope;

const APP_ID: &str = "2069392825111111";
const APP_SECRET: &str = "fixture-app-secret-do-not-use";
const VERIFY_TOKEN: &str = "lambda-test-verify-token";

fn fixture(path: &str) -> String {
    let path = format!("{}/../shared/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

struct Deployment {
    endpoint: String,
    table: String,
    queue_url: String,
    dlq_url: String,
}

impl Deployment {
    async fn on_moto() -> Self {
        let (queue_url, dlq_url) = moto::create_queues(5).await;
        Self {
            endpoint: moto::endpoint(),
            table: moto::create_table().await,
            queue_url,
            dlq_url,
        }
    }

    async fn spawn(&self, function: &str) -> FunctionProcess {
        let env = [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("TABLE_NAME", &self.table),
            ("WEBHOOK_QUEUE_URL", &self.queue_url),
            ("WEBHOOK_DLQ_URL", &self.dlq_url),
            ("LOG_LEVEL", "info"),
            ("MERCADOLIVRE_CLIENT_ID", APP_ID),
            ("META_APP_SECRET", APP_SECRET),
            ("META_VERIFY_TOKEN", VERIFY_TOKEN),
        ];
        FunctionProcess::spawn(function_binary(function, false), &env)
            .await
            .unwrap()
    }

    /// Every envelope on the queue (received and left in flight).
    async fn queued(&self) -> Vec<Envelope> {
        let sqs = moto::sqs().await;
        let mut envelopes = Vec::new();
        loop {
            let output = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(60)
                .send()
                .await
                .unwrap();
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return envelopes;
            }
            for message in messages {
                envelopes.push(Envelope::from_message(message.body().unwrap()).unwrap());
            }
        }
    }
}

fn post(path: &str, headers: &[(&str, &str)], body: &str) -> serde_json::Value {
    apigw_rest_event("POST", path, path, headers, &[], Some(body))
}

#[tokio::test]
async fn mercadolivre_notifications_are_queued_and_foreign_ones_refused() {
    let deployment = Deployment::on_moto().await;
    let mut function = deployment.spawn("webhook-mercadolivre").await;
    let notification = fixture("mercadolivre/notification-questions.json");
    let json = [
        ("content-type", "application/json"),
        ("x-correlation-id", "corr-7"),
    ];

    let accepted = function
        .invoke(
            post("/webhooks/mercadolivre", &json, &notification),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(accepted.status_code(), Some(200), "{}", function.output());

    let foreign = notification.replace(APP_ID, "999");
    let refused = function
        .invoke(
            post("/webhooks/mercadolivre", &json, &foreign),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(refused.status_code(), Some(403));
    assert_eq!(
        refused.header("content-type").as_deref(),
        Some("application/problem+json")
    );

    let queued = deployment.queued().await;
    assert_eq!(queued.len(), 1, "only the accepted notification");
    assert_eq!(
        queued[0].dedupe_key,
        "mercadolivre:9e3b2c1a-5f7d-4c1e-8a2b-3d4e5f6a7b8c"
    );
    assert_eq!(queued[0].correlation_id, "corr-7");
    assert_eq!(queued[0].payload.get(), notification.trim_end());
}

#[tokio::test]
async fn meta_subscribes_and_queues_signed_changes_only() {
    let deployment = Deployment::on_moto().await;
    let mut function = deployment.spawn("webhook-meta").await;

    let handshake = apigw_rest_event(
        "GET",
        "/webhooks/meta",
        "/webhooks/meta",
        &[],
        &[
            ("hub.mode", "subscribe"),
            ("hub.verify_token", VERIFY_TOKEN),
            ("hub.challenge", "1158201444"),
        ],
        None,
    );
    let answered = function
        .invoke(handshake, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(answered.status_code(), Some(200), "{}", function.output());
    assert_eq!(answered.body_text().as_deref(), Some("1158201444"));

    let message = fixture("meta/whatsapp-message.json");
    let signature = "sha256=a0573f063a0beb4659e376ad26bb39dd22d1e73dff5284d0a06f812da6409847";
    let signed = function
        .invoke(
            post(
                "/webhooks/meta",
                &[("x-hub-signature-256", signature)],
                &message,
            ),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(signed.status_code(), Some(200), "{}", function.output());

    let status = fixture("meta/whatsapp-status.json");
    let forged_signature = whatsapp::signature(&status, "not-the-app-secret");
    for headers in [
        vec![("x-hub-signature-256", forged_signature.as_str())],
        vec![],
    ] {
        let forged = function
            .invoke(
                post("/webhooks/meta", &headers, &status),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        assert_eq!(forged.status_code(), Some(401));
    }

    let queued = deployment.queued().await;
    assert_eq!(queued.len(), 1, "only the signed change");
    assert!(queued[0].dedupe_key.starts_with("meta:wamid."));
}

/// The worker binary, fed an SQS event made of messages really received from moto (their
/// receipt handles and attributes, in Lambda's event JSON): what applies is completed,
/// what never can goes to the dead-letter queue, and the batch reports no failure.
#[tokio::test]
async fn the_worker_binary_settles_a_real_sqs_batch() {
    use shared::queue::Queue;
    use shared::queue::consumer::{ConsumerSettings, sqs_event};
    use shared::webhooks::receipts::Receipts;

    let deployment = Deployment::on_moto().await;
    let shim = sellerhub_tests::upstash_shim::UpstashShim::start().await;
    let sdk = moto::sdk_config().await;
    let queue = shared::adapters::sqs_queue(
        &sdk,
        &deployment.queue_url,
        Some(deployment.dlq_url.clone()),
    );

    let meta =
        shared::webhooks::meta::changes(fixture("meta/whatsapp-message.json").as_bytes()).unwrap();
    let meta_envelope = Envelope {
        source: shared::webhooks::Source::Meta,
        received_at_ms: 1,
        dedupe_key: meta[0].dedupe_key.clone(),
        correlation_id: "corr-meta".into(),
        payload: meta[0].payload.clone(),
        deferrals: 0,
    };
    let notification = fixture("mercadolivre/notification-questions.json");
    let ml_envelope = Envelope {
        source: shared::webhooks::Source::MercadoLivre,
        received_at_ms: 1,
        dedupe_key: "mercadolivre:lambda-test".into(),
        correlation_id: "corr-ml".into(),
        payload: serde_json::value::RawValue::from_string(notification.trim_end().into()).unwrap(),
        deferrals: 0,
    };
    queue
        .send_batch(vec![
            meta_envelope.to_message().unwrap(),
            ml_envelope.to_message().unwrap(),
            shared::queue::OutMessage::new("not an envelope"),
        ])
        .await
        .unwrap();
    let mut received = Vec::new();
    while received.len() < 3 {
        received.extend(
            queue
                .receive(10, Duration::from_secs(60), Duration::from_secs(1))
                .await
                .unwrap(),
        );
    }
    let settings = ConsumerSettings {
        batch_size: 10,
        visibility_timeout: Duration::from_secs(180),
        wait: Duration::ZERO,
        queue_arn: "arn:aws:sqs:us-east-1:123456789012:webhooks".into(),
        region: "us-east-1".into(),
    };
    let event = serde_json::to_value(sqs_event(&received, &settings)).unwrap();

    let key = shared::auth::GrantCipher::generate_key("k1");
    let env = [
        ("AWS_ENDPOINT_URL", deployment.endpoint.as_str()),
        ("TABLE_NAME", &deployment.table),
        ("WEBHOOK_QUEUE_URL", &deployment.queue_url),
        ("WEBHOOK_DLQ_URL", &deployment.dlq_url),
        ("LOG_LEVEL", "info"),
        ("MERCADOLIVRE_CLIENT_ID", APP_ID),
        (
            "GRANT_ENCRYPTION_KEY",
            secrecy::ExposeSecret::expose_secret(&key),
        ),
        ("UPSTASH_REDIS_REST_URL", shim.url()),
        ("UPSTASH_REDIS_REST_TOKEN", shim.token()),
    ];
    let mut worker = FunctionProcess::spawn(function_binary("webhook-worker", false), &env)
        .await
        .unwrap();
    let settled = worker.invoke(event, Duration::from_secs(30)).await.unwrap();
    let response = settled.response().cloned().unwrap_or_default();
    assert_eq!(
        response["batchItemFailures"],
        serde_json::json!([]),
        "{response}\n{}",
        worker.output()
    );

    // Nobody linked this seller or number: both are applied as dropped, once.
    let store = std::sync::Arc::new(shared::adapters::dynamo_store(&sdk, &deployment.table));
    let receipts = Receipts::new(store);
    assert!(
        receipts
            .is_completed(&meta_envelope.dedupe_key)
            .await
            .unwrap()
    );
    assert!(
        receipts
            .is_completed("mercadolivre:lambda-test")
            .await
            .unwrap()
    );
    let sqs = moto::sqs().await;
    let dead = sqs
        .receive_message()
        .queue_url(&deployment.dlq_url)
        .max_number_of_messages(10)
        .message_attribute_names("All")
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(dead.len(), 1, "{}", worker.output());
    assert_eq!(dead[0].body(), Some("not an envelope"));
    let error = dead[0]
        .message_attributes()
        .and_then(|attributes| attributes.get("error"))
        .and_then(|value| value.string_value())
        .unwrap_or_default();
    assert!(error.contains("not an envelope"), "{error}");
}
