//! Sending notifications the way Mercado Livre does: a POST of a small JSON body naming
//! the changed resource to the application's callback URL (`notification_url`), counted
//! as delivered only if it is answered 200. Every notification is recorded; the ones not
//! delivered are what `GET /missed_feeds` lists. Mercado Livre retries for an hour before
//! giving up; the sandbox tries once, so a failed delivery is missed straight away.

use std::time::{Duration, Instant};

use http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Sandbox;
use super::market::{Feed, Outcome, utc_date};

/// How long the callback has to answer (Mercado Livre wants 500 ms; the sandbox is
/// lenient so a busy test machine does not lose notifications).
pub(super) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A notification to send.
pub(super) struct Change<'a> {
    pub seller_id: u64,
    pub topic: &'a str,
    pub resource: String,
    /// The sub-topics of a typed topic (`messages`: `["created"]`).
    pub actions: Option<&'a [&'a str]>,
    /// `false` records the notification as missed without sending it: a lost delivery,
    /// on demand.
    pub deliver: bool,
}

impl Sandbox {
    /// Sends the notification of `change` and records it (for `missed_feeds`).
    pub(super) async fn notify(&self, change: Change<'_>) -> Feed {
        let now = OffsetDateTime::now_utc();
        let application_id = self
            .app_number
            .parse::<u64>()
            .map_or_else(|_| Value::from(self.app_number.clone()), Value::from);
        let mut notification = json!({
            "_id": uuid::Uuid::new_v4().to_string(),
            "resource": change.resource,
            "user_id": change.seller_id,
            "topic": change.topic,
            "application_id": application_id,
            "attempts": 1,
            "sent": utc_date(now),
            "received": utc_date(now),
        });
        if let (Some(actions), Value::Object(fields)) = (change.actions, &mut notification) {
            fields.insert("actions".into(), json!(actions));
        }
        let data = notification.to_string();
        let url = self.settings.notification_url.clone();
        let outcome = match (&url, &self.delivery, change.deliver) {
            (_, _, false) => Outcome::Unanswered {
                reason: "not sent: delivery was switched off for this notification".into(),
            },
            (None, _, true) => Outcome::Unanswered {
                reason: "not sent: the sandbox has no notification_url".into(),
            },
            (Some(_), None, true) => Outcome::Unanswered {
                reason: "not sent: no HTTP client could be built".into(),
            },
            (Some(url), Some(http), true) => post(http, url, &data).await,
        };
        tracing::info!(
            topic = change.topic,
            resource = notification["resource"].as_str().unwrap_or_default(),
            http_code = outcome.http_code(),
            delivered = outcome.delivered(),
            "sandbox mercadolivre: notification"
        );
        let feed = Feed {
            notification,
            data,
            topic: change.topic.to_owned(),
            url,
            sent_at: now,
            outcome,
        };
        self.market().record(feed.clone());
        feed
    }
}

async fn post(http: &reqwest::Client, url: &str, data: &str) -> Outcome {
    let started = Instant::now();
    let sent = http
        .post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(ACCEPT, "application/json")
        .body(data.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) => Outcome::Answered {
            http_code: response.status().as_u16(),
            millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        },
        Err(error) => Outcome::Unanswered {
            reason: if error.is_timeout() {
                format!("no answer within {} s", DELIVERY_TIMEOUT.as_secs())
            } else if error.is_connect() {
                "could not connect".into()
            } else {
                "the request failed".into()
            },
        },
    }
}
