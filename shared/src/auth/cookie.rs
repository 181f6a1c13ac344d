//! The session cookie: HttpOnly (no script reads it), Secure, SameSite=Lax (not sent on
//! cross-site POSTs), for the whole site.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

pub const SESSION_COOKIE: &str = "sellerhub_session";

/// Set-Cookie for a session token that lives `max_age`.
pub fn session_cookie(token: &SecretString, max_age: Duration) -> HeaderValue {
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    header(
        Cookie::build((SESSION_COOKIE, token.expose_secret().to_owned()))
            .max_age(cookie::time::Duration::seconds(max_age)),
    )
}

/// Set-Cookie that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    header(Cookie::build((SESSION_COOKIE, "")).max_age(cookie::time::Duration::ZERO))
}

fn header(cookie: cookie::CookieBuilder<'static>) -> HeaderValue {
    let cookie = cookie
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    // A JWT and our fixed attributes are always valid header text.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn session_from<'a>(cookie_headers: impl Iterator<Item = &'a HeaderValue>) -> Option<String> {
    cookie_headers
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == SESSION_COOKIE && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_httponly_secure_lax() {
        let value = session_cookie(&SecretString::from("a.b.c"), Duration::from_secs(3600));
        let text = value.to_str().unwrap();
        assert!(text.starts_with("sellerhub_session=a.b.c;"), "{text}");
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(text.contains(attribute), "{attribute} missing from {text}");
        }
        let cleared = cleared_cookie();
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn the_session_is_found_among_other_cookies() {
        let headers = [
            HeaderValue::from_static("theme=dark; sellerhub_session=x.y.z"),
            HeaderValue::from_static("other=1"),
        ];
        assert_eq!(session_from(headers.iter()).as_deref(), Some("x.y.z"));
        let none = [HeaderValue::from_static("sellerhub_session=; a=b")];
        assert_eq!(session_from(none.iter()), None);
    }
}
