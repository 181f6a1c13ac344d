//! What buyers do, on demand, so a person (or a test) sees the whole flow offline: ask a
//! question, buy, write after the sale. Each creates the resource and sends its
//! notification to `notification_url` (recorded for `missed_feeds` whatever happens).
//!
//! - `POST /questions {"seller_id", "item_id", "text", "buyer_id"?, "deliver"?}`
//! - `POST /orders {"seller_id", "item_id"?, "title"?, "quantity"?, "unit_price"?,
//!   "buyer_id"?, "buyer_nickname"?, "deliver"?}`
//! - `POST /messages {"order_id", "text", "deliver"?}` (from the order's buyer)
//!
//! JSON in, JSON out (201 with the resource as the API shows it, the notification and its
//! delivery); a form (the console page, `GET /console`) gets a page back. `"deliver":
//! false` records the notification as missed without sending it.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::api::MAX_ANSWER_CHARS;
use super::market::{Feed, OrderRequest, Outcome};
use super::notify::Change;
use super::params::{BodyKind, Params};
use super::{Sandbox, page, reply};

pub(super) const DEFAULT_BUYER_ID: u64 = 1_302_765_432;
pub(super) const DEFAULT_ITEM_ID: &str = "MLB3859205311";
/// The longest message a buyer may send (`buyer_max_message_length`).
const MAX_MESSAGE_CHARS: usize = 3_500;

/// The console: forms for everything here.
pub(super) async fn console(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let recent: Vec<Feed> = sandbox.market().recent(10).cloned().collect();
    reply::html(
        StatusCode::OK,
        page::console(&recent, sandbox.settings.notification_url.as_deref()),
    )
}

pub(super) async fn ask(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = BodyKind::of(&headers);
    let request = (|| -> Result<_, String> {
        let params = Params::from_body(kind, &body)?;
        let seller_id: u64 = required(&params, "seller_id")?;
        let item_id = item_id(params.required("item_id").map_err(|e| e.to_string())?)?;
        let text = text(&params, "text", MAX_ANSWER_CHARS)?;
        let buyer_id = optional(&params, "buyer_id", DEFAULT_BUYER_ID)?;
        Ok((
            seller_id,
            item_id,
            text,
            buyer_id,
            flag(&params, "deliver")?,
        ))
    })();
    let (seller_id, item_id, text, buyer_id, deliver) = match request {
        Ok(request) => request,
        Err(message) => return refuse(kind, StatusCode::BAD_REQUEST, &message),
    };
    let asked = sandbox.market().ask(
        seller_id,
        buyer_id,
        item_id,
        text,
        OffsetDateTime::now_utc(),
    );
    let question = match asked {
        Ok(question) => question,
        Err(message) => return refuse(kind, StatusCode::INSUFFICIENT_STORAGE, &message),
    };
    let feed = sandbox
        .notify(Change {
            seller_id,
            topic: "questions",
            resource: format!("/questions/{}", question.id),
            actions: None,
            deliver,
        })
        .await;
    let summary = format!(
        "Buyer {buyer_id} asked seller {seller_id} question {} on {}.",
        question.id, question.item_id
    );
    created(kind, "question", question.to_json(), &feed, summary)
}

/// `GET /questions/{id}/answer_requests`: how many `POST /answers` the question got and
/// its answer, for checking from outside that an answer was sent once.
pub(super) async fn answer_requests(
    State(sandbox): State<Arc<Sandbox>>,
    Path(id): Path<u64>,
) -> Response {
    match sandbox.market().any_question(id) {
        Some(question) => reply::json(
            StatusCode::OK,
            &json!({
                "question_id": id,
                "answer_requests": question.answer_requests,
                "answer": question.answer.as_ref().map(|(text, _)| text),
            }),
        ),
        None => reply::error(StatusCode::NOT_FOUND, "not_found", "no such question"),
    }
}

pub(super) async fn order(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = BodyKind::of(&headers);
    let request = (|| -> Result<_, String> {
        let params = Params::from_body(kind, &body)?;
        let quantity: u32 = optional(&params, "quantity", 1)?;
        if !(1..=1000).contains(&quantity) {
            return Err("quantity must be from 1 to 1000".to_owned());
        }
        let unit_price: f64 = optional(&params, "unit_price", 100.0)?;
        if !(unit_price.is_finite() && unit_price > 0.0) {
            return Err("unit_price must be a number above 0".to_owned());
        }
        let order = OrderRequest {
            seller_id: required(&params, "seller_id")?,
            buyer_id: optional(&params, "buyer_id", DEFAULT_BUYER_ID)?,
            buyer_nickname: optional_text(&params, "buyer_nickname", "SANDBOX_BUYER", 64)?,
            item_id: match params.optional("item_id").map_err(|e| e.to_string())? {
                Some(id) => item_id(id)?,
                None => DEFAULT_ITEM_ID.to_owned(),
            },
            title: optional_text(&params, "title", "Sandbox item", 120)?,
            quantity,
            unit_price,
        };
        Ok((order, flag(&params, "deliver")?))
    })();
    let (request, deliver) = match request {
        Ok(request) => request,
        Err(message) => return refuse(kind, StatusCode::BAD_REQUEST, &message),
    };
    let placed = sandbox
        .market()
        .place_order(request, OffsetDateTime::now_utc());
    let order = match placed {
        Ok(order) => order,
        Err(message) => return refuse(kind, StatusCode::INSUFFICIENT_STORAGE, &message),
    };
    let feed = sandbox
        .notify(Change {
            seller_id: order.seller_id,
            topic: "orders_v2",
            resource: format!("/orders/{}", order.id),
            actions: None,
            deliver,
        })
        .await;
    let summary = format!(
        "Buyer {} bought {} × {} from seller {}: order {}.",
        order.buyer_id, order.quantity, order.title, order.seller_id, order.id
    );
    created(kind, "order", order.to_json(), &feed, summary)
}

pub(super) async fn message(
    State(sandbox): State<Arc<Sandbox>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let kind = BodyKind::of(&headers);
    let request = (|| -> Result<_, String> {
        let params = Params::from_body(kind, &body)?;
        let order_id: u64 = required(&params, "order_id")?;
        let text = text(&params, "text", MAX_MESSAGE_CHARS)?;
        Ok((order_id, text, flag(&params, "deliver")?))
    })();
    let (order_id, text, deliver) = match request {
        Ok(request) => request,
        Err(message) => return refuse(kind, StatusCode::BAD_REQUEST, &message),
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    let written = sandbox
        .market()
        .write(order_id, id, text, OffsetDateTime::now_utc());
    let message = match written {
        Ok(message) => message,
        Err(reason) => return refuse(kind, StatusCode::NOT_FOUND, &reason),
    };
    let feed = sandbox
        .notify(Change {
            seller_id: message.seller_id,
            topic: "messages",
            resource: message.id.clone(),
            actions: Some(&["created"]),
            deliver,
        })
        .await;
    let summary = format!(
        "Buyer {} wrote to seller {} about order {}: message {}.",
        message.from_user_id, message.seller_id, message.pack_id, message.id
    );
    created(kind, "message", message.to_json(), &feed, summary)
}

fn created(
    kind: Option<BodyKind>,
    name: &str,
    resource: Value,
    feed: &Feed,
    summary: String,
) -> Response {
    let (http_code, error) = match &feed.outcome {
        Outcome::Answered { http_code, .. } => (Some(*http_code), None),
        Outcome::Unanswered { reason } => (None, Some(reason.as_str())),
    };
    match kind {
        Some(BodyKind::Form) => {
            let delivery = match (http_code, error) {
                (Some(200), _) => format!(
                    "Its notification was delivered to {} (HTTP 200).",
                    feed.url.as_deref().unwrap_or_default()
                ),
                (Some(code), _) => {
                    format!("Its notification got HTTP {code}: it is kept in missed_feeds.")
                }
                (None, reason) => format!(
                    "Its notification was not delivered ({}): it is kept in missed_feeds.",
                    reason.unwrap_or_default()
                ),
            };
            reply::html(
                StatusCode::CREATED,
                page::result("Done", &[summary, delivery]),
            )
        }
        _ => reply::json(
            StatusCode::CREATED,
            &json!({
                name: resource,
                "notification": feed.notification,
                "delivery": {
                    "url": feed.url,
                    "http_code": http_code,
                    "delivered": feed.outcome.delivered(),
                    "error": error,
                },
            }),
        ),
    }
}

fn refuse(kind: Option<BodyKind>, status: StatusCode, message: &str) -> Response {
    match kind {
        Some(BodyKind::Form) => reply::error_page(status, message),
        _ => {
            let error = if status == StatusCode::NOT_FOUND {
                "not_found"
            } else {
                "bad_request"
            };
            reply::error(status, error, message)
        }
    }
}

fn required<T: FromStr>(params: &Params, name: &'static str) -> Result<T, String> {
    let text = params.required(name).map_err(|error| error.to_string())?;
    text.trim()
        .parse()
        .map_err(|_| format!("{name} must be a number, not {text:?}"))
}

fn optional<T: FromStr>(params: &Params, name: &'static str, default: T) -> Result<T, String> {
    match params.optional(name).map_err(|error| error.to_string())? {
        None => Ok(default),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name} must be a number, not {text:?}")),
    }
}

/// `deliver`: true unless set to false.
fn flag(params: &Params, name: &'static str) -> Result<bool, String> {
    match params.optional(name).map_err(|error| error.to_string())? {
        None | Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!("{name} must be true or false, not {other:?}")),
    }
}

fn text(params: &Params, name: &'static str, max_chars: usize) -> Result<String, String> {
    let text = params
        .required(name)
        .map_err(|error| error.to_string())?
        .trim();
    if text.is_empty() {
        return Err(format!("{name} is empty"));
    }
    if text.chars().count() > max_chars {
        return Err(format!("{name} is longer than {max_chars} characters"));
    }
    Ok(text.to_owned())
}

fn optional_text(
    params: &Params,
    name: &'static str,
    default: &str,
    max_chars: usize,
) -> Result<String, String> {
    match params.optional(name).map_err(|error| error.to_string())? {
        None => Ok(default.to_owned()),
        Some(_) => text(params, name, max_chars),
    }
}

/// A listing id as Mercado Livre writes them (`MLB3859205311`).
fn item_id(id: &str) -> Result<String, String> {
    let id = id.trim();
    if id.is_empty() || id.len() > 40 || !id.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        return Err(format!(
            "item_id {id:?} is not a listing id like {DEFAULT_ITEM_ID}"
        ));
    }
    Ok(id.to_owned())
}
