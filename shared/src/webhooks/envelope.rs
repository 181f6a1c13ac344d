//! The envelope: one provider change as it travels from an ingest function through the
//! queue to the worker.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::queue::OutMessage;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    MercadoLivre,
    Meta,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::MercadoLivre => "mercadolivre",
            Source::Meta => "meta",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub source: Source,
    /// When our ingest accepted it, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The same provider change always has the same key, however often it is delivered:
    /// the worker applies each key once.
    pub dedupe_key: String,
    /// The ingest request's correlation id, carried into the worker's logs.
    pub correlation_id: String,
    /// The provider's JSON exactly as received (for Meta: one change of the body).
    pub payload: Box<RawValue>,
    /// How often the worker has put it back for later (rate limited, provider down):
    /// each deferral waits longer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
}

fn is_zero(count: &u32) -> bool {
    *count == 0
}

impl Envelope {
    /// The queue message carrying this envelope.
    pub fn to_message(&self) -> Result<OutMessage, serde_json::Error> {
        Ok(OutMessage::new(serde_json::to_string(self)?))
    }

    pub fn from_message(body: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(body)
    }

    /// Up to 10 envelopes waiting on `queue`, received (tests).
    #[cfg(test)]
    pub async fn received(queue: &dyn crate::queue::Queue) -> Vec<Envelope> {
        let wait = std::time::Duration::ZERO;
        let visibility = std::time::Duration::from_secs(30);
        let messages = queue.receive(10, visibility, wait).await.unwrap();
        messages
            .iter()
            .map(|message| Envelope::from_message(&message.body).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_travels_byte_for_byte() {
        let payload = r#"{"text":"Ol\u00e1",  "n":1.50}"#;
        let envelope = Envelope {
            source: Source::Meta,
            received_at_ms: 1_763_647_331_000,
            dedupe_key: "meta:wamid.1".into(),
            correlation_id: "corr-1".into(),
            payload: RawValue::from_string(payload.into()).unwrap(),
            deferrals: 0,
        };
        let message = envelope.to_message().unwrap();
        let back = Envelope::from_message(&message.body).unwrap();
        assert_eq!(back.payload.get(), payload, "not re-serialised");
        assert_eq!(back.source, Source::Meta);
        assert_eq!(back.dedupe_key, "meta:wamid.1");
        assert!(message.body.contains(r#""source":"meta""#));
    }
}
