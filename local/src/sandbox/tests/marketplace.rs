//! The marketplace side over HTTP: the API a seller's token calls, what buyers do and the
//! notifications it sends (to a small server that records them), the fault switch, the
//! console page, and the real client reading all of it.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use reqwest::Method;
use reqwest::header::HeaderMap;
use secrecy::SecretString;
use shared::upstream::{MercadoLivre, QuestionStatus, UpstreamError};

use super::*;

const SELLER: u64 = 468_424_240;
const OTHER_SELLER: u64 = 555_000_111;
const BUYER: u64 = 1_302_765_432;

/// A callback URL that records every notification POSTed to it and answers `status`.
struct Callback {
    url: String,
    status: AtomicU16,
    received: Mutex<Vec<(HeaderMap, Value)>>,
}

impl Callback {
    async fn start(status: u16) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let callback = Arc::new(Callback {
            url: format!(
                "http://{}/webhooks/mercadolivre",
                listener.local_addr().unwrap()
            ),
            status: AtomicU16::new(status),
            received: Mutex::new(Vec::new()),
        });
        let app = axum::Router::new()
            .route(
                "/webhooks/mercadolivre",
                axum::routing::post(
                    |State(callback): State<Arc<Callback>>,
                     headers: HeaderMap,
                     body: axum::body::Bytes| async move {
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        callback.received.lock().unwrap().push((headers, body));
                        http::StatusCode::from_u16(callback.status.load(Ordering::SeqCst)).unwrap()
                    },
                ),
            )
            .with_state(Arc::clone(&callback));
        tokio::spawn(async move { axum::serve(listener, app).await });
        callback
    }

    fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| body.clone())
            .collect()
    }
}

/// The sandbox notifying `notification_url`, with two signed-in sellers.
struct Marketplace {
    provider: Provider,
    token: String,
    other_token: String,
}

async fn market(notification_url: Option<String>) -> Marketplace {
    let provider = serve(SandboxSettings {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uri: REDIRECT_URI.to_owned(),
        access_token_ttl: SIX_HOURS,
        notification_url,
    })
    .await;
    let token = text(&provider.tokens_for(SELLER, "SELLER").await["access_token"]).to_owned();
    let other_token =
        text(&provider.tokens_for(OTHER_SELLER, "OTHER").await["access_token"]).to_owned();
    Marketplace {
        provider,
        token,
        other_token,
    }
}

impl Marketplace {
    /// An API call with `token` as the bearer: status, headers, JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, HeaderMap, Value) {
        let mut request = self.provider.http.request(method, self.provider.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, body) = self.call(Method::GET, path, Some(&self.token), None).await;
        (status, body)
    }

    /// A control request (what a buyer does, the fault switch): no token.
    async fn control(&self, path: &str, body: Value) -> (u16, Value) {
        let (status, _, body) = self.call(Method::POST, path, None, Some(body)).await;
        (status, body)
    }

    async fn ask(&self, text: &str) -> Value {
        let (status, body) = self
            .control(
                "/questions",
                json!({"seller_id": SELLER, "item_id": "MLB3859205311", "text": text}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn buy(&self) -> Value {
        let (status, body) = self
            .control(
                "/orders",
                json!({"seller_id": SELLER, "title": "Farol de milha", "quantity": 2, "unit_price": 149.9}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    async fn missed(&self, query: &str) -> (u16, Value) {
        self.get(&format!("/missed_feeds?app_id={CLIENT_ID}{query}"))
            .await
    }
}

fn not_found(what: &str, id: impl std::fmt::Display) -> Value {
    json!({"message": format!("{what} with id {id} not found"), "error": "not_found",
           "status": 404, "cause": []})
}

fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../shared/fixtures/mercadolivre/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_question_is_served_in_the_v4_shape_to_its_seller_only() {
    let m = market(None).await;
    let created = m.ask("Serve no modelo 2019?").await;
    let id = created["question"]["id"].as_u64().unwrap();

    let (status, question) = m.get(&format!("/questions/{id}?api_version=4")).await;
    assert_eq!(status, 200, "{question}");
    assert_eq!(question, created["question"]);
    assert_eq!(
        keys(&question),
        keys(&fixture("question-13190540261.json")),
        "the fixture's fields, no more, no less"
    );
    assert_eq!(question["seller_id"], SELLER);
    assert_eq!(question["status"], "UNANSWERED");
    assert_eq!(question["text"], "Serve no modelo 2019?");
    assert_eq!(question["from"], json!({"id": BUYER}));
    assert_eq!(question["answer"], Value::Null);
    assert!(
        text(&question["date_created"]).ends_with("-03:00"),
        "{question}"
    );

    let path = format!("/questions/{id}");
    let (status, _, body) = m.call(Method::GET, &path, Some(&m.other_token), None).await;
    assert_eq!(
        (status, body),
        (404, not_found("Question", id)),
        "another seller's"
    );
    assert_eq!(m.get("/questions/1").await, (404, not_found("Question", 1)));
    assert_eq!(m.get("/questions/abc").await.0, 400);
    let (status, _, body) = m.call(Method::GET, &path, None, None).await;
    assert_eq!((status, body), (401, unauthorized()));
    let (status, _, body) = m
        .call(Method::GET, &path, Some("APP_USR-forged"), None)
        .await;
    assert_eq!((status, body), (401, unauthorized()));
}

#[tokio::test]
async fn answering_marks_the_question_answered_once_and_notifies() {
    let callback = Callback::start(200).await;
    let m = market(Some(callback.url.clone())).await;
    let id = m.ask("Tem pronta entrega?").await["question"]["id"]
        .as_u64()
        .unwrap();

    let answer = json!({"question_id": id, "text": "  Tem sim!  "});
    let (status, _, reply) = m
        .call(
            Method::POST,
            "/answers",
            Some(&m.token),
            Some(answer.clone()),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["id"], id);
    assert_eq!(reply["status"], "ANSWERED");
    assert_eq!(reply["answer"]["text"], "Tem sim!");
    assert_eq!(reply["answer"]["status"], "ACTIVE");
    let (_, question) = m.get(&format!("/questions/{id}?api_version=4")).await;
    assert_eq!(question, reply);

    let (status, _, body) = m
        .call(Method::POST, "/answers", Some(&m.token), Some(answer))
        .await;
    assert_eq!(status, 400, "answered once: {body}");
    assert_eq!(body["error"], "bad_request");

    // Mercado Livre notifies answers on the questions topic too.
    let resource = format!("/questions/{id}");
    for _ in 0..200 {
        if callback.bodies().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bodies = callback.bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert!(
        bodies
            .iter()
            .all(|body| body["resource"] == resource.as_str())
    );
    assert_ne!(bodies[0]["_id"], bodies[1]["_id"]);
}

#[tokio::test]
async fn answers_are_checked_like_mercado_livre_checks_them() {
    let m = market(None).await;
    let id = m.ask("Cabe no Onix?").await["question"]["id"]
        .as_u64()
        .unwrap();
    for (body, status) in [
        (json!({"question_id": id.to_string(), "text": "Sim"}), 400),
        (json!({"question_id": id}), 400),
        (json!({"question_id": id, "text": "   "}), 400),
        (json!({"question_id": id, "text": "x".repeat(2001)}), 400),
        (json!({"question_id": 1, "text": "Sim"}), 404),
        (json!(["not", "an", "object"]), 400),
    ] {
        let (got, _, reply) = m
            .call(Method::POST, "/answers", Some(&m.token), Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {reply}");
        assert_eq!(reply["status"], status, "{reply}");
    }
    let (status, _, _) = m
        .call(
            Method::POST,
            "/answers",
            Some(&m.other_token),
            Some(json!({"question_id": id, "text": "Sim"})),
        )
        .await;
    assert_eq!(status, 404, "another seller's question");
    let (status, _, _) = m
        .call(
            Method::POST,
            "/answers",
            None,
            Some(json!({"question_id": id, "text": "Sim"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, question) = m.get(&format!("/questions/{id}")).await;
    assert_eq!((status, &question["status"]), (200, &json!("UNANSWERED")));
    let (status, _, _) = m
        .call(
            Method::POST,
            "/answers",
            Some(&m.token),
            Some(json!({"question_id": id, "text": "x".repeat(2000)})),
        )
        .await;
    assert_eq!(status, 200, "2000 characters is the documented maximum");
}

#[tokio::test]
async fn an_order_is_served_to_its_seller_only() {
    let m = market(None).await;
    let created = m.buy().await;
    let id = created["order"]["id"].as_u64().unwrap();

    let (status, order) = m.get(&format!("/orders/{id}")).await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order, created["order"]);
    assert_eq!(order["status"], "paid");
    assert_eq!(order["total_amount"], 299.8);
    assert_eq!(order["currency_id"], "BRL");
    assert_eq!(
        order["buyer"],
        json!({"id": BUYER, "nickname": "SANDBOX_BUYER"})
    );
    assert_eq!(order["seller"], json!({"id": SELLER}));
    assert_eq!(order["order_items"][0]["item"]["title"], "Farol de milha");
    assert_eq!(order["order_items"][0]["quantity"], 2);
    let documented = keys(&fixture("order-2000009876543210.json"));
    let missing: Vec<String> = keys(&order)
        .into_iter()
        .filter(|key| !documented.contains(key))
        .collect();
    assert!(
        missing.is_empty(),
        "fields not in the documented order: {missing:?}"
    );

    let path = format!("/orders/{id}");
    let (status, _, body) = m.call(Method::GET, &path, Some(&m.other_token), None).await;
    assert_eq!((status, body), (404, not_found("Order", id)));
    assert_eq!(m.get("/orders/-1").await.0, 400);
}

#[tokio::test]
async fn a_message_needs_tag_post_sale_and_belongs_to_its_seller() {
    let m = market(None).await;
    let order_id = m.buy().await["order"]["id"].as_u64().unwrap();
    let (status, created) = m
        .control(
            "/messages",
            json!({"order_id": order_id, "text": "Olá! Já foi enviado?"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = text(&created["message"]["messages"][0]["id"]).to_owned();
    assert!(is_hex(&id, 32), "{id}");

    let (status, reply) = m.get(&format!("/messages/{id}?tag=post_sale")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        keys(&reply),
        keys(&fixture("message-post_sale.json")),
        "{reply}"
    );
    let message = &reply["messages"][0];
    assert_eq!(
        keys(message),
        keys(&fixture("message-post_sale.json")["messages"][0])
    );
    assert_eq!(message["from"], json!({"user_id": BUYER}));
    assert_eq!(message["to"], json!({"user_id": SELLER}));
    assert_eq!(message["text"], "Olá! Já foi enviado?");
    assert_eq!(
        message["message_resources"][0],
        json!({"id": order_id.to_string(), "name": "packs"}),
        "a single order's pack is the order"
    );

    let (status, body) = m.get(&format!("/messages/{id}")).await;
    assert_eq!(status, 400, "{body}");
    assert!(text(&body["message"]).contains("tag=post_sale"));
    let path = format!("/messages/{id}?tag=post_sale");
    let (status, _, body) = m.call(Method::GET, &path, Some(&m.other_token), None).await;
    assert_eq!((status, body), (404, not_found("Message", &id)));

    let (status, body) = m
        .control("/messages", json!({"order_id": 1, "text": "Oi"}))
        .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_buyer_question_is_created_and_its_notification_posted() {
    let callback = Callback::start(200).await;
    let m = market(Some(callback.url.clone())).await;

    let created = m.ask("Bom dia! Serve no modelo 2019?").await;

    let id = created["question"]["id"].as_u64().unwrap();
    let received = callback.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, notification) = &received[0];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        keys(notification),
        keys(&fixture("notification-questions.json")),
        "{notification}"
    );
    assert_eq!(notification["resource"], format!("/questions/{id}"));
    assert_eq!(notification["user_id"], SELLER);
    assert_eq!(notification["topic"], "questions");
    assert_eq!(
        notification["application_id"],
        CLIENT_ID.parse::<u64>().unwrap(),
        "a number, as the app's own id"
    );
    assert_eq!(notification["attempts"], 1);
    assert!(uuid::Uuid::parse_str(text(&notification["_id"])).is_ok());
    let sent = text(&notification["sent"]);
    assert!(sent.ends_with('Z') && sent.len() == 24, "{sent}");
    assert_eq!(created["notification"], *notification);
    assert_eq!(
        created["delivery"],
        json!({"url": callback.url, "http_code": 200, "delivered": true, "error": null})
    );

    let (status, missed) = m.missed("").await;
    assert_eq!(
        (status, missed),
        (200, json!({"messages": []})),
        "delivered"
    );
}

#[tokio::test]
async fn orders_and_messages_send_their_notifications() {
    let callback = Callback::start(200).await;
    let m = market(Some(callback.url.clone())).await;

    let order_id = m.buy().await["order"]["id"].as_u64().unwrap();
    let (status, created) = m
        .control("/messages", json!({"order_id": order_id, "text": "Oi"}))
        .await;
    assert_eq!(status, 201);

    let bodies = callback.bodies();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0]["topic"], "orders_v2");
    assert_eq!(bodies[0]["resource"], format!("/orders/{order_id}"));
    assert_eq!(
        keys(&bodies[0]),
        keys(&fixture("notification-orders_v2.json"))
    );
    assert_eq!(bodies[1]["topic"], "messages");
    assert_eq!(
        bodies[1]["resource"], created["message"]["messages"][0]["id"],
        "a bare message id"
    );
    assert_eq!(bodies[1]["actions"], json!(["created"]));
    assert_eq!(
        keys(&bodies[1]),
        keys(&fixture("notification-messages.json"))
    );
}

#[tokio::test]
async fn missed_feeds_lists_what_was_not_delivered_as_mercado_livre_does() {
    let callback = Callback::start(500).await;
    let m = market(Some(callback.url.clone())).await;

    let refused = m.ask("Refused by the callback").await;
    assert_eq!(
        refused["delivery"],
        json!({"url": callback.url, "http_code": 500, "delivered": false, "error": null})
    );
    callback.status.store(200, Ordering::SeqCst);
    m.ask("Delivered").await;
    let (status, lost) = m
        .control(
            "/questions",
            json!({"seller_id": SELLER, "item_id": "MLB1", "text": "Lost", "deliver": false}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(lost["delivery"]["delivered"], false);
    m.buy().await;
    assert_eq!(callback.bodies().len(), 3, "the lost one was never sent");

    let (status, page) = m.missed("&topic=questions").await;
    assert_eq!(status, 200, "{page}");
    let entries = page["messages"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{page}");
    let first = &entries[0];
    assert_eq!(first["resource"], refused["notification"]["resource"]);
    assert_eq!(first["response"]["http_code"], 500);
    assert_eq!(first["request"]["url"], callback.url.as_str());
    let data: Value = serde_json::from_str(text(&first["request"]["data"])).unwrap();
    assert_eq!(
        data, refused["notification"],
        "request.data is the body as sent"
    );
    assert_eq!(entries[1]["_id"], lost["notification"]["_id"]);
    assert_eq!(entries[1]["response"]["http_code"], Value::Null);

    assert!(
        m.missed("&topic=orders_v2").await.1["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let (_, all) = m.missed("").await;
    assert_eq!(all["messages"].as_array().unwrap().len(), 2);
    let (_, second) = m.missed("&topic=questions&offset=1&limit=1").await;
    assert_eq!(second["messages"].as_array().unwrap().len(), 1);
    assert_eq!(second["messages"][0]["_id"], lost["notification"]["_id"]);
}

#[tokio::test]
async fn without_a_notification_url_every_notification_is_missed() {
    let m = market(None).await;
    let created = m.ask("Anyone there?").await;
    assert_eq!(created["delivery"]["delivered"], false);
    assert!(text(&created["delivery"]["error"]).contains("no notification_url"));
    let (_, page) = m.missed("&topic=questions").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let unreachable = format!("http://{}/webhooks", closed.local_addr().unwrap());
    drop(closed);
    let m = market(Some(unreachable)).await;
    let created = m.ask("Anyone there?").await;
    assert_eq!(created["delivery"]["error"], "could not connect");
    assert_eq!(
        m.missed("").await.1["messages"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn missed_feeds_needs_a_token_and_this_application() {
    let m = market(None).await;
    let (status, _, body) = m
        .call(
            Method::GET,
            &format!("/missed_feeds?app_id={CLIENT_ID}"),
            None,
            None,
        )
        .await;
    assert_eq!((status, body), (401, unauthorized()));
    let (status, body) = m.get("/missed_feeds").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "missing parameter app_id");
    let (status, body) = m.get("/missed_feeds?app_id=123").await;
    assert_eq!((status, &body["error"]), (403, &json!("forbidden")));
    for query in ["&limit=0", "&limit=1001", "&offset=-1", "&limit=ten"] {
        assert_eq!(m.missed(query).await.0, 400, "{query}");
    }
}

#[tokio::test]
async fn the_fault_switch_answers_the_documented_429_then_returns_to_normal() {
    let m = market(None).await;
    let id = m.ask("Ok?").await["question"]["id"].as_u64().unwrap();
    let path = format!("/questions/{id}");

    let (status, state) = m
        .control("/faults", json!({"mode": "429", "count": 2}))
        .await;
    assert_eq!(
        (status, state),
        (200, json!({"mode": "429", "remaining": 2}))
    );
    for _ in 0..2 {
        let (status, headers, body) = m.call(Method::GET, &path, Some(&m.token), None).await;
        assert_eq!(status, 429);
        assert_eq!(body, fixture("error-429.json"), "the documented body");
        assert!(!headers.contains_key("retry-after"), "none is promised");
    }
    assert_eq!(m.get(&path).await.0, 200, "back to normal after 2 calls");
    let (status, state) = m.get("/faults").await;
    assert_eq!(
        (status, state),
        (200, json!({"mode": "none", "remaining": null}))
    );
}

#[tokio::test]
async fn the_fault_switch_covers_the_api_only_and_refuses_bad_settings() {
    let m = market(None).await;
    let (status, state) = m.control("/faults", json!({"mode": 503})).await;
    assert_eq!(
        (status, state),
        (200, json!({"mode": "503", "remaining": null}))
    );
    for _ in 0..3 {
        let (status, body) = m.get("/users/me").await;
        assert_eq!(status, 503);
        assert_eq!(body["status"], 503);
        assert_eq!(m.get("/orders/1").await.0, 503);
        let (status, _, _) = m
            .call(Method::POST, "/answers", Some(&m.token), Some(json!({})))
            .await;
        assert_eq!(status, 503);
    }
    // The control side and the login keep working.
    m.ask("Still there?").await;
    assert_eq!(m.provider.token(&[("grant_type", "password")]).await.0, 400);
    m.provider.tokens_for(SELLER, "SELLER").await;

    for bad in [
        json!({"mode": "418"}),
        json!({"mode": "429", "count": 0}),
        json!({"mode": "429", "count": "many"}),
        json!({"count": 1}),
        json!({"mode": ["429"]}),
    ] {
        let (status, body) = m.control("/faults", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }
    assert_eq!(
        m.get("/users/me").await.0,
        503,
        "a refused setting changes nothing"
    );
    let (status, state) = m.control("/faults", json!({"mode": "none"})).await;
    assert_eq!(
        (status, state),
        (200, json!({"mode": "none", "remaining": null}))
    );
    assert_eq!(m.get("/users/me").await.0, 200);
}

#[tokio::test]
async fn bad_buyer_requests_get_clear_errors() {
    let m = market(None).await;
    for (path, body, says) in [
        (
            "/questions",
            json!({"item_id": "MLB1", "text": "a"}),
            "missing parameter seller_id",
        ),
        (
            "/questions",
            json!({"seller_id": "me", "item_id": "MLB1", "text": "a"}),
            "seller_id must be a number",
        ),
        (
            "/questions",
            json!({"seller_id": SELLER, "item_id": "../x", "text": "a"}),
            "is not a listing id",
        ),
        (
            "/questions",
            json!({"seller_id": SELLER, "item_id": "MLB1", "text": " "}),
            "text is empty",
        ),
        (
            "/questions",
            json!({"seller_id": SELLER, "item_id": "MLB1", "text": "a", "deliver": "maybe"}),
            "deliver must be true or false",
        ),
        (
            "/orders",
            json!({"seller_id": SELLER, "quantity": 0}),
            "quantity must be from 1 to 1000",
        ),
        (
            "/orders",
            json!({"seller_id": SELLER, "unit_price": -1}),
            "unit_price must be a number above 0",
        ),
        (
            "/messages",
            json!({"text": "a"}),
            "missing parameter order_id",
        ),
        (
            "/messages",
            json!({"order_id": 1, "text": "a".repeat(3501)}),
            "longer than 3500",
        ),
    ] {
        let (status, reply) = m.control(path, body.clone()).await;
        assert_eq!(status, 400, "{path} {body}: {reply}");
        assert!(
            text(&reply["message"]).contains(says),
            "{path} {body}: {reply}"
        );
    }
    let response = m
        .provider
        .http
        .post(m.provider.url("/questions"))
        .header(CONTENT_TYPE, "text/plain")
        .body("seller_id=1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn the_console_asks_questions_and_sets_faults_with_plain_forms() {
    let callback = Callback::start(200).await;
    let m = market(Some(callback.url.clone())).await;
    let console = m
        .provider
        .http
        .get(m.provider.url("/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    assert!(
        console.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'")
    );
    let page = console.text().await.unwrap();
    assert!(!page.contains("<script"));
    for action in ["questions", "orders", "messages", "faults"] {
        assert!(page.contains(&format!("action=\"{action}\"")), "{action}");
    }
    assert!(page.contains(&callback.url));

    let asked = m
        .provider
        .http
        .post(m.provider.url("/questions"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode([
            ("seller_id", "468424240"),
            ("item_id", "MLB3859205311"),
            ("text", "<b>Tem azul?</b>"),
            ("deliver", "true"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 201);
    let result = asked.text().await.unwrap();
    assert!(result.contains("delivered to"), "{result}");
    assert!(result.contains("href=\"console\""));
    assert_eq!(callback.bodies().len(), 1);
    let id = callback.bodies()[0]["resource"]
        .as_str()
        .unwrap()
        .trim_start_matches("/questions/")
        .to_owned();
    let (_, question) = m.get(&format!("/questions/{id}")).await;
    assert_eq!(question["text"], "<b>Tem azul?</b>");

    let page = m
        .provider
        .http
        .get(m.provider.url("/console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&format!("/questions/{id}")),
        "the last notifications are listed"
    );

    let set = m
        .provider
        .http
        .post(m.provider.url("/faults"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode([("mode", "429"), ("count", "")]))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert!(
        set.text()
            .await
            .unwrap()
            .contains("until the switch is set to none")
    );
    assert_eq!(m.get("/users/me").await.0, 429);

    let refused = m
        .provider
        .http
        .post(m.provider.url("/questions"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode([
            ("seller_id", "468424240"),
            ("item_id", "MLB1"),
            ("text", ""),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("missing parameter text")
    );
}

/// The client the worker uses, against the sandbox: every shape it serves is one the
/// client reads, and the fault switch's 429 blocks the application and the account.
#[tokio::test]
async fn the_client_reads_everything_the_sandbox_serves() {
    let m = market(None).await;
    let vars = [
        ("MERCADOLIVRE_API_URL", m.provider.base.clone()),
        ("MERCADOLIVRE_MAX_ATTEMPTS", "1".to_owned()),
    ];
    let config = shared::config::Config::from_vars(shared::config::Profile::Local, |name| {
        vars.iter()
            .find(|(var, _)| *var == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap();
    let limiter = Arc::new(shared::ratelimit::memory::MemoryLimiter::new());
    let client = MercadoLivre::from_settings(
        &config.mercadolivre,
        &config.rate_limit,
        limiter,
        &config.tls,
    )
    .unwrap();
    let token = SecretString::from(m.token.clone());

    let question_id = m.ask("Serve no modelo 2019?").await["question"]["id"]
        .as_u64()
        .unwrap();
    let question = client
        .get_question(&token, SELLER, question_id)
        .await
        .unwrap();
    assert_eq!(
        (question.seller_id, question.from.id, question.status),
        (SELLER, BUYER, QuestionStatus::Unanswered)
    );
    let published = client
        .answer_question(&token, SELLER, question_id, "Serve sim!")
        .await
        .unwrap();
    assert_eq!(published.status.as_deref(), Some("ACTIVE"));
    let question = client
        .get_question(&token, SELLER, question_id)
        .await
        .unwrap();
    assert_eq!(question.status, QuestionStatus::Answered);

    let order_id = m.buy().await["order"]["id"].as_u64().unwrap();
    let order = client.get_order(&token, SELLER, order_id).await.unwrap();
    assert_eq!(
        (order.status.as_str(), order.total_amount),
        ("paid", Some(299.8))
    );
    assert_eq!(order.buyer.map(|buyer| buyer.id), Some(BUYER));

    let (_, created) = m
        .control("/messages", json!({"order_id": order_id, "text": "Oi"}))
        .await;
    let message_id = text(&created["notification"]["resource"]).to_owned();
    let message = client
        .get_message(&token, SELLER, &message_id)
        .await
        .unwrap();
    assert_eq!(
        (
            message.text.as_str(),
            message.from_user_id,
            message.conversation_id
        ),
        ("Oi", BUYER, order_id.to_string())
    );

    let page = client
        .missed_feeds(&token, SELLER, CLIENT_ID, "questions", 0, 10)
        .await
        .unwrap();
    assert_eq!(
        page.messages.len(),
        2,
        "the question's notification and its answer's (the sandbox has no URL)"
    );
    for missed in &page.messages {
        let notification: Value = serde_json::from_str(missed.notification.get()).unwrap();
        assert_eq!(
            notification["resource"],
            format!("/questions/{question_id}")
        );
    }

    let error = client.get_question(&token, SELLER, 1).await.unwrap_err();
    assert!(matches!(error, UpstreamError::NotFound), "{error}");

    m.control("/faults", json!({"mode": "429", "count": 1}))
        .await;
    let error = client
        .get_order(&token, SELLER, order_id)
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::RateLimited { retry_after } if retry_after == shared::upstream::DEFAULT_THROTTLE),
        "{error}"
    );
    // The switch is back to normal, but the limiter now holds the application back.
    let error = client
        .get_order(&token, OTHER_SELLER, order_id)
        .await
        .unwrap_err();
    assert!(
        matches!(error, UpstreamError::RateLimited { .. }),
        "{error}"
    );
    assert_eq!(m.get(&format!("/orders/{order_id}")).await.0, 200);
}
