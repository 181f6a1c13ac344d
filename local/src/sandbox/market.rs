//! What the sandbox marketplace holds: questions, orders, post-sale messages, and the
//! notifications it sent. Each resource renders itself in the JSON shape Mercado Livre's
//! API documents for it, so the client is exercised against real shapes.
//!
//! Ids start from the clock (not from 1) so that a restarted runner, whose store still has
//! the inbox of the previous run, does not hand out the same ids again.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};

/// Each kind of resource is capped, so a runner left creating things stays bounded.
const MAX_RESOURCES: usize = 10_000;
/// Mercado Livre keeps missed notifications for 2 days; the sandbox also caps their number.
const FEED_TTL: time::Duration = time::Duration::days(2);
const MAX_FEEDS: usize = 1_000;
/// The application a buyer writes with: Mercado Livre's own site (an id from its docs).
const MERCADO_LIVRE_SITE: u64 = 7092;
/// Mercado Livre answers with dates in Brasília time for MLB resources (UTC−3).
const BRASILIA: UtcOffset = match UtcOffset::from_hms(-3, 0, 0) {
    Ok(offset) => offset,
    Err(_) => UtcOffset::UTC,
};

#[derive(Clone, Debug)]
pub(super) struct Question {
    pub id: u64,
    pub seller_id: u64,
    pub buyer_id: u64,
    pub item_id: String,
    pub text: String,
    pub date_created: OffsetDateTime,
    pub answer: Option<(String, OffsetDateTime)>,
    /// How many `POST /answers` the seller sent for it, refused ones included.
    pub answer_requests: u32,
}

#[derive(Clone, Debug)]
pub(super) struct Order {
    pub id: u64,
    pub seller_id: u64,
    pub buyer_id: u64,
    pub buyer_nickname: String,
    pub item_id: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: f64,
    pub date_created: OffsetDateTime,
}

#[derive(Clone, Debug)]
pub(super) struct Message {
    pub id: String,
    pub seller_id: u64,
    pub from_user_id: u64,
    pub to_user_id: u64,
    /// The conversation: the order's pack, which for a single order is its id.
    pub pack_id: u64,
    pub text: String,
    pub date_created: OffsetDateTime,
}

/// A notification the sandbox sent (or, with delivery switched off, meant to send).
#[derive(Clone, Debug)]
pub(super) struct Feed {
    pub notification: Value,
    /// The body exactly as POSTed.
    pub data: String,
    pub topic: String,
    pub url: Option<String>,
    pub sent_at: OffsetDateTime,
    pub outcome: Outcome,
}

/// What the callback did with a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Answered: Mercado Livre counts only a 200 as delivered.
    Answered { http_code: u16, millis: u64 },
    /// No answer: no URL, no connection, a timeout, or delivery switched off.
    Unanswered { reason: String },
}

impl Outcome {
    pub fn delivered(&self) -> bool {
        matches!(self, Outcome::Answered { http_code: 200, .. })
    }

    pub fn http_code(&self) -> Option<u16> {
        match self {
            Outcome::Answered { http_code, .. } => Some(*http_code),
            Outcome::Unanswered { .. } => None,
        }
    }
}

/// Why something cannot be stored.
pub(super) type Refusal = String;

pub(super) struct Market {
    questions: BTreeMap<u64, Question>,
    orders: BTreeMap<u64, Order>,
    messages: BTreeMap<String, Message>,
    feeds: VecDeque<Feed>,
    next_question_id: u64,
    next_order_id: u64,
}

impl Market {
    pub fn new(now: OffsetDateTime) -> Self {
        let millis = u64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Self {
            questions: BTreeMap::new(),
            orders: BTreeMap::new(),
            messages: BTreeMap::new(),
            feeds: VecDeque::new(),
            next_question_id: 13_000_000_000 + millis % 1_000_000_000,
            next_order_id: 2_000_010_000_000_000 + millis % 1_000_000_000_000,
        }
    }

    pub fn ask(
        &mut self,
        seller_id: u64,
        buyer_id: u64,
        item_id: String,
        text: String,
        now: OffsetDateTime,
    ) -> Result<Question, Refusal> {
        full(self.questions.len(), "questions")?;
        let id = take(&mut self.next_question_id);
        let question = Question {
            id,
            seller_id,
            buyer_id,
            item_id,
            text,
            date_created: now,
            answer: None,
            answer_requests: 0,
        };
        self.questions.insert(id, question.clone());
        Ok(question)
    }

    /// Any seller's question (for the console).
    pub fn any_question(&self, id: u64) -> Option<&Question> {
        self.questions.get(&id)
    }

    pub fn question(&self, id: u64, seller_id: u64) -> Option<&Question> {
        self.questions
            .get(&id)
            .filter(|question| question.seller_id == seller_id)
    }

    /// Answers the seller's question, once.
    pub fn answer(
        &mut self,
        id: u64,
        seller_id: u64,
        text: String,
        now: OffsetDateTime,
    ) -> Result<Question, AnswerRefusal> {
        let question = self
            .questions
            .get_mut(&id)
            .filter(|question| question.seller_id == seller_id)
            .ok_or(AnswerRefusal::NotFound)?;
        question.answer_requests += 1;
        if question.answer.is_some() {
            return Err(AnswerRefusal::AlreadyAnswered);
        }
        question.answer = Some((text, now));
        Ok(question.clone())
    }

    pub fn place_order(
        &mut self,
        order: OrderRequest,
        now: OffsetDateTime,
    ) -> Result<Order, Refusal> {
        full(self.orders.len(), "orders")?;
        let id = take(&mut self.next_order_id);
        let order = Order {
            id,
            seller_id: order.seller_id,
            buyer_id: order.buyer_id,
            buyer_nickname: order.buyer_nickname,
            item_id: order.item_id,
            title: order.title,
            quantity: order.quantity,
            unit_price: order.unit_price,
            date_created: now,
        };
        self.orders.insert(id, order.clone());
        Ok(order)
    }

    pub fn order(&self, id: u64, seller_id: u64) -> Option<&Order> {
        self.orders
            .get(&id)
            .filter(|order| order.seller_id == seller_id)
    }

    /// The buyer of order `order_id` writes to its seller.
    pub fn write(
        &mut self,
        order_id: u64,
        id: String,
        text: String,
        now: OffsetDateTime,
    ) -> Result<Message, Refusal> {
        full(self.messages.len(), "messages")?;
        let order = self
            .orders
            .get(&order_id)
            .ok_or_else(|| format!("no order {order_id} in the sandbox: place one first"))?;
        let message = Message {
            id: id.clone(),
            seller_id: order.seller_id,
            from_user_id: order.buyer_id,
            to_user_id: order.seller_id,
            pack_id: order.id,
            text,
            date_created: now,
        };
        self.messages.insert(id, message.clone());
        Ok(message)
    }

    /// A message the seller is part of.
    pub fn message(&self, id: &str, seller_id: u64) -> Option<&Message> {
        self.messages
            .get(id)
            .filter(|message| message.seller_id == seller_id)
    }

    pub fn record(&mut self, feed: Feed) {
        let oldest = feed.sent_at - FEED_TTL;
        self.feeds.retain(|kept| kept.sent_at > oldest);
        while self.feeds.len() >= MAX_FEEDS {
            self.feeds.pop_front();
        }
        self.feeds.push_back(feed);
    }

    /// The notifications not delivered within the last 2 days, of `topic` if given,
    /// oldest first, as `GET /missed_feeds` lists them.
    pub fn missed<'a>(
        &'a self,
        topic: Option<&'a str>,
        now: OffsetDateTime,
    ) -> impl Iterator<Item = &'a Feed> + 'a {
        let oldest = now - FEED_TTL;
        self.feeds.iter().filter(move |feed| {
            !feed.outcome.delivered()
                && feed.sent_at > oldest
                && topic.is_none_or(|topic| feed.topic == topic)
        })
    }

    /// The most recent notifications, newest first.
    pub fn recent(&self, count: usize) -> impl Iterator<Item = &Feed> {
        self.feeds.iter().rev().take(count)
    }
}

pub(super) enum AnswerRefusal {
    NotFound,
    AlreadyAnswered,
}

pub(super) struct OrderRequest {
    pub seller_id: u64,
    pub buyer_id: u64,
    pub buyer_nickname: String,
    pub item_id: String,
    pub title: String,
    pub quantity: u32,
    pub unit_price: f64,
}

fn full(count: usize, what: &str) -> Result<(), Refusal> {
    if count >= MAX_RESOURCES {
        Err(format!(
            "the sandbox holds {MAX_RESOURCES} {what} already; restart the runner to start over"
        ))
    } else {
        Ok(())
    }
}

fn take(next: &mut u64) -> u64 {
    let id = *next;
    *next += 1;
    id
}

impl Question {
    /// `GET /questions/{id}?api_version=4`, as the fixture question-13190540261.json.
    pub fn to_json(&self) -> Value {
        let answer = self.answer.as_ref().map(|(text, date)| {
            json!({"text": text, "status": "ACTIVE", "date_created": local_date(*date)})
        });
        json!({
            "id": self.id,
            "seller_id": self.seller_id,
            "item_id": self.item_id,
            "status": if self.answer.is_some() { "ANSWERED" } else { "UNANSWERED" },
            "text": self.text,
            "date_created": local_date(self.date_created),
            "hold": false,
            "deleted_from_listing": false,
            "answer": answer,
            "from": {"id": self.buyer_id},
        })
    }
}

impl Order {
    /// `GET /orders/{id}`, as the example of "Gestionar órdenes" (a single order: its pack
    /// is null).
    pub fn to_json(&self) -> Value {
        let total = self.unit_price * f64::from(self.quantity);
        json!({
            "id": self.id,
            "status": "paid",
            "status_detail": null,
            "date_created": local_date(self.date_created),
            "date_closed": local_date(self.date_created),
            "last_updated": local_date(self.date_created),
            "pack_id": null,
            "order_items": [{
                "item": {"id": self.item_id, "title": self.title, "variation_id": null,
                         "variation_attributes": []},
                "quantity": self.quantity,
                "unit_price": self.unit_price,
                "full_unit_price": self.unit_price,
                "currency_id": "BRL",
            }],
            "total_amount": total,
            "paid_amount": total,
            "currency_id": "BRL",
            "buyer": {"id": self.buyer_id, "nickname": self.buyer_nickname},
            "seller": {"id": self.seller_id},
            "tags": ["paid", "not_delivered"],
        })
    }
}

impl Message {
    /// `GET /messages/{id}?tag=post_sale`, in its current form.
    pub fn to_json(&self) -> Value {
        let date = utc_date(self.date_created);
        json!({
            "paging": null,
            "conversation_status": null,
            "messages": [{
                "id": self.id,
                "site_id": "MLB",
                "client_id": MERCADO_LIVRE_SITE,
                "from": {"user_id": self.from_user_id},
                "to": {"user_id": self.to_user_id},
                "status": "available",
                "subject": null,
                "text": self.text,
                "message_date": {"received": date, "available": date, "notified": date,
                                 "created": date, "read": null},
                "message_moderation": {"status": "clean", "reason": null, "source": "online",
                                       "moderation_date": date},
                "message_attachments": null,
                "message_resources": [
                    {"id": self.pack_id.to_string(), "name": "packs"},
                    {"id": self.seller_id.to_string(), "name": "sellers"},
                ],
                "conversation_first_message": false,
            }],
        })
    }
}

impl Feed {
    /// An entry of `GET /missed_feeds`: the notification's fields, the request that
    /// carried it and what the callback answered.
    pub fn to_json(&self) -> Value {
        let mut entry = self.notification.clone();
        let response = match &self.outcome {
            Outcome::Answered { http_code, millis } => {
                json!({"req_time": millis, "http_code": http_code})
            }
            Outcome::Unanswered { .. } => json!({"req_time": null, "http_code": null}),
        };
        if let Value::Object(fields) = &mut entry {
            fields.insert(
                "request".into(),
                json!({
                    "url": self.url,
                    "headers": {"accept": "application/json", "content-type": "application/json",
                                "content-length": self.data.len()},
                    "data": self.data,
                }),
            );
            fields.insert("response".into(), response);
        }
        entry
    }
}

/// `2026-11-20T11:02:10.000-03:00`: how Mercado Livre dates a seller's resources.
pub(super) fn local_date(at: OffsetDateTime) -> String {
    stamp(at.to_offset(BRASILIA))
}

/// `2026-11-20T14:02:11.482Z`: how Mercado Livre dates notifications and messages.
pub(super) fn utc_date(at: OffsetDateTime) -> String {
    stamp(at.to_offset(UtcOffset::UTC))
}

fn stamp(at: OffsetDateTime) -> String {
    let offset = at.offset();
    let zone = if offset.is_utc() {
        "Z".to_owned()
    } else {
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!(
            "{sign}{:02}:{:02}",
            offset.whole_hours().unsigned_abs(),
            offset.minutes_past_hour().unsigned_abs()
        )
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{zone}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_mercado_livre_writes_them() {
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_795_183_331_482_000_000).unwrap();
        assert_eq!(utc_date(at), "2026-11-20T14:02:11.482Z");
        assert_eq!(local_date(at), "2026-11-20T11:02:11.482-03:00");
    }

    #[test]
    fn missed_feeds_are_the_undelivered_ones_of_the_last_two_days() {
        let now = OffsetDateTime::from_unix_timestamp(1_795_183_331).unwrap();
        let mut market = Market::new(now);
        let feed = |topic: &str, sent_at, outcome| Feed {
            notification: json!({"topic": topic}),
            data: String::new(),
            topic: topic.to_owned(),
            url: None,
            sent_at,
            outcome,
        };
        let answered = |http_code| Outcome::Answered {
            http_code,
            millis: 3,
        };
        let lost = Outcome::Unanswered {
            reason: "refused".into(),
        };
        market.record(feed(
            "questions",
            now - time::Duration::days(3),
            lost.clone(),
        ));
        market.record(feed("questions", now, answered(200)));
        market.record(feed("questions", now, answered(500)));
        market.record(feed("orders_v2", now, lost.clone()));
        let topics: Vec<(String, Option<u16>)> = market
            .missed(None, now)
            .map(|feed| (feed.topic.clone(), feed.outcome.http_code()))
            .collect();
        assert_eq!(
            topics,
            [("questions".into(), Some(500)), ("orders_v2".into(), None)]
        );
        assert_eq!(market.missed(Some("orders_v2"), now).count(), 1);
        assert_eq!(
            market.recent(10).count(),
            3,
            "the 3-day-old one was dropped"
        );
    }
}
