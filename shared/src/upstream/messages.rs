//! Post-sale messages: `GET /messages/{id}?tag=post_sale` ("Gestión de mensajes"). A
//! `messages` notification's `resource` is the bare message id, so the URL is built here.
//!
//! The documentation shows two replies: the current one, `{"messages": [{"id", "from":
//! {"user_id"}, "to", "text": "…", "message_date": {"created"}, "message_resources":
//! [{"id", "name": "packs"}]}]}`, and the older one, `{"message_id", "from", "to", "text":
//! {"plain"}, "date", "resource": "orders", "resource_id"}`. Both are read; what the inbox
//! cannot do without (sender, recipient, text, date, the conversation) must be there.

use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

use super::client::MercadoLivre;
use super::error::UpstreamError;
use super::wire;

/// A message between a buyer and the seller after a sale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostSaleMessage {
    pub id: String,
    pub text: String,
    /// Since 2026 (MLB, MLC) the buyer's side may be Mercado Livre's messaging agent.
    pub from_user_id: u64,
    pub to_user_id: u64,
    pub created_at: OffsetDateTime,
    /// The pack the message belongs to (`message_resources` named `packs`), else its
    /// order: the conversation it is part of.
    pub conversation_id: String,
}

impl MercadoLivre {
    /// `GET /messages/{id}?tag=post_sale`. `message_id` is a notification's `resource`
    /// (e.g. `0190f3c2a1b24d5e8f7a6b5c4d3e2f10`): anything but letters, digits, `-` and
    /// `_` is refused before a request is made.
    pub async fn get_message(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        message_id: &str,
    ) -> Result<PostSaleMessage, UpstreamError> {
        let valid = !message_id.is_empty()
            && message_id.len() <= 100
            && message_id
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
        if !valid {
            return Err(UpstreamError::InvalidPath(
                message_id.chars().take(200).collect(),
            ));
        }
        let url = self.resource_url(&["messages", message_id], &[("tag", "post_sale")])?;
        let body = self
            .call_bytes(&Self::get_call("GetMessage", access_token, seller_id, url))
            .await?;
        parse(&body, message_id)
            .map_err(|reason| UpstreamError::Malformed(format!("GetMessage: {reason}")))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Reply {
    Current { messages: Vec<MessageWire> },
    Legacy(Box<MessageWire>),
}

#[derive(Deserialize)]
struct MessageWire {
    #[serde(alias = "message_id", deserialize_with = "wire::id_text")]
    id: String,
    from: Option<UserRef>,
    to: Option<UserRef>,
    text: Option<Text>,
    message_date: Option<MessageDates>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    date_created: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    date: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    date_received: Option<OffsetDateTime>,
    message_resources: Option<Vec<Resource>>,
    #[serde(default, deserialize_with = "wire::optional_text")]
    resource: Option<String>,
    #[serde(default, deserialize_with = "optional_id_text")]
    resource_id: Option<String>,
}

#[derive(Deserialize)]
struct UserRef {
    #[serde(deserialize_with = "wire::lenient_u64")]
    user_id: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    Plain(String),
    Object { plain: Option<String> },
}

#[derive(Deserialize)]
struct MessageDates {
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    created: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    received: Option<OffsetDateTime>,
    #[serde(default, deserialize_with = "wire::optional_rfc3339")]
    available: Option<OffsetDateTime>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(deserialize_with = "wire::id_text")]
    id: String,
    #[serde(default)]
    name: String,
}

fn optional_id_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    Ok(wire::optional_u64(deserializer)?.map(|id| id.to_string()))
}

fn parse(body: &[u8], message_id: &str) -> Result<PostSaleMessage, String> {
    let reply: Reply = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let message = match reply {
        Reply::Legacy(message) => *message,
        Reply::Current { messages } => {
            let mut messages = messages.into_iter();
            let first = messages.next().ok_or("the reply holds no message")?;
            if first.id == message_id {
                first
            } else {
                messages
                    .find(|message| message.id == message_id)
                    .unwrap_or(first)
            }
        }
    };
    let text = match message.text.ok_or("no text")? {
        Text::Plain(text) => text,
        Text::Object { plain } => plain.ok_or("no text.plain")?,
    };
    let dates = message.message_date.as_ref();
    let created_at = dates
        .and_then(|dates| dates.created.or(dates.received).or(dates.available))
        .or(message.date_created)
        .or(message.date)
        .or(message.date_received)
        .ok_or("no creation date")?;
    let resources = message.message_resources.unwrap_or_default();
    let named = |name: &str| {
        resources
            .iter()
            .find(|resource| resource.name == name && !resource.id.is_empty())
            .map(|resource| resource.id.clone())
    };
    let legacy_order = message.resource_id.filter(|_| {
        message
            .resource
            .as_deref()
            .is_none_or(|name| name == "orders")
    });
    let conversation_id = named("packs")
        .or_else(|| named("orders"))
        .or(legacy_order)
        .ok_or("no pack or order in message_resources")?;
    Ok(PostSaleMessage {
        id: message.id,
        text,
        from_user_id: message.from.ok_or("no from.user_id")?.user_id,
        to_user_id: message.to.ok_or("no to.user_id")?.user_id,
        created_at,
        conversation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CURRENT: &str = include_str!("../../fixtures/mercadolivre/message-post_sale.json");
    const LEGACY: &str = include_str!("../../fixtures/mercadolivre/message-post_sale-legacy.json");

    #[test]
    fn reads_the_current_reply_and_its_pack() {
        let message = parse(CURRENT.as_bytes(), "0190f3c2a1b24d5e8f7a6b5c4d3e2f10").unwrap();
        assert_eq!(message.id, "0190f3c2a1b24d5e8f7a6b5c4d3e2f10");
        assert_eq!(message.from_user_id, 1_302_765_432);
        assert_eq!(message.to_user_id, 468_424_240);
        assert_eq!(message.text, "Olá! O pedido já foi enviado?");
        assert_eq!(message.conversation_id, "2000009876543211");
        assert_eq!(message.created_at.unix_timestamp(), 1_795_183_622);
    }

    #[test]
    fn reads_the_legacy_reply_and_its_order() {
        let message = parse(LEGACY.as_bytes(), "0033b582a1474fa98c02d229abcec43c").unwrap();
        assert_eq!(message.id, "0033b582a1474fa98c02d229abcec43c");
        assert_eq!(message.text, "Ejemplo de texto");
        assert_eq!(
            (message.from_user_id, message.to_user_id),
            (123_456_789, 123_456_780)
        );
        assert_eq!(message.conversation_id, "1234567871");
        assert_eq!(
            message.created_at,
            wire::parse_date("2016-09-01T05:15:25.821Z").unwrap()
        );
    }

    #[test]
    fn picks_the_message_asked_for_and_falls_back_to_the_order() {
        let body = serde_json::json!({"paging": null, "messages": [
            {"id": "other", "from": {"user_id": 1}, "to": {"user_id": 2}, "text": "a",
             "message_date": {"created": "2020-12-05T20:01:46.000Z"},
             "message_resources": [{"id": "9", "name": "packs"}]},
            {"id": "wanted", "from": {"user_id": "3"}, "to": {"user_id": 4}, "text": "b",
             "message_date": {"created": null, "received": "2020-12-05T20:02:00.000Z"},
             "message_resources": [{"id": 77, "name": "orders"}, {"id": "5", "name": "sellers"}]}
        ]});
        let message = parse(body.to_string().as_bytes(), "wanted").unwrap();
        assert_eq!(
            (
                message.text.as_str(),
                message.from_user_id,
                message.conversation_id.as_str()
            ),
            ("b", 3, "77")
        );
        assert_eq!(message.created_at.minute(), 2);
    }

    #[test]
    fn refuses_a_message_missing_what_the_inbox_needs() {
        let complete = serde_json::json!({"id": "m", "from": {"user_id": 1}, "to": {"user_id": 2},
            "text": "a", "message_date": {"created": "2020-12-05T20:01:46.000Z"},
            "message_resources": [{"id": "9", "name": "packs"}]});
        assert!(parse(complete.to_string().as_bytes(), "m").is_ok());
        for (field, reason) in [
            ("text", "no text"),
            ("from", "no from.user_id"),
            ("to", "no to.user_id"),
            ("message_date", "no creation date"),
            ("message_resources", "no pack or order"),
        ] {
            let mut message = complete.clone();
            message.as_object_mut().unwrap().remove(field);
            let error = parse(message.to_string().as_bytes(), "m").unwrap_err();
            assert!(error.starts_with(reason), "{field}: {error}");
        }
        let empty = parse(br#"{"messages":[]}"#, "m").unwrap_err();
        assert_eq!(empty, "the reply holds no message");
        assert!(parse(b"[]", "m").is_err());
    }
}
