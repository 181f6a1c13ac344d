//! What the sandbox remembers: consent requests awaiting the seller's decision,
//! authorization codes, live tokens and the counters. Methods take the current instant, so
//! expiry is decided here and tests can move the clock.
//!
//! Expired entries are dropped whenever a new one of the same kind is stored, so memory
//! stays bounded by what was issued within one lifetime.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::SandboxStats;

/// How long the consent page stays answerable, and how long a code stays redeemable
/// (Mercado Livre: 10 minutes).
pub(super) const CONSENT_TTL: Duration = Duration::from_secs(10 * 60);
pub(super) const CODE_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Seller {
    pub user_id: u64,
    pub nickname: String,
}

/// A validated authorization request, shown on the consent page.
#[derive(Clone, Debug)]
pub(super) struct ConsentRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: String,
    pub code_challenge: String,
}

/// What an authorization code is bound to.
#[derive(Clone, Debug)]
pub(super) struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub seller: Seller,
}

/// Why a code or refresh token was refused; for the log only, since the answer to the
/// client is the same invalid_grant whatever the reason.
pub(super) type Rejection = &'static str;

struct PendingConsent {
    request: ConsentRequest,
    expires_at: Instant,
}

struct IssuedCode {
    grant: CodeGrant,
    expires_at: Instant,
    used: bool,
}

struct AccessGrant {
    seller: Seller,
    expires_at: Instant,
}

struct RefreshGrant {
    client_id: String,
    seller: Seller,
}

#[derive(Default)]
pub(super) struct Registry {
    consents: HashMap<String, PendingConsent>,
    codes: HashMap<String, IssuedCode>,
    access_tokens: HashMap<String, AccessGrant>,
    // A spent refresh token is simply removed: unknown and reused both get invalid_grant.
    refresh_tokens: HashMap<String, RefreshGrant>,
    pub stats: SandboxStats,
}

impl Registry {
    pub fn await_consent(&mut self, request_id: String, request: ConsentRequest, now: Instant) {
        self.consents.retain(|_, pending| pending.expires_at > now);
        let expires_at = now + CONSENT_TTL;
        self.consents.insert(
            request_id,
            PendingConsent {
                request,
                expires_at,
            },
        );
    }

    /// The request behind a consent page, at most once: a page can be answered only once.
    pub fn take_consent(&mut self, request_id: &str, now: Instant) -> Option<ConsentRequest> {
        self.consents
            .remove(request_id)
            .filter(|pending| pending.expires_at > now)
            .map(|pending| pending.request)
    }

    pub fn issue_code(&mut self, code: String, grant: CodeGrant, now: Instant) {
        self.codes.retain(|_, issued| issued.expires_at > now);
        let expires_at = now + CODE_TTL;
        self.codes.insert(
            code,
            IssuedCode {
                grant,
                expires_at,
                used: false,
            },
        );
        self.stats.codes_issued += 1;
    }

    /// Marks the code used before anything else is checked: a code is good for one attempt,
    /// even one that then fails.
    pub fn spend_code(&mut self, code: &str, now: Instant) -> Result<CodeGrant, Rejection> {
        let issued = self.codes.get_mut(code).ok_or("unknown code")?;
        if std::mem::replace(&mut issued.used, true) {
            return Err("code already used");
        }
        if issued.expires_at <= now {
            return Err("code expired");
        }
        Ok(issued.grant.clone())
    }

    /// Removes the refresh token whoever presents it: refresh tokens are single-use.
    pub fn spend_refresh_token(
        &mut self,
        token: &str,
        client_id: &str,
    ) -> Result<Seller, Rejection> {
        let grant = self
            .refresh_tokens
            .remove(token)
            .ok_or("unknown, used or revoked refresh token")?;
        if grant.client_id != client_id {
            return Err("refresh token issued to another client");
        }
        Ok(grant.seller)
    }

    pub fn store_tokens(&mut self, tokens: &TokenPair, now: Instant) {
        self.access_tokens.retain(|_, grant| grant.expires_at > now);
        self.access_tokens.insert(
            tokens.access_token.clone(),
            AccessGrant {
                seller: tokens.seller.clone(),
                expires_at: tokens.access_expires_at,
            },
        );
        self.refresh_tokens.insert(
            tokens.refresh_token.clone(),
            RefreshGrant {
                client_id: tokens.client_id.clone(),
                seller: tokens.seller.clone(),
            },
        );
    }

    /// The seller a live access token belongs to.
    pub fn seller_for(&self, access_token: &str, now: Instant) -> Option<&Seller> {
        self.access_tokens
            .get(access_token)
            .filter(|grant| grant.expires_at > now)
            .map(|grant| &grant.seller)
    }

    /// Forgets every code and token of the seller, so they are refused as unknown.
    pub fn revoke_user(&mut self, user_id: u64) {
        self.codes
            .retain(|_, issued| issued.grant.seller.user_id != user_id);
        self.access_tokens
            .retain(|_, grant| grant.seller.user_id != user_id);
        self.refresh_tokens
            .retain(|_, grant| grant.seller.user_id != user_id);
    }

    #[cfg(test)]
    pub fn code_count(&self) -> usize {
        self.codes.len()
    }
}

/// A freshly issued access and refresh token for one seller.
pub(super) struct TokenPair {
    pub client_id: String,
    pub seller: Seller,
    pub access_token: String,
    pub access_expires_at: Instant,
    pub refresh_token: String,
}
