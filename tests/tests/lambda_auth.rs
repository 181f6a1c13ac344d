//! The auth Lambda binaries as Lambda runs them: under the Runtime API emulator, fed
//! real API Gateway (and EventBridge) events, the table on moto, the limiter on Redis
//! through the Upstash shim, Mercado Livre played by the sandbox provider.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sellerhub_tests::moto;
use sellerhub_tests::runtime_api::{FunctionProcess, apigw_rest_event, function_binary};
use sellerhub_tests::sandbox_login::{authorization_code, serve_sandbox};
use sellerhub_tests::upstash_shim::UpstashShim;
use shared::auth::grants::{GrantInfo, GrantStatus, GrantTokens};
use shared::auth::login::LoginRequest;
use shared::auth::{GrantCipher, Grants, SessionKeys, Sessions};
use shared::clock::{Clock, SystemClock};
use shared::store::Store;
use shared::upstream::{ClientCredentials, MercadoLivre, UpstreamLimits};

/// What template.yaml and the secret give every function, with the table on moto.
#[derive(Clone)]
struct Deployment {
    vars: Vec<(&'static str, String)>,
    signing_key: SecretString,
    grant_key: SecretString,
}

impl Deployment {
    async fn on_moto(table: Option<&str>) -> Self {
        let table = match table {
            Some(table) => table.to_owned(),
            None => moto::create_table().await,
        };
        let (queue_url, dlq_url) = moto::create_queues(5).await;
        let signing_key = SecretString::from(shared::auth::random_token(32));
        let grant_key = GrantCipher::generate_key("k1");
        let vars = vec![
            ("AWS_ENDPOINT_URL", moto::endpoint()),
            ("TABLE_NAME", table),
            ("WEBHOOK_QUEUE_URL", queue_url),
            ("WEBHOOK_DLQ_URL", dlq_url),
            ("LOG_LEVEL", "info".into()),
            (
                "SESSION_SIGNING_KEY",
                signing_key.expose_secret().to_owned(),
            ),
            ("GRANT_ENCRYPTION_KEY", grant_key.expose_secret().to_owned()),
        ];
        Self {
            vars,
            signing_key,
            grant_key,
        }
    }

    fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.vars.retain(|(known, _)| *known != name);
        self.vars.push((name, value.into()));
    }

    fn unset(&mut self, name: &str) {
        self.vars.retain(|(known, _)| *known != name);
    }

    fn var(&self, name: &str) -> &str {
        &self
            .vars
            .iter()
            .find(|(known, _)| *known == name)
            .unwrap()
            .1
    }

    async fn spawn(&self, function: &str) -> FunctionProcess {
        let env: Vec<(&str, &str)> = self
            .vars
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        FunctionProcess::spawn(function_binary(function, false), &env)
            .await
            .unwrap()
    }

    async fn store(&self) -> Arc<dyn Store> {
        Arc::new(shared::adapters::dynamo_store(
            &moto::sdk_config().await,
            self.var("TABLE_NAME"),
        ))
    }

    async fn sessions(&self) -> Sessions {
        let keys = SessionKeys::new(&self.signing_key, "sellerhub").unwrap();
        Sessions::new(
            self.store().await,
            Arc::new(keys),
            Duration::from_secs(3600),
        )
    }
}

fn me_event(token: Option<&str>) -> serde_json::Value {
    let authorization = token.map(|token| format!("Bearer {token}"));
    let headers: Vec<(&str, &str)> = authorization
        .iter()
        .map(|value| ("Authorization", value.as_str()))
        .collect();
    apigw_rest_event("GET", "/v1/me", "/v1/me", &headers, &[], None)
}

#[tokio::test]
async fn me_needs_a_live_session() {
    let deployment = Deployment::on_moto(None).await;
    let mut me = deployment.spawn("me").await;

    let anonymous = me
        .invoke(me_event(None), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(anonymous.status_code(), Some(401), "{}", me.output());
    assert_eq!(
        anonymous.header("content-type").as_deref(),
        Some("application/problem+json")
    );

    let sessions = deployment.sessions().await;
    let session = sessions
        .start("ml:7", "tenant-7", SystemClock.now_secs())
        .await
        .unwrap();
    let token = session.token.expose_secret();
    let signed_in = me
        .invoke(me_event(Some(token)), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(signed_in.status_code(), Some(200), "{}", me.output());
    let body = signed_in.body_json().unwrap();
    assert_eq!(body["tenant"]["id"], "tenant-7");
    assert_eq!(body["grant"]["status"], "needs_reconnect");

    sessions
        .end(&session.claims, SystemClock.now_secs())
        .await
        .unwrap();
    let revoked = me
        .invoke(me_event(Some(token)), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(revoked.status_code(), Some(401));
    assert!(!me.output().contains(token), "the token reached the log");
}

#[tokio::test]
async fn me_fails_secure_with_503_when_the_revocation_list_cannot_be_read() {
    let deployment = Deployment::on_moto(Some("no-such-table")).await;
    let keys = SessionKeys::new(&deployment.signing_key, "sellerhub").unwrap();
    let now = SystemClock.now_secs();
    let token = keys
        .sign(&shared::auth::Claims {
            iss: "sellerhub".into(),
            sub: "ml:7".into(),
            tenant: "tenant-7".into(),
            sid: "s".into(),
            jti: "j".into(),
            iat: now,
            exp: now + 600,
            nbf: None,
        })
        .unwrap();
    let mut me = deployment.spawn("me").await;
    let answer = me
        .invoke(
            me_event(Some(token.expose_secret())),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(answer.status_code(), Some(503), "{}", me.output());
    let body = answer.body_text().unwrap();
    assert!(!body.contains("no-such-table"), "{body}");
}

#[tokio::test]
async fn me_without_a_signing_key_fails_init_naming_it() {
    let mut deployment = Deployment::on_moto(None).await;
    deployment.unset("SESSION_SIGNING_KEY");
    let mut me = deployment.spawn("me").await;
    let outcome = me.invoke(me_event(None), Duration::from_secs(10)).await;
    assert!(outcome.is_err(), "{outcome:?}");
    assert!(
        me.output().contains("SESSION_SIGNING_KEY is not set"),
        "{}",
        me.output()
    );
}

#[tokio::test]
async fn auth_login_redirects_with_pkce_and_limits_each_ip_in_redis() {
    let mut deployment = Deployment::on_moto(None).await;
    let shim = UpstashShim::start().await;
    deployment.set("UPSTASH_REDIS_REST_URL", shim.url());
    deployment.set("UPSTASH_REDIS_REST_TOKEN", shim.token());
    deployment.set("MERCADOLIVRE_CLIENT_ID", "123456");
    deployment.set(
        "MERCADOLIVRE_REDIRECT_URI",
        "https://api.example.com/prod/auth/callback",
    );
    let mut login = deployment.spawn("auth-login").await;
    // An address of its own: the limit's state lives in the shared Redis.
    let ip = format!("198.51.100.{}", fastrand_octet());
    let event = || {
        apigw_rest_event(
            "GET",
            "/auth/login",
            "/auth/login",
            &[("X-Forwarded-For", ip.as_str())],
            &[],
            None,
        )
    };

    let first = login
        .invoke(event(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(first.status_code(), Some(302), "{}", login.output());
    let location = reqwest::Url::parse(&first.header("location").unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with("https://auth.mercadolivre.com.br/authorization?")
    );
    let query: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(query["client_id"], "123456");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["code_challenge"].len(), 43);

    let mut statuses = Vec::new();
    for _ in 0..6 {
        let answer = login
            .invoke(event(), Duration::from_secs(10))
            .await
            .unwrap();
        statuses.push(answer.status_code().unwrap());
    }
    assert_eq!(&statuses[..4], &[302; 4], "{statuses:?}");
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    // Every admitted check and the first refusal went to Redis (later refusals are
    // answered by the in-process denial cache).
    assert!(shim.requests() >= 6, "{} Upstash requests", shim.requests());
}

fn fastrand_octet() -> u8 {
    (uuid::Uuid::new_v4().as_bytes()[0] % 250) + 1
}

/// A client address no other test (or recent run) uses, so the per-IP login limit kept
/// in the shared Redis starts fresh.
fn fresh_client_ip() -> String {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    format!("198.18.{}.{}", bytes[0], bytes[1].max(1))
}

/// The callback URL registered with the (sandbox) Mercado Livre application.
const REDIRECT_URI: &str = "https://api.example.com/prod/auth/callback";

/// The settings each binary cannot start without, on top of what every function needs
/// (TABLE_NAME, WEBHOOK_QUEUE_URL). A missing one must fail init, naming it.
const REQUIRED_SETTINGS: &[(&str, &[&str])] = &[
    (
        "auth-login",
        &[
            "TABLE_NAME",
            "UPSTASH_REDIS_REST_URL",
            "UPSTASH_REDIS_REST_TOKEN",
            "MERCADOLIVRE_CLIENT_ID",
            "MERCADOLIVRE_REDIRECT_URI",
        ],
    ),
    (
        "auth-callback",
        &[
            "TABLE_NAME",
            "UPSTASH_REDIS_REST_URL",
            "UPSTASH_REDIS_REST_TOKEN",
            "SESSION_SIGNING_KEY",
            "GRANT_ENCRYPTION_KEY",
            "MERCADOLIVRE_CLIENT_ID",
            "MERCADOLIVRE_CLIENT_SECRET",
            "MERCADOLIVRE_REDIRECT_URI",
        ],
    ),
    ("auth-logout", &["TABLE_NAME", "SESSION_SIGNING_KEY"]),
    ("me", &["TABLE_NAME", "SESSION_SIGNING_KEY"]),
    (
        "token-refresher",
        &[
            "TABLE_NAME",
            "UPSTASH_REDIS_REST_URL",
            "UPSTASH_REDIS_REST_TOKEN",
            "GRANT_ENCRYPTION_KEY",
            "MERCADOLIVRE_CLIENT_ID",
            "MERCADOLIVRE_CLIENT_SECRET",
        ],
    ),
];

#[tokio::test]
async fn each_auth_function_fails_init_naming_every_setting_it_needs() {
    let mut deployment = Deployment::on_moto(None).await;
    // Nothing is called during init: the limiter's URL need not answer.
    deployment.set("UPSTASH_REDIS_REST_URL", "http://127.0.0.1:9");
    deployment.set("UPSTASH_REDIS_REST_TOKEN", shared::auth::random_token(24));
    deployment.set("MERCADOLIVRE_CLIENT_ID", "123456");
    deployment.set("MERCADOLIVRE_CLIENT_SECRET", shared::auth::random_token(32));
    deployment.set("MERCADOLIVRE_REDIRECT_URI", REDIRECT_URI);

    for (function, required) in REQUIRED_SETTINGS {
        // With everything set, init succeeds: each failure below is the one variable's.
        let mut complete = deployment.spawn(function).await;
        complete
            .wait_ready(Duration::from_secs(30))
            .await
            .unwrap_or_else(|error| panic!("{function} with every setting: {error}"));
        assert!(complete.try_exit_status().is_none(), "{function} exited");
        complete.kill().await;

        for name in *required {
            let mut without = deployment.clone();
            without.unset(name);
            let mut process = without.spawn(function).await;
            let outcome = process.wait_ready(Duration::from_secs(30)).await;
            assert!(
                outcome.is_err(),
                "{function} started without {name}: {outcome:?}"
            );
            let output = process.output();
            assert!(
                output.contains(&format!("{name} is not set")),
                "{function} without {name}:\n{output}"
            );
        }
    }
}

/// The settings of a deployment whose Mercado Livre is the sandbox at `base` and whose
/// limiter is Redis behind the Upstash shim.
fn sign_in_settings(
    deployment: &mut Deployment,
    shim: &UpstashShim,
    base: &str,
    client_secret: &SecretString,
) {
    deployment.set("UPSTASH_REDIS_REST_URL", shim.url());
    deployment.set("UPSTASH_REDIS_REST_TOKEN", shim.token());
    deployment.set("MERCADOLIVRE_CLIENT_ID", "123456");
    deployment.set("MERCADOLIVRE_CLIENT_SECRET", client_secret.expose_secret());
    deployment.set("MERCADOLIVRE_REDIRECT_URI", REDIRECT_URI);
    deployment.set("MERCADOLIVRE_API_URL", base);
    deployment.set("MERCADOLIVRE_AUTH_URL", base);
}

fn cookie_event(method: &str, path: &str, token: &str) -> serde_json::Value {
    let cookie = format!("{}={token}", shared::auth::cookie::SESSION_COOKIE);
    apigw_rest_event(
        method,
        path,
        path,
        &[("Cookie", cookie.as_str())],
        &[],
        None,
    )
}

#[tokio::test]
async fn a_seller_signs_in_through_the_login_and_callback_binaries_and_logs_out() {
    let mut deployment = Deployment::on_moto(None).await;
    let secret = SecretString::from(shared::auth::random_token(32));
    let (sandbox, base) = serve_sandbox(local::sandbox::SandboxSettings {
        client_id: "123456".into(),
        client_secret: secret.clone(),
        redirect_uri: REDIRECT_URI.into(),
        access_token_ttl: Duration::from_secs(21_600),
        notification_url: None,
    })
    .await;
    let shim = UpstashShim::start().await;
    sign_in_settings(&mut deployment, &shim, &base, &secret);
    let mut login = deployment.spawn("auth-login").await;
    let mut callback = deployment.spawn("auth-callback").await;
    let mut me = deployment.spawn("me").await;
    let mut logout = deployment.spawn("auth-logout").await;

    // GET /auth/login: a redirect to the provider's consent page.
    let ip = fresh_client_ip();
    let started = login
        .invoke(
            apigw_rest_event(
                "GET",
                "/auth/login",
                "/auth/login",
                &[("X-Forwarded-For", ip.as_str())],
                &[],
                None,
            ),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(started.status_code(), Some(302), "{}", login.output());
    let authorize = reqwest::Url::parse(&started.header("location").unwrap()).unwrap();
    assert!(authorize.as_str().starts_with(&base), "{authorize}");
    let login_cookie = started
        .header_values("set-cookie")
        .into_iter()
        .find(|value| value.starts_with(shared::auth::cookie::LOGIN_COOKIE))
        .and_then(|value| value.split(';').next().map(str::to_owned))
        .expect("the login cookie");

    // The seller clicks "allow"; the provider sends the browser back with code and state.
    let browser = sellerhub_tests::sandbox_login::browser();
    let form = sellerhub_tests::sandbox_login::open_consent(&browser, &authorize).await;
    let back =
        sellerhub_tests::sandbox_login::decide(&browser, &form, 777, "SELLER777", "allow").await;
    assert!(back.as_str().starts_with(REDIRECT_URI), "{back}");
    let query: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    let (code, state) = (query["code"].clone(), query["state"].clone());
    let callback_event = || {
        apigw_rest_event(
            "GET",
            "/auth/callback",
            "/auth/callback",
            &[("Cookie", login_cookie.as_str())],
            &[("code", code.as_str()), ("state", state.as_str())],
            None,
        )
    };

    // GET /auth/callback: grant stored, session started, cookie set, back to our path.
    let signed_in = callback
        .invoke(callback_event(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(signed_in.status_code(), Some(303), "{}", callback.output());
    assert_eq!(signed_in.header("location").as_deref(), Some("/prod/v1/me"));
    let set_cookies = signed_in.header_values("set-cookie");
    let set_cookie = set_cookies
        .iter()
        .find(|value| value.starts_with(shared::auth::cookie::SESSION_COOKIE))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(
        set_cookies.iter().any(
            |value| value.starts_with(shared::auth::cookie::LOGIN_COOKIE)
                && value.contains("Max-Age=0")
        ),
        "the login cookie is cleared: {set_cookies:?}"
    );
    let token = set_cookie
        .strip_prefix(&format!("{}=", shared::auth::cookie::SESSION_COOKIE))
        .and_then(|rest| rest.split(';').next())
        .expect("the session cookie")
        .to_owned();
    assert_eq!(sandbox.stats().codes_redeemed, 1);

    // The state was taken once: the same callback again is refused, nothing exchanged.
    let replayed = callback
        .invoke(callback_event(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(replayed.status_code(), Some(400));
    assert_eq!(
        replayed.header("content-type").as_deref(),
        Some("application/problem+json")
    );
    assert_eq!(sandbox.stats().codes_redeemed, 1);

    // GET /v1/me with the cookie: the seller, their tenant and a live grant.
    let profile = me
        .invoke(
            cookie_event("GET", "/v1/me", &token),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(profile.status_code(), Some(200), "{}", me.output());
    let body = profile.body_json().unwrap();
    assert_eq!(body["user"]["id"], "ml:777");
    assert_eq!(body["user"]["seller_id"], 777);
    assert_eq!(body["grant"]["status"], "ok");
    assert!(
        body["tenant"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    // GET /auth/session, the same function on its other route: the same body, signed in.
    let probe = me
        .invoke(
            cookie_event("GET", "/auth/session", &token),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(probe.status_code(), Some(200), "{}", me.output());
    let mut signed_in = body.clone();
    signed_in["signed_in"] = true.into();
    assert_eq!(probe.body_json().unwrap(), signed_in);

    // POST /auth/logout: 204, cookie cleared; the token no longer works.
    let ended = logout
        .invoke(
            cookie_event("POST", "/auth/logout", &token),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert_eq!(ended.status_code(), Some(204), "{}", logout.output());
    assert!(
        ended
            .header("set-cookie")
            .is_some_and(|cleared| cleared.contains("Max-Age=0")),
        "{:?}",
        ended.header("set-cookie")
    );
    let after = me
        .invoke(
            cookie_event("GET", "/v1/me", &token),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(after.status_code(), Some(401));
    let probe = me
        .invoke(
            cookie_event("GET", "/auth/session", &token),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(probe.status_code(), Some(200));
    assert_eq!(
        probe.body_json().unwrap(),
        serde_json::json!({"signed_in": false})
    );

    // No token, code or client secret reached any function's log.
    for (name, process) in [
        ("auth-login", &login),
        ("auth-callback", &callback),
        ("me", &me),
        ("auth-logout", &logout),
    ] {
        let output = process.output();
        for secret in [token.as_str(), code.as_str(), secret.expose_secret()] {
            assert!(!output.contains(secret), "{name} logged a secret");
        }
    }
}

#[tokio::test]
async fn the_scheduled_token_refresher_refreshes_what_is_due() {
    let mut deployment = Deployment::on_moto(None).await;
    let secret = SecretString::from(shared::auth::random_token(32));
    let redirect_uri = "https://api.example.com/prod/auth/callback";
    let (sandbox, base) = serve_sandbox(local::sandbox::SandboxSettings {
        client_id: "123456".into(),
        client_secret: secret.clone(),
        redirect_uri: redirect_uri.into(),
        access_token_ttl: Duration::from_secs(21_600),
        notification_url: None,
    })
    .await;
    let shim = UpstashShim::start().await;
    deployment.set("UPSTASH_REDIS_REST_URL", shim.url());
    deployment.set("UPSTASH_REDIS_REST_TOKEN", shim.token());
    deployment.set("MERCADOLIVRE_CLIENT_ID", "123456");
    deployment.set("MERCADOLIVRE_CLIENT_SECRET", secret.expose_secret());
    deployment.set("MERCADOLIVRE_API_URL", base.clone());
    deployment.set("MERCADOLIVRE_AUTH_URL", base.clone());

    // A seller signed in earlier; their access token expires in a minute.
    let credentials = ClientCredentials {
        client_id: "123456".into(),
        client_secret: secret,
    };
    let settings = shared::config::MercadoLivreSettings {
        api_url: base.parse().unwrap(),
        auth_url: base.parse().unwrap(),
        ..shared::config::Config::from_vars(shared::config::Profile::Local, |_| None)
            .unwrap()
            .mercadolivre
    };
    let rate_limit = shared::config::Config::from_vars(shared::config::Profile::Local, |_| None)
        .unwrap()
        .rate_limit;
    let mercadolivre = MercadoLivre::new(
        reqwest::Client::new(),
        &settings,
        UpstreamLimits::from(&rate_limit),
        Arc::new(shared::ratelimit::memory::MemoryLimiter::new()),
    );
    let login = LoginRequest::new();
    let code = authorization_code(&login, &settings.auth_url, "123456", redirect_uri, 4242).await;
    let tokens = mercadolivre
        .exchange_code(
            &credentials,
            &code,
            login.verifier.expose_secret(),
            redirect_uri,
        )
        .await
        .unwrap();
    let grants = Grants::new(
        deployment.store().await,
        Arc::new(GrantCipher::parse(&deployment.grant_key).unwrap()),
    );
    let now = SystemClock.now_secs();
    let info = GrantInfo {
        tenant: "tenant-4242".into(),
        seller_id: 4242,
        nickname: "SELLER".into(),
        scopes: tokens.scopes.clone(),
        status: GrantStatus::Ok,
        expires_at: now + 60,
        lease_until: None,
        version: 0,
    };
    let grant_tokens = GrantTokens {
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
    };
    grants.connect(info, &grant_tokens).await.unwrap();

    let mut refresher = deployment.spawn("token-refresher").await;
    let scheduled = serde_json::json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-22T12:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/every-5-minutes"],
        "detail": {}
    });
    let run = refresher
        .invoke(scheduled.clone(), Duration::from_secs(30))
        .await
        .unwrap();
    let report = run.response().cloned().unwrap_or_default();
    assert_eq!(report["refreshed"], 1, "{report}\n{}", refresher.output());
    assert_eq!(report["failed"], 0);
    assert_eq!(sandbox.stats().refreshes, 1);

    let grant = grants.load("tenant-4242").await.unwrap().unwrap();
    assert!(grant.info.expires_at > now + 20_000);
    assert_ne!(
        grant.tokens.refresh_token.expose_secret(),
        grant_tokens.refresh_token.expose_secret()
    );

    // The next run finds nothing due.
    let again = refresher
        .invoke(scheduled, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.response().unwrap()["refreshed"], 0);
    let output = refresher.output();
    for secret in [
        grant.tokens.refresh_token.expose_secret(),
        grant.tokens.access_token.expose_secret(),
        grant_tokens.refresh_token.expose_secret(),
    ] {
        assert!(!output.contains(secret), "a token reached the log");
    }
}
