//! A browser's part of "Sign in with Mercado Livre" against the sandbox provider: read
//! the consent page, fill its form, click a button. Redirects are followed by hand so
//! every step can be checked.

use std::collections::BTreeMap;

use reqwest::Url;

use crate::local_runner::LocalRunner;

/// A client like a browser's, except that it never follows redirects by itself.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// [`browser`], connecting from loopback address `ip` (any of 127.0.0.0/8): a client
/// the runner sees at an address of its own.
pub fn browser_at(ip: std::net::Ipv4Addr) -> reqwest::Client {
    assert!(ip.is_loopback(), "{ip}");
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(std::net::IpAddr::V4(ip))
        .build()
        .expect("an HTTP client")
}

/// The `Location` of a redirect, resolved against the request's URL.
pub fn location(response: &reqwest::Response) -> Url {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("no Location on a {} answer", response.status()))
        .to_str()
        .expect("a text Location");
    response.url().join(location).expect("a valid Location")
}

/// The consent page's form: where it posts and its fields' initial values.
pub struct ConsentForm {
    pub action: Url,
    pub fields: BTreeMap<String, String>,
}

/// Reads the consent page at `authorize_url`, checking it will not submit itself.
pub async fn open_consent(browser: &reqwest::Client, authorize_url: &Url) -> ConsentForm {
    let response = browser.get(authorize_url.clone()).send().await.unwrap();
    assert_eq!(response.status(), 200, "the consent page");
    let page = response.text().await.unwrap();
    let lowered = page.to_lowercase();
    for auto in ["<script", "http-equiv=\"refresh\"", "onload", ".submit("] {
        assert!(
            !lowered.contains(auto),
            "the consent page must not submit itself ({auto})"
        );
    }
    let form_start = page.find("<form").expect("a form");
    let form_tag = &page[form_start..page[form_start..].find('>').unwrap() + form_start];
    let action = attribute(form_tag, "action").expect("a form action");
    let mut fields = BTreeMap::new();
    let mut rest = &page[form_start..];
    while let Some(start) = rest.find("<input") {
        let end = rest[start..].find('>').unwrap() + start;
        let tag = &rest[start..end];
        if let Some(name) = attribute(tag, "name") {
            fields.insert(name, attribute(tag, "value").unwrap_or_default());
        }
        rest = &rest[end..];
    }
    ConsentForm {
        action: authorize_url.join(&action).unwrap(),
        fields,
    }
}

/// Clicks `decision` ("allow" or "deny") as seller `user_id`; the provider's redirect
/// back to our callback.
pub async fn decide(
    browser: &reqwest::Client,
    form: &ConsentForm,
    user_id: u64,
    nickname: &str,
    decision: &str,
) -> Url {
    let mut fields = form.fields.clone();
    fields.insert("user_id".into(), user_id.to_string());
    fields.insert("nickname".into(), nickname.into());
    fields.insert("decision".into(), decision.into());
    let response = browser
        .post(form.action.clone())
        .form(&fields)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302, "the provider redirects back");
    location(&response)
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The sandbox provider served on 127.0.0.1 (for tests that run without the local
/// runner): the provider, and its base URL (API and authorization host alike).
pub async fn serve_sandbox(
    settings: local::sandbox::SandboxSettings,
) -> (std::sync::Arc<local::sandbox::Sandbox>, String) {
    let sandbox = local::sandbox::Sandbox::new(settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = sandbox.router();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (sandbox, base)
}

/// Seller `seller` authorizes `login` at the provider: the authorization code.
pub async fn authorization_code(
    login: &shared::auth::login::LoginRequest,
    auth_url: &Url,
    client_id: &str,
    redirect_uri: &str,
    seller: u64,
) -> String {
    let authorize = login.authorize_url(auth_url, client_id, redirect_uri);
    let browser = browser();
    let form = open_consent(&browser, &authorize).await;
    let callback = decide(&browser, &form, seller, "SELLER", "allow").await;
    callback
        .query_pairs()
        .find(|(name, _)| name == "code")
        .expect("a code")
        .1
        .into_owned()
}

// ------------------------------------------------------------------ against the local runner

/// The value a response sets for cookie `name`, unless it clears it.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.strip_prefix(&prefix))
        .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
        .find(|value| !value.is_empty())
}

/// The session cookie a response sets (its value), if any.
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    set_cookie(response, shared::auth::cookie::SESSION_COOKIE)
}

/// A login started at the runner: the provider's authorize URL, and the login cookie
/// the browser that started it now holds.
pub struct Login {
    pub authorize: Url,
    pub cookie: String,
}

/// GET /auth/login from `client`.
pub async fn start_login(runner: &LocalRunner, client: &reqwest::Client) -> Login {
    let response = client.get(runner.url("/auth/login")).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let cookie = set_cookie(&response, shared::auth::cookie::LOGIN_COOKIE)
        .expect("the login binds the browser with a cookie");
    Login {
        authorize: location(&response),
        cookie,
    }
}

/// The provider's redirect back to our callback (code and state), with the login cookie
/// of the browser that started the login.
pub struct Callback {
    pub url: Url,
    pub cookie: String,
}

impl Callback {
    /// Opens the callback in the browser that started the login.
    pub async fn open(&self, client: &reqwest::Client) -> reqwest::Response {
        self.open_with(client, Some(&self.cookie)).await
    }

    /// Opens the callback with `cookie` as the login cookie (None: without one).
    pub async fn open_with(
        &self,
        client: &reqwest::Client,
        cookie: Option<&str>,
    ) -> reqwest::Response {
        let mut request = client.get(self.url.clone());
        if let Some(cookie) = cookie {
            request = request.header(
                reqwest::header::COOKIE,
                format!("{}={cookie}", shared::auth::cookie::LOGIN_COOKIE),
            );
        }
        request.send().await.unwrap()
    }

    /// The value of the callback's query parameter `name`.
    pub fn param(&self, name: &str) -> String {
        self.url
            .query_pairs()
            .find(|(key, _)| key == name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.url))
            .1
            .into_owned()
    }
}

/// Login up to the provider's redirect back.
pub async fn consent(runner: &LocalRunner, client: &reqwest::Client, seller: u64) -> Callback {
    let login = start_login(runner, client).await;
    let form = open_consent(client, &login.authorize).await;
    Callback {
        url: decide(client, &form, seller, "SELLER_ONE", "allow").await,
        cookie: login.cookie,
    }
}

/// A whole login: the session token.
pub async fn sign_in(runner: &LocalRunner, client: &reqwest::Client, seller: u64) -> String {
    let callback = consent(runner, client, seller).await;
    let response = callback.open(client).await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    session_cookie(&response).expect("a session cookie")
}
