//! Signing a seller in with Mercado Livre and keeping them signed in: the login's
//! one-time state and PKCE verifier, the seller's tenant, the encrypted grant and its
//! refresh, the signed session token, the session registry (one active session per
//! seller) and the revocation list every authenticated request checks.

pub mod authenticate;
pub mod cookie;
pub mod grant_cipher;
pub mod grants;
pub mod login;
pub mod refresh;
pub mod return_to;
pub mod session_token;
pub mod sessions;
pub mod tenants;

pub use authenticate::{Authenticator, Principal};
pub use grant_cipher::GrantCipher;
pub use grants::{Grant, GrantStatus, Grants};
pub use session_token::{Claims, SessionKeys};
pub use sessions::Sessions;

/// Random bytes as unpadded base64url: state values, verifiers and ids that must not be
/// guessable.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buffer = vec![0u8; bytes];
    // The system's CSPRNG failing is not something a login can work around.
    if aws_lc_rs::rand::fill(&mut buffer).is_err() {
        panic!("the system random number generator failed");
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer)
}

/// Waits before trying again a write that lost a race with concurrent ones (logins of
/// one seller): a random pause whose range doubles with each attempt (10 ms, 20 ms, …,
/// at most 640 ms), so the racers spread out instead of colliding again.
pub(crate) async fn pause_after_conflict(attempt: u32) {
    let ceiling = 10u64 << attempt.clamp(1, 7).saturating_sub(1);
    let pause = fastrand::u64(1..=ceiling);
    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
}

/// The id of a Mercado Livre seller as a sellerhub user.
pub fn user_id(seller_id: u64) -> String {
    format!("ml:{seller_id}")
}
