//! Mercado Livre notifications: a pointer to a changed resource (`/questions/123`), sent
//! to our callback URL. They are not signed; what identifies them is our application's id.

use serde::Deserialize;

use super::WebhookError;

/// The fields sellerhub reads; the rest travels in the envelope as received.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Notification {
    /// The notification's id: the same across Mercado Livre's retries and `missed_feeds`.
    #[serde(rename = "_id")]
    pub id: Option<String>,
    pub resource: String,
    /// The seller the resource belongs to (a number, or a string of digits as
    /// `missed_feeds` shows it).
    #[serde(deserialize_with = "crate::upstream::wire::lenient_u64")]
    pub user_id: u64,
    pub topic: String,
    #[serde(deserialize_with = "crate::upstream::wire::lenient_u64")]
    pub application_id: u64,
    #[serde(default)]
    pub attempts: u32,
    pub sent: Option<String>,
    pub received: Option<String>,
}

impl Notification {
    /// Parses a notification sent to `application_id`, refusing one for another
    /// application (nothing of ours to apply it to).
    pub fn parse(body: &[u8], application_id: &str) -> Result<Self, WebhookError> {
        let notification = Self::decode(body)?;
        if notification.resource.is_empty() || notification.topic.is_empty() {
            return Err(WebhookError::Malformed {
                what: "Mercado Livre notification",
                reason: "resource and topic cannot be empty".into(),
            });
        }
        if notification.application_id.to_string() != application_id {
            return Err(WebhookError::ForeignApplication(
                notification.application_id,
            ));
        }
        Ok(notification)
    }

    /// A notification the ingest accepted, from its envelope's payload.
    pub fn from_payload(payload: &serde_json::value::RawValue) -> Result<Self, WebhookError> {
        Self::decode(payload.get().as_bytes())
    }

    fn decode(bytes: &[u8]) -> Result<Self, WebhookError> {
        serde_json::from_slice(bytes).map_err(|error| WebhookError::Malformed {
            what: "Mercado Livre notification",
            reason: error.to_string(),
        })
    }

    /// Its `_id`; without one, what identifies the change it reports.
    pub fn dedupe_key(&self) -> String {
        match &self.id {
            Some(id) if !id.is_empty() => format!("mercadolivre:{id}"),
            _ => format!(
                "mercadolivre:{}:{}:{}",
                self.topic,
                self.resource,
                self.sent.as_deref().unwrap_or_default()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "2069392825111111";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/fixtures/mercadolivre/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    #[test]
    fn parses_the_documented_notifications() {
        let question = Notification::parse(&fixture("notification-questions.json"), APP).unwrap();
        assert_eq!(question.topic, "questions");
        assert_eq!(question.resource, "/questions/13190540261");
        assert_eq!(question.user_id, 468_424_240);
        assert_eq!(question.attempts, 1);
        assert_eq!(
            question.dedupe_key(),
            "mercadolivre:9e3b2c1a-5f7d-4c1e-8a2b-3d4e5f6a7b8c"
        );
        for name in ["notification-orders_v2.json", "notification-messages.json"] {
            Notification::parse(&fixture(name), APP).unwrap();
        }
    }

    #[test]
    fn refuses_another_application_and_malformed_bodies() {
        let body = fixture("notification-questions.json");
        assert_eq!(
            Notification::parse(&body, "1"),
            Err(WebhookError::ForeignApplication(2_069_392_825_111_111))
        );
        for bad in [
            &b"not json"[..],
            br#"{"resource":"/questions/1","topic":"questions","application_id":2069392825111111}"#,
            br#"{"resource":"","user_id":1,"topic":"questions","application_id":2069392825111111}"#,
        ] {
            assert!(
                matches!(
                    Notification::parse(bad, APP),
                    Err(WebhookError::Malformed { .. })
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn ids_may_come_as_strings_of_digits() {
        let body = br#"{"resource":"/orders/7","user_id":"468424240","topic":"orders_v2","application_id":"5"}"#;
        let notification = Notification::parse(body, "5").unwrap();
        assert_eq!(notification.user_id, 468_424_240);
    }

    #[test]
    fn without_an_id_the_change_is_the_key() {
        let body = br#"{"resource":"/orders/7","user_id":1,"topic":"orders_v2","application_id":5,"sent":"2026-11-20T14:02:11.482Z"}"#;
        let notification = Notification::parse(body, "5").unwrap();
        assert_eq!(
            notification.dedupe_key(),
            "mercadolivre:orders_v2:/orders/7:2026-11-20T14:02:11.482Z"
        );
    }
}
