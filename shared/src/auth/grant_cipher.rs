//! Encryption at rest of the sellers' Mercado Livre tokens: AES-256-GCM with a random
//! 96-bit nonce per seal, the record's identity as associated data (a sealed grant
//! copied onto another tenant's record does not open), and a key id stored beside each
//! ciphertext so keys can be rotated.
//!
//! GRANT_ENCRYPTION_KEY holds `kid:base64key[,kid:base64key…]`: the first key seals,
//! every listed key opens.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};

pub const KEY_SECRET: &str = "GRANT_ENCRYPTION_KEY";

/// A sealed value as stored: which key, the nonce and the ciphertext with its tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub kid: String,
    pub nonce: String,
    pub ciphertext: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CipherError {
    #[error("sealed with unknown key {0:?}")]
    UnknownKey(String),
    #[error("the sealed value does not open (corrupt, or another record's)")]
    Unopenable,
    #[error("sealing failed")]
    Seal,
}

pub struct GrantCipher {
    /// The sealing key first.
    keys: Vec<(String, LessSafeKey)>,
}

impl std::fmt::Debug for GrantCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("GrantCipher").field("kids", &kids).finish()
    }
}

impl GrantCipher {
    pub fn parse(text: &SecretString) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            name: KEY_SECRET,
            reason,
        };
        let mut keys = Vec::new();
        for (index, entry) in text.expose_secret().split(',').enumerate() {
            let (kid, key) = entry
                .trim()
                .split_once(':')
                .ok_or_else(|| invalid(format!("key {} is not kid:base64key", index + 1)))?;
            let bytes = STANDARD
                .decode(key)
                .map_err(|_| invalid(format!("key {kid:?} is not base64")))?;
            let key = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| invalid(format!("key {kid:?} is not 32 bytes")))?;
            if kid.is_empty() || keys.iter().any(|(known, _)| known == kid) {
                return Err(invalid(format!("key id {kid:?} is empty or repeated")));
            }
            keys.push((kid.to_owned(), LessSafeKey::new(key)));
        }
        Ok(Self { keys })
    }

    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        Self::parse(config.secrets.require(KEY_SECRET)?)
    }

    /// A fresh key entry for GRANT_ENCRYPTION_KEY (the local runner's generated key).
    pub fn generate_key(kid: &str) -> SecretString {
        let mut key = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut key).is_err() {
            panic!("the system random number generator failed");
        }
        SecretString::from(format!("{kid}:{}", STANDARD.encode(key)))
    }

    pub fn seal(&self, plaintext: &[u8], record: &str) -> Result<Sealed, CipherError> {
        let (kid, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| CipherError::Seal)?;
        let mut in_out = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(record.as_bytes()),
            &mut in_out,
        )
        .map_err(|_| CipherError::Seal)?;
        Ok(Sealed {
            kid: kid.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(in_out),
        })
    }

    pub fn open(&self, sealed: &Sealed, record: &str) -> Result<Vec<u8>, CipherError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(kid, _)| *kid == sealed.kid)
            .ok_or_else(|| CipherError::UnknownKey(sealed.kid.clone()))?;
        let nonce: [u8; NONCE_LEN] = STANDARD
            .decode(&sealed.nonce)
            .ok()
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(CipherError::Unopenable)?;
        let mut in_out = STANDARD
            .decode(&sealed.ciphertext)
            .map_err(|_| CipherError::Unopenable)?;
        let plaintext = key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| CipherError::Unopenable)?;
        Ok(plaintext.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(text: &str) -> GrantCipher {
        GrantCipher::parse(&SecretString::from(text.to_owned())).unwrap()
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_record() {
        let cipher = GrantCipher::parse(&GrantCipher::generate_key("k1")).unwrap();
        let sealed = cipher.seal(b"APP_USR-secret", "tenant-a").unwrap();
        assert_eq!(sealed.kid, "k1");
        assert!(!sealed.ciphertext.contains("APP_USR"));
        assert_eq!(cipher.open(&sealed, "tenant-a").unwrap(), b"APP_USR-secret");
        assert_eq!(
            cipher.open(&sealed, "tenant-b"),
            Err(CipherError::Unopenable)
        );

        let mut flipped = sealed.clone();
        let mut bytes = STANDARD.decode(&flipped.ciphertext).unwrap();
        bytes[0] ^= 1;
        flipped.ciphertext = STANDARD.encode(bytes);
        assert_eq!(
            cipher.open(&flipped, "tenant-a"),
            Err(CipherError::Unopenable)
        );
    }

    #[test]
    fn each_seal_uses_a_fresh_nonce() {
        let cipher = GrantCipher::parse(&GrantCipher::generate_key("k1")).unwrap();
        let a = cipher.seal(b"same", "r").unwrap();
        let b = cipher.seal(b"same", "r").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old_key = GrantCipher::generate_key("old");
        let new_key = GrantCipher::generate_key("new");
        let before = GrantCipher::parse(&old_key).unwrap();
        let sealed_before = before.seal(b"v", "r").unwrap();

        let rotated = cipher(&format!(
            "{},{}",
            new_key.expose_secret(),
            old_key.expose_secret()
        ));
        assert_eq!(rotated.open(&sealed_before, "r").unwrap(), b"v");
        assert_eq!(rotated.seal(b"v", "r").unwrap().kid, "new");

        let retired = GrantCipher::parse(&new_key).unwrap();
        assert_eq!(
            retired.open(&sealed_before, "r"),
            Err(CipherError::UnknownKey("old".into()))
        );
    }

    #[test]
    fn bad_keys_are_refused_naming_the_secret_without_showing_it() {
        for text in ["nokid", "k:not base64!", "k:c2hvcnQ=", "k:", ":AAAA"] {
            let error = GrantCipher::parse(&SecretString::from(text)).unwrap_err();
            assert!(error.to_string().contains(KEY_SECRET), "{error}");
        }
        let key = GrantCipher::generate_key("k");
        let twice = format!("{},{}", key.expose_secret(), key.expose_secret());
        let secret_part = key.expose_secret().split(':').nth(1).unwrap().to_owned();
        let error = GrantCipher::parse(&SecretString::from(twice)).unwrap_err();
        assert!(!error.to_string().contains(&secret_part));
        assert!(!format!("{:?}", GrantCipher::parse(&key).unwrap()).contains(&secret_part));
    }
}
