//! Questions buyers ask on a seller's listings: read one, answer one.

use http::Method;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::client::{Auth, Body, Call, MercadoLivre};
use super::error::UpstreamError;

/// A question as `GET /questions/{id}` returns it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Question {
    pub id: u64,
    pub seller_id: u64,
    pub item_id: String,
    pub status: QuestionStatus,
    pub text: String,
    #[serde(deserialize_with = "rfc3339")]
    pub date_created: OffsetDateTime,
    #[serde(default)]
    pub hold: bool,
    #[serde(default)]
    pub deleted_from_listing: bool,
    pub answer: Option<Answer>,
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
    pub text: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "optional_rfc3339")]
    pub date_created: Option<OffsetDateTime>,
}

/// The buyer who asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub struct Asker {
    pub id: u64,
}

impl MercadoLivre {
    pub async fn get_question(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        question_id: u64,
    ) -> Result<Question, UpstreamError> {
        let path = format!("/questions/{question_id}");
        self.get("GetQuestion", access_token, seller_id, &path)
            .await
    }

    /// Posts `text` as the answer; Mercado Livre returns the question, answered. Not
    /// retried once the request may have been sent (a POST is not idempotent).
    pub async fn answer_question(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        question_id: u64,
        text: &str,
    ) -> Result<Question, UpstreamError> {
        let url = self.url("/answers")?;
        self.call(&Call {
            operation: "AnswerQuestion",
            method: Method::POST,
            url,
            auth: Auth::Bearer(access_token),
            seller_id: Some(seller_id),
            body: Body::Json(serde_json::json!({ "question_id": question_id, "text": text })),
        })
        .await
    }
}

fn rfc3339<'de, D: Deserializer<'de>>(deserializer: D) -> Result<OffsetDateTime, D::Error> {
    let text = String::deserialize(deserializer)?;
    OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
}

fn optional_rfc3339<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<OffsetDateTime>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom))
        .transpose()
}
