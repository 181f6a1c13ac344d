//! The `cleanup` Lambda binary, as Lambda runs it: started under a Runtime API emulator,
//! invoked with EventBridge's scheduled event, its table on moto (which, like DynamoDB
//! before its TTL process comes by, keeps expired items); then GET /health of the
//! `health` binary shows its last run.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, function_binary};
use serde_json::json;
use shared::auth::{Claims, SessionKeys, Sessions};
use shared::clock::{Clock, SystemClock};
use shared::events::{EVENT_TTL_SECS, event_item};
use shared::store::dynamodb::DynamoStore;
use shared::store::{Condition, Item, Key, Store};

struct Deployment {
    endpoint: String,
    table: String,
    queue_url: String,
    dlq_url: String,
    signing_key: String,
}

impl Deployment {
    async fn on_moto() -> Self {
        let (queue_url, dlq_url) = moto::create_queues(5).await;
        Self {
            endpoint: moto::endpoint(),
            table: moto::create_table().await,
            queue_url,
            dlq_url,
            signing_key: shared::auth::random_token(48),
        }
    }

    async fn spawn(&self, function: &str) -> FunctionProcess {
        let env = [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("TABLE_NAME", &self.table),
            ("WEBHOOK_QUEUE_URL", &self.queue_url),
            ("WEBHOOK_DLQ_URL", &self.dlq_url),
            ("LOG_LEVEL", "info"),
            ("SESSION_SIGNING_KEY", &self.signing_key),
        ];
        FunctionProcess::spawn(function_binary(function, false), &env)
            .await
            .unwrap()
    }

    async fn store(&self) -> Arc<DynamoStore> {
        Arc::new(DynamoStore::new(moto::dynamodb().await, &self.table))
    }

    async fn sessions(&self) -> Sessions {
        let keys = SessionKeys::new(&SecretString::from(self.signing_key.clone()), "sellerhub");
        Sessions::new(
            self.store().await,
            Arc::new(keys.unwrap()),
            Duration::from_secs(3600),
        )
    }
}

fn scheduled_event() -> serde_json::Value {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-22T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/hourly"],
        "detail": {}
    })
}

#[tokio::test]
async fn an_hourly_run_cleans_the_table_and_health_shows_it() {
    let deployment = Deployment::on_moto().await;
    let store = deployment.store().await;
    let sessions = deployment.sessions().await;
    let now = SystemClock.now_secs();

    // A seller's session, and a second one left live by a write cut short.
    let current = sessions.start("ml:1", "t1", now).await.unwrap();
    let stray = Claims {
        sid: "stray".into(),
        jti: "stray-jti".into(),
        iat: now - 60,
        ..current.claims.clone()
    };
    let record = json!({"sid": stray.sid, "jti": stray.jti, "tenant": stray.tenant,
                        "iat": stray.iat, "exp": stray.exp});
    store
        .put(
            Item::new(Key::new("USER#ml:1", "SESSION#stray"), record).expiring_at(stray.exp),
            Condition::Absent,
        )
        .await
        .unwrap();
    for n in 0..3 {
        let expired = Item::new(Key::new(format!("LOGIN#{n}"), "STATE"), json!({}));
        store
            .put(expired.expiring_at(now - 5), Condition::Always)
            .await
            .unwrap();
    }
    let old =
        event_item("t1", "question", json!({}), now - EVENT_TTL_SECS - 60).expiring_at(now + 3600);
    store.put(old.clone(), Condition::Absent).await.unwrap();

    let mut cleanup = deployment.spawn("cleanup").await;
    let run = cleanup
        .invoke(scheduled_event(), Duration::from_secs(60))
        .await
        .unwrap();
    let report = run.response().cloned().unwrap_or_default();
    let summary = [
        "sessions_ended",
        "expired_purged",
        "events_trimmed",
        "failures",
    ]
    .map(|field| report[field].as_u64());
    assert_eq!(
        summary,
        [Some(1), Some(3), Some(1), Some(0)],
        "{report}\n{}",
        cleanup.output()
    );
    assert_eq!(report["walk_finished"], true);

    assert!(sessions.is_revoked(&stray).await.unwrap());
    assert!(!sessions.is_revoked(&current.claims).await.unwrap());
    assert_eq!(store.get(&old.key).await.unwrap(), None);
    let left = store.scan(None, 100).await.unwrap();
    assert!(left.expired.is_empty(), "{:?}", left.expired);

    // Its metrics, as one EMF line in the sellerhub namespace, by function only.
    assert!(
        cleanup
            .wait_for_output("CleanupFailures", Duration::from_secs(5))
            .await,
        "{}",
        cleanup.output()
    );
    let metrics: serde_json::Value = cleanup
        .stdout()
        .lines()
        .find(|line| line.contains("CleanupFailures"))
        .map(|line| serde_json::from_str(line).unwrap())
        .unwrap();
    assert_eq!(metrics["CleanupFailures"], 0.0);
    assert_eq!(metrics["CleanupExpiredPurged"], 3.0);
    let directive = &metrics["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "sellerhub");
    assert_eq!(directive["Dimensions"], json!([["Function"]]));

    let mut health = deployment.spawn("health").await;
    let answer = health
        .invoke(
            apigw_rest_event("GET", "/health", "/health", &[], &[], None),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let body = answer.body_json().expect("a JSON body");
    assert_eq!(body["cleanup"]["result"], "ok", "{body}");
    assert_eq!(body["cleanup"]["expired_purged"], 3);
}
