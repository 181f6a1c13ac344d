//! `/authorization`: the consent page (GET) and the seller's decision (POST).
//!
//! The page carries only a random `request_id`; the validated request stays here, so a
//! submitted form cannot change the client, redirect URI, state or challenge, and each page
//! can be answered once.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode, Uri};

use super::params::{BodyKind, ParamError, Params};
use super::state::{CodeGrant, ConsentRequest, Seller};
use super::{Sandbox, SandboxSettings, credentials, page, pkce, reply};

/// RFC 6749 §4.1.2.1: a request from an unknown client, or naming a redirect URI that is
/// not the registered one, must not be redirected anywhere.
enum Invalid {
    Untrusted(String),
    Request {
        description: String,
        state: Option<String>,
    },
}

pub(super) async fn show_consent(State(sandbox): State<Arc<Sandbox>>, uri: Uri) -> Response {
    let params = Params::from_urlencoded(uri.query().unwrap_or_default().as_bytes());
    let request = match validate(&sandbox.settings, &params) {
        Ok(request) => request,
        Err(Invalid::Untrusted(message)) => {
            tracing::info!(
                outcome = "untrusted client or redirect_uri",
                "sandbox authorize"
            );
            return reply::error_page(StatusCode::BAD_REQUEST, &message);
        }
        Err(Invalid::Request { description, state }) => {
            tracing::info!(outcome = "invalid_request", "sandbox authorize");
            let mut answer = vec![
                ("error", "invalid_request"),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = &state {
                answer.push(("state", state));
            }
            return reply::redirect(&sandbox.settings.redirect_uri, &answer);
        }
    };
    let Ok(request_id) = credentials::request_id(&sandbox.random) else {
        return unavailable();
    };
    let page = page::consent(&request_id, &request);
    sandbox
        .registry()
        .await_consent(request_id, request, Instant::now());
    reply::html(StatusCode::OK, page)
}

fn validate(settings: &SandboxSettings, params: &Params) -> Result<ConsentRequest, Invalid> {
    let untrusted = |error: ParamError| Invalid::Untrusted(format!("{error}."));
    let client_id = params.required("client_id").map_err(untrusted)?;
    if client_id != settings.client_id {
        return Err(Invalid::Untrusted("Unknown client_id.".to_owned()));
    }
    let redirect_uri = params.required("redirect_uri").map_err(untrusted)?;
    if redirect_uri != settings.redirect_uri {
        return Err(Invalid::Untrusted(
            "The redirect_uri is not the one registered for this application.".to_owned(),
        ));
    }

    // From here on, errors go back to the app, with the state if it sent one.
    let echoed_state = params.optional("state").ok().flatten().map(str::to_owned);
    let invalid = |description: &str| Invalid::Request {
        description: description.to_owned(),
        state: echoed_state.clone(),
    };
    let required = |name| {
        params
            .required(name)
            .map_err(|error| invalid(&error.to_string()))
    };

    let state = required("state")?;
    if !is_valid_state(state) {
        return Err(invalid(
            "state must be 1 to 1024 printable ASCII characters",
        ));
    }
    if required("response_type")? != "code" {
        return Err(invalid("response_type must be code"));
    }
    if required("code_challenge_method")? != "S256" {
        return Err(invalid("code_challenge_method must be S256"));
    }
    let code_challenge = required("code_challenge")?;
    if !pkce::is_valid_challenge(code_challenge) {
        return Err(invalid(
            "code_challenge must be 43 to 128 characters of base64url",
        ));
    }

    Ok(ConsentRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: state.to_owned(),
        code_challenge: code_challenge.to_owned(),
    })
}

/// RFC 6749 Appendix A.5: `state = 1*VSCHAR`, with a sane upper bound.
fn is_valid_state(state: &str) -> bool {
    state.len() <= 1024 && state.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

pub(super) async fn decide(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if BodyKind::of(&headers) != Some(BodyKind::Form) {
        return reply::error_page(
            StatusCode::BAD_REQUEST,
            "Expected the consent form (application/x-www-form-urlencoded).",
        );
    }
    let params = Params::from_urlencoded(&body);
    let Ok(request_id) = params.required("request_id") else {
        return reply::error_page(StatusCode::BAD_REQUEST, "Missing request_id.");
    };
    match params.required("decision") {
        Ok("allow") => allow(&sandbox, request_id, &params),
        Ok("deny") => deny(&sandbox, request_id),
        _ => reply::error_page(
            StatusCode::BAD_REQUEST,
            "The decision must be allow or deny.",
        ),
    }
}

fn allow(sandbox: &Sandbox, request_id: &str, params: &Params) -> Response {
    // The seller is checked before the request is taken, so a typo can be fixed by going
    // back to the page.
    let seller = match seller(params) {
        Ok(seller) => seller,
        Err(message) => return reply::error_page(StatusCode::BAD_REQUEST, message),
    };
    let Ok(code) = credentials::authorization_code(&sandbox.random, seller.user_id) else {
        return unavailable();
    };
    let now = Instant::now();
    let mut registry = sandbox.registry();
    let Some(request) = registry.take_consent(request_id, now) else {
        return expired();
    };
    let user_id = seller.user_id;
    let grant = CodeGrant {
        client_id: request.client_id,
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge,
        seller,
    };
    registry.issue_code(code.clone(), grant, now);
    drop(registry);
    tracing::info!(user_id, outcome = "allowed", "sandbox authorize");
    reply::redirect(
        &request.redirect_uri,
        &[("code", &code), ("state", &request.state)],
    )
}

fn deny(sandbox: &Sandbox, request_id: &str) -> Response {
    let Some(request) = sandbox.registry().take_consent(request_id, Instant::now()) else {
        return expired();
    };
    tracing::info!(outcome = "denied", "sandbox authorize");
    reply::redirect(
        &request.redirect_uri,
        &[
            ("error", "access_denied"),
            (
                "error_description",
                "The seller did not authorize the application.",
            ),
            ("state", &request.state),
        ],
    )
}

fn seller(params: &Params) -> Result<Seller, &'static str> {
    const BAD_USER_ID: &str = "The seller user id must be a positive integer.";
    const BAD_NICKNAME: &str =
        "The nickname must be 1 to 64 characters, without control characters.";
    let user_id = params.required("user_id").map_err(|_| BAD_USER_ID)?.trim();
    let user_id = user_id
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| user_id.parse::<u64>().ok())
        .flatten()
        .filter(|&id| id > 0)
        .ok_or(BAD_USER_ID)?;
    let nickname = params
        .required("nickname")
        .map_err(|_| BAD_NICKNAME)?
        .trim();
    let length = nickname.chars().count();
    if !(1..=64).contains(&length) || nickname.chars().any(char::is_control) {
        return Err(BAD_NICKNAME);
    }
    Ok(Seller {
        user_id,
        nickname: nickname.to_owned(),
    })
}

fn expired() -> Response {
    reply::error_page(
        StatusCode::BAD_REQUEST,
        "This authorization request has expired or was already answered. \
         Start again from the application.",
    )
}

fn unavailable() -> Response {
    reply::error_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "No random numbers are available; try again.",
    )
}
