//! The tenant's questions:
//! - GET /v1/questions?status=UNANSWERED (default; or ANSWERED, or another of Mercado
//!   Livre's statuses): newest first, paginated (`limit`, `cursor`).
//! - POST /v1/questions/{id}/answer `{"text": "…"}` publishes the seller's answer on
//!   Mercado Livre. One answer at a time: a guard is taken before the call (a concurrent
//!   answer gets 409 and makes no call) and released when Mercado Livre refuses. Counted
//!   against the tenant's write limit.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

use super::HttpHandler;
use crate::auth::{Authenticator, GrantStatus, Grants};
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::cursor::{Cursors, Scope};
use crate::http::{
    ApiError, EndpointLimit, body_bytes, json, path_param, query_param, rate_limit, resource_path,
};
use crate::inbox::Inbox;
use crate::inbox::questions::{Questions, STATUSES};
use crate::ratelimit::Limiter;
use crate::services::Services;
use crate::upstream::{MercadoLivre, PublishedAnswer, UpstreamError};

const BODY_LIMIT: usize = 16 * 1024;
/// The longest answer Mercado Livre accepts, in characters.
pub const MAX_ANSWER_CHARS: usize = 2000;
const LIST_ROUTE: &str = "GET /v1/questions";

pub struct QuestionsHandler {
    authenticator: Authenticator,
    questions: Questions,
    inbox: Inbox,
    grants: Grants,
    mercadolivre: Arc<MercadoLivre>,
    cursors: Arc<Cursors>,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerRequest {
    text: String,
}

impl HttpHandler for QuestionsHandler {
    const FUNCTION: &'static str = "questions";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: services.authenticator()?,
            questions: Questions::new(services.store()),
            inbox: Inbox::new(services.store()),
            grants: services.grants()?,
            mercadolivre: services.mercadolivre()?,
            cursors: services.cursors()?,
            limiter: services.limiter()?,
            clock: services.clock(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let principal = self.authenticator.authenticate(&request).await?;
        let tenant = principal.tenant();
        match (request.method(), resource_path(&request).as_str()) {
            (&Method::GET, "/v1/questions") => self.list(&request, tenant).await,
            (&Method::POST, "/v1/questions/{id}/answer") => self.answer(&request, tenant).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

impl QuestionsHandler {
    async fn list(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let status = query_param(request, "status").unwrap_or_else(|| "UNANSWERED".into());
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )));
        }
        let filters = format!("status={status}");
        let scope = Scope {
            tenant,
            route: LIST_ROUTE,
            filters: &filters,
        };
        let now = self.clock.now_secs();
        let page = self.cursors.page_request(request, &scope, now)?;
        let found = self
            .questions
            .list(tenant, &status, page.limit, page.after)
            .await?;
        let items = found.items.into_iter().map(|item| item.data).collect();
        let body = self
            .cursors
            .page_body(items, found.next.as_ref(), &scope, now);
        json(StatusCode::OK, &body)
    }

    async fn answer(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let limit_headers = rate_limit::enforce(
            self.limiter.as_ref(),
            &EndpointLimit::writes(tenant),
            self.clock.now_ms(),
        )
        .await?;
        let question_id: u64 = path_param(request, "id")?
            .parse()
            .map_err(|_| ApiError::NotFound)?;
        let text = answer_text(body_bytes(request, BODY_LIMIT)?)?;

        let question = self
            .questions
            .get(tenant, question_id)
            .await?
            .ok_or(ApiError::NotFound)?;
        let status = question.data["status"].as_str().unwrap_or_default();
        if status != "UNANSWERED" {
            return Err(ApiError::Conflict(format!(
                "question {question_id} is {status}: only an UNANSWERED question can be answered"
            )));
        }
        if !self
            .questions
            .start_answer(tenant, question_id, self.clock.now_secs())
            .await?
        {
            return Err(ApiError::Conflict(format!(
                "an answer to question {question_id} is being published"
            )));
        }
        let published = match self.publish(tenant, question_id, &text).await {
            Ok(published) => published,
            Err(error) => {
                // Nothing was published: another answer may be tried. A failed release
                // leaves the guard to expire.
                if let Err(release) = self.questions.release_answer(tenant, question_id).await {
                    tracing::warn!(error = %release, question_id, "releasing an answer's guard failed");
                }
                return Err(error);
            }
        };
        let release = Questions::release_with(tenant, question_id);
        self.inbox
            .apply_answer(tenant, &published, self.clock.now_ms(), &[release])
            .await?;
        let answered = self.questions.get(tenant, question_id).await?;
        let mut response = json(
            StatusCode::OK,
            &answered.map_or(serde_json::Value::Null, |item| item.data),
        )?;
        limit_headers.apply(response.headers_mut());
        Ok(response)
    }

    /// `POST /answers` with the tenant's grant.
    async fn publish(
        &self,
        tenant: &str,
        question_id: u64,
        text: &str,
    ) -> Result<PublishedAnswer, ApiError> {
        let grant = self
            .grants
            .load(tenant)
            .await
            .map_err(|error| ApiError::Unavailable(error.to_string()))?
            .filter(|grant| grant.info.status == GrantStatus::Ok)
            .ok_or_else(reconnect)?;
        self.mercadolivre
            .answer_question(
                &grant.tokens.access_token,
                grant.info.seller_id,
                question_id,
                text,
            )
            .await
            .map_err(|error| refused(error, question_id))
    }
}

/// The answer's text: trimmed, not empty, within Mercado Livre's limit.
fn answer_text(body: &[u8]) -> Result<String, ApiError> {
    let request: AnswerRequest = serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("expected {{\"text\": \"…\"}}: {error}")))?;
    let text = request.text.trim();
    if text.is_empty() {
        return Err(ApiError::BadRequest("the answer's text is empty".into()));
    }
    let length = text.chars().count();
    if length > MAX_ANSWER_CHARS {
        return Err(ApiError::BadRequest(format!(
            "an answer has at most {MAX_ANSWER_CHARS} characters, not {length}"
        )));
    }
    Ok(text.to_owned())
}

fn reconnect() -> ApiError {
    ApiError::Denied(
        "Mercado Livre no longer accepts this seller's authorization: sign in again \
         (GET /auth/login)"
            .into(),
    )
}

/// What the seller is told when Mercado Livre did not publish the answer.
fn refused(error: UpstreamError, question_id: u64) -> ApiError {
    match error {
        UpstreamError::RateLimited { retry_after } => ApiError::TooManyRequests {
            retry_after,
            rate_limit: None,
        },
        UpstreamError::NotFound => ApiError::Unprocessable(format!(
            "question {question_id} no longer exists on Mercado Livre (deleted)"
        )),
        UpstreamError::Rejected { status, message } if (400..500).contains(&status) => {
            ApiError::Unprocessable(format!(
                "Mercado Livre refused the answer to question {question_id}: {message}"
            ))
        }
        UpstreamError::Unauthorized | UpstreamError::InvalidGrant => reconnect(),
        UpstreamError::OperatorUser => ApiError::Denied(
            "Mercado Livre refused a collaborator account: sign in with the account's owner".into(),
        ),
        UpstreamError::Unavailable { .. } | UpstreamError::Limiter(_) => {
            ApiError::Unavailable(error.to_string())
        }
        UpstreamError::Rejected { .. }
        | UpstreamError::MissingScope(_)
        | UpstreamError::Malformed(_)
        | UpstreamError::InvalidPath(_) => ApiError::BadGateway(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn answer_texts_are_trimmed_and_bounded() {
        assert_eq!(
            answer_text(br#"{"text":"  Sim, temos.  "}"#).unwrap(),
            "Sim, temos."
        );
        let longest = format!(r#"{{"text":"{}"}}"#, "é".repeat(MAX_ANSWER_CHARS));
        assert_eq!(
            answer_text(longest.as_bytes()).unwrap().chars().count(),
            MAX_ANSWER_CHARS
        );
        let too_long = format!(r#"{{"text":"{}"}}"#, "a".repeat(MAX_ANSWER_CHARS + 1));
        for bad in [
            &b""[..],
            b"{}",
            br#"{"text":"   "}"#,
            br#"{"text":1}"#,
            br#"{"text":"a","x":1}"#,
            too_long.as_bytes(),
        ] {
            assert!(
                matches!(answer_text(bad), Err(ApiError::BadRequest(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn mercado_livre_refusals_become_clear_client_errors() {
        let status = |error| refused(error, 7).status();
        assert_eq!(
            status(UpstreamError::RateLimited {
                retry_after: Duration::from_secs(30)
            }),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            status(UpstreamError::NotFound),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let closed = refused(
            UpstreamError::Rejected {
                status: 400,
                message: "not_unanswered_question: Question 7 is closed".into(),
            },
            7,
        );
        assert_eq!(closed.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            closed
                .problem()
                .detail
                .unwrap()
                .contains("Question 7 is closed")
        );
        assert_eq!(status(UpstreamError::Unauthorized), StatusCode::FORBIDDEN);
        assert_eq!(
            status(UpstreamError::Rejected {
                status: 500,
                message: String::new()
            }),
            StatusCode::BAD_GATEWAY
        );
    }
}
