//! The DynamoDB adapter of the storage kernel.
//!
//! An item is stored as the attributes pk, sk, gsi1pk + gsi1sk (only with a secondary
//! key), expires_at (the table's TTL attribute, only when set), version, data (the
//! feature's JSON as one map attribute, converted by serde_dynamo), and counter (a
//! number, only when not 0 or once added to: the attribute an `UpdateItem` ADD adds to).
//!
//! DynamoDB deletes expired items only eventually, so every condition expression and
//! every read treats an item whose expires_at has passed as absent.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use self::attributes::{COUNTER, DATA, EXPIRES_AT, GSI1PK, GSI1SK, PK, SK, VERSION};
use super::{
    Condition, Cursor, EpochSeconds, Index, Item, Key, Page, Query, ScanPage, SortKey, Store,
    StoreError, StoreResult, WriteOp, validate_item, validate_key, validate_query, validate_scan,
    validate_transaction,
};
use crate::aws::error_chain;
use crate::clock::{Clock, SystemClock};
use crate::telemetry::observe;

/// The attributes an item is stored as (the kernel's `item_size` counts their names).
pub(crate) mod attributes {
    pub const PK: &str = "pk";
    pub const SK: &str = "sk";
    pub const GSI1PK: &str = "gsi1pk";
    pub const GSI1SK: &str = "gsi1sk";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const VERSION: &str = "version";
    pub const DATA: &str = "data";
    pub const COUNTER: &str = "counter";
}

const GSI1_INDEX: &str = "gsi1";

/// The most Query requests one [`Store::query`] call makes. Each asks for one item more
/// than the page, but DynamoDB's Limit counts the items it evaluates, before the expiry
/// filter, and DynamoDB deletes expired items only within about two days: over a long
/// tail of expired items an uncapped walk would cost a round trip (and at least one RCU)
/// per few items, without bound, inside a function that has 10 s. At the cap the page
/// ends early, with the live items found and a cursor at where DynamoDB stopped.
pub const MAX_QUERY_REQUESTS: usize = 4;

type Attributes = HashMap<String, AttributeValue>;

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }
}

// ------------------------------------------------------------------ items <-> attributes

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key_attributes(key: &Key) -> Attributes {
    HashMap::from([(PK.to_owned(), s(&key.pk)), (SK.to_owned(), s(&key.sk))])
}

fn encode(item: &Item) -> StoreResult<Attributes> {
    let data = serde_dynamo::aws_sdk_dynamodb_1::to_attribute_value(&item.data)
        .map_err(|error| StoreError::Invalid(format!("data cannot be stored: {error}")))?;
    let mut attributes = key_attributes(&item.key);
    if let Some(gsi1) = &item.gsi1 {
        attributes.insert(GSI1PK.to_owned(), s(&gsi1.pk));
        attributes.insert(GSI1SK.to_owned(), s(&gsi1.sk));
    }
    if let Some(expires_at) = item.expires_at {
        attributes.insert(EXPIRES_AT.to_owned(), n(expires_at));
    }
    attributes.insert(VERSION.to_owned(), n(item.version));
    attributes.insert(DATA.to_owned(), data);
    if item.counter != 0 {
        attributes.insert(COUNTER.to_owned(), n(item.counter));
    }
    Ok(attributes)
}

fn take_string(attributes: &mut Attributes, name: &str) -> StoreResult<Option<String>> {
    match attributes.remove(name) {
        None => Ok(None),
        Some(AttributeValue::S(value)) => Ok(Some(value)),
        Some(_) => Err(StoreError::Corrupt(format!("{name} is not a string"))),
    }
}

fn take_number<T: std::str::FromStr>(
    attributes: &mut Attributes,
    name: &str,
) -> StoreResult<Option<T>> {
    match attributes.remove(name) {
        None => Ok(None),
        Some(AttributeValue::N(value)) => value
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("{name} is not a valid number: {value}"))),
        Some(_) => Err(StoreError::Corrupt(format!("{name} is not a number"))),
    }
}

fn required<T>(value: Option<T>, name: &str) -> StoreResult<T> {
    value.ok_or_else(|| StoreError::Corrupt(format!("item without {name}")))
}

fn decode(mut attributes: Attributes) -> StoreResult<Item> {
    let pk = required(take_string(&mut attributes, PK)?, PK)?;
    let sk = required(take_string(&mut attributes, SK)?, SK)?;
    let gsi1 = match (
        take_string(&mut attributes, GSI1PK)?,
        take_string(&mut attributes, GSI1SK)?,
    ) {
        (Some(pk), Some(sk)) => Some(Key { pk, sk }),
        (None, None) => None,
        _ => return Err(StoreError::Corrupt(format!("{pk}/{sk}: half a gsi1 key"))),
    };
    let data = required(attributes.remove(DATA), DATA)?;
    let data = serde_dynamo::aws_sdk_dynamodb_1::from_attribute_value(data)
        .map_err(|error| StoreError::Corrupt(format!("{pk}/{sk}: data: {error}")))?;
    Ok(Item {
        gsi1,
        expires_at: take_number(&mut attributes, EXPIRES_AT)?,
        version: required(take_number(&mut attributes, VERSION)?, VERSION)?,
        data,
        counter: take_number(&mut attributes, COUNTER)?.unwrap_or_default(),
        key: Key { pk, sk },
    })
}

/// The live item among the attributes DynamoDB returned, if any.
fn live(attributes: Option<Attributes>, now: EpochSeconds) -> StoreResult<Option<Item>> {
    match attributes {
        Some(attributes) if !attributes.is_empty() => {
            let item = decode(attributes)?;
            Ok(item.is_live_at(now).then_some(item))
        }
        _ => Ok(None),
    }
}

/// The position DynamoDB stopped at (a LastEvaluatedKey) as a cursor: the table key,
/// and on the index its key too.
fn cursor_at(mut key: Attributes, index: Index) -> StoreResult<Cursor> {
    let mut part = |name| required(take_string(&mut key, name)?, name);
    Ok(Cursor {
        key: Key::new(part(PK)?, part(SK)?),
        gsi1: match index {
            Index::Primary => None,
            Index::Gsi1 => Some(Key::new(part(GSI1PK)?, part(GSI1SK)?)),
        },
    })
}

// ------------------------------------------------------------------ expressions

/// An expression with the attribute names and values it uses (DynamoDB rejects unused
/// ones, so each expression carries exactly its own).
#[derive(Default)]
struct Expression {
    text: String,
    names: HashMap<String, String>,
    values: Attributes,
}

impl Expression {
    fn name(&mut self, placeholder: &str, attribute: &str) {
        self.names
            .insert(placeholder.to_owned(), attribute.to_owned());
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) {
        self.values.insert(placeholder.to_owned(), value);
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<Attributes> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

/// The condition expression for `condition` evaluated at `now`, where an expired item
/// counts as absent. None for [`Condition::Always`].
fn condition_expression(condition: Condition, now: EpochSeconds) -> Option<Expression> {
    const LIVE: &str = "attribute_exists(#pk) AND (attribute_not_exists(#exp) OR #exp > :now)";
    let mut expression = Expression::default();
    expression.text = match condition {
        Condition::Always => return None,
        Condition::Absent => "attribute_not_exists(#pk) OR #exp <= :now".to_owned(),
        Condition::Present => LIVE.to_owned(),
        Condition::VersionIs(version) => {
            expression.name("#ver", VERSION);
            expression.value(":ver", n(version));
            format!("{LIVE} AND #ver = :ver")
        }
    };
    expression.name("#pk", PK);
    expression.name("#exp", EXPIRES_AT);
    expression.value(":now", n(now));
    Some(expression)
}

/// What a request's condition-expression fields take: each None when there is nothing to
/// send.
fn parts(
    expression: Option<Expression>,
) -> (
    Option<String>,
    Option<HashMap<String, String>>,
    Option<Attributes>,
) {
    match expression {
        Some(expression) => (
            Some(expression.text),
            Some(expression.names).filter(|names| !names.is_empty()),
            Some(expression.values).filter(|values| !values.is_empty()),
        ),
        None => (None, None, None),
    }
}

/// A condition check needs an expression even when it checks nothing.
fn check_expression(condition: Condition, now: EpochSeconds) -> Expression {
    condition_expression(condition, now).unwrap_or_else(|| {
        let mut expression = Expression {
            text: "attribute_exists(#pk) OR attribute_not_exists(#pk)".to_owned(),
            ..Expression::default()
        };
        expression.name("#pk", PK);
        expression
    })
}

/// An add of `delta` to the counter (see [`WriteOp::Add`]): the update expression, and
/// the condition (no expired item at the key) that carries the names and values both
/// use. A new item gets the attributes every item has: version 0 and empty data.
fn add_expression(delta: i64, now: EpochSeconds) -> (String, Expression) {
    let mut expression = Expression {
        text: "attribute_not_exists(#exp) OR #exp > :now".to_owned(),
        ..Expression::default()
    };
    expression.name("#exp", EXPIRES_AT);
    expression.value(":now", n(now));
    expression.name("#ver", VERSION);
    expression.value(":zero", n(0));
    expression.name("#data", DATA);
    expression.value(":empty", AttributeValue::M(HashMap::new()));
    expression.name("#counter", COUNTER);
    expression.value(":delta", n(delta));
    let update = "SET #ver = if_not_exists(#ver, :zero), #data = if_not_exists(#data, :empty) \
                  ADD #counter :delta";
    (update.to_owned(), expression)
}

/// The sort-key condition DynamoDB gets. Key attributes are never empty, and DynamoDB
/// rejects an empty string (or an inverted range) in a key condition, so those cases are
/// answered here: `None` means no item can match.
fn sort_condition(sort: &SortKey) -> Option<SortKey> {
    let unbounded = Some(SortKey::Any);
    match sort {
        SortKey::BeginsWith(v) | SortKey::Gt(v) | SortKey::Ge(v) if v.is_empty() => unbounded,
        SortKey::Eq(v) | SortKey::Lt(v) | SortKey::Le(v) if v.is_empty() => None,
        SortKey::Between(low, high) if low > high || high.is_empty() => None,
        SortKey::Between(low, high) if low.is_empty() => Some(SortKey::Le(high.clone())),
        other => Some(other.clone()),
    }
}

fn key_condition(query: &Query, sort: &SortKey) -> Expression {
    let (partition, sort_attribute) = match query.index {
        Index::Primary => (PK, SK),
        Index::Gsi1 => (GSI1PK, GSI1SK),
    };
    let mut expression = Expression::default();
    expression.name("#p", partition);
    expression.value(":p", s(&query.partition));
    let comparison = |operator: &str| format!(" AND #s {operator} :s");
    let (suffix, values): (String, Vec<&String>) = match sort {
        SortKey::Any => (String::new(), vec![]),
        SortKey::Eq(v) => (comparison("="), vec![v]),
        SortKey::Lt(v) => (comparison("<"), vec![v]),
        SortKey::Le(v) => (comparison("<="), vec![v]),
        SortKey::Gt(v) => (comparison(">"), vec![v]),
        SortKey::Ge(v) => (comparison(">="), vec![v]),
        SortKey::BeginsWith(v) => (" AND begins_with(#s, :s)".to_owned(), vec![v]),
        SortKey::Between(low, high) => (" AND #s BETWEEN :s AND :t".to_owned(), vec![low, high]),
    };
    expression.text = format!("#p = :p{suffix}");
    if !values.is_empty() {
        expression.name("#s", sort_attribute);
    }
    for (placeholder, value) in [":s", ":t"].into_iter().zip(values) {
        expression.value(placeholder, s(value));
    }
    expression
}

/// Where DynamoDB resumes: right after the cursor's item, in the queried partition (never
/// another one, whatever the cursor says).
fn start_key(query: &Query) -> StoreResult<Option<Attributes>> {
    let Some(cursor) = &query.after else {
        return Ok(None);
    };
    let mut key = HashMap::from([(SK.to_owned(), s(&cursor.key.sk))]);
    match query.index {
        Index::Primary => {
            key.insert(PK.to_owned(), s(&query.partition));
        }
        Index::Gsi1 => {
            let gsi1 = cursor.gsi1.as_ref().ok_or_else(|| {
                StoreError::Invalid("a gsi1 query's cursor must hold a gsi1 key".into())
            })?;
            key.insert(PK.to_owned(), s(&cursor.key.pk));
            key.insert(GSI1PK.to_owned(), s(&query.partition));
            key.insert(GSI1SK.to_owned(), s(&gsi1.sk));
        }
    }
    Ok(Some(key))
}

// ------------------------------------------------------------------ errors

/// Maps an SDK error that is not an expected outcome. A ValidationException is the
/// caller's request (an item over 400 KB, a key over its size limit): `Invalid`.
/// Everything else is `Unavailable`, with the error's code and message or the transport
/// failure (never request details such as credentials).
fn sdk_error<E>(operation: &str, error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (&error, error.code()) {
        (SdkError::ServiceError(_), Some("ValidationException")) => StoreError::Invalid(format!(
            "{operation}: {}",
            error.message().unwrap_or("validation failed")
        )),
        (SdkError::ServiceError(_), Some(code)) => StoreError::Unavailable(format!(
            "{operation}: {code}: {}",
            error.message().unwrap_or("no message")
        )),
        _ => StoreError::Unavailable(format!("{operation}: {}", error_chain(&error))),
    }
}

/// The condition failure, with the live item DynamoDB found at the key (the request
/// asks for it with ReturnValuesOnConditionCheckFailure = ALL_OLD).
fn condition_failed(item: Option<Attributes>, now: EpochSeconds) -> StoreError {
    match live(item, now) {
        Ok(current) => StoreError::ConditionFailed {
            current: current.map(Box::new),
        },
        Err(error) => error,
    }
}

/// ALL_OLD when the request has a condition: the item found when it fails.
fn on_condition_failure(
    expression: &Option<String>,
) -> Option<ReturnValuesOnConditionCheckFailure> {
    expression
        .is_some()
        .then_some(ReturnValuesOnConditionCheckFailure::AllOld)
}

fn build_error(error: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Invalid(format!("request: {error}"))
}

// ------------------------------------------------------------------ the kernel

impl DynamoStore {
    fn transact_item(&self, op: &WriteOp, now: EpochSeconds) -> StoreResult<TransactWriteItem> {
        let item = TransactWriteItem::builder();
        Ok(match op {
            WriteOp::Put {
                item: put,
                condition,
            } => {
                let (expression, names, values) = parts(condition_expression(*condition, now));
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(encode(put)?))
                    .set_condition_expression(expression)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?;
                item.put(put).build()
            }
            WriteOp::Delete { key, condition } => {
                let (expression, names, values) = parts(condition_expression(*condition, now));
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .set_condition_expression(expression)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?;
                item.delete(delete).build()
            }
            WriteOp::Check { key, condition } => {
                let (expression, names, values) = parts(Some(check_expression(*condition, now)));
                let check = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .set_condition_expression(expression)
                    .set_expression_attribute_names(names)
                    .set_expression_attribute_values(values)
                    .build()
                    .map_err(build_error)?;
                item.condition_check(check).build()
            }
            WriteOp::Add { key, delta } => {
                let (update, condition) = add_expression(*delta, now);
                let update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(key_attributes(key)))
                    .update_expression(update)
                    .condition_expression(&condition.text)
                    .set_expression_attribute_names(condition.names())
                    .set_expression_attribute_values(condition.values())
                    .build()
                    .map_err(build_error)?;
                item.update(update).build()
            }
        })
    }
}

#[async_trait::async_trait]
impl Store for DynamoStore {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        validate_key(key)?;
        let request = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .consistent_read(true);
        let output = observe("dynamodb", "GetItem", request.send())
            .await
            .map_err(|error| sdk_error("GetItem", error))?;
        live(output.item, SystemClock.now_secs())
    }

    async fn put(&self, item: Item, condition: Condition) -> StoreResult<()> {
        validate_item(&item)?;
        let now = SystemClock.now_secs();
        let (expression, names, values) = parts(condition_expression(condition, now));
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&item)?))
            .set_return_values_on_condition_check_failure(on_condition_failure(&expression))
            .set_condition_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        match observe("dynamodb", "PutItem", request.send()).await {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Err(condition_failed(failed.item.clone(), now))
                }
                _ => Err(sdk_error("PutItem", error)),
            },
        }
    }

    async fn delete(&self, key: &Key, condition: Condition) -> StoreResult<Option<Item>> {
        validate_key(key)?;
        let now = SystemClock.now_secs();
        let (expression, names, values) = parts(condition_expression(condition, now));
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key_attributes(key)))
            .return_values(ReturnValue::AllOld)
            .set_return_values_on_condition_check_failure(on_condition_failure(&expression))
            .set_condition_expression(expression)
            .set_expression_attribute_names(names)
            .set_expression_attribute_values(values);
        match observe("dynamodb", "DeleteItem", request.send()).await {
            Ok(output) => live(output.attributes, now),
            Err(error) => match error.as_service_error() {
                Some(DeleteItemError::ConditionalCheckFailedException(failed)) => {
                    Err(condition_failed(failed.item.clone(), now))
                }
                _ => Err(sdk_error("DeleteItem", error)),
            },
        }
    }

    async fn query(&self, query: Query) -> StoreResult<Page> {
        validate_query(&query)?;
        let empty = Page {
            items: Vec::new(),
            next: None,
        };
        if query.partition.is_empty() {
            return Ok(empty);
        }
        let Some(sort) = sort_condition(&query.sort) else {
            return Ok(empty);
        };
        let now = SystemClock.now_secs();
        let mut key_condition = key_condition(&query, &sort);
        key_condition.name("#exp", EXPIRES_AT);
        key_condition.value(":now", n(now));
        let mut start = start_key(&query)?;

        // Every request asks for one item more than the page, so that `next` is set only
        // when another live item really follows (unless the cap stops the walk).
        let request_limit = i32::try_from(query.limit.saturating_add(1)).unwrap_or(i32::MAX);
        let mut items = Vec::new();
        for _ in 0..MAX_QUERY_REQUESTS {
            let request = self
                .client
                .query()
                .table_name(&self.table)
                .set_index_name((query.index == Index::Gsi1).then(|| GSI1_INDEX.to_owned()))
                .consistent_read(query.index == Index::Primary)
                .key_condition_expression(&key_condition.text)
                .filter_expression("attribute_not_exists(#exp) OR #exp > :now")
                .set_expression_attribute_names(key_condition.names())
                .set_expression_attribute_values(key_condition.values())
                .scan_index_forward(query.forward)
                .limit(request_limit)
                .set_exclusive_start_key(start);
            let output = observe("dynamodb", "Query", request.send())
                .await
                .map_err(|error| sdk_error("Query", error))?;
            for attributes in output.items.unwrap_or_default() {
                let item = decode(attributes)?;
                if item.is_live_at(now) {
                    items.push(item);
                }
            }
            start = output.last_evaluated_key.filter(|key| !key.is_empty());
            if items.len() > query.limit || start.is_none() {
                break;
            }
        }
        let next = if items.len() > query.limit {
            items.truncate(query.limit);
            items.last().map(|last| Cursor {
                key: last.key.clone(),
                gsi1: last.gsi1.clone(),
            })
        } else {
            // Either DynamoDB has nothing more, or the cap stopped the walk: then it goes on
            // from where DynamoDB stopped, past the items found.
            start.map(|key| cursor_at(key, query.index)).transpose()?
        };
        Ok(Page { items, next })
    }

    /// One Scan request, eventually consistent (half the read units of a consistent one:
    /// the sweep's deletes carry their own conditions), with `limit` as its Limit.
    async fn scan(&self, after: Option<Key>, limit: usize) -> StoreResult<ScanPage> {
        validate_scan(after.as_ref(), limit)?;
        let now = SystemClock.now_secs();
        let request = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(after.as_ref().map(key_attributes));
        let output = observe("dynamodb", "Scan", request.send())
            .await
            .map_err(|error| sdk_error("Scan", error))?;
        let mut page = ScanPage::default();
        for attributes in output.items.unwrap_or_default() {
            let item = decode(attributes)?;
            if item.is_live_at(now) {
                page.live.push(item);
            } else {
                page.expired.push(item.key);
            }
        }
        page.next = output
            .last_evaluated_key
            .filter(|key| !key.is_empty())
            .map(|key| cursor_at(key, Index::Primary).map(|cursor| cursor.key))
            .transpose()?;
        Ok(page)
    }

    async fn transact(&self, ops: Vec<WriteOp>) -> StoreResult<()> {
        validate_transaction(&ops)?;
        let now = SystemClock.now_secs();
        let items = ops
            .iter()
            .map(|op| self.transact_item(op, now))
            .collect::<StoreResult<Vec<_>>>()?;
        let request = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items));
        match observe("dynamodb", "TransactWriteItems", request.send()).await {
            Ok(_) => Ok(()),
            Err(error) => match error.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                    let reasons = cancelled.cancellation_reasons();
                    // Not retryable, unlike the other reasons (conflicts, throttling).
                    if let Some((index, invalid)) = reasons
                        .iter()
                        .enumerate()
                        .find(|(_, reason)| reason.code() == Some("ValidationError"))
                    {
                        return Err(StoreError::Invalid(format!(
                            "TransactWriteItems: operation {index}: {}",
                            invalid.message().unwrap_or("validation error")
                        )));
                    }
                    let failed = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, reason)| reason.code() == Some("ConditionalCheckFailed"))
                        .map(|(index, _)| index)
                        .collect();
                    Err(StoreError::TransactionCancelled { failed })
                }
                _ => Err(sdk_error("TransactWriteItems", error)),
            },
        }
    }
}
