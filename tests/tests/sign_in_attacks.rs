//! Sign-in as an attacker tries it, over real HTTP against the local runner and its
//! sandbox Mercado Livre: a callback URL planted in another browser (login CSRF), a flood
//! of anonymous callbacks with garbage codes against the shared Mercado Livre budget, and
//! one seller's many logins at once.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{
    Callback, browser, browser_at, consent, session_cookie, sign_in, start_login,
};
use shared::auth::cookie::SESSION_COOKIE;
use tokio::task::JoinSet;

const SELLER: u64 = 468_424_240;

async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    let code = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(code, status, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn me_status(runner: &LocalRunner, client: &reqwest::Client, token: &str) -> u16 {
    client
        .get(runner.url("/v1/me"))
        .header("cookie", format!("{SESSION_COOKIE}={token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The runner's log lines whose message is `message`.
fn logged(runner: &LocalRunner, message: &str) -> Vec<serde_json::Value> {
    runner
        .log()
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|line| line["message"] == message)
        .collect()
}

/// The runner's log lines whose message is `message`, once there are `count` of them
/// (its log reaches us a little after the responses).
async fn logged_times(runner: &LocalRunner, message: &str, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = logged(runner, message);
        if lines.len() >= count || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `n`th of many loopback addresses (127.0.1.1, 127.0.1.2, …): a client the runner
/// sees at an address of its own.
fn loopback(n: usize) -> Ipv4Addr {
    let n = u32::try_from(n).unwrap();
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 1, 1)) + n)
}

/// RFC 6749 §10.12: someone starts a login, consents as their own seller and never opens
/// the callback, then gets a victim to open that URL.
#[tokio::test]
async fn a_callback_opened_in_another_browser_signs_no_one_in() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(dir.path(), &[]);
    let attacker = browser();
    let victim = browser_at(loopback(0));
    let planted = consent(&runner, &attacker, SELLER).await;

    // Whether the victim's browser has no login cookie, the cookie of a login of its
    // own, or a made-up one: no session, and a problem saying to start again.
    let victims_own = start_login(&runner, &victim).await;
    for cookie in [None, Some(victims_own.cookie.as_str()), Some("made-up")] {
        let response = planted.open_with(&victim, cookie).await;
        assert!(session_cookie(&response).is_none(), "{cookie:?}");
        let body = problem(response, 403).await;
        assert!(
            body["detail"].as_str().unwrap().contains("/auth/login"),
            "{body}"
        );
    }
    let refusals = logged_times(&runner, "sign-in refused", 3).await;
    assert_eq!(refusals.len(), 3);
    assert!(logged(&runner, "seller signed in").is_empty());
    assert!(
        refusals
            .iter()
            .all(|line| line["reason"] == "other_browser"),
        "{refusals:?}"
    );

    // The browser that started the login completes it: refusing the others spent
    // nothing of it.
    let response = planted.open(&attacker).await;
    assert_eq!(response.status(), 303);
    assert!(session_cookie(&response).is_some());
}

/// Anonymous callers flood the callback with garbage codes, each with a state and login
/// cookie of its own (a login per callback, from as many addresses as the per-address
/// login limit needs). Sign-ins spend only their share of the Mercado Livre budget, so
/// the work done for sellers is still admitted.
#[tokio::test]
async fn anonymous_garbage_callbacks_leave_the_workers_their_budget() {
    const CALLBACKS: usize = 1000;
    /// The login limit lets each address start five logins back to back.
    const LOGINS_PER_ADDRESS: usize = 5;

    let dir = tempfile::tempdir().unwrap();
    // A global budget that, once drained, stays drained for the rest of the test: one
    // call every 36 s after its burst of 100 (the sign-in share: 20/h, a burst of 10).
    let runner = LocalRunner::start(
        dir.path(),
        &[
            ("RATE_LIMIT_ML_GLOBAL_PER_HOUR", "200"),
            ("RATE_LIMIT_ML_GLOBAL_BURST", "100"),
        ],
    );
    let seller = browser();
    sign_in(&runner, &seller, SELLER).await;

    // The logins the flood needs, and a callback for each with a garbage code: half of
    // them not even shaped like a Mercado Livre code, half shaped like one.
    let mut logins = JoinSet::new();
    for address in 0..CALLBACKS / LOGINS_PER_ADDRESS {
        let client = browser_at(loopback(address));
        let login = runner.url("/auth/login");
        logins.spawn(async move {
            let mut started = Vec::new();
            for _ in 0..LOGINS_PER_ADDRESS {
                let response = client.get(&login).send().await.unwrap();
                assert_eq!(response.status(), 302, "login from {address}");
                started.push((
                    sellerhub_tests::sandbox_login::location(&response),
                    sellerhub_tests::sandbox_login::set_cookie(
                        &response,
                        shared::auth::cookie::LOGIN_COOKIE,
                    )
                    .unwrap(),
                ));
            }
            (client, started)
        });
    }
    let mut floods = JoinSet::new();
    let mut n = 0;
    for (client, started) in logins.join_all().await {
        let mut callbacks = Vec::new();
        for (authorize, cookie) in started {
            let state = authorize
                .query_pairs()
                .find(|(name, _)| name == "state")
                .unwrap()
                .1
                .into_owned();
            let code = if n % 2 == 0 {
                ["garbage", "TG-", "' OR 1=1 --", "TG-<script>-1", ""][n / 2 % 5].to_owned()
            } else {
                format!("TG-{:024x}-{}", fastrand::u128(..) >> 32, 100 + n)
            };
            n += 1;
            let mut url = reqwest::Url::parse(&runner.url("/auth/callback")).unwrap();
            url.query_pairs_mut()
                .append_pair("code", &code)
                .append_pair("state", &state);
            callbacks.push(Callback { url, cookie });
        }
        floods.spawn(async move {
            let mut statuses = Vec::new();
            for callback in callbacks {
                statuses.push(callback.open(&client).await.status().as_u16());
            }
            statuses
        });
    }
    let statuses: Vec<u16> = floods.join_all().await.into_iter().flatten().collect();
    assert_eq!(statuses.len(), CALLBACKS);
    assert!(
        statuses.iter().all(|status| [400, 503].contains(status)),
        "no callback signs in or fails otherwise: {statuses:?}"
    );

    // Every refusal was counted and logged with its reason; the malformed codes never
    // reached the token endpoint, the others only as far as the sign-in share allowed.
    let refusals = logged_times(&runner, "sign-in refused", CALLBACKS).await;
    assert_eq!(refusals.len(), CALLBACKS);
    let with_reason = |reason: &str| {
        refusals
            .iter()
            .filter(|line| line["reason"] == reason)
            .count()
    };
    assert_eq!(with_reason("malformed_code"), CALLBACKS / 2);
    let exchanged = with_reason("invalid_grant");
    assert!((1..=10).contains(&exchanged), "{exchanged} exchanged");
    assert_eq!(with_reason("rate_limited"), CALLBACKS / 2 - exchanged);

    // A buyer asks the seller a question: the worker fetches it from Mercado Livre for
    // the seller, admitted at once rather than deferred.
    let asked = seller
        .post(runner.url("/sandbox/mercadolivre/questions"))
        .json(&serde_json::json!({
            "seller_id": SELLER, "item_id": "MLB3859205311", "text": "Ainda tem?"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 201);
    let asked: serde_json::Value = asked.json().await.unwrap();
    assert_eq!(asked["delivery"]["http_code"], 200, "{asked}");
    let dedupe_key = format!(
        "mercadolivre:{}",
        asked["notification"]["_id"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let outcome = loop {
        let outcome = ["webhook applied", "webhook deferred"]
            .into_iter()
            .find(|message| {
                logged(&runner, message)
                    .iter()
                    .any(|line| line["dedupe_key"] == dedupe_key.as_str())
            });
        if let Some(outcome) = outcome {
            break outcome;
        }
        assert!(Instant::now() < deadline, "the worker never took it");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(outcome, "webhook applied");
}

/// A seller who double-clicks, twenty times over: every callback signs in (or says
/// clearly that another sign-in won), none fails, and exactly one session stays live.
#[tokio::test]
async fn many_logins_of_one_seller_at_once_all_succeed_and_leave_one_session() {
    const LOGINS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    // Twenty sign-ins at once are forty calls: a sign-in share with a burst that large.
    let runner = LocalRunner::start(dir.path(), &[("RATE_LIMIT_ML_SIGNIN_SHARE", "0.45")]);
    // One seller, several browsers (four addresses: the login limit's burst is five).
    let mut callbacks = Vec::new();
    for n in 0..LOGINS {
        let client = browser_at(loopback(n / 5));
        let callback = consent(&runner, &client, SELLER).await;
        callbacks.push((client, callback));
    }

    let mut opened = JoinSet::new();
    for (client, callback) in callbacks {
        opened.spawn(async move {
            let response = callback.open(&client).await;
            let status = response.status().as_u16();
            let token = session_cookie(&response);
            let body = response.text().await.unwrap();
            (status, token, body)
        });
    }
    let outcomes = opened.join_all().await;
    let tokens: Vec<&String> = outcomes
        .iter()
        .filter_map(|(status, token, body)| match status {
            303 => Some(token.as_ref().expect("a session cookie")),
            409 => {
                assert!(body.contains("Sign in again"), "{body}");
                None
            }
            other => panic!("a login answered {other}: {body}"),
        })
        .collect();
    assert!(!tokens.is_empty());

    let client = browser();
    let mut live = 0;
    for token in tokens {
        match me_status(&runner, &client, token).await {
            200 => live += 1,
            401 => {}
            other => panic!("/v1/me answered {other}"),
        }
    }
    assert_eq!(live, 1, "exactly one session survives");
}
