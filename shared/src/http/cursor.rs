//! The list endpoints' pages: `limit` (default 20, at most 50: a larger one is clamped)
//! and an opaque `cursor` the client hands back for the next page.
//!
//! A cursor is the store's position (`store::Cursor`, which names keys) sealed with an
//! HMAC-SHA256 under CURSOR_SIGNING_KEY over the position, its expiry and its scope: the
//! tenant, the route and the filters of the query that made it. A client can neither
//! forge a position into another tenant's keys nor reuse a cursor with another tenant,
//! route or filter; each of those, an expired cursor and a tampered one are a 400.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::Request;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ApiError, query_param};
use crate::store::{self, EpochSeconds};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 50;
/// How long a cursor can be used: a page left open this long starts over.
pub const CURSOR_TTL_SECS: EpochSeconds = 3600;
/// The shortest CURSOR_SIGNING_KEY accepted, in bytes.
const MIN_KEY_BYTES: usize = 32;

/// What a cursor is good for: one tenant's walk of one route with one set of filters.
pub struct Scope<'a> {
    pub tenant: &'a str,
    /// The route, e.g. `GET /v1/questions`.
    pub route: &'a str,
    /// The query's filters in one canonical text (e.g. `status=UNANSWERED`), including
    /// any path parameter that selects what is listed.
    pub filters: &'a str,
}

/// One page asked for.
#[derive(Debug, PartialEq)]
pub struct PageRequest {
    pub limit: usize,
    /// Where the walk goes on; None for the first page.
    pub after: Option<store::Cursor>,
}

#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(rename = "p")]
    position: store::Cursor,
    #[serde(rename = "x")]
    expires_at: EpochSeconds,
}

/// Seals and opens cursors.
pub struct Cursors {
    key: hmac::Key,
}

#[derive(Debug, thiserror::Error)]
#[error("CURSOR_SIGNING_KEY must be at least {MIN_KEY_BYTES} bytes")]
pub struct WeakCursorKey;

impl Cursors {
    pub fn new(secret: &SecretString) -> Result<Self, WeakCursorKey> {
        let secret = secret.expose_secret().as_bytes();
        if secret.len() < MIN_KEY_BYTES {
            return Err(WeakCursorKey);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The page `request` asks for in `scope`: its `limit` and `cursor` parameters.
    pub fn page_request(
        &self,
        request: &Request,
        scope: &Scope<'_>,
        now: EpochSeconds,
    ) -> Result<PageRequest, ApiError> {
        let limit = match query_param(request, "limit") {
            None => DEFAULT_LIMIT,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if limit >= 1 => limit.min(MAX_LIMIT),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT} (larger ones are \
                         clamped to {MAX_LIMIT})"
                    )));
                }
            },
        };
        let after = query_param(request, "cursor")
            .map(|text| self.open(&text, scope, now))
            .transpose()?;
        Ok(PageRequest { limit, after })
    }

    /// A list response: `items`, `has_more`, and the `next_cursor` that goes on after
    /// `next` (the store page's position; null at the end).
    pub fn page_body(
        &self,
        items: Vec<serde_json::Value>,
        next: Option<&store::Cursor>,
        scope: &Scope<'_>,
        now: EpochSeconds,
    ) -> serde_json::Value {
        serde_json::json!({
            "items": items,
            "has_more": next.is_some(),
            "next_cursor": next.map(|position| self.seal(position, scope, now)),
        })
    }

    /// The cursor a client hands back to go on after `position`, in `scope`.
    pub fn seal(&self, position: &store::Cursor, scope: &Scope<'_>, now: EpochSeconds) -> String {
        let sealed = Sealed {
            position: position.clone(),
            expires_at: now + CURSOR_TTL_SECS,
        };
        // A cursor is keys and a number: serialising it cannot fail.
        let payload = serde_json::to_vec(&sealed).unwrap_or_default();
        let tag = hmac::sign(&self.key, &signed_text(scope, &payload));
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }

    /// The position `text` seals, if this service sealed it for `scope` and it has not
    /// expired.
    pub fn open(
        &self,
        text: &str,
        scope: &Scope<'_>,
        now: EpochSeconds,
    ) -> Result<store::Cursor, ApiError> {
        let refused = |why: &str| ApiError::BadRequest(format!("invalid cursor: {why}"));
        let (payload, tag) = text
            .split_once('.')
            .ok_or_else(|| refused("not a cursor this API made"))?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| refused("not a cursor this API made"))?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| refused("not a cursor this API made"))?;
        hmac::verify(&self.key, &signed_text(scope, &payload), &tag)
            .map_err(|_| refused("it was not made for this list, or it was altered"))?;
        let sealed: Sealed =
            serde_json::from_slice(&payload).map_err(|_| refused("not a cursor this API made"))?;
        if sealed.expires_at <= now {
            return Err(refused("it expired; start again from the first page"));
        }
        Ok(sealed.position)
    }
}

/// What the tag covers: the scope's parts, each length-prefixed so that no two scopes
/// read the same, then the payload.
fn signed_text(scope: &Scope<'_>, payload: &[u8]) -> Vec<u8> {
    let mut text = Vec::with_capacity(payload.len() + 64);
    for part in [scope.tenant, scope.route, scope.filters] {
        text.extend_from_slice(&(part.len() as u64).to_be_bytes());
        text.extend_from_slice(part.as_bytes());
    }
    text.extend_from_slice(payload);
    text
}

#[cfg(test)]
mod tests {
    use lambda_http::{Body, RequestExt};

    use super::*;
    use crate::store::Key;

    const NOW: EpochSeconds = 1_800_000_000;

    fn cursors() -> Cursors {
        Cursors::new(&SecretString::from("k".repeat(32))).unwrap()
    }

    fn position() -> store::Cursor {
        store::Cursor {
            key: Key::new("TENANT#t1", "QUESTION#7"),
            gsi1: Some(Key::new(
                "TENANT#t1#QUESTIONS#UNANSWERED",
                "0000000000001#7",
            )),
        }
    }

    fn scope<'a>(tenant: &'a str, filters: &'a str) -> Scope<'a> {
        Scope {
            tenant,
            route: "GET /v1/questions",
            filters,
        }
    }

    fn request(query: &[(&str, &str)]) -> Request {
        let query: std::collections::HashMap<String, String> = query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        http::Request::builder()
            .uri("/v1/questions")
            .body(Body::Empty)
            .unwrap()
            .with_query_string_parameters(query)
    }

    #[test]
    fn a_cursor_opens_in_its_own_scope_until_it_expires() {
        let cursors = cursors();
        let text = cursors.seal(&position(), &scope("t1", "status=A"), NOW);
        assert_eq!(
            cursors
                .open(&text, &scope("t1", "status=A"), NOW + 10)
                .unwrap(),
            position()
        );
        let expired = cursors.open(&text, &scope("t1", "status=A"), NOW + CURSOR_TTL_SECS);
        assert!(matches!(expired, Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn another_tenant_route_filter_key_or_an_altered_cursor_is_refused() {
        let cursors = cursors();
        let text = cursors.seal(&position(), &scope("t1", "status=A"), NOW);
        let other_route = Scope {
            tenant: "t1",
            route: "GET /v1/conversations",
            filters: "status=A",
        };
        let other_key = Cursors::new(&SecretString::from("j".repeat(32))).unwrap();
        let (payload, tag) = text.split_once('.').unwrap();
        let mut forged: Vec<u8> = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let at = forged.iter().position(|b| *b == b'1').unwrap();
        forged[at] = b'2';
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(forged));
        for (what, result) in [
            ("tenant", cursors.open(&text, &scope("t2", "status=A"), NOW)),
            (
                "filters",
                cursors.open(&text, &scope("t1", "status=B"), NOW),
            ),
            // The parts are delimited: moving text between them changes the tag.
            ("split", cursors.open(&text, &scope("t1s", "tatus=A"), NOW)),
            ("route", cursors.open(&text, &other_route, NOW)),
            ("key", other_key.open(&text, &scope("t1", "status=A"), NOW)),
            (
                "altered",
                cursors.open(&forged, &scope("t1", "status=A"), NOW),
            ),
            (
                "garbage",
                cursors.open("x.y", &scope("t1", "status=A"), NOW),
            ),
            ("empty", cursors.open("", &scope("t1", "status=A"), NOW)),
        ] {
            assert!(matches!(result, Err(ApiError::BadRequest(_))), "{what}");
        }
    }

    #[test]
    fn limits_default_clamp_and_refuse_what_is_not_a_count() {
        let cursors = cursors();
        let page =
            |query: &[(&str, &str)]| cursors.page_request(&request(query), &scope("t1", ""), NOW);
        assert_eq!(page(&[]).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(page(&[("limit", "7")]).unwrap().limit, 7);
        assert_eq!(page(&[("limit", "500")]).unwrap().limit, MAX_LIMIT);
        for bad in ["0", "-1", "ten", "", "1.5"] {
            assert!(
                matches!(page(&[("limit", bad)]), Err(ApiError::BadRequest(_))),
                "{bad}"
            );
        }
        let text = cursors.seal(&position(), &scope("t1", ""), NOW);
        assert_eq!(page(&[("cursor", &text)]).unwrap().after, Some(position()));
        assert!(page(&[("cursor", "nope")]).is_err());
    }

    #[test]
    fn a_short_key_is_refused() {
        assert!(Cursors::new(&SecretString::from("short")).is_err());
    }
}
