//! The OAuth calls against the scripted Mercado Livre: what goes on the wire, how the
//! token endpoint's answers are read, what is retried, and that no secret is ever printed.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::mock::{Recorded, Reply};
use super::*;

const TOKEN_RESPONSE: &str = include_str!("token-response.json");
const CLIENT_ID: &str = "2069392825111111";
/// Not token-shaped, and with characters form encoding must escape (`+`, `/`, `=`).
const CLIENT_SECRET: &str = "kX9pQ2wR7t+Y4uI/1oP6aS3dF8gH5jK0lZ=";
const CODE: &str = "TG-6744a1b2c3d4e5f60718293a-468424240";
/// A PKCE verifier uses the unreserved characters, `~` included.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk~.x";
const REDIRECT_URI: &str = "https://app.sellerhub.example/auth/callback?from=ml";
const REFRESH_TOKEN: &str = "TG-5f0e9d8c7b6a5f4e3d2c1b0a-468424240";
const FIXTURE_ACCESS: &str =
    "APP_USR-2069392825111111-112014-0f1e2d3c4b5a69788796a5b4c3d2e1f0-468424240";
const FIXTURE_REFRESH: &str = "TG-673e1f0a9b8c7d0001a2b3c4-468424240";
const USERS_ME: &str = r#"{"id":468424240,"nickname":"LOJA_EXEMPLO","site_id":"MLB","country_id":"BR","email":"loja@example.com","user_type":"normal","points":100}"#;

/// The distinctive part of every secret in these tests; no 10 characters in a row of any
/// of them may be printed anywhere.
const SECRETS: &[&str] = &[
    CLIENT_SECRET,
    "6744a1b2c3d4e5f60718293a",
    VERIFIER,
    "5f0e9d8c7b6a5f4e3d2c1b0a",
    "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    "673e1f0a9b8c7d0001a2b3c4",
    "0a1b2c3d4e5f60718293a4b5c6d7e8f9",
];

fn assert_no_secret(printed: &str) {
    for secret in SECRETS {
        for window in secret.as_bytes().windows(10) {
            let window = std::str::from_utf8(window).unwrap();
            assert!(
                !printed.contains(window),
                "secret {secret:?} leaked ({window:?}): {printed}"
            );
        }
    }
}

fn credentials() -> ClientCredentials {
    ClientCredentials {
        client_id: CLIENT_ID.to_owned(),
        client_secret: SecretString::from(CLIENT_SECRET),
    }
}

impl Harness {
    async fn exchange(&self) -> Result<TokenSet, UpstreamError> {
        self.client
            .exchange_code(&credentials(), CODE, VERIFIER, REDIRECT_URI)
            .await
    }

    async fn refresh(&self) -> Result<TokenSet, UpstreamError> {
        self.client
            .refresh_grant(&credentials(), &SecretString::from(REFRESH_TOKEN), SELLER)
            .await
    }
}

/// The failure, checked for every secret in every form it can be printed.
fn oauth_failure<T: std::fmt::Debug>(result: Result<T, UpstreamError>) -> UpstreamError {
    let error = result.expect_err("the call should fail");
    let printed = format!("{error} {error:?} {:?}", std::error::Error::source(&error));
    assert_no_secret(&printed);
    error
}

fn form(request: &Recorded) -> Vec<(String, String)> {
    let body = std::str::from_utf8(&request.body).unwrap();
    reqwest::Url::parse(&format!("http://form.invalid/?{body}"))
        .unwrap()
        .query_pairs()
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

fn assert_token_request(request: &Recorded) {
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/oauth/token")
    );
    assert_eq!(request.authorization, None, "no Authorization header");
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(request.accept.as_deref(), Some("application/json"));
}

fn assert_fixture_tokens(tokens: &TokenSet) {
    assert_eq!(tokens.access_token.expose_secret(), FIXTURE_ACCESS);
    assert_eq!(tokens.refresh_token.expose_secret(), FIXTURE_REFRESH);
    assert_eq!(tokens.expires_in, Duration::from_secs(21_600));
    assert_eq!(tokens.scopes, ["offline_access", "read", "write"]);
    assert_eq!(tokens.user_id, SELLER);
}

/// The limiter keys each attempt was checked against.
fn checked_keys(h: &Harness) -> Vec<Vec<String>> {
    h.limiter
        .checks
        .lock()
        .unwrap()
        .iter()
        .map(|(batch, _)| batch.iter().map(|check| check.key.clone()).collect())
        .collect()
}

#[tokio::test]
async fn exchange_code_posts_the_pkce_form_without_authorization_and_reads_the_grant() {
    let h = harness().await;
    h.api.always(Reply::json(200, TOKEN_RESPONSE));

    let tokens = h.exchange().await.unwrap();

    assert_fixture_tokens(&tokens);
    let requests = h.api.requests();
    assert_eq!(requests.len(), 1);
    assert_token_request(&requests[0]);
    assert_eq!(
        form(&requests[0]),
        pairs(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code", CODE),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
    );
    assert_eq!(
        std::str::from_utf8(&requests[0].body).unwrap(),
        "grant_type=authorization_code&client_id=2069392825111111\
         &client_secret=kX9pQ2wR7t%2BY4uI%2F1oP6aS3dF8gH5jK0lZ%3D\
         &code=TG-6744a1b2c3d4e5f60718293a-468424240\
         &redirect_uri=https%3A%2F%2Fapp.sellerhub.example%2Fauth%2Fcallback%3Ffrom%3Dml\
         &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk%7E.x"
    );
}

#[tokio::test]
async fn refresh_grant_posts_the_refresh_form_without_authorization() {
    let h = harness().await;
    h.api.always(Reply::json(200, TOKEN_RESPONSE));

    let tokens = h.refresh().await.unwrap();

    assert_fixture_tokens(&tokens);
    let requests = h.api.requests();
    assert_eq!(requests.len(), 1);
    assert_token_request(&requests[0]);
    assert_eq!(
        form(&requests[0]),
        pairs(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
        ])
    );
}

#[tokio::test]
async fn users_me_sends_the_bearer_token_and_keeps_the_identity() {
    let h = harness().await;
    h.api.always(Reply::json(200, USERS_ME));

    let identity = h.client.users_me(&h.token, SELLER).await.unwrap();

    assert_eq!(
        identity,
        SellerIdentity {
            id: SELLER,
            nickname: "LOJA_EXEMPLO".into(),
            site_id: Some("MLB".into()),
            country_id: Some("BR".into()),
        }
    );
    let requests = h.api.requests();
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("GET", "/users/me")
    );
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert!(requests[0].body.is_empty());

    h.api.always(Reply::json(
        200,
        r#"{"id":468424240,"nickname":"LOJA_EXEMPLO"}"#,
    ));
    let identity = h.client.users_me(&h.token, SELLER).await.unwrap();
    assert_eq!((identity.site_id, identity.country_id), (None, None));
}

#[tokio::test]
async fn a_sign_in_spends_the_sign_in_share_and_a_refresh_the_accounts_budget() {
    let h = harness().await;
    h.api.always(Reply::json(200, TOKEN_RESPONSE));
    h.exchange().await.unwrap();
    h.refresh().await.unwrap();
    h.api.always(Reply::json(200, USERS_ME));
    h.client.users_me(&h.token, SELLER).await.unwrap();

    let global = || "ml:global".to_owned();
    let sign_in = || "ml:signin".to_owned();
    let account = || "ml:account:468424240".to_owned();
    assert_eq!(
        checked_keys(&h),
        vec![
            vec![global(), sign_in()],
            vec![global(), account()],
            vec![global(), sign_in(), account()]
        ],
        "one check per call, each covering every limit it spends"
    );
    let (batch, now_ms) = h.limiter.checks.lock().unwrap()[0].clone();
    assert_eq!(batch[0].rule, limits().global);
    assert_eq!(batch[1].rule, limits().sign_in);
    assert_eq!(now_ms, NOW_MS);
    assert_eq!(limits().global_check().key, GLOBAL_KEY);
}

#[test]
fn the_sign_in_share_is_a_tenth_of_the_global_budget_and_its_burst() {
    let limits = limits();
    assert_eq!((limits.global.limit, limits.global.burst), (2000, 100));
    assert_eq!((limits.sign_in.limit, limits.sign_in.burst), (200, 10));
    assert_eq!(limits.sign_in.period, limits.global.period);
}

#[tokio::test]
async fn no_number_of_sign_ins_takes_what_the_work_needs() {
    // The real GCRA, not a recording: sign-ins that drain their share leave the global
    // budget to the workers.
    let (api, base) = mock::MockApi::start().await;
    api.always(Reply::json(
        400,
        r#"{"error":"invalid_grant","status":400}"#,
    ));
    let limiter = Arc::new(crate::ratelimit::memory::MemoryLimiter::new());
    let clock = Arc::new(ManualClock::at(NOW_MS));
    let client = MercadoLivre::new(
        crate::outbound::http_client(&crate::tls::Tls::default(), Duration::from_secs(1)).unwrap(),
        &settings(&base),
        limits(),
        limiter.clone(),
    )
    .with_clock(clock.clone());

    let mut spent = 0;
    for _ in 0..1000 {
        match client
            .exchange_code(&credentials(), CODE, VERIFIER, REDIRECT_URI)
            .await
        {
            Err(UpstreamError::InvalidGrant) => spent += 1,
            Err(UpstreamError::RateLimited { .. }) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        spent,
        limits().sign_in.burst,
        "only the sign-in share's burst"
    );
    assert_eq!(api.requests().len(), spent as usize);

    // All at the same instant: a worker's call for a seller is still admitted, and so
    // are (for as many sellers) as many as the rest of the global burst.
    let admitted = (0..u64::from(limits().global.burst))
        .take_while(|seller| {
            limiter
                .check_now(&limits().checks(SELLER + seller), NOW_MS)
                .allowed
        })
        .count();
    assert!(
        admitted as u32 >= limits().global.burst - limits().sign_in.burst,
        "{admitted}"
    );
}

#[tokio::test]
async fn a_limiter_denial_stops_the_exchange_before_any_request() {
    let h = harness().await;
    h.limiter.deny_for(Duration::from_secs(30));

    let error = oauth_failure(h.exchange().await);

    assert_eq!(
        error.disposition(),
        Disposition::Defer(Duration::from_secs(30))
    );
    assert!(h.api.requests().is_empty());
}

#[tokio::test]
async fn invalid_grant_means_the_seller_must_reconnect() {
    let h = harness().await;
    let invalid_grant = r#"{"message":"Error validating grant. Your authorization code or refresh token may be expired or it was already used","error":"invalid_grant","status":400,"cause":[]}"#;
    h.api.always(Reply::json(400, invalid_grant));

    for error in [
        oauth_failure(h.exchange().await),
        oauth_failure(h.refresh().await),
    ] {
        assert!(matches!(error, UpstreamError::InvalidGrant), "{error:?}");
        assert_eq!(error.disposition(), Disposition::GiveUp);
    }
    assert_eq!(h.api.requests().len(), 2, "never retried");

    h.api.always(Reply::json(
        401,
        &invalid_grant.replace("\"status\":400", "\"status\":401"),
    ));
    let error = oauth_failure(h.refresh().await);
    assert!(matches!(error, UpstreamError::InvalidGrant), "{error:?}");
    assert_eq!(h.client.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn invalid_client_is_a_rejection_not_a_refused_access_token() {
    let h = harness().await;
    h.api.always(Reply::json(
        401,
        r#"{"message":"invalid client_id or client_secret","error":"invalid_client","status":401,"cause":[]}"#,
    ));

    let error = oauth_failure(h.exchange().await);

    let UpstreamError::Rejected { status, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 401);
    assert!(message.starts_with("invalid_client: "), "{message}");
    assert_eq!(error.disposition(), Disposition::GiveUp);

    h.api.always(Reply::json(
        400,
        r#"{"message":"invalid client","error":"invalid_client","status":400}"#,
    ));
    let error = oauth_failure(h.refresh().await);
    assert!(
        matches!(error, UpstreamError::Rejected { status: 400, .. }),
        "{error:?}"
    );
    assert_eq!(h.api.requests().len(), 2);
}

#[tokio::test]
async fn values_mercado_livre_echoes_back_are_scrubbed_from_the_rejection() {
    let h = harness().await;
    h.api.always(Reply::json(
        400,
        &serde_json::json!({
            "message": format!("verifier {VERIFIER} does not match the challenge for secret {CLIENT_SECRET}"),
            "error": "invalid_request",
            "status": 400,
        })
        .to_string(),
    ));

    let error = oauth_failure(h.exchange().await);

    let UpstreamError::Rejected {
        status: 400,
        message,
    } = &error
    else {
        panic!("{error:?}");
    };
    assert!(
        message.starts_with("invalid_request: verifier [REDACTED] does not match"),
        "{message}"
    );
}

#[tokio::test]
async fn a_server_error_on_the_token_endpoint_is_not_repeated() {
    let h = harness().await;
    h.api.always(Reply::json(500, "{}"));

    for error in [
        oauth_failure(h.exchange().await),
        oauth_failure(h.refresh().await),
    ] {
        assert!(
            matches!(
                error,
                UpstreamError::Unavailable {
                    cause: UnavailableCause::Status(500),
                    ..
                }
            ),
            "{error:?}"
        );
    }
    assert_eq!(h.api.requests().len(), 2, "one request per call");
    assert_eq!(h.limiter.check_count(), 2);
}

#[tokio::test]
async fn a_refresh_that_timed_out_is_not_repeated() {
    let h = harness_with(|settings| settings.call_timeout = Duration::from_millis(200)).await;
    h.api.always(Reply::Hang);

    let error = oauth_failure(h.refresh().await);

    assert!(
        matches!(
            error,
            UpstreamError::Unavailable {
                cause: UnavailableCause::Timeout,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(h.api.requests().len(), 1);
}

#[tokio::test]
async fn a_token_request_that_never_left_is_retried() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    // One client each: six failed connections in a row would open the circuit.
    let exchange = harness_with(|settings| *settings = super::settings(&base)).await;
    let refresh = harness_with(|settings| *settings = super::settings(&base)).await;

    for (h, error) in [
        (&exchange, oauth_failure(exchange.exchange().await)),
        (&refresh, oauth_failure(refresh.refresh().await)),
    ] {
        assert!(
            matches!(
                error,
                UpstreamError::Unavailable {
                    cause: UnavailableCause::Connect,
                    ..
                }
            ),
            "{error:?}"
        );
        assert_eq!(h.limiter.check_count(), 3, "three attempts");
    }
}

#[tokio::test]
async fn a_429_blocks_the_application_and_the_account_once_there_is_one() {
    let h = harness().await;
    h.api.always(Reply::with_header(429, "retry-after", "120"));

    let error = oauth_failure(h.exchange().await);
    assert_eq!(
        error.disposition(),
        Disposition::Defer(Duration::from_secs(120))
    );
    assert_eq!(
        *h.limiter.blocks.lock().unwrap(),
        vec![("ml:global".to_owned(), NOW_MS + 120_000, NOW_MS)],
        "a code exchange has no account yet: the application's budget is blocked"
    );

    h.limiter.blocks.lock().unwrap().clear();
    oauth_failure(h.refresh().await);
    assert_eq!(
        *h.limiter.blocks.lock().unwrap(),
        vec![
            ("ml:global".to_owned(), NOW_MS + 120_000, NOW_MS),
            ("ml:account:468424240".to_owned(), NOW_MS + 120_000, NOW_MS),
        ]
    );
    assert_eq!(h.api.requests().len(), 2);
}

#[tokio::test]
async fn token_responses_without_a_grant_are_malformed_and_never_quoted() {
    let h = harness().await;
    let fixture: serde_json::Value = serde_json::from_str(TOKEN_RESPONSE).unwrap();
    let without = |field: &str| {
        let mut response = fixture.clone();
        response.as_object_mut().unwrap().remove(field);
        response.to_string()
    };
    let with = |field: &str, value: serde_json::Value| {
        let mut response = fixture.clone();
        response[field] = value;
        response.to_string()
    };
    let cases = [
        (without("access_token"), "no access_token"),
        (without("refresh_token"), "no refresh_token"),
        (without("user_id"), "no user_id"),
        (without("expires_in"), "no expires_in"),
        (with("access_token", "".into()), "no access_token"),
        (with("token_type", "mac".into()), "token_type is not Bearer"),
        (without("token_type"), "token_type is not Bearer"),
        // serde would quote the offending value: here, a token, or a secret the
        // redactor would not recognise.
        (
            with("user_id", FIXTURE_REFRESH.into()),
            "not the expected JSON",
        ),
        (with("user_id", VERIFIER.into()), "not the expected JSON"),
        (
            with("expires_in", FIXTURE_ACCESS.into()),
            "not the expected JSON",
        ),
        (
            TOKEN_RESPONSE.replace("\"user_id\"", "\"user_id\" \""),
            "not the expected JSON",
        ),
    ];
    for (body, expected) in cases {
        h.api.always(Reply::json(200, &body));
        let error = oauth_failure(h.exchange().await);
        let UpstreamError::Malformed(text) = &error else {
            panic!("{body}: {error:?}");
        };
        assert!(text.starts_with("ExchangeCode: "), "{text}");
        assert!(text.contains(expected), "{body}: {text}");
        assert_eq!(error.disposition(), Disposition::GiveUp);
    }

    h.api.always(Reply::json(
        200,
        &with("token_type", "bearer".into()).replace("offline_access read write", ""),
    ));
    let tokens = h.exchange().await.unwrap();
    assert!(tokens.scopes.is_empty());
}

#[tokio::test]
async fn a_grant_without_offline_access_names_the_missing_scope() {
    let h = harness().await;
    let mut response: serde_json::Value = serde_json::from_str(TOKEN_RESPONSE).unwrap();
    response.as_object_mut().unwrap().remove("refresh_token");
    response["scope"] = "read write".into();
    h.api.always(Reply::json(200, &response.to_string()));

    for error in [
        oauth_failure(h.exchange().await),
        oauth_failure(h.refresh().await),
    ] {
        assert!(
            matches!(error, UpstreamError::MissingScope("offline_access")),
            "{error:?}"
        );
        assert!(error.to_string().contains("offline_access"), "{error}");
    }
}

#[tokio::test]
async fn a_collaborator_account_is_refused_as_such() {
    let h = harness().await;
    h.api.always(Reply::json(
        403,
        r#"{"message":"invalid operator user id","error":"invalid_operator_user_id","status":403}"#,
    ));

    let exchanged = oauth_failure(h.exchange().await);
    let identified = oauth_failure(h.client.users_me(&h.token, SELLER).await);

    for error in [exchanged, identified] {
        assert!(matches!(error, UpstreamError::OperatorUser), "{error:?}");
        assert_eq!(error.disposition(), Disposition::GiveUp);
    }
}

#[tokio::test]
async fn an_error_description_is_kept_when_there_is_no_message() {
    let h = harness().await;
    h.api.always(Reply::json(
        400,
        r#"{"error":"invalid_scope","error_description":"the requested scope is not allowed"}"#,
    ));

    let error = oauth_failure(h.exchange().await);

    let UpstreamError::Rejected { status, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 400);
    assert_eq!(message, "invalid_scope: the requested scope is not allowed");
}

#[tokio::test]
async fn a_refresh_answered_for_another_user_is_refused() {
    let h = harness().await;
    h.api.always(Reply::json(
        200,
        &TOKEN_RESPONSE.replace("\"user_id\":468424240", "\"user_id\":99"),
    ));

    let error = oauth_failure(h.refresh().await);

    let UpstreamError::Malformed(text) = &error else {
        panic!("{error:?}");
    };
    assert!(text.starts_with("RefreshGrant: "), "{text}");
    assert!(text.contains("99"), "{text}");
}

#[test]
fn debug_never_shows_a_secret_or_a_token() {
    let credentials = credentials();
    let tokens = TokenSet {
        access_token: SecretString::from(FIXTURE_ACCESS),
        refresh_token: SecretString::from(FIXTURE_REFRESH),
        expires_in: Duration::from_secs(21_600),
        scopes: vec!["read".into()],
        user_id: SELLER,
    };

    let printed = format!(
        "{credentials:?} {credentials:#?} {tokens:?} {tokens:#?} {:?}",
        tokens.clone()
    );

    assert_no_secret(&printed);
    assert!(printed.contains(CLIENT_ID), "{printed}");
    assert!(printed.contains("user_id: 468424240"), "{printed}");
    assert_eq!(format!("{:?}", UpstreamError::InvalidGrant), "InvalidGrant");
}

/// A log sink with no redaction: what the code formats is what lands here.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_carries_a_secret() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let h = harness().await;
    h.api
        .then(Reply::json(200, TOKEN_RESPONSE))
        .then(Reply::with_header(429, "retry-after", "5"))
        .then(Reply::with_header(429, "retry-after", "5"))
        .then(Reply::json(
            400,
            r#"{"message":"bad","error":"invalid_grant","status":400}"#,
        ))
        .then(Reply::json(500, "{}"));
    h.exchange().await.unwrap();
    oauth_failure(h.exchange().await);
    oauth_failure(h.refresh().await);
    oauth_failure(h.refresh().await);
    oauth_failure(h.exchange().await);
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let offline = harness_with(|settings| *settings = super::settings(&base)).await;
    oauth_failure(offline.refresh().await);

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("throttled by Mercado Livre"), "{logs}");
    assert!(logs.contains("retrying"), "{logs}");
    assert_no_secret(&logs);
}
