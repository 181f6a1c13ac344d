//! Meta (WhatsApp Cloud API) webhooks: the subscription handshake, the signature over the
//! raw body, and the body's changes — one envelope each, routed by the phone number id.

use aws_lc_rs::{constant_time, digest, hmac};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::WebhookError;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// GET /webhooks/meta: the challenge to echo when Meta subscribes with our verify token.
pub fn subscription_challenge<'a>(
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&'a str>,
    verify_token: &[u8],
) -> Option<&'a str> {
    let token_matches = token.is_some_and(|token| {
        constant_time::verify_slices_are_equal(token.as_bytes(), verify_token).is_ok()
    });
    (mode == Some("subscribe") && token_matches)
        .then_some(challenge)
        .flatten()
}

/// Checks `X-Hub-Signature-256` (`sha256=` and the hex HMAC-SHA256 of the raw body with
/// the app secret), in constant time. The body must be the bytes as received: parsing
/// and re-serialising them changes what was signed.
pub fn verify_signature(
    app_secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), WebhookError> {
    let signature = header
        .and_then(|value| value.trim().strip_prefix("sha256="))
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or(WebhookError::BadSignature)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret);
    hmac::verify(&key, body, &signature).map_err(|_| WebhookError::BadSignature)
}

/// One change of a webhook body (`entry[].changes[]`).
#[derive(Debug)]
pub struct Change {
    /// The change as received.
    pub payload: Box<RawValue>,
    pub dedupe_key: String,
}

#[derive(Deserialize)]
struct Body {
    /// `whatsapp_business_account`; required, so that other JSON is refused.
    #[serde(rename = "object")]
    _object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    changes: Vec<Box<RawValue>>,
}

/// What a change's dedupe key and routing are read from.
#[derive(Deserialize)]
struct ChangeFields {
    #[serde(default)]
    field: String,
    #[serde(default)]
    value: ChangeValue,
}

#[derive(Default, Deserialize)]
struct ChangeValue {
    #[serde(default)]
    messages: Vec<Identified>,
    #[serde(default)]
    statuses: Vec<Status>,
}

#[derive(Deserialize)]
struct Identified {
    id: String,
}

#[derive(Deserialize)]
struct Status {
    id: String,
    status: String,
}

/// Every change of a (verified) webhook body, in order.
pub fn changes(body: &[u8]) -> Result<Vec<Change>, WebhookError> {
    let malformed = |error: serde_json::Error| WebhookError::Malformed {
        what: "Meta webhook",
        reason: error.to_string(),
    };
    let body: Body = serde_json::from_slice(body).map_err(malformed)?;
    body.entry
        .into_iter()
        .flat_map(|entry| entry.changes)
        .map(|payload| {
            let fields: ChangeFields = serde_json::from_str(payload.get()).map_err(malformed)?;
            Ok(Change {
                dedupe_key: dedupe_key(&fields, &payload),
                payload,
            })
        })
        .collect()
}

/// A message's id (`wamid`) is the same on every retry; a status is its message's id and
/// the status (sent, delivered and read are three changes). Anything else: its field and
/// a digest of its bytes.
fn dedupe_key(fields: &ChangeFields, payload: &RawValue) -> String {
    let value = &fields.value;
    let ids: Vec<String> = if !value.messages.is_empty() {
        value
            .messages
            .iter()
            .map(|message| message.id.clone())
            .collect()
    } else {
        value
            .statuses
            .iter()
            .map(|status| format!("{}:{}", status.id, status.status))
            .collect()
    };
    if ids.is_empty() {
        let digest = digest::digest(&digest::SHA256, payload.get().as_bytes());
        format!("meta:{}:{}", fields.field, hex::encode(digest.as_ref()))
    } else {
        format!("meta:{}", ids.join("+"))
    }
}

/// What the worker reads from one change (of field `messages`): the messages customers
/// sent and the delivery statuses of the seller's messages.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeContent {
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub value: MessagesValue,
}

#[derive(Debug, Default, Deserialize)]
pub struct MessagesValue {
    pub metadata: Option<PhoneNumber>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub messages: Vec<InboundMessage>,
    #[serde(default)]
    pub statuses: Vec<StatusChange>,
}

#[derive(Debug, Deserialize)]
pub struct PhoneNumber {
    pub phone_number_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    pub wa_id: String,
    pub profile: Option<Profile>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct InboundMessage {
    /// The customer's WhatsApp id: their conversation.
    pub from: String,
    pub id: String,
    /// Seconds since the epoch, as a string.
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<Text>,
}

#[derive(Debug, Deserialize)]
pub struct Text {
    pub body: String,
}

#[derive(Debug, Deserialize)]
pub struct StatusChange {
    /// The seller's message this status is about.
    pub id: String,
    pub status: String,
    /// The customer's WhatsApp id: the conversation of that message.
    pub recipient_id: String,
}

impl ChangeContent {
    pub fn parse(payload: &RawValue) -> Result<Self, WebhookError> {
        serde_json::from_str(payload.get()).map_err(|error| WebhookError::Malformed {
            what: "Meta change",
            reason: error.to_string(),
        })
    }

    /// The profile name of the customer `wa_id`, when Meta sent it.
    pub fn contact_name(&self, wa_id: &str) -> Option<&str> {
        self.value
            .contacts
            .iter()
            .find(|contact| contact.wa_id == wa_id)
            .and_then(|contact| contact.profile.as_ref()?.name.as_deref())
    }
}

impl InboundMessage {
    /// When it was sent, in milliseconds since the epoch (0 if Meta's stamp is unreadable).
    pub fn at_ms(&self) -> i64 {
        self.timestamp
            .parse::<i64>()
            .map_or(0, |secs| secs.saturating_mul(1000))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/fixtures/meta/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
    }

    const SECRET: &[u8] = b"fixture-app-secret-do-not-use";
    const VECTOR: &str = "sha256=a0573f063a0beb4659e376ad26bb39dd22d1e73dff5284d0a06f812da6409847";

    #[test]
    fn the_signature_vector_verifies() {
        let body = fixture("whatsapp-message.json");
        assert_eq!(body.len(), 587);
        assert_eq!(verify_signature(SECRET, &body, Some(VECTOR)), Ok(()));
    }

    #[test]
    fn anything_else_is_a_bad_signature() {
        let body = fixture("whatsapp-message.json");
        let reserialised =
            serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap())
                .unwrap();
        let mut flipped = body.clone();
        flipped[100] ^= 1;
        let cases: [(&[u8], &[u8], Option<&str>); 6] = [
            (SECRET, &body, None),
            (
                SECRET,
                &body,
                Some("a0573f063a0beb4659e376ad26bb39dd22d1e73dff5284d0a06f812da6409847"),
            ),
            (SECRET, &body, Some("sha256=zz")),
            (b"another-secret", &body, Some(VECTOR)),
            (SECRET, &flipped, Some(VECTOR)),
            (SECRET, &reserialised, Some(VECTOR)),
        ];
        for (index, (secret, body, header)) in cases.into_iter().enumerate() {
            assert_eq!(
                verify_signature(secret, body, header),
                Err(WebhookError::BadSignature),
                "case {index}"
            );
        }
    }

    #[test]
    fn the_subscription_needs_subscribe_and_our_token() {
        let ours = b"verify-me";
        let challenge = subscription_challenge;
        assert_eq!(
            challenge(Some("subscribe"), Some("verify-me"), Some("42"), ours),
            Some("42")
        );
        assert_eq!(
            challenge(Some("subscribe"), Some("verify-mf"), Some("42"), ours),
            None
        );
        assert_eq!(challenge(Some("subscribe"), None, Some("42"), ours), None);
        assert_eq!(
            challenge(Some("unsubscribe"), Some("verify-me"), Some("42"), ours),
            None
        );
        assert_eq!(
            challenge(Some("subscribe"), Some("verify-me"), None, ours),
            None
        );
    }

    #[test]
    fn one_change_per_envelope_keyed_by_message_or_status() {
        let message = changes(&fixture("whatsapp-message.json")).unwrap();
        assert_eq!(message.len(), 1);
        assert_eq!(
            message[0].dedupe_key,
            "meta:wamid.HBgNNTUxMTk4ODg4Nzc3NxUCABIYFjNFQjBDMkE0RjY1RTlEMjE3NkM2AA=="
        );
        assert!(
            message[0].payload.get().contains(r"Ol\u00e1"),
            "the change is kept as received"
        );
        let status = changes(&fixture("whatsapp-status.json")).unwrap();
        assert_eq!(
            status[0].dedupe_key,
            "meta:wamid.HBgNNTUxMTk4ODg4Nzc3NxUCABEYEjQ1QjY3QzhEOUUwRjFBMkIzQwA=:delivered"
        );
    }

    #[test]
    fn several_entries_and_changes_and_other_fields() {
        let body = br#"{"object":"whatsapp_business_account","entry":[
            {"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p1"},"messages":[{"id":"w1"}]}},
                                 {"field":"account_update","value":{"event":"VERIFIED"}}]},
            {"id":"2","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"p2"},"messages":[{"id":"w2"},{"id":"w3"}]}}]}]}"#;
        let all = changes(body).unwrap();
        let keys: Vec<&str> = all
            .iter()
            .map(|change| change.dedupe_key.as_str())
            .collect();
        assert_eq!(keys[0], "meta:w1");
        assert!(keys[1].starts_with("meta:account_update:") && keys[1].len() > 60);
        assert_eq!(keys[2], "meta:w2+w3");
        assert!(all[2].payload.get().contains(r#""phone_number_id":"p2""#));
        for malformed in [
            &b"[]"[..],
            b"{}",
            b"{\"object\":1}",
            b"{\"object\":\"x\",\"entry\":[{\"changes\":[1]}]}",
        ] {
            assert!(matches!(
                changes(malformed),
                Err(WebhookError::Malformed { .. })
            ));
        }
    }

    #[test]
    fn the_worker_reads_messages_contacts_and_statuses() {
        let message = &changes(&fixture("whatsapp-message.json")).unwrap()[0];
        let content = ChangeContent::parse(&message.payload).unwrap();
        assert_eq!(content.field, "messages");
        assert_eq!(
            content.value.metadata.as_ref().unwrap().phone_number_id,
            "106540352242922"
        );
        let inbound = &content.value.messages[0];
        assert_eq!(inbound.from, "5511988887777");
        assert_eq!(inbound.kind, "text");
        assert_eq!(inbound.at_ms(), 1_763_647_331_000);
        assert!(
            inbound
                .text
                .as_ref()
                .unwrap()
                .body
                .starts_with("Olá! O pedido")
        );
        assert_eq!(content.contact_name("5511988887777"), Some("Ana Souza"));
        assert_eq!(content.contact_name("1"), None);

        let status = &changes(&fixture("whatsapp-status.json")).unwrap()[0];
        let content = ChangeContent::parse(&status.payload).unwrap();
        let delivered = &content.value.statuses[0];
        assert_eq!(
            (delivered.status.as_str(), delivered.recipient_id.as_str()),
            ("delivered", "5511988887777")
        );
    }
}
