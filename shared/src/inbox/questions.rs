//! A tenant's questions as the API reads them (newest first, by status), and the guard
//! that lets one answer at a time be published to Mercado Livre.

use std::sync::Arc;

use crate::store::{
    Condition, Cursor, EpochSeconds, Item, Page, Query, Store, StoreError, StoreResult, WriteOp,
};

use super::keys;

/// How long an answer's guard holds if its holder never releases it (a crash between
/// taking it and hearing from Mercado Livre): a new answer may then be tried, and Mercado
/// Livre refuses it if the first one was published.
pub const ANSWER_GUARD_SECS: EpochSeconds = 120;

/// The statuses a question can be listed by: Mercado Livre's.
pub const STATUSES: &[&str] = &[
    "UNANSWERED",
    "ANSWERED",
    "CLOSED_UNANSWERED",
    "UNDER_REVIEW",
    "BANNED",
    "DELETED",
    "DISABLED",
];

#[derive(Clone)]
pub struct Questions {
    store: Arc<dyn Store>,
}

impl Questions {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// A page of `tenant`'s questions in `status`, newest first.
    pub async fn list(
        &self,
        tenant: &str,
        status: &str,
        limit: usize,
        after: Option<Cursor>,
    ) -> StoreResult<Page> {
        let query = Query::partition(keys::questions_by_status(tenant, status))
            .on_gsi1()
            .backward()
            .limit(limit)
            .after(after);
        self.store.query(query).await
    }

    pub async fn get(&self, tenant: &str, question_id: u64) -> StoreResult<Option<Item>> {
        self.store.get(&keys::question(tenant, question_id)).await
    }

    /// Takes the guard of an answer to the question: false when another answer holds it.
    pub async fn start_answer(
        &self,
        tenant: &str,
        question_id: u64,
        now: EpochSeconds,
    ) -> StoreResult<bool> {
        let guard = Item::new(
            keys::answering(tenant, question_id),
            serde_json::json!({ "question_id": question_id }),
        )
        .expiring_at(now + ANSWER_GUARD_SECS);
        match self.store.put(guard, Condition::Absent).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Gives the guard up: the answer was not published, another may be tried.
    pub async fn release_answer(&self, tenant: &str, question_id: u64) -> StoreResult<()> {
        self.store
            .delete(&keys::answering(tenant, question_id), Condition::Always)
            .await
            .map(drop)
    }

    /// The guard's release, to commit with the published answer.
    pub fn release_with(tenant: &str, question_id: u64) -> WriteOp {
        WriteOp::Delete {
            key: keys::answering(tenant, question_id),
            condition: Condition::Always,
        }
    }
}
