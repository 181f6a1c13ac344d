//! Every inbox key, in one place. Each starts with the tenant, so no read can cross
//! tenants; the reads they are laid out for:
//!
//! | item | pk | sk | gsi1pk / gsi1sk | read |
//! |---|---|---|---|---|
//! | question | `TENANT#t` | `QUESTION#id` | `TENANT#t#QUESTIONS#STATUS` / `created#id` | by status, newest first |
//! | answer being published | `TENANT#t` | `ANSWERING#id` | | taken before `POST /answers` (expires) |
//! | conversation | `TENANT#t` | `CONV#channel#id` | `TENANT#t#CONVS` / `updated#channel#id` | newest updated first |
//! | message | `TENANT#t#CONV#channel#id` | `MSG#id` | `TENANT#t#CONV#channel#id#MSGS` / `at#id` | a conversation's, newest first |
//! | notification | `TENANT#t#NOTIFS` | `id` (UUIDv7: time ordered) | `TENANT#t#UNREAD` / `id`, while unread | newest first; the unread ones |
//! | unread notifications' count | `TENANT#t` | `NOTIFS#UNREAD` | | its counter, one get |
//!
//! Times in sort keys are milliseconds since the epoch, zero-padded to 13 digits so that
//! text order is time order (until the year 2286).

use crate::store::Key;

use super::Channel;

fn tenant_pk(tenant: &str) -> String {
    format!("TENANT#{tenant}")
}

pub fn sortable_ms(ms: i64) -> String {
    format!("{:013}", ms.max(0))
}

pub fn question(tenant: &str, question_id: u64) -> Key {
    Key::new(tenant_pk(tenant), format!("QUESTION#{question_id}"))
}

/// The guard an answer to a question holds while it is being published.
pub fn answering(tenant: &str, question_id: u64) -> Key {
    Key::new(tenant_pk(tenant), format!("ANSWERING#{question_id}"))
}

/// The questions of `tenant` in `status` (Mercado Livre's, e.g. `UNANSWERED`).
pub fn questions_by_status(tenant: &str, status: &str) -> String {
    format!("TENANT#{tenant}#QUESTIONS#{status}")
}

pub fn conversation(tenant: &str, channel: Channel, conversation_id: &str) -> Key {
    Key::new(
        tenant_pk(tenant),
        format!("CONV#{}#{conversation_id}", channel.as_str()),
    )
}

pub fn conversations(tenant: &str) -> String {
    format!("TENANT#{tenant}#CONVS")
}

fn conversation_pk(tenant: &str, channel: Channel, conversation_id: &str) -> String {
    format!(
        "TENANT#{tenant}#CONV#{}#{conversation_id}",
        channel.as_str()
    )
}

pub fn message(tenant: &str, channel: Channel, conversation_id: &str, message_id: &str) -> Key {
    Key::new(
        conversation_pk(tenant, channel, conversation_id),
        format!("MSG#{message_id}"),
    )
}

/// The messages of one conversation.
pub fn messages(tenant: &str, channel: Channel, conversation_id: &str) -> String {
    format!("{}#MSGS", conversation_pk(tenant, channel, conversation_id))
}

/// The tenant's notifications.
pub fn notifications(tenant: &str) -> String {
    format!("TENANT#{tenant}#NOTIFS")
}

pub fn notification(tenant: &str, notification_id: &str) -> Key {
    Key::new(notifications(tenant), notification_id)
}

pub fn unread_notifications(tenant: &str) -> String {
    format!("TENANT#{tenant}#UNREAD")
}

/// The item whose counter is how many of the tenant's notifications are unread.
pub fn unread_count(tenant: &str) -> Key {
    Key::new(tenant_pk(tenant), "NOTIFS#UNREAD")
}
