//! Questions buyers ask on a seller's listings: read one, answer one.
//!
//! `GET /questions/{id}?api_version=4` is the shape documented today ("Manage questions
//! & answers"); its example names the buyer `buyer_id`, while the v4 search results (and
//! the by-id answer for vehicles) carry `from: {"id"}` — either is read. The reply to
//! `POST /answers` is not documented at all, so an answer counts as published on any 2xx,
//! whatever the body.

use http::Method;
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

use super::client::{Auth, Body, Budget, Call, MercadoLivre};
use super::error::UpstreamError;
use super::wire;

/// A question as `GET /questions/{id}?api_version=4` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "QuestionWire")]
pub struct Question {
    pub id: u64,
    pub seller_id: u64,
    pub item_id: String,
    pub status: QuestionStatus,
    /// Empty when the question is BANNED.
    pub text: String,
    pub date_created: OffsetDateTime,
    pub hold: bool,
    pub deleted_from_listing: bool,
    pub answer: Option<Answer>,
    /// The buyer who asked (`from.id`, or `buyer_id`).
    pub from: Asker,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QuestionStatus {
    Unanswered,
    Answered,
    ClosedUnanswered,
    UnderReview,
    Banned,
    Deleted,
    Disabled,
    /// A status Mercado Livre added after this was written.
    #[serde(other)]
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Answer {
    /// Empty when the answer is BANNED.
    #[serde(default)]
    pub text: String,
    #[serde(default, deserialize_with = "wire::optional_text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    pub date_created: Option<OffsetDateTime>,
}

/// The buyer who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Asker {
    #[serde(deserialize_with = "wire::lenient_u64")]
    pub id: u64,
}

#[derive(Deserialize)]
struct QuestionWire {
    #[serde(deserialize_with = "wire::lenient_u64")]
    id: u64,
    #[serde(deserialize_with = "wire::lenient_u64")]
    seller_id: u64,
    item_id: String,
    status: QuestionStatus,
    #[serde(default)]
    text: String,
    #[serde(deserialize_with = "wire::rfc3339")]
    date_created: OffsetDateTime,
    #[serde(default)]
    hold: bool,
    #[serde(default)]
    deleted_from_listing: bool,
    #[serde(default)]
    answer: Option<Answer>,
    #[serde(default)]
    from: Option<Asker>,
    #[serde(default, deserialize_with = "wire::optional_u64")]
    buyer_id: Option<u64>,
}

impl TryFrom<QuestionWire> for Question {
    type Error = &'static str;

    fn try_from(wire: QuestionWire) -> Result<Self, Self::Error> {
        let from = wire
            .from
            .or(wire.buyer_id.map(|id| Asker { id }))
            .ok_or("the question names no buyer (neither from.id nor buyer_id)")?;
        Ok(Question {
            id: wire.id,
            seller_id: wire.seller_id,
            item_id: wire.item_id,
            status: wire.status,
            text: wire.text,
            date_created: wire.date_created,
            hold: wire.hold,
            deleted_from_listing: wire.deleted_from_listing,
            answer: wire.answer,
            from,
        })
    }
}

/// A published answer: what was asked to be published, and whatever Mercado Livre's
/// reply said about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedAnswer {
    pub question_id: u64,
    /// The text sent.
    pub text: String,
    /// The answer's status if the reply gives one (`ACTIVE`; `BANNED` when moderated).
    pub status: Option<String>,
    pub date_created: Option<OffsetDateTime>,
}

impl MercadoLivre {
    /// `GET /questions/{id}?api_version=4`.
    pub async fn get_question(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        question_id: u64,
    ) -> Result<Question, UpstreamError> {
        let url = self.resource_url(
            &["questions", &question_id.to_string()],
            &[("api_version", "4")],
        )?;
        self.call(&Self::get_call("GetQuestion", access_token, seller_id, url))
            .await
    }

    /// `POST /answers {"question_id", "text"}`. Any 2xx means the answer is published;
    /// the reply's body is read for the answer's status and date if it has them, never
    /// required to. Not retried once the request may have been sent (a POST is not
    /// idempotent).
    pub async fn answer_question(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        question_id: u64,
        text: &str,
    ) -> Result<PublishedAnswer, UpstreamError> {
        let url = self.url("/answers")?;
        let body = self
            .call_bytes(&Call {
                operation: "AnswerQuestion",
                method: Method::POST,
                url,
                auth: Auth::Bearer(access_token),
                seller_id: Some(seller_id),
                budget: Budget::Work,
                body: Body::Json(serde_json::json!({ "question_id": question_id, "text": text })),
            })
            .await?;
        let reply = AnswerReply::read(&body);
        Ok(PublishedAnswer {
            question_id,
            text: text.to_owned(),
            status: reply.status,
            date_created: reply.date_created,
        })
    }
}

/// What an answer's reply may say about the answer: in an `answer` object (the reply is
/// the answered question) or at the top level (the reply is the answer).
#[derive(Default, Deserialize)]
struct AnswerReply {
    #[serde(default, deserialize_with = "wire::optional_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    date_created: Option<OffsetDateTime>,
}

impl AnswerReply {
    fn read(body: &[u8]) -> Self {
        let reply = match serde_json::from_slice::<serde_json::Value>(body) {
            // A reply that has an `answer` key is the question: its own status is not the
            // answer's.
            Ok(serde_json::Value::Object(mut reply)) => match reply.remove("answer") {
                Some(answer) => answer,
                None => serde_json::Value::Object(reply),
            },
            _ => return Self::default(),
        };
        serde_json::from_value(reply).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reply_is_read_for_whatever_it_says() {
        let question = r#"{"id":1,"status":"ANSWERED","answer":{"text":"Sim","status":"ACTIVE","date_created":"2026-11-20T11:30:00.000-03:00"}}"#;
        let reply = AnswerReply::read(question.as_bytes());
        assert_eq!(
            reply.status.as_deref(),
            Some("ACTIVE"),
            "the answer's, not the question's"
        );
        assert_eq!(reply.date_created.map(|date| date.minute()), Some(30));

        let answer =
            r#"{"id":7,"text":"Sim","status":"ACTIVE","date_created":"2026-11-20T11:31:00Z"}"#;
        let reply = AnswerReply::read(answer.as_bytes());
        assert_eq!(reply.status.as_deref(), Some("ACTIVE"));
        assert_eq!(reply.date_created.map(|date| date.minute()), Some(31));

        for odd in [
            "",
            "[]",
            "null",
            "{}",
            "not json",
            r#"{"status":5}"#,
            r#"{"answer":"x"}"#,
            r#"{"answer":null,"status":"UNANSWERED"}"#,
        ] {
            let reply = AnswerReply::read(odd.as_bytes());
            assert_eq!((reply.status, reply.date_created), (None, None), "{odd:?}");
        }
    }
}
