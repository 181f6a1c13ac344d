//! A sandbox Mercado Livre, in memory, so the whole flow works offline: in the local
//! runner (nested under `/sandbox/mercadolivre`) and in end-to-end tests.
//!
//! As an OAuth provider it behaves like the real one wherever the app could tell the
//! difference: the consent page never approves by itself, authorization codes are
//! single-use and need the PKCE (S256) verifier, refresh tokens rotate and are single-use,
//! and a seller who revokes the app loses every token.
//!
//! As a marketplace it serves, in the documented shapes, what the worker and the
//! reconciler call (questions, answers, orders, post-sale messages, missed_feeds; see
//! `api`), lets a person or a test act as a buyer — each action sends its notification to
//! `notification_url` — (`buyer`, and the console page `GET /console`), and answers 429 or
//! a 5xx on demand (`faults`).

mod api;
mod authorize;
mod buyer;
mod credentials;
mod faults;
mod market;
mod notify;
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
use time::OffsetDateTime;

use faults::Faults;
use market::Market;
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
    /// The application's notification callback URL: where the notifications of what
    /// buyers do are POSTed. None keeps them all in missed_feeds.
    pub notification_url: Option<String>,
}

pub struct Sandbox {
    settings: SandboxSettings,
    /// The numeric application id Mercado Livre puts inside its access tokens and its
    /// notifications (`application_id`).
    app_number: String,
    random: SystemRandom,
    registry: Mutex<Registry>,
    market: Mutex<Market>,
    faults: Mutex<Faults>,
    /// Delivers notifications; None if no client could be built (each delivery then fails
    /// and is kept in missed_feeds).
    delivery: Option<reqwest::Client>,
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
        let delivery = reqwest::Client::builder()
            .timeout(notify::DELIVERY_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build();
        if let Err(error) = &delivery {
            tracing::error!(%error, "sandbox mercadolivre: no HTTP client to deliver notifications");
        }
        Arc::new(Self {
            app_number: credentials::app_number(&settings.client_id),
            settings,
            random: SystemRandom::new(),
            registry: Mutex::new(Registry::default()),
            market: Mutex::new(Market::new(OffsetDateTime::now_utc())),
            faults: Mutex::new(Faults::default()),
            delivery: delivery.ok(),
        })
    }

    /// Routes relative to the sandbox's base. OAuth: /authorization (GET, POST),
    /// /oauth/token (POST). The API a seller's token calls, behind the fault switch:
    /// /users/me, /questions/{id}, /answers (POST), /orders/{id}, /messages/{id},
    /// /missed_feeds. Control: /console (GET), /questions, /orders, /messages (POST: a
    /// buyer acts), /questions/{id}/answer_requests (GET), /faults (GET, POST).
    pub fn router(self: &Arc<Self>) -> Router {
        let api = Router::new()
            .route("/users/me", get(users::me))
            .route("/questions/{id}", get(api::question))
            .route("/answers", post(api::answer))
            .route("/orders/{id}", get(api::order))
            .route("/messages/{id}", get(api::message))
            .route("/missed_feeds", get(api::missed_feeds))
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(self),
                faults::inject,
            ));
        Router::new()
            .route(
                "/authorization",
                get(authorize::show_consent).post(authorize::decide),
            )
            .route("/oauth/token", post(token::grant))
            .route("/console", get(buyer::console))
            .route("/questions", post(buyer::ask))
            .route(
                "/questions/{id}/answer_requests",
                get(buyer::answer_requests),
            )
            .route("/orders", post(buyer::order))
            .route("/messages", post(buyer::message))
            .route("/faults", get(faults::show).post(faults::set))
            .merge(api)
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

    // Likewise for the market and the fault switch.
    fn market(&self) -> MutexGuard<'_, Market> {
        self.market.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
