//! `GET /users/me`: the seller a live access token belongs to.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use http::header::AUTHORIZATION;
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use super::{Sandbox, reply};

#[derive(Serialize)]
struct User<'a> {
    id: u64,
    nickname: &'a str,
    site_id: &'static str,
    country_id: &'static str,
    user_type: &'static str,
    email: String,
}

pub(super) async fn me(State(sandbox): State<Arc<Sandbox>>, headers: HeaderMap) -> Response {
    let seller = bearer_token(&headers).and_then(|token| {
        sandbox
            .registry()
            .seller_for(token, Instant::now())
            .cloned()
    });
    let Some(seller) = seller else {
        tracing::debug!(outcome = "unauthorized", "sandbox users/me");
        return reply::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "invalid access token",
        );
    };
    let user = User {
        id: seller.user_id,
        nickname: &seller.nickname,
        site_id: "MLB",
        country_id: "BR",
        user_type: "normal",
        email: format!("{}@sandbox.invalid", seller.nickname.to_lowercase()),
    };
    reply::json(StatusCode::OK, &user)
}

pub(super) fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
