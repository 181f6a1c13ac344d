//! The notifications API end to end, over real HTTP against the local runner: sellers
//! sign in through the sandbox, link WhatsApp numbers, and customers' messages arrive as
//! signed Meta webhooks, which the runner's worker turns into notifications. Then:
//! - a tenant never reads nor marks another tenant's notifications, whatever ids or
//!   cursors it sends;
//! - pages walk a 1000-notification inbox newest first, each notification once, while
//!   new ones keep arriving;
//! - 20 concurrent marks of one notification take the unread count down by exactly 1.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{browser, sign_in};
use sellerhub_tests::whatsapp;
use serde_json::{Value, json};

const META_SECRET: &str = "notifications-flow-meta-app-secret";
/// Messages per webhook: Meta batches a change's messages, and the worker applies them
/// one after the other.
const PER_WEBHOOK: usize = 25;

struct Seller {
    token: String,
    phone: &'static str,
}

/// A runner with two signed-in sellers, each with a WhatsApp number linked.
async fn runner_with_two_sellers(
    dir: &tempfile::TempDir,
) -> (LocalRunner, reqwest::Client, Seller, Seller) {
    let runner = LocalRunner::start(
        dir.path(),
        &[("META_APP_SECRET", META_SECRET), ("HEALTH_CACHE_MS", "0")],
    );
    let client = browser();
    let mut sellers = Vec::new();
    for (seller_id, phone) in [
        (468_424_240, "106540352242922"),
        (512_000_777, "209881234567001"),
    ] {
        let token = sign_in(&runner, &client, seller_id).await;
        let linked = client
            .put(runner.url("/v1/channels/whatsapp"))
            .bearer_auth(&token)
            .json(&json!({ "phone_number_id": phone }))
            .send()
            .await
            .unwrap();
        body(linked, 201).await;
        sellers.push(Seller { token, phone });
    }
    let b = sellers.pop().unwrap();
    let a = sellers.pop().unwrap();
    (runner, client, a, b)
}

async fn body(response: reqwest::Response, status: u16) -> Value {
    let code = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(code, status, "{text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// One signed Meta webhook to `seller`'s number: one customer's messages `ids`.
async fn send_messages(
    runner: &LocalRunner,
    client: &reqwest::Client,
    seller: &Seller,
    ids: &[String],
) {
    let customer = format!("55119{:08}", fastrand::u32(..100_000_000));
    let now = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
    let messages: Vec<Value> = ids
        .iter()
        .map(|id| {
            json!({
                "from": customer, "id": id, "timestamp": now, "type": "text",
                "text": { "body": format!("message {id}") },
            })
        })
        .collect();
    let webhook = json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "5511955550000", "phone_number_id": seller.phone },
            "contacts": [{ "profile": { "name": "Cliente" }, "wa_id": customer }],
            "messages": messages,
        }}]}],
    })
    .to_string();
    let signature = whatsapp::signature(&webhook, META_SECRET);
    let sent = client
        .post(runner.url("/webhooks/meta"))
        .header("x-hub-signature-256", signature)
        .body(webhook)
        .send()
        .await
        .unwrap();
    body(sent, 200).await;
}

/// Message ids `tag.first` .. `tag.(first + count - 1)`, sent in webhooks of
/// [`PER_WEBHOOK`].
async fn send_many(
    runner: &LocalRunner,
    client: &reqwest::Client,
    seller: &Seller,
    tag: &str,
    first: usize,
    count: usize,
) -> Vec<String> {
    let ids: Vec<String> = (first..first + count)
        .map(|n| format!("wamid.{tag}.{n}"))
        .collect();
    for batch in ids.chunks(PER_WEBHOOK) {
        send_messages(runner, client, seller, batch).await;
    }
    ids
}

/// Waits until the runner's worker has emptied the webhook queue (none dead-lettered).
async fn drained(runner: &LocalRunner, client: &reqwest::Client, seller: &Seller) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let queues = client
            .get(runner.url("/v1/admin/queues"))
            .bearer_auth(&seller.token)
            .send()
            .await
            .unwrap();
        let queues = body(queues, 200).await;
        let webhooks = &queues["webhooks"];
        assert_eq!(webhooks["dead_letters"], 0, "{queues}");
        if webhooks["visible"] == 0 && webhooks["in_flight"] == 0 && webhooks["delayed"] == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain: {queues}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// GET /v1/notifications with `query`, as `token`: the status and body.
async fn list(
    runner: &LocalRunner,
    client: &reqwest::Client,
    token: &str,
    query: &[(&str, &str)],
) -> (u16, Value) {
    let url = reqwest::Url::parse_with_params(&runner.url("/v1/notifications"), query).unwrap();
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn page(
    runner: &LocalRunner,
    client: &reqwest::Client,
    seller: &Seller,
    query: &[(&str, &str)],
) -> Value {
    let (status, page) = list(runner, client, &seller.token, query).await;
    assert_eq!(status, 200, "{page}");
    page
}

async fn mark(
    runner: &LocalRunner,
    client: &reqwest::Client,
    token: &str,
    id: &str,
) -> (u16, Value) {
    let response = client
        .post(runner.url(&format!("/v1/notifications/{id}/read")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A page's items as (notification id, message id).
fn items(page: &Value) -> Vec<(String, String)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            (
                item["id"].as_str().unwrap().to_owned(),
                item["data"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_tenant_never_reaches_another_tenants_notifications() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, client, a, b) = runner_with_two_sellers(&dir).await;
    let a_messages: BTreeSet<String> = send_many(&runner, &client, &a, "a", 0, 3)
        .await
        .into_iter()
        .collect();
    send_many(&runner, &client, &b, "b", 0, 3).await;
    drained(&runner, &client, &a).await;

    let theirs = page(&runner, &client, &b, &[("limit", "1")]).await;
    let (their_id, _) = items(&theirs)[0].clone();
    let their_cursor = theirs["next_cursor"].as_str().unwrap().to_owned();
    let their_unread = page(&runner, &client, &b, &[("unread", "true"), ("limit", "1")]).await;
    let their_unread_cursor = their_unread["next_cursor"].as_str().unwrap().to_owned();

    // B's notification, by its id: not found for A, and untouched.
    let (status, problem) = mark(&runner, &client, &a.token, &their_id).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["status"], 404);
    let after = page(&runner, &client, &b, &[]).await;
    assert_eq!(after["unread_count"], 3, "B's count untouched");
    assert!(
        after["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|item| item["read"] == false)
    );

    // B's cursors, and forged or altered ones: 400, never B's items.
    let mut altered = their_cursor.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    for (query, what) in [
        (vec![("cursor", their_cursor.as_str())], "B's cursor"),
        (
            vec![("unread", "true"), ("cursor", their_unread_cursor.as_str())],
            "B's unread cursor",
        ),
        (
            vec![("cursor", their_unread_cursor.as_str())],
            "B's unread cursor on all",
        ),
        (vec![("cursor", altered.as_str())], "an altered cursor"),
        (vec![("cursor", "eyJwIjp7fX0.AAAA")], "a forged cursor"),
    ] {
        let (status, problem) = list(&runner, &client, &a.token, &query).await;
        assert_eq!(status, 400, "{what}: {problem}");
        assert_eq!(problem["status"], 400, "{what}");
        assert!(problem.get("items").is_none(), "{what}: {problem}");
    }

    // Ids that are not A's notifications: 404, whatever they look like.
    for id in [
        "0190f5a4c7d87c4f8e6b3a2d1c0b9a87",
        "TENANT%23x%23NOTIFS",
        "%2E%2E",
        "x",
    ] {
        let (status, problem) = mark(&runner, &client, &a.token, id).await;
        assert_eq!(status, 404, "{id}: {problem}");
    }

    // A sees its own, all of them, and only them.
    let own = page(&runner, &client, &a, &[("limit", "50")]).await;
    let listed: BTreeSet<String> = items(&own)
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    assert_eq!(listed, a_messages);
    assert_eq!(own["unread_count"], 3);
    let (own_id, _) = items(&own)[0].clone();
    let (status, marked) = mark(&runner, &client, &a.token, &own_id).await;
    assert_eq!((status, &marked["read"]), (200, &json!(true)), "{marked}");
    let (status, problem) = mark(&runner, &client, &b.token, &own_id).await;
    assert_eq!(status, 404, "B cannot mark A's either: {problem}");
    assert_eq!(page(&runner, &client, &a, &[]).await["unread_count"], 2);
    assert_eq!(page(&runner, &client, &b, &[]).await["unread_count"], 3);

    // No session: 401 problems on both routes.
    let anonymous = client
        .get(runner.url("/v1/notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(body(anonymous, 401).await["status"], 401);
    let anonymous = client
        .post(runner.url(&format!("/v1/notifications/{own_id}/read")))
        .send()
        .await
        .unwrap();
    assert_eq!(body(anonymous, 401).await["status"], 401);
}

/// Walks `query`'s pages of 50 to the end, sending a webhook of new messages after each
/// page: the (notification id, message id) of every item, in order.
async fn walk_while_arriving(
    runner: &LocalRunner,
    client: &reqwest::Client,
    seller: &Seller,
    query: &[(&str, &str)],
    tag: &str,
) -> (Vec<(String, String)>, Vec<String>) {
    let mut walked = Vec::new();
    let mut arrived = Vec::new();
    let mut cursor: Option<String> = None;
    for pages in 0.. {
        assert!(pages < 100, "the walk does not end");
        let mut query = query.to_vec();
        query.push(("limit", "50"));
        if let Some(cursor) = &cursor {
            query.push(("cursor", cursor));
        }
        let page = page(runner, client, seller, &query).await;
        walked.extend(items(&page));
        arrived.extend(send_many(runner, client, seller, tag, pages * 5, 5).await);
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(page["has_more"], true);
                cursor = Some(next.to_owned());
            }
            None => {
                assert_eq!(page["has_more"], false);
                break;
            }
        }
    }
    (walked, arrived)
}

/// Asserts `walked` holds each of `before` exactly once, nothing twice, newest first.
fn assert_walked_once(walked: &[(String, String)], before: &BTreeSet<String>, what: &str) {
    let ids: Vec<&String> = walked.iter().map(|(id, _)| id).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] > pair[1]),
        "{what}: newest first, no repeat"
    );
    let messages: Vec<&String> = walked.iter().map(|(_, message)| message).collect();
    let distinct: BTreeSet<&String> = messages.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        messages.len(),
        "{what}: a notification walked twice"
    );
    let missing: Vec<&String> = before.iter().filter(|id| !distinct.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} missed, e.g. {:?}",
        missing.len(),
        missing.first()
    );
}

#[tokio::test]
async fn pages_walk_a_growing_inbox_once_and_concurrent_marks_count_down_once() {
    let dir = tempfile::tempdir().unwrap();
    let (runner, client, a, _b) = runner_with_two_sellers(&dir).await;
    let before: BTreeSet<String> = send_many(&runner, &client, &a, "old", 0, 1000)
        .await
        .into_iter()
        .collect();
    drained(&runner, &client, &a).await;
    let first = page(&runner, &client, &a, &[]).await;
    assert_eq!(first["unread_count"], 1000);
    assert_eq!(items(&first).len(), 20, "20 by default");

    let (walked, arrived) = walk_while_arriving(&runner, &client, &a, &[], "new").await;
    assert_walked_once(&walked, &before, "all");
    drained(&runner, &client, &a).await;

    // The unread ones: every notification so far, walked while more arrive.
    let unread_before: BTreeSet<String> = before.iter().chain(&arrived).cloned().collect();
    let (walked, arrived_later) =
        walk_while_arriving(&runner, &client, &a, &[("unread", "true")], "newer").await;
    assert_walked_once(&walked, &unread_before, "unread");
    drained(&runner, &client, &a).await;
    let total = unread_before.len() + arrived_later.len();
    assert!(total >= 1000 + 2 * 20 * 5);
    let now = page(&runner, &client, &a, &[("limit", "1")]).await;
    assert_eq!(
        now["unread_count"], total,
        "every notification counted once"
    );

    // 20 concurrent marks of one notification: the count goes down by exactly 1.
    let (id, _) = items(&now)[0].clone();
    let mut marks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (client, url, token) = (
            client.clone(),
            runner.url(&format!("/v1/notifications/{id}/read")),
            a.token.clone(),
        );
        marks.spawn(async move {
            let response = client.post(url).bearer_auth(token).send().await.unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        });
    }
    let answers = marks.join_all().await;
    let read_at: BTreeSet<String> = answers
        .iter()
        .map(|(status, marked)| {
            assert_eq!(*status, 200, "{marked}");
            marked["read_at_ms"].to_string()
        })
        .collect();
    assert_eq!(read_at.len(), 1, "one mark took effect: {read_at:?}");
    let after = page(&runner, &client, &a, &[("unread", "true"), ("limit", "1")]).await;
    assert_eq!(after["unread_count"], total - 1);
    assert_ne!(items(&after)[0].0, id, "off the unread list");
}
