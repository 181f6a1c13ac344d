//! The session token: an HS256 JWT whose claims name the session, the user and the
//! tenant. Verifying it needs no storage; only the revocation check reads. Its times are
//! checked against the caller's clock: valid from `iat` (and `nbf`, if a token ever has
//! one) until just before `exp`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};

pub const SIGNING_KEY_SECRET: &str = "SESSION_SIGNING_KEY";

/// HS256 keys shorter than the hash are weak (RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

/// How far ahead of the verifier's clock a token's `iat` or `nbf` may be: the clocks of
/// the instance that signed it and of the one verifying it differ by a little.
pub const CLOCK_SKEW_SECS: i64 = 5;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user (`ml:<seller id>`).
    pub sub: String,
    pub tenant: String,
    /// The session this token belongs to.
    pub sid: String,
    /// The token's own id: what revocation is keyed on.
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    /// Never set by us: read only so that a token carrying one is held to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Why a token was refused: said only to our logs, never to the client. The text names
/// the reason and never holds the token (nor reads as `token: <value>`, which the log
/// redaction would mask).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, malformed, wrong issuer or algorithm.
    #[error("session token refused ({0:?})")]
    Invalid(jsonwebtoken::errors::ErrorKind),
    #[error("session token refused (expired)")]
    Expired,
    /// `iat` or `nbf` later than now: not signed by us as it claims, or not valid yet.
    #[error("session token refused (not valid yet)")]
    NotYetValid,
    /// A header naming extensions that must be understood (`crit`): we understand none.
    #[error("session token refused (critical header extension)")]
    CriticalHeader,
}

pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    pub fn new(secret: &SecretString, issuer: &str) -> Result<Self, ConfigError> {
        let secret = secret.expose_secret().as_bytes();
        if secret.len() < MIN_KEY_BYTES {
            return Err(ConfigError::Invalid {
                name: SIGNING_KEY_SECRET,
                reason: format!("must be at least {MIN_KEY_BYTES} bytes"),
            });
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // Times are checked by `verify` against the caller's clock, not the system's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        Ok(Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: issuer.to_owned(),
        })
    }

    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Self::new(
            config.secrets.require(SIGNING_KEY_SECRET)?,
            &config.auth.issuer,
        )
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn sign(&self, claims: &Claims) -> Result<SecretString, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map(SecretString::from)
            .map_err(|error| TokenError::Invalid(error.into_kind()))
    }

    /// The claims of a token we signed that is valid at `now` (seconds): issued no later
    /// than now (give or take [`CLOCK_SKEW_SECS`]) and expiring after it.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| TokenError::Invalid(error.into_kind()))?;
        if data.header.crit.is_some() {
            return Err(TokenError::CriticalHeader);
        }
        let claims = data.claims;
        let not_before = claims.nbf.map_or(claims.iat, |nbf| nbf.max(claims.iat));
        if not_before > now.saturating_add(CLOCK_SKEW_SECS) {
            return Err(TokenError::NotYetValid);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::telemetry::redact::redact_text;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_800_000_000;

    fn keys() -> SessionKeys {
        SessionKeys::new(&SecretString::from(KEY), "sellerhub").unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        Claims {
            iss: "sellerhub".into(),
            sub: "ml:1".into(),
            tenant: "t1".into(),
            sid: "s1".into(),
            jti: "j1".into(),
            iat: NOW,
            exp: NOW + exp_in,
            nbf: None,
        }
    }

    const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

    /// A token with `header` and `claims`, signed with `KEY` as ours are.
    fn signed_raw(header: &serde_json::Value, claims: &serde_json::Value) -> String {
        let signing_input = format!(
            "{}.{}",
            ENGINE.encode(serde_json::to_vec(header).unwrap()),
            ENGINE.encode(serde_json::to_vec(claims).unwrap())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, KEY.as_bytes());
        let signature = aws_lc_rs::hmac::sign(&key, signing_input.as_bytes());
        format!("{signing_input}.{}", ENGINE.encode(signature.as_ref()))
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let keys = keys();
        let claims = claims(60);
        let token = keys.sign(&claims).unwrap();
        assert_eq!(keys.verify(token.expose_secret(), NOW).unwrap(), claims);
        // The raw signer above signs as `sign` does.
        let raw = signed_raw(
            &serde_json::json!({"typ": "JWT", "alg": "HS256"}),
            &serde_json::to_value(&claims).unwrap(),
        );
        assert_eq!(keys.verify(&raw, NOW).unwrap(), claims);
    }

    #[test]
    fn a_token_is_valid_until_just_before_its_expiry_by_the_callers_clock() {
        let keys = keys();
        let token = keys.sign(&claims(60)).unwrap();
        let token = token.expose_secret();
        assert!(keys.verify(token, NOW + 59).is_ok());
        assert!(matches!(
            keys.verify(token, NOW + 60),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            keys.verify(token, NOW + 61),
            Err(TokenError::Expired)
        ));
    }

    #[test]
    fn a_token_from_the_future_is_refused() {
        let keys = keys();
        let token = keys.sign(&claims(60)).unwrap();
        let token = token.expose_secret();
        // Issued a little ahead of this instance's clock: another instance's skew.
        assert!(keys.verify(token, NOW - CLOCK_SKEW_SECS).is_ok());
        assert!(matches!(
            keys.verify(token, NOW - CLOCK_SKEW_SECS - 1),
            Err(TokenError::NotYetValid)
        ));

        let mut not_before = serde_json::to_value(claims(600)).unwrap();
        not_before["nbf"] = (NOW + 300).into();
        let token = signed_raw(&serde_json::json!({"alg": "HS256"}), &not_before);
        assert!(matches!(
            keys.verify(&token, NOW),
            Err(TokenError::NotYetValid)
        ));
        assert!(keys.verify(&token, NOW + 300).is_ok());
    }

    #[test]
    fn a_token_with_critical_header_extensions_is_refused() {
        let claims = serde_json::to_value(claims(60)).unwrap();
        let token = signed_raw(
            &serde_json::json!({"alg": "HS256", "crit": ["exp"]}),
            &claims,
        );
        assert!(matches!(
            keys().verify(&token, NOW),
            Err(TokenError::CriticalHeader)
        ));
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_refused() {
        let keys = keys();
        let token = keys.sign(&claims(60)).unwrap();
        let token = token.expose_secret();
        let (head_and_body, signature) = token.rsplit_once('.').unwrap();
        let (head, body) = head_and_body.split_once('.').unwrap();
        let mut tampered: serde_json::Value =
            serde_json::from_slice(&ENGINE.decode(body).unwrap()).unwrap();
        tampered["tenant"] = "someone-else".into();
        let forged = format!(
            "{head}.{}.{signature}",
            ENGINE.encode(serde_json::to_vec(&tampered).unwrap())
        );
        assert!(keys.verify(&forged, NOW).is_err());

        let other = SessionKeys::new(&SecretString::from(KEY.repeat(2)), "sellerhub").unwrap();
        assert!(other.verify(token, NOW).is_err(), "signed with another key");
        let other_issuer = SessionKeys::new(&SecretString::from(KEY), "elsewhere").unwrap();
        assert!(other_issuer.verify(token, NOW).is_err(), "another issuer");

        let none_alg = format!(
            "{}.{body}.",
            ENGINE.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(keys.verify(&none_alg, NOW).is_err(), "alg none");
    }

    #[test]
    fn the_logged_reason_survives_the_redaction_and_the_token_does_not_appear() {
        let keys = keys();
        let token = keys.sign(&claims(60)).unwrap();
        let expired = keys.verify(token.expose_secret(), NOW + 60).unwrap_err();
        let forged = keys
            .verify(&format!("{}x", token.expose_secret()), NOW)
            .unwrap_err();
        for (error, reason) in [(expired, "expired"), (forged, "InvalidSignature")] {
            let logged = redact_text(&error.to_string()).into_owned();
            assert!(logged.contains(reason), "{logged}");
            assert!(!logged.contains("[REDACTED]"), "{logged}");
            assert!(!logged.contains(token.expose_secret()), "{logged}");
        }
    }

    #[test]
    fn a_short_key_is_refused_naming_its_secret() {
        let error = SessionKeys::new(&SecretString::from("short"), "sellerhub").unwrap_err();
        assert!(error.to_string().contains(SIGNING_KEY_SECRET), "{error}");
    }

    #[test]
    fn debug_never_shows_the_key() {
        assert!(!format!("{:?}", keys()).contains(KEY));
    }
}
