//! The resource API a seller's access token calls, in Mercado Livre's shapes:
//! `GET /questions/{id}`, `POST /answers`, `GET /orders/{id}`,
//! `GET /messages/{id}?tag=post_sale`, `GET /missed_feeds?app_id=…&topic=…`.
//!
//! A resource is visible only to the seller it belongs to (the one whose token asks);
//! anyone else gets the same 404 as for an id that does not exist.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, Uri};
use serde_json::json;
use time::OffsetDateTime;

use super::market::AnswerRefusal;
use super::notify::Change;
use super::params::Params;
use super::state::Seller;
use super::{Sandbox, reply, users};

/// The longest answer Mercado Livre accepts.
pub(super) const MAX_ANSWER_CHARS: usize = 2_000;

/// Why a request gets no resource, answered in Mercado Livre's error shape.
pub(super) enum Refusal {
    Unauthorized,
    BadRequest(String),
    Forbidden(String),
    NotFound { what: &'static str, id: String },
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => reply::error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "invalid access token",
            ),
            Refusal::BadRequest(message) => {
                reply::error(StatusCode::BAD_REQUEST, "bad_request", &message)
            }
            Refusal::Forbidden(message) => {
                reply::error(StatusCode::FORBIDDEN, "forbidden", &message)
            }
            Refusal::NotFound { what, id } => reply::error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("{what} with id {id} not found"),
            ),
        }
    }
}

type Answer = Result<Response, Refusal>;

/// The seller the request's bearer token belongs to.
pub(super) fn seller(sandbox: &Sandbox, headers: &HeaderMap) -> Result<Seller, Refusal> {
    users::bearer_token(headers)
        .and_then(|token| {
            sandbox
                .registry()
                .seller_for(token, Instant::now())
                .cloned()
        })
        .ok_or(Refusal::Unauthorized)
}

fn number(id: &str, what: &str) -> Result<u64, Refusal> {
    id.parse()
        .map_err(|_| Refusal::BadRequest(format!("invalid {what} id: {id:?}")))
}

fn not_found(what: &'static str, id: impl ToString) -> Refusal {
    Refusal::NotFound {
        what,
        id: id.to_string(),
    }
}

pub(super) async fn question(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let seller = seller(&sandbox, &headers)?;
    let question = sandbox
        .market()
        .question(number(&id, "question")?, seller.user_id)
        .map(|question| question.to_json())
        .ok_or_else(|| not_found("Question", &id))?;
    Ok(reply::json(StatusCode::OK, &question))
}

/// `POST /answers {"question_id": <number>, "text": "…"}`: the question, answered (the
/// reply's shape is not documented; this one carries what the answer flow may read). A
/// `questions` notification follows, as it does on Mercado Livre.
pub(super) async fn answer(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    #[derive(serde::Deserialize)]
    struct AnswerRequest {
        question_id: u64,
        text: String,
    }
    let seller = seller(&sandbox, &headers)?;
    let request = serde_json::from_slice::<AnswerRequest>(&body).map_err(|_| {
        Refusal::BadRequest(
            "the body must be a JSON object {\"question_id\": <number>, \"text\": \"…\"}"
                .to_owned(),
        )
    })?;
    let text = request.text.trim();
    if text.is_empty() {
        return Err(Refusal::BadRequest("the answer's text is empty".to_owned()));
    }
    if text.chars().count() > MAX_ANSWER_CHARS {
        return Err(Refusal::BadRequest(format!(
            "the answer exceeds {MAX_ANSWER_CHARS} characters"
        )));
    }
    let answered = sandbox.market().answer(
        request.question_id,
        seller.user_id,
        text.to_owned(),
        OffsetDateTime::now_utc(),
    );
    let question = answered.map_err(|refusal| match refusal {
        AnswerRefusal::NotFound => not_found("Question", request.question_id),
        AnswerRefusal::AlreadyAnswered => Refusal::BadRequest(format!(
            "question {} is already answered",
            request.question_id
        )),
    })?;
    tracing::info!(
        question_id = question.id,
        seller_id = seller.user_id,
        "sandbox mercadolivre: question answered"
    );
    let notifier = Arc::clone(&sandbox);
    let resource = format!("/questions/{}", question.id);
    tokio::spawn(async move {
        notifier
            .notify(Change {
                seller_id: seller.user_id,
                topic: "questions",
                resource,
                actions: None,
                deliver: true,
            })
            .await;
    });
    Ok(reply::json(StatusCode::OK, &question.to_json()))
}

pub(super) async fn order(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let seller = seller(&sandbox, &headers)?;
    let order = sandbox
        .market()
        .order(number(&id, "order")?, seller.user_id)
        .map(|order| order.to_json())
        .ok_or_else(|| not_found("Order", &id))?;
    Ok(reply::json(StatusCode::OK, &order))
}

pub(super) async fn message(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let seller = seller(&sandbox, &headers)?;
    let query = Params::from_urlencoded(uri.query().unwrap_or_default().as_bytes());
    if query.optional("tag").ok().flatten() != Some("post_sale") {
        return Err(Refusal::BadRequest(
            "the query parameter tag=post_sale is required".to_owned(),
        ));
    }
    let message = sandbox
        .market()
        .message(&id, seller.user_id)
        .map(|message| message.to_json())
        .ok_or_else(|| not_found("Message", &id))?;
    Ok(reply::json(StatusCode::OK, &message))
}

/// `GET /missed_feeds?app_id=…[&topic=…][&offset=…][&limit=…]`: 10 per page by default.
pub(super) async fn missed_feeds(
    State(sandbox): State<Arc<Sandbox>>,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    seller(&sandbox, &headers)?;
    let query = Params::from_urlencoded(uri.query().unwrap_or_default().as_bytes());
    let param = |error: super::params::ParamError| Refusal::BadRequest(error.to_string());
    let app_id = query.required("app_id").map_err(param)?;
    let topic = query.optional("topic").map_err(param)?;
    let offset = whole(&query, "offset", 0)?;
    let limit = whole(&query, "limit", 10)?;
    if !(1..=1000).contains(&limit) {
        return Err(Refusal::BadRequest(
            "limit must be from 1 to 1000".to_owned(),
        ));
    }
    if app_id != sandbox.app_number {
        return Err(Refusal::Forbidden(format!(
            "the access token's application cannot read the feeds of application {app_id}"
        )));
    }
    let messages: Vec<serde_json::Value> = sandbox
        .market()
        .missed(topic, OffsetDateTime::now_utc())
        .skip(offset)
        .take(limit)
        .map(|feed| feed.to_json())
        .collect();
    Ok(reply::json(
        StatusCode::OK,
        &json!({ "messages": messages }),
    ))
}

fn whole(query: &Params, name: &'static str, default: usize) -> Result<usize, Refusal> {
    match query
        .optional(name)
        .map_err(|error| Refusal::BadRequest(error.to_string()))?
    {
        None => Ok(default),
        Some(text) => text.parse().map_err(|_| {
            Refusal::BadRequest(format!("{name} must be a whole number, not {text:?}"))
        }),
    }
}
