//! The sandbox served on 127.0.0.1 under its runner prefix and driven over HTTP the way a
//! browser and the app drive it; then the pieces whose edge cases HTTP cannot reach.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::Url;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::state::{CodeGrant, Registry, Seller};
use super::{Sandbox, SandboxSettings, SandboxStats, credentials, page, pkce};

mod marketplace;

const PREFIX: &str = "/sandbox/mercadolivre";
const CLIENT_ID: &str = "2069392825111111";
const CLIENT_SECRET: &str = "sandbox-client-secret";
/// Carries a query of its own, so redirects must append with `&` and the page must escape.
const REDIRECT_URI: &str = "http://app.test/auth/callback?tenant=a&x=1";
const SIX_HOURS: Duration = Duration::from_secs(21_600);
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const STATE: &str = "state-0123456789abcdef";

/// An authorization request's query parameters, in order.
type AuthorizeParams = Vec<(&'static str, String)>;

struct Provider {
    sandbox: Arc<Sandbox>,
    base: String,
    http: reqwest::Client,
}

/// What a browser reads off the consent page.
struct Consent {
    action: Url,
    request_id: String,
}

async fn start(access_token_ttl: Duration) -> Provider {
    serve(SandboxSettings {
        client_id: CLIENT_ID.to_owned(),
        client_secret: CLIENT_SECRET.into(),
        redirect_uri: REDIRECT_URI.to_owned(),
        access_token_ttl,
        notification_url: None,
    })
    .await
}

/// The sandbox with `settings`, served on 127.0.0.1 under its runner prefix.
async fn serve(settings: SandboxSettings) -> Provider {
    let sandbox = Sandbox::new(settings);
    let app = axum::Router::new().nest(PREFIX, sandbox.router());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Provider {
        sandbox,
        base: format!("http://{address}{PREFIX}"),
        http,
    }
}

fn authorize_params() -> AuthorizeParams {
    [
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("state", STATE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
    .into_iter()
    .map(|(name, value)| (name, value.to_owned()))
    .collect()
}

/// `params` with `name` replaced by `value`, or removed when `value` is `None`.
fn with(mut params: AuthorizeParams, name: &str, value: Option<&str>) -> AuthorizeParams {
    let position = params.iter().position(|(key, _)| *key == name).unwrap();
    match value {
        Some(value) => params[position].1 = value.to_owned(),
        None => drop(params.remove(position)),
    }
    params
}

fn encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

impl Provider {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn authorize_url(&self, params: &[(&'static str, String)]) -> Url {
        let query = encode(params.iter().map(|(name, value)| (*name, value.as_str())));
        Url::parse(&self.url(&format!("/authorization?{query}"))).unwrap()
    }

    async fn get_authorize(&self, params: &[(&'static str, String)]) -> reqwest::Response {
        self.http
            .get(self.authorize_url(params))
            .send()
            .await
            .unwrap()
    }

    async fn consent(&self) -> Consent {
        let url = self.authorize_url(&authorize_params());
        let page = self.http.get(url.clone()).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let page = page.text().await.unwrap();
        let form_tag = tag(&page, "<form").unwrap();
        let action = url.join(&attribute(form_tag, "action").unwrap()).unwrap();
        let request_id = input_value(&page, "request_id").unwrap();
        Consent { action, request_id }
    }

    async fn decide(&self, consent: &Consent, fields: &[(&str, &str)]) -> reqwest::Response {
        let fields = [("request_id", consent.request_id.as_str())]
            .into_iter()
            .chain(fields.iter().copied());
        self.http
            .post(consent.action.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(fields))
            .send()
            .await
            .unwrap()
    }

    /// Consent as `user_id`; the code from the redirect back to the app.
    async fn sign_in(&self, user_id: u64, nickname: &str) -> String {
        let consent = self.consent().await;
        let user_id = user_id.to_string();
        let response = self
            .decide(
                &consent,
                &[
                    ("user_id", &user_id),
                    ("nickname", nickname),
                    ("decision", "allow"),
                ],
            )
            .await;
        assert_eq!(response.status(), 302);
        let callback = query(&location(&response));
        assert_eq!(callback["state"], STATE);
        callback["code"].clone()
    }

    async fn token(&self, fields: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("/oauth/token"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(encode(fields.iter().copied()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn exchange(&self, code: &str, verifier: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", verifier),
        ])
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// Signs in as `user_id` and exchanges the code: the token response.
    async fn tokens_for(&self, user_id: u64, nickname: &str) -> Value {
        let code = self.sign_in(user_id, nickname).await;
        let (status, body) = self.exchange(&code, VERIFIER).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn users_me(&self, authorization: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.url("/users/me"));
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

fn location(response: &reqwest::Response) -> Url {
    let location = response.headers()[LOCATION].to_str().unwrap();
    Url::parse(location).unwrap()
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The opening tag starting with `start`, without its closing `>`.
fn tag<'a>(page: &'a str, start: &str) -> Option<&'a str> {
    let from = page.find(start)?;
    let to = page[from..].find('>')? + from;
    Some(&page[from..to])
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_owned())
}

fn input_value(page: &str, name: &str) -> Option<String> {
    tag(page, &format!("<input type=\"hidden\" name=\"{name}\""))
        .or_else(|| tag(page, &format!("<input type=\"text\" name=\"{name}\"")))
        .and_then(|input| attribute(input, "value"))
}

fn invalid_grant() -> Value {
    json!({
        "message": "Error validating grant. Your authorization code or refresh token may be \
                    expired or it was already used",
        "error": "invalid_grant",
        "status": 400,
        "cause": [],
    })
}

fn unauthorized() -> Value {
    json!({"message": "invalid access token", "error": "unauthorized", "status": 401, "cause": []})
}

fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Exactly the fields and formats of Mercado Livre's token response.
fn assert_token_response(body: &Value, user_id: u64, expires_in: u64) {
    let keys: BTreeSet<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let expected = [
        "access_token",
        "token_type",
        "expires_in",
        "scope",
        "user_id",
        "refresh_token",
    ];
    assert_eq!(keys, BTreeSet::from(expected), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], expires_in);
    assert_eq!(body["scope"], "offline_access read write");
    assert_eq!(body["user_id"], user_id);

    let access: Vec<&str> = body["access_token"].as_str().unwrap().split('-').collect();
    assert_eq!(access.len(), 5, "{body}");
    assert_eq!(access[0], "APP_USR");
    assert_eq!(access[1], CLIENT_ID);
    assert!(
        access[2].len() == 6 && access[2].bytes().all(|b| b.is_ascii_digit()),
        "{body}"
    );
    assert!(is_hex(access[3], 32), "{body}");
    assert_eq!(access[4], user_id.to_string());

    let refresh: Vec<&str> = body["refresh_token"].as_str().unwrap().split('-').collect();
    assert_eq!(refresh.len(), 3, "{body}");
    assert_eq!(refresh[0], "TG");
    assert!(is_hex(refresh[1], 24), "{body}");
    assert_eq!(refresh[2], user_id.to_string());
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap()
}

#[tokio::test]
async fn the_consent_page_is_a_form_that_never_submits_itself() {
    let provider = start(SIX_HOURS).await;
    let url = provider.authorize_url(&authorize_params());
    let response = provider.http.get(url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let page = response.text().await.unwrap();

    let lowered = page.to_lowercase();
    for auto in [
        "<script",
        "http-equiv",
        "onload",
        "onfocus",
        ".submit(",
        "autofocus",
    ] {
        assert!(!lowered.contains(auto), "found {auto} in {page}");
    }
    let form = tag(&page, "<form").unwrap();
    assert_eq!(attribute(form, "method").as_deref(), Some("post"));
    assert_eq!(attribute(form, "action").as_deref(), Some("authorization"));
    // Relative, so it posts back to the same route under whatever prefix serves it.
    let action = url.join("authorization").unwrap();
    assert_eq!(action.as_str(), provider.url("/authorization"));

    assert!(input_value(&page, "request_id").is_some_and(|id| is_hex(&id, 32)));
    assert_eq!(input_value(&page, "user_id").as_deref(), Some("468424240"));
    assert_eq!(
        input_value(&page, "nickname").as_deref(),
        Some("SANDBOX_SELLER")
    );
    let allow = tag(
        &page,
        "<button type=\"submit\" name=\"decision\" value=\"allow\"",
    )
    .unwrap();
    let deny = tag(
        &page,
        "<button type=\"submit\" name=\"decision\" value=\"deny\"",
    )
    .unwrap();
    assert!(page.contains(&format!("{allow}>Authorize</button>")));
    assert!(page.contains(&format!("{deny}>Cancel</button>")));

    // Showing the page issues nothing.
    assert_eq!(provider.sandbox.stats(), SandboxStats::default());
}

#[tokio::test]
async fn the_consent_page_escapes_what_it_echoes() {
    let provider = start(SIX_HOURS).await;
    let page = provider
        .get_authorize(&authorize_params())
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("callback?tenant=a&amp;x=1"), "{page}");
    assert!(!page.contains("callback?tenant=a&x=1"), "{page}");
    assert_eq!(
        page::escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
    );
}

#[tokio::test]
async fn allow_then_exchange_signs_in_the_chosen_seller() {
    let provider = start(SIX_HOURS).await;
    let consent = provider.consent().await;
    let response = provider
        .decide(
            &consent,
            &[
                ("user_id", "12345"),
                ("nickname", "Other.Seller"),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()[CACHE_CONTROL], "no-store");
    let callback = location(&response);
    assert_eq!(
        callback.as_str().split_once("&code=").unwrap().0,
        REDIRECT_URI,
        "the registered URI, its own query kept"
    );
    let callback = query(&callback);
    assert_eq!(callback["state"], STATE);
    assert!(!callback.contains_key("error"));
    let code: Vec<&str> = callback["code"].split('-').collect();
    assert_eq!(code[0], "TG");
    assert!(is_hex(code[1], 32), "128 random bits: {code:?}");
    assert_eq!(code[2], "12345");

    let (status, body) = provider.exchange(&callback["code"], VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    assert_token_response(&body, 12345, 21_600);

    let bearer = format!("Bearer {}", text(&body["access_token"]));
    let (status, me) = provider.users_me(Some(&bearer)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({
            "id": 12345,
            "nickname": "Other.Seller",
            "site_id": "MLB",
            "country_id": "BR",
            "user_type": "normal",
            "email": "other.seller@sandbox.invalid",
        })
    );
}

#[tokio::test]
async fn a_token_request_may_be_json() {
    let provider = start(SIX_HOURS).await;
    let code = provider.sign_in(777, "JSON_SELLER").await;
    let response = provider
        .http
        .post(provider.url("/oauth/token"))
        .json(&json!({
            "grant_type": "authorization_code",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
    assert_token_response(&response.json().await.unwrap(), 777, 21_600);
}

#[tokio::test]
async fn a_wrong_verifier_is_invalid_grant_and_spends_the_code() {
    let provider = start(SIX_HOURS).await;
    let code = provider.sign_in(1, "A").await;
    let wrong = "x".repeat(43);
    assert_eq!(
        provider.exchange(&code, &wrong).await,
        (400, invalid_grant())
    );
    // Single use: the right verifier comes too late.
    assert_eq!(
        provider.exchange(&code, VERIFIER).await,
        (400, invalid_grant())
    );

    // A verifier of the wrong shape never matches.
    let code = provider.sign_in(1, "A").await;
    let (status, body) = provider.exchange(&code, &format!("{VERIFIER}+")).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
}

#[tokio::test]
async fn a_replayed_code_is_invalid_grant() {
    let provider = start(SIX_HOURS).await;
    let code = provider.sign_in(42, "REPLAY").await;
    let (status, _) = provider.exchange(&code, VERIFIER).await;
    assert_eq!(status, 200);
    assert_eq!(
        provider.exchange(&code, VERIFIER).await,
        (400, invalid_grant())
    );
    let unknown = "TG-00000000000000000000000000000000-42";
    assert_eq!(
        provider.exchange(unknown, VERIFIER).await,
        (400, invalid_grant())
    );
}

#[tokio::test]
async fn a_code_is_bound_to_the_redirect_uri_of_its_request() {
    let provider = start(SIX_HOURS).await;
    let code = provider.sign_in(42, "BOUND").await;
    let (status, body) = provider
        .token(&[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("code", &code),
            ("redirect_uri", "http://app.test/auth/callback"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!((status, body), (400, invalid_grant()));
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_the_state() {
    let provider = start(SIX_HOURS).await;
    let consent = provider.consent().await;
    // Cancel works whatever the seller fields hold.
    let response = provider
        .decide(&consent, &[("user_id", ""), ("decision", "deny")])
        .await;
    assert_eq!(response.status(), 302);
    let callback = location(&response);
    assert!(callback.as_str().starts_with(REDIRECT_URI), "{callback}");
    let callback = query(&callback);
    assert_eq!(callback["error"], "access_denied");
    assert!(!callback["error_description"].is_empty());
    assert_eq!(callback["state"], STATE);
    assert_eq!(callback["tenant"], "a");
    assert!(!callback.contains_key("code"));
    assert_eq!(provider.sandbox.stats().codes_issued, 0);
}

#[tokio::test]
async fn an_untrusted_client_or_redirect_uri_gets_a_400_page_and_no_redirect() {
    let provider = start(SIX_HOURS).await;
    let cases = [
        with(
            authorize_params(),
            "redirect_uri",
            Some("http://evil.test/callback"),
        ),
        with(
            authorize_params(),
            "redirect_uri",
            Some(&format!("{REDIRECT_URI}&y=2")),
        ),
        with(
            authorize_params(),
            "redirect_uri",
            Some("http://app.test/auth/callback"),
        ),
        with(authorize_params(), "redirect_uri", None),
        with(authorize_params(), "client_id", Some("999")),
        with(authorize_params(), "client_id", None),
        // Even with the rest of the request wrong too, nothing goes to the redirect URI.
        with(
            with(authorize_params(), "client_id", Some("999")),
            "state",
            None,
        ),
    ];
    for params in cases {
        let response = provider.get_authorize(&params).await;
        assert_eq!(response.status(), 400, "{params:?}");
        assert!(response.headers().get(LOCATION).is_none());
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let page = response.text().await.unwrap();
        assert!(!page.contains("<form"), "{page}");
    }
}

#[tokio::test]
async fn a_malformed_request_is_redirected_with_invalid_request() {
    let provider = start(SIX_HOURS).await;
    let short = &CHALLENGE[..42];
    let bad_alphabet = format!("{}+", &CHALLENGE[..42]);
    let too_long = "a".repeat(129);
    let cases: Vec<(AuthorizeParams, Option<&str>)> = vec![
        (with(authorize_params(), "state", None), None),
        (with(authorize_params(), "state", Some("")), None),
        (
            with(authorize_params(), "state", Some("tab\there")),
            Some("tab\there"),
        ),
        (
            with(authorize_params(), "response_type", Some("token")),
            Some(STATE),
        ),
        (with(authorize_params(), "response_type", None), Some(STATE)),
        (
            with(authorize_params(), "code_challenge", None),
            Some(STATE),
        ),
        (
            with(authorize_params(), "code_challenge", Some(short)),
            Some(STATE),
        ),
        (
            with(authorize_params(), "code_challenge", Some(&bad_alphabet)),
            Some(STATE),
        ),
        (
            with(authorize_params(), "code_challenge", Some(&too_long)),
            Some(STATE),
        ),
        (
            with(authorize_params(), "code_challenge_method", Some("plain")),
            Some(STATE),
        ),
        (
            with(authorize_params(), "code_challenge_method", Some("s256")),
            Some(STATE),
        ),
        (
            with(authorize_params(), "code_challenge_method", None),
            Some(STATE),
        ),
        (
            [
                authorize_params(),
                vec![("code_challenge", CHALLENGE.to_owned())],
            ]
            .concat(),
            Some(STATE),
        ),
    ];
    for (params, state) in cases {
        let response = provider.get_authorize(&params).await;
        assert_eq!(response.status(), 302, "{params:?}");
        let callback = location(&response);
        assert!(callback.as_str().starts_with(REDIRECT_URI), "{callback}");
        let callback = query(&callback);
        assert_eq!(callback["error"], "invalid_request", "{params:?}");
        assert!(!callback["error_description"].is_empty());
        assert_eq!(
            callback.get("state").map(String::as_str),
            state,
            "{params:?}"
        );
    }
    assert_eq!(provider.sandbox.stats(), SandboxStats::default());
}

#[tokio::test]
async fn a_consent_page_is_answered_once_and_a_bad_seller_can_be_corrected() {
    let provider = start(SIX_HOURS).await;
    let consent = provider.consent().await;
    let long_nickname = "N".repeat(65);
    let bad_sellers = [
        [("user_id", "0"), ("nickname", "A")],
        [("user_id", "-5"), ("nickname", "A")],
        [("user_id", "12a"), ("nickname", "A")],
        [("user_id", "99999999999999999999999"), ("nickname", "A")],
        [("user_id", "5"), ("nickname", "")],
        [("user_id", "5"), ("nickname", &long_nickname)],
        [("user_id", "5"), ("nickname", "line\nbreak")],
    ];
    for seller in bad_sellers {
        let fields = [seller[0], seller[1], ("decision", "allow")];
        let response = provider.decide(&consent, &fields).await;
        assert_eq!(response.status(), 400, "{seller:?}");
        assert!(response.headers().get(LOCATION).is_none());
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
    }
    let maybe = provider
        .decide(
            &consent,
            &[("user_id", "5"), ("nickname", "A"), ("decision", "maybe")],
        )
        .await;
    assert_eq!(maybe.status(), 400);

    let allow = [
        ("user_id", "5"),
        ("nickname", &"N".repeat(64)),
        ("decision", "allow"),
    ];
    let response = provider.decide(&consent, &allow).await;
    assert_eq!(response.status(), 302);
    assert!(query(&location(&response)).contains_key("code"));

    let again = provider.decide(&consent, &allow).await;
    assert_eq!(again.status(), 400);
    let deny_after = provider.decide(&consent, &[("decision", "deny")]).await;
    assert_eq!(deny_after.status(), 400);
    let forged = Consent {
        action: consent.action.clone(),
        request_id: "0".repeat(32),
    };
    assert_eq!(provider.decide(&forged, &allow).await.status(), 400);
    assert_eq!(provider.sandbox.stats().codes_issued, 1);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_is_invalid_grant() {
    let provider = start(SIX_HOURS).await;
    let first = provider.tokens_for(55, "ROTATE").await;
    let first_refresh = text(&first["refresh_token"]);

    let (status, second) = provider.refresh(first_refresh).await;
    assert_eq!(status, 200, "{second}");
    assert_token_response(&second, 55, 21_600);
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    let bearer = format!("Bearer {}", text(&second["access_token"]));
    assert_eq!(provider.users_me(Some(&bearer)).await.1["id"], 55);

    assert_eq!(
        provider.refresh(first_refresh).await,
        (400, invalid_grant())
    );
    let (status, third) = provider.refresh(text(&second["refresh_token"])).await;
    assert_eq!(status, 200, "{third}");
    assert_eq!(
        provider.refresh("TG-000000000000000000000000-55").await,
        (400, invalid_grant())
    );
}

#[tokio::test]
async fn a_revoked_seller_loses_refresh_and_access_tokens() {
    let provider = start(SIX_HOURS).await;
    let revoked = provider.tokens_for(100, "REVOKED").await;
    let kept = provider.tokens_for(200, "KEPT").await;
    let pending_code = provider.sign_in(100, "REVOKED").await;

    provider.sandbox.revoke_user(100);

    let bearer = format!("Bearer {}", text(&revoked["access_token"]));
    assert_eq!(
        provider.users_me(Some(&bearer)).await,
        (401, unauthorized())
    );
    assert_eq!(
        provider.refresh(text(&revoked["refresh_token"])).await,
        (400, invalid_grant())
    );
    assert_eq!(
        provider.exchange(&pending_code, VERIFIER).await,
        (400, invalid_grant())
    );

    let bearer = format!("Bearer {}", text(&kept["access_token"]));
    assert_eq!(provider.users_me(Some(&bearer)).await.0, 200);
    assert_eq!(provider.refresh(text(&kept["refresh_token"])).await.0, 200);

    // Authorizing the app again works, as on Mercado Livre.
    let again = provider.tokens_for(100, "REVOKED").await;
    let bearer = format!("Bearer {}", text(&again["access_token"]));
    assert_eq!(provider.users_me(Some(&bearer)).await.0, 200);
}

#[tokio::test]
async fn an_expired_access_token_is_unauthorized() {
    let provider = start(Duration::ZERO).await;
    let tokens = provider.tokens_for(9, "EXPIRED").await;
    assert_token_response(&tokens, 9, 0);
    let bearer = format!("Bearer {}", text(&tokens["access_token"]));
    assert_eq!(
        provider.users_me(Some(&bearer)).await,
        (401, unauthorized())
    );
    // Its refresh token still works, and the new access token is expired again.
    let (status, refreshed) = provider.refresh(text(&tokens["refresh_token"])).await;
    assert_eq!(status, 200);
    let bearer = format!("Bearer {}", text(&refreshed["access_token"]));
    assert_eq!(provider.users_me(Some(&bearer)).await.0, 401);
}

#[tokio::test]
async fn users_me_needs_a_known_bearer_token() {
    let provider = start(SIX_HOURS).await;
    let tokens = provider.tokens_for(3, "BEARER").await;
    let access = text(&tokens["access_token"]);
    for authorization in [
        None,
        Some(String::new()),
        Some("Bearer".to_owned()),
        Some(format!("Basic {access}")),
        Some(format!("Bearer {access}x")),
        Some(format!("Bearer {}", text(&tokens["refresh_token"]))),
    ] {
        let (status, body) = provider.users_me(authorization.as_deref()).await;
        assert_eq!((status, body), (401, unauthorized()), "{authorization:?}");
    }
    assert_eq!(
        provider.users_me(Some(&format!("bearer {access}"))).await.0,
        200
    );
}

#[tokio::test]
async fn a_wrong_client_is_invalid_client_and_spends_nothing() {
    let provider = start(SIX_HOURS).await;
    let code = provider.sign_in(8, "CLIENT").await;
    let wrong_secret = format!("{}X", &CLIENT_SECRET[..CLIENT_SECRET.len() - 1]);
    for (client_id, client_secret) in [
        (CLIENT_ID, wrong_secret.as_str()),
        (CLIENT_ID, "short"),
        ("1111", CLIENT_SECRET),
    ] {
        let (status, body) = provider
            .token(&[
                ("grant_type", "authorization_code"),
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("code", &code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", VERIFIER),
            ])
            .await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["status"], 401);
        assert_eq!(body["cause"], json!([]));
        assert!(body["message"].is_string());
    }
    assert_eq!(provider.sandbox.stats().rejected_grants, 0);
    assert_eq!(provider.exchange(&code, VERIFIER).await.0, 200);
}

#[tokio::test]
async fn a_malformed_token_request_is_invalid_request_or_unsupported_grant_type() {
    let provider = start(SIX_HOURS).await;
    let client = [("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)];
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (client.to_vec(), "invalid_request"),
        (
            [vec![("grant_type", "authorization_code")], vec![client[0]]].concat(),
            "invalid_request",
        ),
        (
            [vec![("grant_type", "password")], client.to_vec()].concat(),
            "unsupported_grant_type",
        ),
        (
            [
                vec![("grant_type", "authorization_code"), ("code", "TG-1-1")],
                client.to_vec(),
            ]
            .concat(),
            "invalid_request",
        ),
        (
            [vec![("grant_type", "refresh_token")], client.to_vec()].concat(),
            "invalid_request",
        ),
        (
            [
                vec![
                    ("grant_type", "refresh_token"),
                    ("grant_type", "refresh_token"),
                ],
                client.to_vec(),
            ]
            .concat(),
            "invalid_request",
        ),
    ];
    for (fields, error) in cases {
        let (status, body) = provider.token(&fields).await;
        assert_eq!(status, 400, "{fields:?}");
        assert_eq!(body["error"], error, "{fields:?}");
        assert_eq!(body["status"], 400);
    }

    for (content_type, body) in [
        ("text/plain", "grant_type=refresh_token"),
        ("application/json", "[1, 2]"),
        ("application/json", r#"{"grant_type": ["refresh_token"]}"#),
    ] {
        let response = provider
            .http
            .post(provider.url("/oauth/token"))
            .header(CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{content_type} {body}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_request");
    }
    assert_eq!(provider.sandbox.stats().rejected_grants, 0);
}

#[tokio::test]
async fn stats_count_issued_redeemed_refreshed_and_rejected_grants() {
    let provider = start(SIX_HOURS).await;
    let first = provider.sign_in(1, "ONE").await;
    let second = provider.sign_in(2, "TWO").await;
    let never_used = provider.sign_in(3, "THREE").await;
    assert_eq!(never_used.split('-').nth(2), Some("3"));

    let (_, tokens) = provider.exchange(&first, VERIFIER).await;
    provider.exchange(&first, VERIFIER).await; // replay
    provider.exchange(&second, &"y".repeat(43)).await; // wrong verifier
    let (_, refreshed) = provider.refresh(text(&tokens["refresh_token"])).await;
    provider.refresh(text(&tokens["refresh_token"])).await; // reuse
    provider.refresh(text(&refreshed["refresh_token"])).await;
    provider
        .token(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", "wrong"),
            ("refresh_token", "x"),
        ])
        .await; // invalid_client, not a rejected grant

    assert_eq!(
        provider.sandbox.stats(),
        SandboxStats {
            codes_issued: 3,
            codes_redeemed: 1,
            refreshes: 2,
            rejected_grants: 3,
        }
    );
}

#[test]
fn an_expired_code_is_refused_and_purged_when_the_next_one_is_issued() {
    let grant = CodeGrant {
        client_id: CLIENT_ID.to_owned(),
        redirect_uri: REDIRECT_URI.to_owned(),
        code_challenge: CHALLENGE.to_owned(),
        seller: Seller {
            user_id: 1,
            nickname: "A".to_owned(),
        },
    };
    let start = Instant::now();
    let mut registry = Registry::default();
    registry.issue_code("old".to_owned(), grant.clone(), start);
    registry.issue_code("fresh".to_owned(), grant.clone(), start);
    let just_valid = start + Duration::from_secs(599);
    assert_eq!(
        registry
            .spend_code("fresh", just_valid)
            .unwrap()
            .seller
            .user_id,
        1
    );

    let later = start + Duration::from_secs(600);
    assert_eq!(
        registry.spend_code("old", later).unwrap_err(),
        "code expired"
    );
    assert_eq!(registry.code_count(), 2);
    registry.issue_code("new".to_owned(), grant, later);
    assert_eq!(registry.code_count(), 1, "only the new code is left");
    assert_eq!(
        registry.spend_code("old", later).unwrap_err(),
        "unknown code"
    );
}

#[test]
fn access_tokens_are_stamped_in_brasilia_time() {
    let at = |unix_secs| UNIX_EPOCH + Duration::from_secs(unix_secs);
    // The fixture's tokens: 2024-11-20 17:40 UTC is 14:40 in Brasília.
    assert_eq!(credentials::month_day_hour(at(1_732_124_426)), "112014");
    // 2025-01-01 02:00 UTC is still New Year's Eve there.
    assert_eq!(credentials::month_day_hour(at(1_735_696_800)), "123123");
    // 2024-02-29 12:00 UTC.
    assert_eq!(credentials::month_day_hour(at(1_709_208_000)), "022909");
}

#[test]
fn a_non_numeric_client_id_still_gives_a_numeric_app_number() {
    assert_eq!(
        credentials::app_number("2069392825111111"),
        "2069392825111111"
    );
    let derived = credentials::app_number("sellerhub-local");
    assert!(!derived.is_empty() && derived.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(derived, credentials::app_number("sellerhub-local"));
    assert_ne!(derived, credentials::app_number("sellerhub-other"));
}

#[test]
fn pkce_shapes_follow_rfc_7636() {
    assert!(pkce::verifier_matches(VERIFIER, CHALLENGE));
    assert!(!pkce::verifier_matches(&VERIFIER[1..], CHALLENGE));
    assert!(pkce::is_valid_verifier(&"a".repeat(43)));
    assert!(pkce::is_valid_verifier(&"-._~".repeat(32)));
    assert!(!pkce::is_valid_verifier(&"a".repeat(42)));
    assert!(!pkce::is_valid_verifier(&"a".repeat(129)));
    assert!(!pkce::is_valid_verifier(&format!("{}/", "a".repeat(42))));
    assert!(pkce::is_valid_challenge(CHALLENGE));
    assert!(!pkce::is_valid_challenge(&format!("{}.", &CHALLENGE[..42])));
}
