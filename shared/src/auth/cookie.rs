//! Our cookies: the session, and the login in progress that binds a callback to the
//! browser that started it. Both are HttpOnly (no script reads them), Secure, SameSite=Lax
//! (not sent on cross-site POSTs, sent on the provider's redirect back) and `__Host-`
//! prefixed: the browser accepts them only from our own host, for Path=/, so no sibling
//! subdomain can plant one.

use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

pub const SESSION_COOKIE: &str = "__Host-sellerhub_session";

/// Holds a hash of the state of the login this browser started.
pub const LOGIN_COOKIE: &str = "__Host-sellerhub_login";

/// A request carried the same cookie more than once: we take neither rather than guess.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the request carries the {0} cookie more than once")]
pub struct DuplicateCookie(pub &'static str);

/// Set-Cookie for a session token that lives `max_age`.
pub fn session_cookie(token: &SecretString, max_age: Duration) -> HeaderValue {
    header(SESSION_COOKIE, token.expose_secret(), max_age)
}

/// Set-Cookie that removes the session cookie.
pub fn cleared_cookie() -> HeaderValue {
    header(SESSION_COOKIE, "", Duration::ZERO)
}

/// Set-Cookie for the login this browser starts, `binding` tying it to its state.
pub fn login_cookie(binding: &str, max_age: Duration) -> HeaderValue {
    header(LOGIN_COOKIE, binding, max_age)
}

/// Set-Cookie that removes the login cookie once its login is over.
pub fn cleared_login_cookie() -> HeaderValue {
    header(LOGIN_COOKIE, "", Duration::ZERO)
}

fn header(name: &'static str, value: &str, max_age: Duration) -> HeaderValue {
    let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
    let cookie = Cookie::build((name, value))
        .max_age(cookie::time::Duration::seconds(max_age))
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Lax)
        .path("/")
        .build();
    // A JWT, a base64url digest and our fixed attributes are always valid header text.
    HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The session cookie's value among a request's `Cookie` headers.
pub fn session_from<'a>(
    cookie_headers: impl Iterator<Item = &'a HeaderValue>,
) -> Result<Option<String>, DuplicateCookie> {
    single(cookie_headers, SESSION_COOKIE)
}

/// The login cookie's value among a request's `Cookie` headers.
pub fn login_from<'a>(
    cookie_headers: impl Iterator<Item = &'a HeaderValue>,
) -> Result<Option<String>, DuplicateCookie> {
    single(cookie_headers, LOGIN_COOKIE)
}

/// The one non-empty value of cookie `name`, if the request carries it.
fn single<'a>(
    cookie_headers: impl Iterator<Item = &'a HeaderValue>,
    name: &'static str,
) -> Result<Option<String>, DuplicateCookie> {
    let mut values = cookie_headers
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .filter(|cookie| cookie.name() == name && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_owned());
    let first = values.next();
    if values.next().is_some() {
        return Err(DuplicateCookie(name));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_cookies_are_host_only_httponly_secure_lax() {
        let session = session_cookie(&SecretString::from("a.b.c"), Duration::from_secs(3600));
        let login = login_cookie("digest", Duration::from_secs(600));
        for (value, starts, max_age) in [
            (&session, "__Host-sellerhub_session=a.b.c;", "Max-Age=3600"),
            (&login, "__Host-sellerhub_login=digest;", "Max-Age=600"),
        ] {
            let text = value.to_str().unwrap();
            assert!(text.starts_with(starts), "{text}");
            for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/", max_age] {
                assert!(text.contains(attribute), "{attribute} missing from {text}");
            }
            // `__Host-` cookies must not name a domain (browsers drop them otherwise).
            assert!(!text.contains("Domain"), "{text}");
        }
        for cleared in [cleared_cookie(), cleared_login_cookie()] {
            assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
        }
    }

    #[test]
    fn the_session_is_found_among_other_cookies() {
        let headers = [
            HeaderValue::from_static("theme=dark; __Host-sellerhub_session=x.y.z"),
            HeaderValue::from_static("other=1; __Host-sellerhub_login=l"),
        ];
        assert_eq!(
            session_from(headers.iter()).unwrap().as_deref(),
            Some("x.y.z")
        );
        assert_eq!(login_from(headers.iter()).unwrap().as_deref(), Some("l"));
        let none = [HeaderValue::from_static(
            "__Host-sellerhub_session=; sellerhub_session=old",
        )];
        assert_eq!(session_from(none.iter()), Ok(None));
    }

    #[test]
    fn two_session_cookies_are_refused_rather_than_one_taken() {
        let in_one_header = [HeaderValue::from_static(
            "__Host-sellerhub_session=mine; __Host-sellerhub_session=planted",
        )];
        let in_two_headers = [
            HeaderValue::from_static("__Host-sellerhub_session=mine"),
            HeaderValue::from_static("__Host-sellerhub_session=planted"),
        ];
        for headers in [&in_one_header[..], &in_two_headers[..]] {
            assert_eq!(
                session_from(headers.iter()),
                Err(DuplicateCookie(SESSION_COOKIE))
            );
        }
    }
}
