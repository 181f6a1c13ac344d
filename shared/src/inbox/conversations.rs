//! A tenant's conversations and their messages as the API reads them. A conversation's
//! public id is `channel:id` (`whatsapp:5511987654321`), since ids are only unique within
//! a channel.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::store::{Cursor, Item, Page, Query, Store, StoreResult};

use super::{Channel, keys};

/// The most store pages one filtered listing reads before it answers with what it found
/// (maybe a short page, with a cursor to go on): a filter that matches little costs
/// a bounded amount of work per request, as DynamoDB's own filters do.
const MAX_FILTERED_READS: usize = 4;

/// Which conversations a listing keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub channel: Option<Channel>,
    /// Only those with unread messages (`Some(true)`) or none (`Some(false)`).
    pub unread: Option<bool>,
}

impl Filter {
    fn keeps(&self, item: &Item) -> bool {
        let channel = self
            .channel
            .is_none_or(|channel| item.data["channel"] == channel.as_str());
        let unread = self
            .unread
            .is_none_or(|unread| (item.data["unread"].as_u64().unwrap_or(0) > 0) == unread);
        channel && unread
    }
}

/// A conversation's public id.
pub fn public_id(channel: Channel, conversation_id: &str) -> String {
    format!("{}:{conversation_id}", channel.as_str())
}

/// The channel and id a public id names, if it is one.
pub fn parse_id(public: &str) -> Option<(Channel, &str)> {
    let (channel, id) = public.split_once(':')?;
    Some((Channel::parse(channel)?, id)).filter(|(_, id)| !id.is_empty())
}

/// A stored conversation as the API shows it: its public id, the provider's id beside it.
pub fn to_public(item: &Item) -> Value {
    let mut data = item.data.clone();
    let channel = data["channel"].as_str().and_then(Channel::parse);
    if let (Some(channel), Some(id)) = (channel, data["id"].as_str().map(str::to_owned)) {
        data["external_id"] = json!(id);
        data["id"] = json!(public_id(channel, &id));
    }
    data
}

#[derive(Clone)]
pub struct Conversations {
    store: Arc<dyn Store>,
}

impl Conversations {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// A page of `tenant`'s conversations that `filter` keeps, most recently updated
    /// first.
    pub async fn list(
        &self,
        tenant: &str,
        filter: Filter,
        limit: usize,
        mut after: Option<Cursor>,
    ) -> StoreResult<Page> {
        let mut items = Vec::new();
        for _ in 0..MAX_FILTERED_READS {
            let query = Query::partition(keys::conversations(tenant))
                .on_gsi1()
                .backward()
                .limit(limit - items.len())
                .after(after);
            let page = self.store.query(query).await?;
            items.extend(page.items.into_iter().filter(|item| filter.keeps(item)));
            after = page.next;
            if items.len() == limit || after.is_none() {
                break;
            }
        }
        Ok(Page { items, next: after })
    }

    pub async fn get(
        &self,
        tenant: &str,
        channel: Channel,
        conversation_id: &str,
    ) -> StoreResult<Option<Item>> {
        self.store
            .get(&keys::conversation(tenant, channel, conversation_id))
            .await
    }

    /// A page of one conversation's messages, newest first.
    pub async fn messages(
        &self,
        tenant: &str,
        channel: Channel,
        conversation_id: &str,
        limit: usize,
        after: Option<Cursor>,
    ) -> StoreResult<Page> {
        let query = Query::partition(keys::messages(tenant, channel, conversation_id))
            .on_gsi1()
            .backward()
            .limit(limit)
            .after(after);
        self.store.query(query).await
    }
}
