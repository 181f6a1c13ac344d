//! WhatsApp Cloud API webhooks as Meta sends them (the shape of
//! `shared/fixtures/meta/whatsapp-message.json`), signed with the app secret: what makes
//! the local runner write inbox items and events for a tenant that linked the number.

use aws_lc_rs::hmac;
use serde_json::json;

/// A text message from customer `from` to the business number `phone_number_id`.
pub fn message(phone_number_id: &str, from: &str, message_id: &str, text: &str) -> String {
    message_at(phone_number_id, from, message_id, text, 1_763_647_331)
}

/// [`message`], sent at `timestamp` (seconds since the epoch, as Meta says it).
pub fn message_at(
    phone_number_id: &str,
    from: &str,
    message_id: &str,
    text: &str,
    timestamp: u64,
) -> String {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {
                        "display_phone_number": "5511955550000",
                        "phone_number_id": phone_number_id,
                    },
                    "contacts": [{ "profile": { "name": "Cliente" }, "wa_id": from }],
                    "messages": [{
                        "from": from,
                        "id": message_id,
                        "timestamp": timestamp.to_string(),
                        "type": "text",
                        "text": { "body": text },
                    }],
                },
            }],
        }],
    })
    .to_string()
}

/// `X-Hub-Signature-256` of `body` under `app_secret`.
pub fn signature(body: &str, app_secret: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body.as_bytes())))
}

/// POSTs `body` to the runner at `base_url` as Meta does, signed with `app_secret`.
pub async fn post(
    client: &reqwest::Client,
    base_url: &str,
    body: String,
    app_secret: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{base_url}/webhooks/meta"))
        .header("x-hub-signature-256", signature(&body, app_secret))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
}
