//! The inbox API's questions and conversations, over real HTTP against the local runner
//! and its sandbox Mercado Livre: a question arrives through the webhook path, is listed,
//! answered once however many answers race, and shows ANSWERED; WhatsApp conversations
//! are listed, paginated while new ones arrive, read and marked read; and a second
//! tenant can never read, answer, mark or page through the first one's items.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{browser, sign_in};
use sellerhub_tests::whatsapp;
use serde_json::{Value, json};

const SELLER_A: u64 = 468_424_240;
const SELLER_B: u64 = 468_424_241;
const PHONE_A: &str = "106540352242922";
const PHONE_B: &str = "106540352242933";
const META_SECRET: &str = "inbox-api-meta-app-secret";

struct Seller {
    client: reqwest::Client,
    token: String,
}

impl Seller {
    async fn sign_in(runner: &LocalRunner, seller: u64, phone: &str) -> Self {
        let client = browser();
        let token = sign_in(runner, &client, seller).await;
        let seller = Self { client, token };
        let linked = seller
            .send(
                runner,
                reqwest::Method::PUT,
                "/v1/channels/whatsapp",
                Some(json!({ "phone_number_id": phone })),
            )
            .await;
        assert_eq!(linked.0, 201, "{}", linked.1);
        seller
    }

    async fn send(
        &self,
        runner: &LocalRunner,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, runner.url(path))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, runner: &LocalRunner, path: &str) -> (u16, Value) {
        self.send(runner, reqwest::Method::GET, path, None).await
    }

    async fn post(&self, runner: &LocalRunner, path: &str, body: Value) -> (u16, Value) {
        self.send(runner, reqwest::Method::POST, path, Some(body))
            .await
    }

    /// Every page of `path` (which has no query yet) at `limit`, with `between` run
    /// after each page: the items' ids in order.
    async fn walk(
        &self,
        runner: &LocalRunner,
        path: &str,
        limit: usize,
        mut between: impl AsyncFnMut(),
    ) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{path}?limit={limit}");
            if let Some(cursor) = &cursor {
                url.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page) = self.get(runner, &url).await;
            assert_eq!(status, 200, "{page}");
            for item in page["items"].as_array().unwrap() {
                ids.push(item["id"].to_string().trim_matches('"').to_owned());
            }
            between().await;
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(page["has_more"], true);
                    cursor = Some(next.to_owned());
                }
                None => {
                    assert_eq!(page["has_more"], false);
                    return ids;
                }
            }
        }
    }
}

/// A WhatsApp text from `from` to the business number `phone`, at `timestamp`.
async fn whatsapp(runner: &LocalRunner, phone: &str, from: &str, id: &str, timestamp: u64) {
    let body = whatsapp::message_at(phone, from, id, &format!("mensagem {id}"), timestamp);
    let response = whatsapp::post(&reqwest::Client::new(), &runner.base_url, body, META_SECRET)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A buyer asks seller A a question on the sandbox, which notifies the runner: its id.
async fn ask(runner: &LocalRunner, text: &str) -> u64 {
    let asked = browser()
        .post(runner.url("/sandbox/mercadolivre/questions"))
        .json(&json!({"seller_id": SELLER_A, "item_id": "MLB3859205311", "text": text}))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 201);
    let asked: Value = asked.json().await.unwrap();
    asked["question"]["id"].as_u64().unwrap()
}

/// The sandbox's next API call answers `status` instead.
async fn fault(runner: &LocalRunner, status: &str) {
    let set = browser()
        .post(runner.url("/sandbox/mercadolivre/faults"))
        .json(&json!({"mode": status, "count": 1}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success());
}

/// Polls `path` until `done` holds for its body.
async fn until(seller: &Seller, runner: &LocalRunner, path: &str, done: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = seller.get(runner, path).await;
        if status == 200 && done(&body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].to_string().trim_matches('"').to_owned())
        .collect()
}

#[tokio::test]
async fn a_question_is_answered_once_and_only_by_its_seller() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[("META_APP_SECRET", META_SECRET)]);
    let a = Seller::sign_in(&runner, SELLER_A, PHONE_A).await;
    let b = Seller::sign_in(&runner, SELLER_B, PHONE_B).await;

    let id = ask(&runner, "Tem azul?").await;
    until(&a, &runner, "/v1/questions", |body| {
        ids(body) == [id.to_string()]
    })
    .await;
    let (_, listed) = a.get(&runner, "/v1/questions?status=UNANSWERED").await;
    assert_eq!(listed["items"][0]["text"], "Tem azul?");

    // Tenant B sees none of it, and can neither answer it nor page A's list.
    let (_, theirs) = b.get(&runner, "/v1/questions").await;
    assert_eq!(theirs["items"], json!([]));
    let answer_path = format!("/v1/questions/{id}/answer");
    let (status, _) = b.post(&runner, &answer_path, json!({"text": "Sim"})).await;
    assert_eq!(
        status, 404,
        "another tenant's question does not exist for B"
    );
    let (_, page) = a.get(&runner, "/v1/questions?limit=1").await;
    assert!(page["next_cursor"].is_null(), "one question: {page}");

    // Bad answers are refused before anything is sent.
    for bad in [
        json!({"text": " "}),
        json!({"text": "a".repeat(2001)}),
        json!({}),
    ] {
        let (status, problem) = a.post(&runner, &answer_path, bad).await;
        assert_eq!(status, 400, "{problem}");
    }
    let (status, _) = a
        .post(&runner, "/v1/questions/abc/answer", json!({"text": "x"}))
        .await;
    assert_eq!(status, 404);

    // Five answers race: one is published, the others are told so.
    let answers = (0..5).map(|n| {
        a.post(
            &runner,
            &answer_path,
            json!({"text": format!("Sim, temos ({n}).")}),
        )
    });
    let outcomes = futures_util::future::join_all(answers).await;
    let statuses: Vec<u16> = outcomes.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{outcomes:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 409),
        "{outcomes:?}"
    );
    let (_, published) = outcomes.iter().find(|(status, _)| *status == 200).unwrap();
    assert_eq!(published["status"], "ANSWERED");

    let sent: Value = browser()
        .get(runner.url(&format!(
            "/sandbox/mercadolivre/questions/{id}/answer_requests"
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["answer_requests"], 1, "{sent}");
    assert_eq!(sent["answer"], published["answer"]["text"]);

    let (_, answered) = a.get(&runner, "/v1/questions?status=ANSWERED").await;
    assert_eq!(ids(&answered), [id.to_string()]);
    let (_, open) = a.get(&runner, "/v1/questions").await;
    assert_eq!(open["items"], json!([]));
    let (status, problem) = a
        .post(&runner, &answer_path, json!({"text": "De novo"}))
        .await;
    assert_eq!(status, 409, "{problem}");

    // A provider failure publishes nothing and gives the guard back: the next answer goes
    // through. Mercado Livre's 429 is the seller's 429, with Retry-After.
    let second = ask(&runner, "Tem verde?").await;
    until(&a, &runner, "/v1/questions", |body| {
        ids(body) == [second.to_string()]
    })
    .await;
    let path = format!("/v1/questions/{second}/answer");
    fault(&runner, "500").await;
    let (status, problem) = a.post(&runner, &path, json!({"text": "Temos."})).await;
    assert_eq!(status, 503, "{problem}");
    let (status, problem) = a.post(&runner, &path, json!({"text": "Temos."})).await;
    assert_eq!(status, 200, "{problem}");

    let third = ask(&runner, "Tem roxo?").await;
    until(&a, &runner, "/v1/questions", |body| {
        ids(body) == [third.to_string()]
    })
    .await;
    fault(&runner, "429").await;
    let response = a
        .client
        .post(runner.url(&format!("/v1/questions/{third}/answer")))
        .bearer_auth(&a.token)
        .json(&json!({"text": "Não temos."}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["title"], "Too many requests");
    assert!(runner.terminate().success());
}

#[tokio::test]
async fn conversations_page_without_gaps_and_stay_with_their_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[("META_APP_SECRET", META_SECRET)]);
    let a = Seller::sign_in(&runner, SELLER_A, PHONE_A).await;
    let b = Seller::sign_in(&runner, SELLER_B, PHONE_B).await;

    let start = 1_764_000_000;
    for n in 0..25u64 {
        let from = format!("55119{n:08}");
        whatsapp(&runner, PHONE_A, &from, &format!("wamid.a{n}"), start + n).await;
    }
    whatsapp(&runner, PHONE_B, "5521999990000", "wamid.b0", start).await;
    until(&a, &runner, "/v1/conversations?limit=50", |body| {
        ids(body).len() == 25
    })
    .await;
    until(&b, &runner, "/v1/conversations", |body| {
        ids(body).len() == 1
    })
    .await;

    // Walk A's conversations 4 at a time while new ones arrive (newer, so ahead of the
    // walk): every conversation there was at the start is seen exactly once.
    let mut arriving = 0u64;
    let walked = a
        .walk(&runner, "/v1/conversations", 4, async || {
            arriving += 1;
            let from = format!("55119{:08}", 100 + arriving);
            whatsapp(
                &runner,
                PHONE_A,
                &from,
                &format!("wamid.new{arriving}"),
                start + 1000 + arriving,
            )
            .await;
        })
        .await;
    let unique: BTreeSet<&String> = walked.iter().collect();
    assert_eq!(unique.len(), walked.len(), "no duplicate: {walked:?}");
    for n in 0..25u64 {
        let id = format!("whatsapp:55119{n:08}");
        assert!(unique.contains(&id), "{id} missing from {walked:?}");
    }
    let first_25: Vec<String> = (0..25u64)
        .rev()
        .map(|n| format!("whatsapp:55119{n:08}"))
        .collect();
    let seen_in_order: Vec<String> = walked
        .iter()
        .filter(|id| first_25.contains(id))
        .cloned()
        .collect();
    assert_eq!(seen_in_order, first_25, "most recently updated first");

    // A conversation's messages, newest first; then read.
    let conversation = "whatsapp:5511900000003";
    whatsapp(
        &runner,
        PHONE_A,
        "5511900000003",
        "wamid.a3-2",
        start + 2000,
    )
    .await;
    let messages = format!("/v1/conversations/{conversation}/messages");
    until(&a, &runner, &messages, |body| ids(body).len() == 2).await;
    let (_, listed) = a.get(&runner, &messages).await;
    assert_eq!(ids(&listed), ["wamid.a3-2", "wamid.a3"]);
    let (_, unread) = a
        .get(&runner, "/v1/conversations?status=unread&limit=50")
        .await;
    assert!(ids(&unread).contains(&conversation.to_owned()));
    let read = format!("/v1/conversations/{conversation}/read");
    for _ in 0..2 {
        let (status, marked) = a.post(&runner, &read, json!({})).await;
        assert_eq!(status, 200, "{marked}");
        assert_eq!(marked["unread"], 0);
    }
    let (_, unread) = a
        .get(&runner, "/v1/conversations?status=unread&limit=50")
        .await;
    assert!(!ids(&unread).contains(&conversation.to_owned()));
    let (_, whatsapp_only) = a
        .get(&runner, "/v1/conversations?channel=mercadolivre")
        .await;
    assert_eq!(whatsapp_only["items"], json!([]));

    // B can read, page or mark nothing of A's, whatever it sends.
    let (_, page) = a.get(&runner, "/v1/conversations?limit=2").await;
    let a_cursor = page["next_cursor"].as_str().unwrap();
    let (status, _) = b
        .get(
            &runner,
            &format!("/v1/conversations?limit=2&cursor={a_cursor}"),
        )
        .await;
    assert_eq!(status, 400, "A's cursor is refused to B");
    let (status, _) = a
        .get(
            &runner,
            &format!("/v1/conversations?limit=2&channel=whatsapp&cursor={a_cursor}"),
        )
        .await;
    assert_eq!(status, 400, "a cursor is bound to its filters");
    assert_eq!(b.get(&runner, &messages).await.0, 404);
    assert_eq!(b.post(&runner, &read, json!({})).await.0, 404);
    let (_, theirs) = b.get(&runner, "/v1/conversations").await;
    assert_eq!(ids(&theirs), ["whatsapp:5521999990000"]);
    for bad in [
        "/v1/conversations?status=open",
        "/v1/conversations?channel=sms",
        "/v1/conversations?limit=0",
    ] {
        assert_eq!(a.get(&runner, bad).await.0, 400, "{bad}");
    }
    let anonymous = reqwest::get(runner.url("/v1/conversations")).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert!(runner.terminate().success());
}
