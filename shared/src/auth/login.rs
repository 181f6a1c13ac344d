//! A login in progress: the one-time `state` and the PKCE verifier, kept for ten
//! minutes and taken exactly once by the callback; and the browser binding that lets only
//! the browser that started a login complete it (RFC 6749 §10.12: otherwise a callback
//! URL an attacker got for their own account signs in whoever opens it).

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::store::{Condition, EpochSeconds, Item, Key, Store, StoreError, StoreResult};

/// How long a login may take from GET /auth/login to the callback.
pub const LOGIN_TTL_SECS: i64 = 600;

/// [`LOGIN_TTL_SECS`], for the login cookie's lifetime.
pub const LOGIN_TTL: Duration = Duration::from_secs(LOGIN_TTL_SECS as u64);

/// 32 random bytes: 256 bits of state, and a 43-character verifier (RFC 7636 §4.1).
const RANDOM_BYTES: usize = 32;

/// A login's secrets, made by [`LoginRequest::new`].
pub struct LoginRequest {
    pub state: String,
    pub verifier: SecretString,
}

impl LoginRequest {
    pub fn new() -> Self {
        Self {
            state: super::random_token(RANDOM_BYTES),
            verifier: SecretString::from(super::random_token(RANDOM_BYTES)),
        }
    }

    /// The S256 code challenge: base64url(SHA-256(verifier)).
    pub fn challenge(&self) -> String {
        challenge(self.verifier.expose_secret())
    }

    /// What the browser starting this login keeps in its login cookie.
    pub fn browser_binding(&self) -> String {
        browser_binding(&self.state)
    }

    /// The provider's authorize URL for this login.
    pub fn authorize_url(
        &self,
        auth_url: &reqwest::Url,
        client_id: &str,
        redirect_uri: &str,
    ) -> reqwest::Url {
        let mut url = auth_url.clone();
        let path = format!("{}/authorization", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", &self.state)
            .append_pair("code_challenge", &self.challenge())
            .append_pair("code_challenge_method", "S256");
        url
    }
}

impl Default for LoginRequest {
    fn default() -> Self {
        Self::new()
    }
}

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// base64url(SHA-256(state)): the login cookie's value. Only a browser that was sent the
/// cookie has it, and a `__Host-` cookie cannot be planted by another site or subdomain.
fn browser_binding(state: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, state.as_bytes()))
}

/// Whether the login cookie a callback came with (`cookie`) belongs to the login `state`
/// names. Compared in constant time.
pub fn binds(state: &str, cookie: &str) -> bool {
    verify_slices_are_equal(browser_binding(state).as_bytes(), cookie.as_bytes()).is_ok()
}

/// Whether `code` can be a Mercado Livre authorization code (`TG-` then letters, digits
/// and dashes: `TG-<hex>-<user id>`). Anything else is refused without a call, so
/// garbage spends none of the budget.
pub fn looks_like_code(code: &str) -> bool {
    code.strip_prefix("TG-").is_some_and(|rest| {
        !rest.is_empty()
            && code.len() <= 100
            && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// What the callback needs of the login it completes.
#[derive(Serialize, Deserialize)]
pub struct PendingLogin {
    #[serde(serialize_with = "expose")]
    pub verifier: SecretString,
    pub return_to: String,
}

fn expose<S: serde::Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

fn key(state: &str) -> Key {
    Key::new(format!("LOGIN#{state}"), "LOGIN")
}

/// The logins in progress: each kept until its callback takes it, or it expires.
#[derive(Clone)]
pub struct Logins {
    store: Arc<dyn Store>,
}

impl Logins {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Keeps `request` for [`LOGIN_TTL_SECS`] from `now`.
    pub async fn save(
        &self,
        request: &LoginRequest,
        return_to: &str,
        now: EpochSeconds,
    ) -> StoreResult<()> {
        let pending = PendingLogin {
            verifier: request.verifier.clone(),
            return_to: return_to.to_owned(),
        };
        let data = serde_json::to_value(&pending)
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        let item = Item::new(key(&request.state), data).expiring_at(now + LOGIN_TTL_SECS);
        self.store.put(item, Condition::Absent).await
    }

    /// The login `state` names, removed so no one can complete it again; None when it is
    /// unknown, expired or already taken.
    pub async fn take(&self, state: &str) -> StoreResult<Option<PendingLogin>> {
        if !looks_like_state(state) {
            return Ok(None);
        }
        match self.store.delete(&key(state), Condition::Present).await {
            Ok(Some(item)) => serde_json::from_value(item.data)
                .map(Some)
                .map_err(|error| StoreError::Corrupt(format!("login state: {error}"))),
            Ok(None) | Err(StoreError::ConditionFailed { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }
}

/// Our states are 43 base64url characters; anything else is not worth a storage call.
fn looks_like_state(state: &str) -> bool {
    state.len() == 43
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::store::embedded::EmbeddedStore;

    fn logins() -> (tempfile::TempDir, Logins) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        (dir, Logins::new(Arc::new(store)))
    }

    #[test]
    fn state_and_verifier_are_256_random_bits_and_the_challenge_is_s256() {
        let a = LoginRequest::new();
        let b = LoginRequest::new();
        assert_eq!(a.state.len(), 43);
        assert_eq!(a.verifier.expose_secret().len(), 43);
        assert_ne!(a.state, b.state);
        assert_ne!(a.verifier.expose_secret(), b.verifier.expose_secret());
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_authorize_url_carries_the_pkce_challenge() {
        let request = LoginRequest::new();
        let url = request.authorize_url(
            &"https://auth.mercadolivre.com.br".parse().unwrap(),
            "123",
            "https://api.example.com/auth/callback",
        );
        assert_eq!(url.path(), "/authorization");
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["client_id"], "123");
        assert_eq!(
            pairs["redirect_uri"],
            "https://api.example.com/auth/callback"
        );
        assert_eq!(pairs["state"], request.state);
        assert_eq!(pairs["code_challenge"], request.challenge());
        assert_eq!(pairs["code_challenge_method"], "S256");
        assert!(!url.as_str().contains(request.verifier.expose_secret()));
    }

    #[test]
    fn only_the_browser_that_started_a_login_holds_its_binding() {
        let login = LoginRequest::new();
        let other = LoginRequest::new();
        let cookie = login.browser_binding();
        assert_eq!(cookie.len(), 43);
        assert!(!cookie.contains(&login.state));
        assert!(binds(&login.state, &cookie));
        assert!(!binds(&other.state, &cookie));
        assert!(!binds(&login.state, &other.browser_binding()));
        assert!(!binds(&login.state, ""));
        assert!(!binds(&login.state, &login.state));
    }

    #[test]
    fn only_code_shaped_codes_are_worth_a_call() {
        for code in [
            "TG-6744a1b2c3d4e5f60718293a-468424240",
            "TG-0123456789abcdef0123456789abcdef-42",
        ] {
            assert!(looks_like_code(code), "{code}");
        }
        let long = format!("TG-{}", "a".repeat(98));
        for code in [
            "",
            "TG-",
            "garbage",
            "tg-6744a1b2c3d4e5f60718293a-1",
            "APP_USR-1-2-3",
            "TG-abc def",
            "TG-abc%00",
            "TG-<script>",
            long.as_str(),
        ] {
            assert!(!looks_like_code(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_state_is_taken_exactly_once() {
        let (_dir, logins) = logins();
        let request = LoginRequest::new();
        let now = SystemClock.now_secs();
        logins.save(&request, "/inbox", now).await.unwrap();

        let pending = logins.take(&request.state).await.unwrap().unwrap();
        assert_eq!(pending.return_to, "/inbox");
        assert_eq!(
            pending.verifier.expose_secret(),
            request.verifier.expose_secret()
        );
        assert!(logins.take(&request.state).await.unwrap().is_none());
        assert!(logins.take("not-a-state").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn concurrent_callbacks_with_one_state_let_only_one_through() {
        let (_dir, logins) = logins();
        let request = LoginRequest::new();
        logins
            .save(&request, "/", SystemClock.now_secs())
            .await
            .unwrap();
        let takes = (0..8).map(|_| {
            let logins = logins.clone();
            let state = request.state.clone();
            tokio::spawn(async move { logins.take(&state).await.unwrap().is_some() })
        });
        let mut taken = 0;
        for handle in takes {
            taken += usize::from(handle.await.unwrap());
        }
        assert_eq!(taken, 1);
    }

    #[tokio::test]
    async fn an_expired_state_is_gone() {
        let (_dir, logins) = logins();
        let request = LoginRequest::new();
        let long_ago = SystemClock.now_secs() - LOGIN_TTL_SECS - 1;
        logins.save(&request, "/", long_ago).await.unwrap();
        assert!(logins.take(&request.state).await.unwrap().is_none());
    }
}
