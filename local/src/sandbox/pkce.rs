//! PKCE with S256 (RFC 7636): the allowed shapes of challenge and verifier, and the check
//! that binds them.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const LENGTHS: std::ops::RangeInclusive<usize> = 43..=128;

/// 43 to 128 characters of base64url.
pub(super) fn is_valid_challenge(challenge: &str) -> bool {
    LENGTHS.contains(&challenge.len())
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 43 to 128 characters of `[A-Za-z0-9-._~]` (RFC 7636 §4.1).
pub(super) fn is_valid_verifier(verifier: &str) -> bool {
    LENGTHS.contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether base64url-no-pad(SHA-256(verifier)) is the challenge.
pub(super) fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    if !is_valid_verifier(verifier) {
        return false;
    }
    let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    verify_slices_are_equal(computed.as_bytes(), challenge.as_bytes()).is_ok()
}
