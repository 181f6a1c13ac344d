//! The session token: an HS256 JWT whose claims name the session, the user and the
//! tenant. Verifying it needs no storage; only the revocation check reads.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};

pub const SIGNING_KEY_SECRET: &str = "SESSION_SIGNING_KEY";

/// HS256 keys shorter than the hash are weak (RFC 7518 §3.2).
pub const MIN_KEY_BYTES: usize = 32;

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
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Bad signature, malformed, expired, wrong issuer or algorithm: the token says why
    /// only to our logs, never to the client.
    #[error("invalid session token: {0:?}")]
    Invalid(jsonwebtoken::errors::ErrorKind),
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

    /// The claims of a token we signed that has not expired.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| TokenError::Invalid(error.into_kind()))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;

    use super::*;
    use crate::clock::{Clock, SystemClock};

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn keys() -> SessionKeys {
        SessionKeys::new(&SecretString::from(KEY), "sellerhub").unwrap()
    }

    fn claims(exp_in: i64) -> Claims {
        let now = SystemClock.now_secs();
        Claims {
            iss: "sellerhub".into(),
            sub: "ml:1".into(),
            tenant: "t1".into(),
            sid: "s1".into(),
            jti: "j1".into(),
            iat: now,
            exp: now + exp_in,
        }
    }

    #[test]
    fn a_signed_token_verifies_to_its_claims() {
        let keys = keys();
        let claims = claims(60);
        let token = keys.sign(&claims).unwrap();
        assert_eq!(keys.verify(token.expose_secret()).unwrap(), claims);
    }

    #[test]
    fn expired_tampered_foreign_and_unsigned_tokens_are_refused() {
        let keys = keys();
        let expired = keys.sign(&claims(-1)).unwrap();
        assert!(keys.verify(expired.expose_secret()).is_err());

        let token = keys.sign(&claims(60)).unwrap();
        let token = token.expose_secret();
        let (head_and_body, signature) = token.rsplit_once('.').unwrap();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (head, body) = head_and_body.split_once('.').unwrap();
        let mut tampered: serde_json::Value =
            serde_json::from_slice(&engine.decode(body).unwrap()).unwrap();
        tampered["tenant"] = "someone-else".into();
        let forged = format!(
            "{head}.{}.{signature}",
            engine.encode(serde_json::to_vec(&tampered).unwrap())
        );
        assert!(keys.verify(&forged).is_err());

        let other = SessionKeys::new(&SecretString::from(KEY.repeat(2)), "sellerhub").unwrap();
        assert!(other.verify(token).is_err(), "signed with another key");
        let other_issuer = SessionKeys::new(&SecretString::from(KEY), "elsewhere").unwrap();
        assert!(other_issuer.verify(token).is_err(), "another issuer");

        let none_alg = format!(
            "{}.{body}.",
            engine.encode(br#"{"alg":"none","typ":"JWT"}"#)
        );
        assert!(keys.verify(&none_alg).is_err(), "alg none");
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
