//! Signing in with Mercado Livre end to end, over real HTTP against the local runner and
//! its sandbox provider: login → consent (a click) → callback → /v1/me → logout. Also the
//! inbox page's session probe, GET /auth/session: 200 signed in or out.

use reqwest::Url;
use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{
    Callback, browser, consent, decide, location, open_consent, session_cookie, set_cookie,
    sign_in, start_login,
};
use shared::auth::cookie::{LOGIN_COOKIE, SESSION_COOKIE};

const SELLER: u64 = 468_424_240;

async fn me(runner: &LocalRunner, client: &reqwest::Client, cookie: &str) -> reqwest::Response {
    client
        .get(runner.url("/v1/me"))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn me_by_bearer(
    runner: &LocalRunner,
    client: &reqwest::Client,
    token: &str,
) -> reqwest::Response {
    client
        .get(runner.url("/v1/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// GET /auth/session with the session cookie (none when `cookie` is None).
async fn session_probe(
    runner: &LocalRunner,
    client: &reqwest::Client,
    cookie: Option<&str>,
) -> serde_json::Value {
    let mut request = client.get(runner.url("/auth/session"));
    if let Some(cookie) = cookie {
        request = request.header("cookie", format!("{SESSION_COOKIE}={cookie}"));
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

async fn logout(runner: &LocalRunner, client: &reqwest::Client, cookie: &str) -> reqwest::Response {
    client
        .post(runner.url("/auth/logout"))
        .header("cookie", format!("{SESSION_COOKIE}={cookie}"))
        .send()
        .await
        .unwrap()
}

async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn login_consent_callback_me_logout_me() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();

    // GET /auth/login → the sandbox's authorize page, with PKCE S256.
    let login = start_login(&runner, &client).await;
    let authorize = login.authorize;
    assert!(
        authorize
            .as_str()
            .starts_with(&runner.url("/sandbox/mercadolivre/authorization"))
    );
    let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["redirect_uri"], runner.url("/auth/callback"));
    assert!(query["state"].len() >= 22, "≥128 bits of state");

    // The seller reads the consent page and clicks "Authorize".
    let form = open_consent(&client, &authorize).await;
    let callback = Callback {
        url: decide(&client, &form, SELLER, "SELLER_ONE", "allow").await,
        cookie: login.cookie,
    };
    assert!(
        callback
            .url
            .as_str()
            .starts_with(&runner.url("/auth/callback"))
    );

    // The callback starts the session: cookie + redirect to the default return path,
    // and the login's cookie is cleared.
    let response = callback.open(&client).await;
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "/v1/me");
    let set_cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    let session = set_cookies
        .iter()
        .find(|value| value.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("the session cookie");
    for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(
        set_cookies
            .iter()
            .any(|value| value.starts_with(&format!("{LOGIN_COOKIE}=;"))
                && value.contains("Max-Age=0")),
        "{set_cookies:?}"
    );
    let token = session_cookie(&response).unwrap();

    // /v1/me with the cookie, and with the same token as a Bearer header.
    let response = me(&runner, &client, &token).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], format!("ml:{SELLER}"));
    assert_eq!(body["user"]["seller_id"], SELLER);
    assert_eq!(body["user"]["nickname"], "SELLER_ONE");
    assert_eq!(body["grant"]["status"], "ok", "{body}");
    assert!(
        body["tenant"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(body["session"]["expires_at"].is_string());
    assert_eq!(me_by_bearer(&runner, &client, &token).await.status(), 200);

    // The session probe signed in: /v1/me's body, and signed_in.
    let mut signed_in = body.clone();
    signed_in["signed_in"] = true.into();
    assert_eq!(
        session_probe(&runner, &client, Some(&token)).await,
        signed_in
    );

    // Logout revokes the token and clears the cookie; /v1/me is then a 401 problem.
    let response = logout(&runner, &client, &token).await;
    assert_eq!(response.status(), 204);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let body = problem(me(&runner, &client, &token).await, 401).await;
    assert_eq!(body["status"], 401);
    assert_eq!(me_by_bearer(&runner, &client, &token).await.status(), 401);
    // The probe says signed out, with a 200: the page shows its sign-in link.
    let signed_out = serde_json::json!({"signed_in": false});
    assert_eq!(
        session_probe(&runner, &client, Some(&token)).await,
        signed_out
    );
    assert_eq!(session_probe(&runner, &client, None).await, signed_out);

    // Logging out again changes nothing and still answers 204.
    assert_eq!(logout(&runner, &client, &token).await.status(), 204);

    // No token, code, verifier or secret reached the log.
    let secrets: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.path().join("local-secrets.json")).unwrap())
            .unwrap();
    let log = runner.log().join("\n");
    assert!(!log.contains(&token), "the session token was logged");
    for marker in ["APP_USR-", "TG-", "code_verifier", "sellerhub_session="] {
        assert!(!log.contains(marker), "{marker} was logged");
    }
    for (name, value) in secrets {
        assert!(!log.contains(value.as_str().unwrap()), "{name} was logged");
    }
}

#[tokio::test]
async fn no_session_is_a_401_problem_and_never_a_redirect() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let body = problem(client.get(runner.url("/v1/me")).send().await.unwrap(), 401).await;
    assert_eq!(body["title"], "Unauthorized");
    for token in ["garbage", "a.b.c", ""] {
        let response = me_by_bearer(&runner, &client, token).await;
        assert_eq!(response.status(), 401, "{token:?}");
    }
}

#[tokio::test]
async fn a_tampered_or_expired_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let token = sign_in(&runner, &client, SELLER).await;
    assert_eq!(me(&runner, &client, &token).await.status(), 200);

    // One character of the signature changed.
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 2;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    problem(me(&runner, &client, &tampered).await, 401).await;

    // The same claims, signed with the runner's own key but already expired.
    let secrets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("local-secrets.json")).unwrap())
            .unwrap();
    let keys = shared::auth::SessionKeys::new(
        &secrecy::SecretString::from(secrets["SESSION_SIGNING_KEY"].as_str().unwrap()),
        "sellerhub",
    )
    .unwrap();
    let now = shared::clock::Clock::now_secs(&shared::clock::SystemClock);
    let mut claims = keys.verify(&token, now).unwrap();
    claims.exp = claims.iat - 1;
    claims.jti = "expired-one".into();
    let expired = keys.sign(&claims).unwrap();
    problem(
        me(
            &runner,
            &client,
            secrecy::ExposeSecret::expose_secret(&expired),
        )
        .await,
        401,
    )
    .await;
}

#[tokio::test]
async fn a_replayed_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let callback = consent(&runner, &client, SELLER).await;
    assert_eq!(callback.open(&client).await.status(), 303);

    let body = problem(callback.open(&client).await, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("/auth/login"),
        "{body}"
    );
}

#[tokio::test]
async fn a_code_completed_with_another_logins_verifier_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    // The attacker's code (login A) injected into the victim's callback (login B): our
    // server sends B's verifier, which does not match A's challenge.
    let stolen = consent(&runner, &client, SELLER).await;
    let victim = start_login(&runner, &client).await;
    let victim_state = victim
        .authorize
        .query_pairs()
        .find(|(name, _)| name == "state")
        .unwrap()
        .1
        .into_owned();
    let mut injected = Url::parse(&runner.url("/auth/callback")).unwrap();
    injected
        .query_pairs_mut()
        .append_pair("code", &stolen.param("code"))
        .append_pair("state", &victim_state);
    let injected = Callback {
        url: injected,
        cookie: victim.cookie,
    };

    let response = injected.open(&client).await;
    assert!(session_cookie(&response).is_none());
    let body = problem(response, 400).await;
    assert!(
        body["detail"].as_str().unwrap().contains("invalid"),
        "{body}"
    );
}

#[tokio::test]
async fn a_denied_consent_is_a_clear_403() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let login = start_login(&runner, &client).await;
    let form = open_consent(&client, &login.authorize).await;
    let callback = Callback {
        url: decide(&client, &form, SELLER, "SELLER_ONE", "deny").await,
        cookie: login.cookie,
    };
    let response = callback.open(&client).await;
    assert!(session_cookie(&response).is_none());
    let body = problem(response, 403).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("did not authorize"),
        "{body}"
    );
}

#[tokio::test]
async fn return_to_is_checked_against_the_allow_list() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(
        dir.path(),
        &[("AUTH_RETURN_TO_ORIGINS", "https://app.example.com")],
    );
    let client = browser();
    let open_redirect = client
        .get(runner.url("/auth/login?return_to=https://evil.example/"))
        .send()
        .await
        .unwrap();
    problem(open_redirect, 400).await;

    let allowed = client
        .get(runner.url("/auth/login?return_to=https://app.example.com/inbox"))
        .send()
        .await
        .unwrap();
    let form = open_consent(&client, &location(&allowed)).await;
    let callback = Callback {
        url: decide(&client, &form, SELLER, "SELLER_ONE", "allow").await,
        cookie: set_cookie(&allowed, LOGIN_COOKIE).unwrap(),
    };
    let response = callback.open(&client).await;
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://app.example.com/inbox"
    );
}

#[tokio::test]
async fn two_concurrent_logins_of_one_seller_leave_one_session() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    // Both logins reach the provider's redirect first, then both callbacks race.
    let first = consent(&runner, &client, SELLER).await;
    let second = consent(&runner, &client, SELLER).await;
    let (a, b) = tokio::join!(first.open(&client), second.open(&client));
    let tokens: Vec<String> = [a, b]
        .iter()
        .map(|response| session_cookie(response).expect("both logins succeed"))
        .collect();

    let mut live = 0;
    for token in &tokens {
        match me(&runner, &client, token).await.status().as_u16() {
            200 => live += 1,
            401 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(live, 1, "exactly one session survives");

    // Another seller's session is not touched by this seller's logins.
    let other = sign_in(&runner, &client, SELLER + 1).await;
    sign_in(&runner, &client, SELLER).await;
    assert_eq!(me(&runner, &client, &other).await.status(), 200);
}

#[tokio::test]
async fn login_is_limited_per_client_ip() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let response = client.get(runner.url("/auth/login")).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
        }
    }
    // A burst of 5, then refused (20/min is one every 3 s).
    assert_eq!(&statuses[..5], &[302; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
}

/// The runner's sandbox notifies the runner's own webhook, as Mercado Livre notifies the
/// callback URL registered with the application: a buyer's question reaches ingest.
#[tokio::test]
async fn a_buyer_question_in_the_sandbox_reaches_the_runners_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    sign_in(&runner, &client, SELLER).await;

    let console = client
        .get(runner.url("/sandbox/mercadolivre/console"))
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), 200);
    let page = console.text().await.unwrap();
    assert!(
        page.contains(&runner.url("/webhooks/mercadolivre")),
        "{page}"
    );

    let response = client
        .post(runner.url("/sandbox/mercadolivre/questions"))
        .json(&serde_json::json!({
            "seller_id": SELLER, "item_id": "MLB3859205311", "text": "Tem pronta entrega?"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        created["delivery"],
        serde_json::json!({
            "url": runner.url("/webhooks/mercadolivre"),
            "http_code": 200,
            "delivered": true,
            "error": null,
        }),
        "{created}"
    );
    assert_eq!(
        created["notification"]["application_id"],
        5_000_000_000_000_001u64
    );
    assert_eq!(created["notification"]["user_id"], SELLER);
}

/// Once the callback has spent the login's state, retrying it cannot work: a failure
/// from then on says to sign in again, where, and doing so works.
#[tokio::test]
async fn a_failure_after_the_state_is_spent_says_to_sign_in_again() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let callback = consent(&runner, &client, SELLER).await;
    let faults = |mode: &str| {
        client
            .post(runner.url("/sandbox/mercadolivre/faults"))
            .json(&serde_json::json!({ "mode": mode }))
            .send()
    };
    // Mercado Livre's API (here /users/me, after the code was exchanged) answers 503.
    assert!(faults("503").await.unwrap().status().is_success());
    let response = callback.open(&client).await;
    assert!(session_cookie(&response).is_none());
    let body = problem(response, 503).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("Sign in again at /auth/login"), "{detail}");
    assert!(!detail.contains("retry"), "{detail}");

    assert!(faults("none").await.unwrap().status().is_success());
    problem(callback.open(&client).await, 400).await;
    sign_in(&runner, &client, SELLER).await;
}

/// Which of two session cookies the browser meant cannot be known, and one of them may
/// have been planted: neither is taken.
#[tokio::test]
async fn a_request_with_two_session_cookies_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let client = browser();
    let token = sign_in(&runner, &client, SELLER).await;
    let other = sign_in(&runner, &client, SELLER + 1).await;
    for cookies in [
        format!("{SESSION_COOKIE}={token}; {SESSION_COOKIE}={other}"),
        format!("{SESSION_COOKIE}={token}; theme=dark; {SESSION_COOKIE}=planted"),
    ] {
        let response = client
            .get(runner.url("/v1/me"))
            .header("cookie", cookies)
            .send()
            .await
            .unwrap();
        let body = problem(response, 400).await;
        assert!(
            body["detail"].as_str().unwrap().contains("more than once"),
            "{body}"
        );
    }
    assert_eq!(me(&runner, &client, &token).await.status(), 200);
}
