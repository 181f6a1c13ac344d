//! Webhooks end to end, over real HTTP against the local runner and its sandbox Mercado
//! Livre: a seller signs in and links a WhatsApp number; a buyer asks a question on the
//! sandbox, which notifies the runner; the worker hydrates it through the sandbox API and
//! applies it once however often it arrives; a signed Meta message becomes a conversation
//! and a forged one is refused. What was applied is read from the runner's store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{browser, sign_in};
use sellerhub_tests::whatsapp;
use shared::embedded_db::EmbeddedDb;
use shared::inbox::{Channel, keys};
use shared::queue::Queue;
use shared::queue::embedded::{EmbeddedQueue, WEBHOOK_DEAD_LETTER_QUEUE, WEBHOOK_QUEUE};
use shared::store::embedded::EmbeddedStore;
use shared::store::{Query, SortKey, Store};
use shared::webhooks::receipts::Receipts;

const SELLER: u64 = 468_424_240;
const PHONE: &str = "106540352242922";
const META_SECRET: &str = "webhooks-flow-meta-app-secret";

fn fixture(path: &str) -> String {
    let path = format!("{}/../shared/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

async fn json(response: reqwest::Response, status: u16) -> serde_json::Value {
    let code = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(code, status, "{body}");
    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
}

/// Waits until the runner's worker has emptied the webhook queue.
async fn drained(runner: &LocalRunner, client: &reqwest::Client, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queues = client
            .get(runner.url("/v1/admin/queues"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body = json(queues, 200).await;
        let webhooks = &body["webhooks"];
        if webhooks["visible"] == 0 && webhooks["in_flight"] == 0 && webhooks["delayed"] == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the queue did not drain: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_question_and_a_whatsapp_message_reach_the_inbox_once() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(
        dir.path(),
        &[("META_APP_SECRET", META_SECRET), ("HEALTH_CACHE_MS", "0")],
    );
    let client = browser();
    let token = sign_in(&runner, &client, SELLER).await;
    let me = client
        .get(runner.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let tenant = json(me, 200).await["tenant"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let linked = client
        .put(runner.url("/v1/channels/whatsapp"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "phone_number_id": PHONE }))
        .send()
        .await
        .unwrap();
    json(linked, 201).await;

    // A buyer asks on the sandbox: it creates the question and notifies the runner.
    let asked = client
        .post(runner.url("/sandbox/mercadolivre/questions"))
        .json(&serde_json::json!({
            "seller_id": SELLER,
            "item_id": "MLB3859205311",
            "text": "Serve no modelo 2019?",
        }))
        .send()
        .await
        .unwrap();
    let asked = json(asked, 201).await;
    assert_eq!(asked["delivery"]["http_code"], 200, "{asked}");
    let question_id = asked["question"]["id"].as_u64().unwrap();
    // Mercado Livre retries: the same notification five more times.
    let notification = asked["notification"].to_string();
    for _ in 0..5 {
        let again = client
            .post(runner.url("/webhooks/mercadolivre"))
            .header("content-type", "application/json")
            .body(notification.clone())
            .send()
            .await
            .unwrap();
        json(again, 200).await;
    }

    let message = fixture("meta/whatsapp-message.json");
    let signed = client
        .post(runner.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            whatsapp::signature(&message, META_SECRET),
        )
        .body(message.clone())
        .send()
        .await
        .unwrap();
    json(signed, 200).await;
    let forged_body = message.replace("5511988887777", "5511900000000");
    let forged = client
        .post(runner.url("/webhooks/meta"))
        .header(
            "x-hub-signature-256",
            whatsapp::signature(&forged_body, "not-the-secret"),
        )
        .body(forged_body)
        .send()
        .await
        .unwrap();
    assert_eq!(json(forged, 401).await["status"], 401);

    drained(&runner, &client, &token).await;
    assert!(runner.terminate().success());

    let db = EmbeddedDb::open(dir.path()).unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(db.clone()).unwrap());
    let question = store
        .get(&keys::question(&tenant, question_id))
        .await
        .unwrap()
        .expect("the question is in the store");
    assert_eq!(question.data["text"], "Serve no modelo 2019?");
    assert_eq!(question.data["status"], "UNANSWERED");

    let kinds = |items: Vec<shared::store::Item>| -> Vec<String> {
        let mut kinds: Vec<String> = items
            .iter()
            .map(|item| item.data["type"].as_str().unwrap().to_owned())
            .collect();
        kinds.sort();
        kinds
    };
    let notifications = store
        .query(Query::partition(keys::notification(&tenant, "").pk).limit(50))
        .await
        .unwrap();
    assert_eq!(
        kinds(notifications.items),
        ["message.new", "question.new"],
        "one notification each, though the question was notified six times"
    );
    let events = store
        .query(
            Query::partition(format!("TENANT#{tenant}"))
                .sort(SortKey::BeginsWith("EVENT#".into()))
                .limit(50),
        )
        .await
        .unwrap();
    assert_eq!(kinds(events.items), ["message.new", "question.new"]);

    let conversation = store
        .get(&keys::conversation(
            &tenant,
            Channel::WhatsApp,
            "5511988887777",
        ))
        .await
        .unwrap()
        .expect("the WhatsApp conversation");
    assert_eq!(conversation.data["messages"], 1);
    assert_eq!(conversation.data["title"], "Ana Souza");
    let forged_conversation = store
        .get(&keys::conversation(
            &tenant,
            Channel::WhatsApp,
            "5511900000000",
        ))
        .await
        .unwrap();
    assert!(
        forged_conversation.is_none(),
        "the forged message was never queued"
    );

    let queue =
        EmbeddedQueue::open_with_dead_letters(db, WEBHOOK_QUEUE, WEBHOOK_DEAD_LETTER_QUEUE, 5)
            .unwrap();
    assert_eq!(queue.stats().await.unwrap().dead_letters, Some(0));
    assert!(
        Receipts::new(store)
            .is_completed(&format!(
                "mercadolivre:{}",
                asked["notification"]["_id"].as_str().unwrap()
            ))
            .await
            .unwrap()
    );
}
