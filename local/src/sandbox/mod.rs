//! A sandbox Mercado Livre OAuth provider, in memory, so "Sign in with Mercado Livre" works
//! offline: in the local runner (nested under `/sandbox/mercadolivre`) and in end-to-end
//! tests.
//!
//! It behaves like the real provider wherever the app could tell the difference: the
//! consent page never approves by itself, authorization codes are single-use and need the
//! PKCE (S256) verifier, refresh tokens rotate and are single-use, and a seller who revokes
//! the app loses every token.

mod authorize;
mod credentials;
mod page;
mod params;
mod pkce;
mod reply;
mod state;
mod token;
mod users;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use secrecy::SecretString;

use state::Registry;

/// Every request body here is a handful of short fields.
const MAX_BODY: usize = 16 * 1024;

#[derive(Clone, Debug)]
pub struct SandboxSettings {
    pub client_id: String,
    pub client_secret: SecretString,
    /// The one registered redirect URI (exact match required).
    pub redirect_uri: String,
    /// Access token lifetime reported as expires_in (Mercado Livre: 21600 s).
    pub access_token_ttl: Duration,
}

pub struct Sandbox {
    settings: SandboxSettings,
    /// The numeric application id Mercado Livre puts inside its access tokens.
    app_number: String,
    random: SystemRandom,
    registry: Mutex<Registry>,
}

/// Counters for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SandboxStats {
    pub codes_issued: u64,
    pub codes_redeemed: u64,
    pub refreshes: u64,
    pub rejected_grants: u64,
}

impl Sandbox {
    pub fn new(settings: SandboxSettings) -> Arc<Self> {
        Arc::new(Self {
            app_number: credentials::app_number(&settings.client_id),
            settings,
            random: SystemRandom::new(),
            registry: Mutex::new(Registry::default()),
        })
    }

    /// Routes relative to the sandbox's base: /authorization (GET, POST), /oauth/token
    /// (POST), /users/me (GET).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/authorization",
                get(authorize::show_consent).post(authorize::decide),
            )
            .route("/oauth/token", post(token::grant))
            .route("/users/me", get(users::me))
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::clone(self))
    }

    /// Counters for tests.
    pub fn stats(&self) -> SandboxStats {
        self.registry().stats
    }

    /// The seller revokes the app: their refresh tokens now get invalid_grant and their
    /// access tokens 401. Signing in again afterwards works, as it does on Mercado Livre.
    pub fn revoke_user(&self, user_id: u64) {
        self.registry().revoke_user(user_id);
        tracing::info!(user_id, "sandbox mercadolivre: seller revoked the app");
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Every registry update is a single insert, remove or counter step, so the registry
        // is consistent even if a thread panicked while holding the lock.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
