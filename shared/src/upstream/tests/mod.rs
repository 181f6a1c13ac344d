//! The client against a scripted Mercado Livre on 127.0.0.1 and a recording limiter.

mod mock;
mod oauth;

use crate::clock::ManualClock;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use secrecy::SecretString;

use self::mock::{MockApi, RecordingLimiter, Reply};
use super::*;
use crate::config::MercadoLivreSettings;

const TOKEN: &str = "APP_USR-6092-112018-0a1b2c3d4e5f60718293a4b5c6d7e8f9-468424240";
const SELLER: u64 = 468_424_240;
const QUESTION_ID: u64 = 13_190_540_261;
const QUESTION: &str = include_str!("question-13190540261.json");
const NOW_MS: i64 = 1_795_000_000_000;

struct Harness {
    api: Arc<MockApi>,
    limiter: Arc<RecordingLimiter>,
    clock: Arc<ManualClock>,
    client: MercadoLivre,
    token: SecretString,
}

/// The configured budgets (2000/h global, 500/h per account, unless overridden).
fn limits() -> UpstreamLimits {
    let config = crate::config::Config::from_vars(crate::config::Profile::Local, |_| None).unwrap();
    UpstreamLimits::from(&config.rate_limit)
}

fn settings(base: &str) -> MercadoLivreSettings {
    MercadoLivreSettings {
        api_url: base.parse().unwrap(),
        auth_url: base.parse().unwrap(),
        call_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        breaker: BreakerPolicy::default(),
    }
}

async fn harness_with(configure: impl FnOnce(&mut MercadoLivreSettings)) -> Harness {
    harness_limited(configure, limits()).await
}

async fn harness_limited(
    configure: impl FnOnce(&mut MercadoLivreSettings),
    limits: UpstreamLimits,
) -> Harness {
    let (api, base) = MockApi::start().await;
    let mut settings = settings(&base);
    configure(&mut settings);
    let limiter = Arc::new(RecordingLimiter::default());
    let clock = Arc::new(ManualClock::at(NOW_MS));
    let http =
        crate::outbound::http_client(&crate::tls::Tls::default(), Duration::from_secs(1)).unwrap();
    let client =
        MercadoLivre::new(http, &settings, limits, limiter.clone()).with_clock(clock.clone());
    Harness {
        api,
        limiter,
        clock,
        client,
        token: SecretString::from(TOKEN),
    }
}

async fn harness() -> Harness {
    harness_with(|_| {}).await
}

impl Harness {
    async fn question(&self) -> Result<Question, UpstreamError> {
        self.client
            .get_question(&self.token, SELLER, QUESTION_ID)
            .await
    }

    async fn answer(&self) -> Result<PublishedAnswer, UpstreamError> {
        self.client
            .answer_question(&self.token, SELLER, QUESTION_ID, "Serve sim!")
            .await
    }
}

/// The failure, checked for the token in every form it can be printed.
fn failure<T: std::fmt::Debug>(result: Result<T, UpstreamError>) -> UpstreamError {
    let error = result.expect_err("the call should fail");
    let printed = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
    assert!(!printed.contains("0a1b2c3d4e5f"), "token leaked: {printed}");
    error
}

#[tokio::test]
async fn get_question_sends_the_bearer_token_and_decodes_the_question() {
    let h = harness().await;
    h.api.always(Reply::json(200, QUESTION));

    let question = h.question().await.unwrap();

    assert_eq!(question.id, QUESTION_ID);
    assert_eq!(question.seller_id, SELLER);
    assert_eq!(question.item_id, "MLB3859205311");
    assert_eq!(question.status, QuestionStatus::Unanswered);
    assert_eq!(question.from.id, 1_302_765_432);
    assert_eq!(question.answer, None);
    assert_eq!(question.date_created.offset().whole_hours(), -3);
    let requests = h.api.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].target, "/questions/13190540261?api_version=4");
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn every_attempt_checks_the_global_and_the_account_limit_at_the_clocks_time() {
    let h = harness().await;
    h.api
        .then(Reply::json(500, "{}"))
        .then(Reply::json(200, QUESTION));

    h.question().await.unwrap();

    let checks = h.limiter.checks.lock().unwrap().clone();
    assert_eq!(checks.len(), 2, "once per attempt");
    let limits = limits();
    for (batch, now_ms) in checks {
        assert_eq!(now_ms, NOW_MS);
        let keyed: Vec<(String, crate::ratelimit::Rule)> = batch
            .into_iter()
            .map(|check| (check.key, check.rule))
            .collect();
        assert_eq!(
            keyed,
            vec![
                ("ml:global".to_owned(), limits.global),
                ("ml:account:468424240".to_owned(), limits.per_account),
            ]
        );
    }
    assert_eq!(limits.global.limit, 2000);
    assert_eq!(limits.per_account.limit, 500);
}

#[tokio::test]
async fn answer_question_posts_the_question_id_as_a_number() {
    let h = harness().await;
    let answered = QUESTION.replace("\"UNANSWERED\"", "\"ANSWERED\"").replace(
        "\"answer\":null",
        r#""answer":{"text":"Serve sim!","status":"ACTIVE","date_created":"2026-11-20T11:30:00.000-03:00"}"#,
    );
    h.api.always(Reply::json(200, &answered));

    let published = h.answer().await.unwrap();

    assert_eq!(published.question_id, QUESTION_ID);
    assert_eq!(published.text, "Serve sim!");
    assert_eq!(published.status.as_deref(), Some("ACTIVE"));
    assert_eq!(published.date_created.map(|date| date.minute()), Some(30));
    let requests = h.api.requests();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("POST", "/answers")
    );
    assert_eq!(
        requests[0].content_type.as_deref(),
        Some("application/json")
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"question_id": 13190540261u64, "text": "Serve sim!"})
    );
}

#[tokio::test]
async fn a_published_answer_is_never_reported_failed_whatever_the_reply_says() {
    for (status, body) in [
        (200, r#"{"id":13190540261,"status":"ANSWERED"}"#),
        (
            201,
            r#"{"id":88,"text":"Serve sim!","status":"ACTIVE","date_created":"2026-11-20T11:31:00Z"}"#,
        ),
        (200, ""),
        (204, ""),
        (200, "not json at all"),
        (200, r#"{"question_id":"13190540261"}"#),
    ] {
        let h = harness().await;
        h.api.always(Reply::json(status, body));

        let published = h
            .answer()
            .await
            .unwrap_or_else(|error| panic!("{status} {body:?}: {error}"));

        assert_eq!(
            (published.question_id, published.text.as_str()),
            (QUESTION_ID, "Serve sim!")
        );
        assert_eq!(h.api.requests().len(), 1);
    }
}

#[tokio::test]
async fn a_limiter_denial_is_rate_limited_without_any_http_call() {
    let h = harness().await;
    h.limiter.deny_for(Duration::from_secs(90));

    let error = failure(h.question().await);

    assert!(
        matches!(error, UpstreamError::RateLimited { retry_after } if retry_after == Duration::from_secs(90))
    );
    assert_eq!(
        error.disposition(),
        Disposition::Defer(Duration::from_secs(90))
    );
    assert_eq!(h.limiter.check_count(), 1, "a denial is not retried");
    assert!(h.api.requests().is_empty());
}

#[tokio::test]
async fn a_broken_limiter_means_no_call() {
    let h = harness().await;
    h.limiter.break_down();

    let error = failure(h.question().await);

    assert!(matches!(error, UpstreamError::Limiter(_)), "{error}");
    assert_eq!(error.disposition(), Disposition::Retry);
    assert!(h.api.requests().is_empty());
}

const TOO_MANY_REQUESTS: &str = include_str!("../../../fixtures/mercadolivre/error-429.json");

#[tokio::test]
async fn a_429_blocks_the_application_and_the_account_until_retry_after_and_is_not_retried() {
    let h = harness().await;
    h.api.always(Reply::with_header(429, "retry-after", "120"));

    let error = failure(h.question().await);

    assert!(
        matches!(error, UpstreamError::RateLimited { retry_after } if retry_after == Duration::from_secs(120))
    );
    assert_eq!(
        error.disposition(),
        Disposition::Defer(Duration::from_secs(120))
    );
    assert_eq!(h.api.requests().len(), 1);
    assert_eq!(
        *h.limiter.blocks.lock().unwrap(),
        vec![
            ("ml:global".to_owned(), NOW_MS + 120_000, NOW_MS),
            ("ml:account:468424240".to_owned(), NOW_MS + 120_000, NOW_MS),
        ]
    );
    assert_eq!(h.client.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn the_documented_429_without_retry_after_blocks_both_for_the_default_wait() {
    let h = harness().await;
    h.api.always(Reply::json(429, TOO_MANY_REQUESTS));

    let error = failure(h.question().await);

    assert_eq!(DEFAULT_THROTTLE, Duration::from_secs(60));
    assert!(
        matches!(error, UpstreamError::RateLimited { retry_after } if retry_after == DEFAULT_THROTTLE),
        "{error:?}"
    );
    assert_eq!(error.disposition(), Disposition::Defer(DEFAULT_THROTTLE));
    assert_eq!(
        *h.limiter.blocks.lock().unwrap(),
        vec![
            ("ml:global".to_owned(), NOW_MS + 60_000, NOW_MS),
            ("ml:account:468424240".to_owned(), NOW_MS + 60_000, NOW_MS),
        ]
    );
    assert_eq!(h.api.requests().len(), 1, "a 429 is not retried");

    // A POST is throttled the same way.
    failure(h.answer().await);
    assert_eq!(h.limiter.blocks.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn a_429_can_be_configured_to_block_only_the_account() {
    let config = crate::config::Config::from_vars(crate::config::Profile::Local, |name| {
        (name == "RATE_LIMIT_ML_429_SCOPE").then(|| "account".to_owned())
    })
    .unwrap();
    let h = harness_limited(|_| {}, UpstreamLimits::from(&config.rate_limit)).await;
    h.api.always(Reply::json(429, TOO_MANY_REQUESTS));

    failure(h.question().await);

    assert_eq!(
        *h.limiter.blocks.lock().unwrap(),
        vec![("ml:account:468424240".to_owned(), NOW_MS + 60_000, NOW_MS)]
    );
}

#[test]
fn throttled_keys_follow_the_scope() {
    let mut limits = limits();
    assert_eq!(
        limits.throttle_scope,
        crate::config::ThrottleScope::Application
    );
    assert_eq!(
        limits.throttled_keys(Some(7)),
        ["ml:global", "ml:account:7"]
    );
    assert_eq!(limits.throttled_keys(None), ["ml:global"]);
    limits.throttle_scope = crate::config::ThrottleScope::Account;
    assert_eq!(limits.throttled_keys(Some(7)), ["ml:account:7"]);
    assert!(limits.throttled_keys(None).is_empty());
}

#[tokio::test]
async fn a_429_retry_after_may_be_an_http_date() {
    let h = harness().await;
    let at = UNIX_EPOCH
        + Duration::from_millis(u64::try_from(NOW_MS).unwrap())
        + Duration::from_secs(45);
    h.api.always(Reply::with_header(
        429,
        "retry-after",
        &httpdate::fmt_http_date(at),
    ));

    let error = failure(h.question().await);

    assert_eq!(error.retry_after(), Some(Duration::from_secs(45)));
    let blocks = h.limiter.blocks.lock().unwrap().clone();
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|(_, until, _)| *until == NOW_MS + 45_000));
}

#[tokio::test]
async fn server_errors_are_retried_with_backoff_until_success() {
    let h = harness().await;
    h.api
        .then(Reply::json(500, "{}"))
        .then(Reply::json(503, "{}"))
        .then(Reply::json(200, QUESTION));

    let question = h.question().await.unwrap();

    assert_eq!(question.id, QUESTION_ID);
    assert_eq!(h.api.requests().len(), 3);
    assert_eq!(h.limiter.check_count(), 3);
}

#[tokio::test]
async fn persistent_server_errors_end_unavailable_after_the_attempt_budget() {
    let h = harness().await;
    h.api.always(Reply::json(502, "{}"));

    let error = failure(h.question().await);

    assert!(matches!(
        error,
        UpstreamError::Unavailable {
            cause: UnavailableCause::Status(502),
            retry_after: None
        }
    ));
    assert_eq!(error.disposition(), Disposition::Retry);
    assert_eq!(h.api.requests().len(), 3);
}

#[tokio::test]
async fn a_retry_after_longer_than_any_backoff_defers_instead_of_waiting() {
    let h = harness().await;
    h.api.always(Reply::with_header(503, "retry-after", "60"));

    let error = failure(h.question().await);

    assert_eq!(
        error.disposition(),
        Disposition::Defer(Duration::from_secs(60))
    );
    assert_eq!(h.api.requests().len(), 1);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported_unavailable() {
    let h = harness_with(|settings| settings.call_timeout = Duration::from_millis(200)).await;
    h.api.always(Reply::Hang);

    let error = failure(h.question().await);

    assert!(
        matches!(
            error,
            UpstreamError::Unavailable {
                cause: UnavailableCause::Timeout,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(error.disposition(), Disposition::Retry);
    assert_eq!(h.limiter.check_count(), 3, "three attempts");
}

#[tokio::test]
async fn connection_failures_are_retried_even_for_a_post() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let h = harness_with(|settings| *settings = self::settings(&base)).await;

    let error = failure(h.answer().await);

    assert!(
        matches!(
            error,
            UpstreamError::Unavailable {
                cause: UnavailableCause::Connect,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(h.limiter.check_count(), 3);
}

#[tokio::test]
async fn a_post_that_may_have_been_processed_is_not_repeated() {
    let h = harness().await;
    h.api
        .then(Reply::json(500, "{}"))
        .then(Reply::json(200, QUESTION));

    let error = failure(h.answer().await);

    assert!(matches!(
        error,
        UpstreamError::Unavailable {
            cause: UnavailableCause::Status(500),
            ..
        }
    ));
    assert_eq!(h.api.requests().len(), 1);
}

#[tokio::test]
async fn five_failures_open_the_circuit_then_probes_close_it() {
    let h = harness_with(|settings| settings.retry.max_attempts = 1).await;
    h.api.always(Reply::json(500, "{}"));
    for _ in 0..5 {
        failure(h.question().await);
    }
    assert_eq!(h.client.circuit_state(), CircuitState::Open);

    let error = failure(h.question().await);
    assert!(matches!(
        error,
        UpstreamError::Unavailable { cause: UnavailableCause::CircuitOpen, retry_after: Some(wait) }
            if wait == Duration::from_secs(30)
    ));
    assert_eq!(
        error.disposition(),
        Disposition::Defer(Duration::from_secs(30))
    );
    assert_eq!(
        h.api.requests().len(),
        5,
        "an open circuit makes no request"
    );
    assert_eq!(h.limiter.check_count(), 5, "nor spends limiter budget");

    h.clock.advance(Duration::from_secs(29));
    failure(h.question().await);
    assert_eq!(h.api.requests().len(), 5);

    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.client.circuit_state(), CircuitState::HalfOpen);
    h.api.always(Reply::json(200, QUESTION));
    for probe in 1..=3 {
        h.question().await.unwrap();
        let expected = if probe < 3 {
            CircuitState::HalfOpen
        } else {
            CircuitState::Closed
        };
        assert_eq!(h.client.circuit_state(), expected, "after probe {probe}");
    }
    assert_eq!(h.api.requests().len(), 8);
}

#[tokio::test]
async fn a_failed_probe_reopens_the_circuit() {
    let h = harness_with(|settings| settings.retry.max_attempts = 1).await;
    h.api.always(Reply::json(500, "{}"));
    for _ in 0..5 {
        failure(h.question().await);
    }
    h.clock.advance(Duration::from_secs(30));

    let error = failure(h.question().await);
    assert!(matches!(
        error,
        UpstreamError::Unavailable {
            cause: UnavailableCause::Status(500),
            ..
        }
    ));
    assert_eq!(h.client.circuit_state(), CircuitState::Open);
    let error = failure(h.question().await);
    assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
    assert_eq!(h.api.requests().len(), 6);
}

#[tokio::test]
async fn a_401_is_unauthorized_and_not_retried() {
    let h = harness().await;
    h.api.always(Reply::json(
        401,
        r#"{"message":"invalid access token","error":"unauthorized","status":401}"#,
    ));

    let error = failure(h.question().await);

    assert!(matches!(error, UpstreamError::Unauthorized));
    assert_eq!(error.disposition(), Disposition::Reauthorize);
    assert_eq!(h.api.requests().len(), 1);
    assert_eq!(h.client.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn a_404_is_not_found_and_given_up() {
    let h = harness().await;
    h.api.always(Reply::json(
        404,
        r#"{"message":"Question not found","error":"not_found","status":404}"#,
    ));

    let error = failure(h.question().await);

    assert!(matches!(error, UpstreamError::NotFound));
    assert_eq!(error.disposition(), Disposition::GiveUp);
    assert_eq!(h.api.requests().len(), 1);
}

#[tokio::test]
async fn a_rejection_keeps_mercado_livres_message_but_never_the_token() {
    let h = harness().await;
    h.api.always(Reply::EchoAuthorization(400));

    let error = failure(h.question().await);

    let UpstreamError::Rejected { status, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 400);
    assert!(
        message.starts_with("bad_request: bad request sent with Bearer"),
        "{message}"
    );
    assert!(!message.contains(TOKEN));
    assert_eq!(error.disposition(), Disposition::GiveUp);
}

#[tokio::test]
async fn an_answer_that_is_not_a_question_is_malformed() {
    let h = harness().await;
    h.api.always(Reply::json(200, r#"{"id":"not a number"}"#));

    let error = failure(h.question().await);

    assert!(matches!(error, UpstreamError::Malformed(_)), "{error}");
    assert_eq!(error.disposition(), Disposition::GiveUp);
}

#[tokio::test]
async fn get_json_follows_notification_resources_under_the_api_base_only() {
    let h = harness().await;
    let (api, root) = MockApi::start().await;
    let settings = settings(&format!("{root}/sandbox/ml/"));
    let client = MercadoLivre::new(
        crate::outbound::http_client(&crate::tls::Tls::default(), Duration::from_secs(1)).unwrap(),
        &settings,
        limits(),
        h.limiter.clone(),
    )
    .with_clock(h.clock.clone());
    api.always(Reply::json(
        200,
        r#"{"id":2000009876543210,"status":"paid"}"#,
    ));

    let order: serde_json::Value = client
        .get_json(&h.token, SELLER, "/orders/2000009876543210")
        .await
        .unwrap();
    assert_eq!(order["status"], "paid");
    assert_eq!(
        api.requests()[0].target,
        "/sandbox/ml/orders/2000009876543210"
    );

    for path in [
        "0190f3c2a1b24d5e8f7a6b5c4d3e2f10",
        "//evil.example/steal",
        "@evil.example/steal",
        "/../../steal",
        "/%2e%2e/%2e%2e/steal",
        "\\evil.example",
        "/orders/1#fragment",
    ] {
        let error = failure(
            client
                .get_json::<serde_json::Value>(&h.token, SELLER, path)
                .await,
        );
        assert!(
            matches!(error, UpstreamError::InvalidPath(_)),
            "{path}: {error}"
        );
    }
    assert_eq!(api.requests().len(), 1, "no refused path was requested");
}

#[tokio::test]
async fn calls_can_run_on_any_worker_thread() {
    fn send<T: Send>(_: &T) {}
    let h = harness().await;
    send(&h.question());
    send(&h.answer());
    send(
        &h.client
            .get_json::<serde_json::Value>(&h.token, SELLER, "/orders/1"),
    );
    let printed = format!("{:?}", h.client);
    assert!(
        printed.starts_with("MercadoLivre { api_url: \"http://127.0.0.1:"),
        "{printed}"
    );
}

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/fixtures/mercadolivre/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[tokio::test]
async fn get_question_reads_the_documented_v4_example_whose_buyer_is_buyer_id() {
    let h = harness().await;
    h.api
        .always(Reply::json(200, &fixture("question-11751825075.json")));

    let question = h
        .client
        .get_question(&h.token, SELLER, 11_751_825_075)
        .await
        .unwrap();

    assert_eq!(question.from.id, 56_801_932);
    assert_eq!(question.status, QuestionStatus::Answered);
    assert_eq!(question.date_created.nanosecond(), 746_608_612);
    let answer = question.answer.unwrap();
    assert_eq!(
        (answer.text.as_str(), answer.status.as_deref()),
        ("", Some("BANNED"))
    );
    assert_eq!(
        h.api.requests()[0].target,
        "/questions/11751825075?api_version=4"
    );

    h.api.always(Reply::json(
        200,
        &QUESTION.replace(r#""from":{"id":1302765432}"#, r#""app_id":1"#),
    ));
    let error = failure(h.question().await);
    assert!(
        matches!(&error, UpstreamError::Malformed(reason) if reason.contains("names no buyer")),
        "{error}"
    );
}

#[tokio::test]
async fn get_order_reads_what_a_seller_is_shown() {
    let h = harness().await;
    h.api
        .always(Reply::json(200, &fixture("order-2000009876543210.json")));

    let order = h
        .client
        .get_order(&h.token, SELLER, 2_000_009_876_543_210)
        .await
        .unwrap();

    assert_eq!(h.api.requests()[0].target, "/orders/2000009876543210");
    assert_eq!(order.id, 2_000_009_876_543_210);
    assert_eq!(order.status, "paid");
    assert_eq!(order.total_amount, Some(299.8));
    assert_eq!(order.currency_id.as_deref(), Some("BRL"));
    assert_eq!(order.pack_id, Some(2_000_009_876_543_211));
    assert_eq!(
        order.buyer,
        Some(OrderBuyer {
            id: 1_302_765_432,
            nickname: Some("COMPRADOR_TESTE".into())
        })
    );
    assert_eq!(
        order.items,
        vec![OrderItem {
            item_id: "MLB3859205311".into(),
            title: Some("Farol de milha Onix 2019".into()),
            quantity: 2,
            unit_price: Some(149.9),
        }]
    );
    assert_eq!(order.last_updated.map(|date| date.second()), Some(39));
    assert_eq!(
        order.date_created.map(|date| date.offset().whole_hours()),
        Some(-3)
    );
}

#[tokio::test]
async fn get_order_reads_the_documented_example_whose_buyer_id_is_a_string() {
    let h = harness().await;
    // "Gestionar órdenes": the buyer's id is a string there; no pack, no last_updated.
    h.api.always(Reply::json(
        200,
        r#"{"id":2000003508419013,"status":"paid","status_detail":null,
            "date_created":"2013-05-27T10:01:50.000-04:00","date_closed":"2013-05-27T10:04:07.000-04:00",
            "order_items":[{"item":{"id":"MLB12345678","title":"Samsung Galaxy","variation_id":null,
            "variation_attributes":[]},"quantity":1,"unit_price":499,"currency_id":"BRL"}],
            "total_amount":499,"currency_id":"BRL","buyer":{"id":"123456789","nickname":"COMPRADORTESTE"},
            "seller":{"id":"123456789"},"date_last_updated":"2013-05-27T10:04:09.000-04:00","tags":["paid"]}"#,
    ));

    let order = h
        .client
        .get_order(&h.token, SELLER, 2_000_003_508_419_013)
        .await
        .unwrap();

    assert_eq!(order.buyer.map(|buyer| buyer.id), Some(123_456_789));
    assert_eq!(order.total_amount, Some(499.0));
    assert_eq!(order.pack_id, None);
    assert_eq!(order.last_updated.map(|date| date.second()), Some(9));
    assert_eq!(order.items[0].quantity, 1);
}

#[tokio::test]
async fn get_message_builds_the_url_from_a_bare_id_and_refuses_anything_else() {
    let h = harness().await;
    h.api
        .always(Reply::json(200, &fixture("message-post_sale.json")));

    let message = h
        .client
        .get_message(&h.token, SELLER, "0190f3c2a1b24d5e8f7a6b5c4d3e2f10")
        .await
        .unwrap();

    assert_eq!(
        h.api.requests()[0].target,
        "/messages/0190f3c2a1b24d5e8f7a6b5c4d3e2f10?tag=post_sale"
    );
    assert_eq!(message.conversation_id, "2000009876543211");
    assert_eq!(
        (message.from_user_id, message.to_user_id),
        (1_302_765_432, SELLER)
    );

    for id in [
        "",
        ".",
        "..",
        "../orders/1",
        "a/b",
        "a?b=c",
        "a#b",
        "%2e%2e",
        "a b",
        "é",
    ] {
        let error = failure(h.client.get_message(&h.token, SELLER, id).await);
        assert!(
            matches!(error, UpstreamError::InvalidPath(_)),
            "{id:?}: {error}"
        );
    }
    assert_eq!(h.api.requests().len(), 1, "no refused id was requested");
    assert_eq!(h.limiter.check_count(), 1, "nor spent budget");

    h.api.always(Reply::json(200, r#"{"messages":[]}"#));
    let error = failure(
        h.client
            .get_message(&h.token, SELLER, "0190f3c2a1b24d5e8f7a6b5c4d3e2f10")
            .await,
    );
    assert!(matches!(error, UpstreamError::Malformed(_)), "{error}");
}

#[tokio::test]
async fn missed_feeds_asks_for_one_page_of_one_topic() {
    let h = harness().await;
    h.api
        .always(Reply::json(200, &fixture("missed_feeds.json")));

    let page = h
        .client
        .missed_feeds(&h.token, SELLER, "5000000000000001", "questions", 10, 5)
        .await
        .unwrap();

    assert_eq!(
        h.api.requests()[0].target,
        "/missed_feeds?app_id=5000000000000001&topic=questions&offset=10&limit=5"
    );
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[1].http_code, Some(200));
    let checks = h.limiter.checks.lock().unwrap().clone();
    assert_eq!(checks[0].0[1].key, "ml:account:468424240");

    // The query is encoded, never spliced.
    h.client
        .missed_feeds(&h.token, SELLER, "1&topic=x", "a b", 0, 10)
        .await
        .unwrap();
    assert_eq!(
        h.api.requests()[1].target,
        "/missed_feeds?app_id=1%26topic%3Dx&topic=a+b&offset=0&limit=10"
    );
}

#[tokio::test]
async fn built_urls_stay_under_a_base_path() {
    let (api, root) = MockApi::start().await;
    let h =
        harness_with(|settings| *settings = self::settings(&format!("{root}/sandbox/ml/"))).await;
    api.always(Reply::json(200, QUESTION));

    h.client
        .get_question(&h.token, SELLER, QUESTION_ID)
        .await
        .unwrap();
    h.client
        .get_message(&h.token, SELLER, "abc")
        .await
        .unwrap_err();

    let targets: Vec<String> = api
        .requests()
        .into_iter()
        .map(|request| request.target)
        .collect();
    assert_eq!(
        targets,
        [
            "/sandbox/ml/questions/13190540261?api_version=4",
            "/sandbox/ml/messages/abc?tag=post_sale"
        ]
    );
}
