//! `GET /missed_feeds?app_id=…&topic=…&offset=…&limit=…` ("Notificaciones", history of
//! notifications): the notifications Mercado Livre could not deliver (no 200 after its
//! retries, about an hour), kept for 2 days, 10 per page unless `limit` says otherwise.
//!
//! Each entry is the notification's own fields plus `request` (what was POSTed to the
//! callback URL: `url`, `headers`, and `data`, the body as a JSON string) and `response`
//! (what the callback answered: `http_code`, …). The notification is handed back as sent
//! (`request.data`), so feeding it through the ingest path gives it the same dedupe key
//! as a delivery that did arrive.

use secrecy::SecretString;
use serde_json::value::RawValue;

use super::client::MercadoLivre;
use super::error::UpstreamError;

/// One page of missed notifications.
#[derive(Clone, Debug)]
pub struct MissedFeeds {
    pub messages: Vec<MissedFeed>,
}

#[derive(Clone, Debug)]
pub struct MissedFeed {
    /// The notification as it was POSTed (`request.data`); for an entry without it, the
    /// entry's own notification fields.
    pub notification: Box<RawValue>,
    /// What the callback answered to the last attempt, if it answered.
    pub http_code: Option<u16>,
}

impl MercadoLivre {
    /// One page of the application's missed notifications of `topic`, `limit` of them
    /// from `offset`. The call is counted against `seller_id`'s budget (the account whose
    /// token makes it).
    pub async fn missed_feeds(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        app_id: &str,
        topic: &str,
        offset: u32,
        limit: u32,
    ) -> Result<MissedFeeds, UpstreamError> {
        let (offset, limit) = (offset.to_string(), limit.to_string());
        let url = self.resource_url(
            &["missed_feeds"],
            &[
                ("app_id", app_id),
                ("topic", topic),
                ("offset", &offset),
                ("limit", &limit),
            ],
        )?;
        let body = self
            .call_bytes(&Self::get_call("MissedFeeds", access_token, seller_id, url))
            .await?;
        parse(&body).map_err(|reason| UpstreamError::Malformed(format!("MissedFeeds: {reason}")))
    }
}

type Entry = serde_json::Map<String, serde_json::Value>;

fn parse(body: &[u8]) -> Result<MissedFeeds, String> {
    let mut page: Entry = serde_json::from_slice(body).map_err(|error| error.to_string())?;
    let entries: Vec<Entry> = match page.remove("messages") {
        None => return Err("no messages in the reply".to_owned()),
        Some(serde_json::Value::Null) => Vec::new(),
        Some(messages) => serde_json::from_value(messages).map_err(|error| error.to_string())?,
    };
    let messages = entries.into_iter().map(entry).collect::<Result<_, _>>()?;
    Ok(MissedFeeds { messages })
}

fn entry(mut entry: Entry) -> Result<MissedFeed, String> {
    let request = entry.remove("request");
    let response = entry.remove("response");
    let http_code = response
        .as_ref()
        .and_then(|response| response.get("http_code"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|code| u16::try_from(code).ok());
    let sent = request
        .as_ref()
        .and_then(|request| request.get("data"))
        .and_then(serde_json::Value::as_str)
        .and_then(|data| RawValue::from_string(data.to_owned()).ok())
        .filter(|data| data.get().trim_start().starts_with('{'));
    let notification = match sent {
        Some(sent) => sent,
        None => {
            let own = serde_json::to_string(&entry).map_err(|error| error.to_string())?;
            RawValue::from_string(own).map_err(|error| error.to_string())?
        }
    };
    Ok(MissedFeed {
        notification,
        http_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!("../../fixtures/mercadolivre/missed_feeds.json");

    #[test]
    fn hands_back_each_notification_as_it_was_posted() {
        let page = parse(DOCUMENTED.as_bytes()).unwrap();
        assert_eq!(page.messages.len(), 2);
        let first = &page.messages[0];
        assert_eq!(first.http_code, Some(400));
        let sent: serde_json::Value = serde_json::from_str(first.notification.get()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"resource": "a35cf79864a845ca9a3bf6aee59bb4d7", "user_id": "465432224",
                "topic": "messages", "application_id": 3486171129139063u64, "attempts": 1,
                "sent": "2019-10-17T17:15:30.279Z", "received": "2019-10-17T17:15:30.259Z"}),
            "request.data, byte for byte what was sent"
        );
        assert!(
            page.messages[1]
                .notification
                .get()
                .contains("/items/MLA820048955")
        );
    }

    #[test]
    fn an_entry_without_the_request_is_its_own_notification() {
        let body = serde_json::json!({"messages": [
            {"_id": "n1", "resource": "/questions/1", "user_id": 5, "topic": "questions",
             "application_id": 7, "attempts": 8, "sent": "2026-11-20T14:02:11.482Z",
             "request": {"url": "https://example.test", "data": "not json"},
             "response": {"http_code": 503}},
            {"_id": "n2", "resource": "/orders/2", "user_id": 5, "topic": "orders_v2",
             "application_id": 7, "response": null}
        ]});
        let page = parse(body.to_string().as_bytes()).unwrap();
        let own: serde_json::Value =
            serde_json::from_str(page.messages[0].notification.get()).unwrap();
        assert_eq!(own["_id"], "n1");
        assert_eq!(own["attempts"], 8);
        assert!(own.get("request").is_none() && own.get("response").is_none());
        assert_eq!(page.messages[0].http_code, Some(503));
        assert_eq!(page.messages[1].http_code, None);

        assert!(parse(br#"{"messages":null}"#).unwrap().messages.is_empty());
        assert!(parse(br#"{"results":[]}"#).is_err());
        assert!(parse(br#"{"messages":[1]}"#).is_err());
        assert!(parse(b"[]").is_err());
    }
}
