//! The tenant's notifications:
//! - GET /v1/notifications: newest first, `unread=true` for the unread ones only; a page
//!   (`limit`, `cursor`: see `crate::http::cursor`) of `items` with `has_more`,
//!   `next_cursor`, and `unread_count`: how many of the tenant's notifications are unread,
//!   from its counter (one read, whatever the filter).
//! - POST /v1/notifications/{id}/read marks one read and answers it (200 however often:
//!   the unread count goes down once); 404 when the tenant has no notification `id`.
//!   Counted against the tenant's write limit.

use std::sync::Arc;

use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};

use super::HttpHandler;
use crate::auth::Authenticator;
use crate::clock::Clock;
use crate::config::ConfigError;
use crate::http::cursor::{Cursors, Scope};
use crate::http::{ApiError, EndpointLimit, json, path_param, query_param, rate_limit};
use crate::inbox::notifications::{Filter, NotificationError, Notifications};
use crate::ratelimit::Limiter;
use crate::services::Services;

/// The list's route, in its cursors' scope.
const LIST_ROUTE: &str = "GET /v1/notifications";

pub struct NotificationsHandler {
    authenticator: Authenticator,
    notifications: Notifications,
    cursors: Arc<Cursors>,
    limiter: Arc<dyn Limiter>,
    clock: Arc<dyn Clock>,
}

impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        match error {
            NotificationError::NotFound => ApiError::NotFound,
            NotificationError::Store(error) => error.into(),
        }
    }
}

impl HttpHandler for NotificationsHandler {
    const FUNCTION: &'static str = "notifications";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: services.authenticator()?,
            notifications: Notifications::new(services.store()),
            cursors: services.cursors()?,
            limiter: services.limiter()?,
            clock: services.clock(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let principal = self.authenticator.authenticate(&request).await?;
        match *request.method() {
            Method::GET => self.list(&request, principal.tenant()).await,
            Method::POST => self.mark_read(&request, principal.tenant()).await,
            _ => Err(ApiError::MethodNotAllowed),
        }
    }
}

impl NotificationsHandler {
    async fn list(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let (filter, filters) = match query_param(request, "unread").as_deref() {
            None => (Filter::All, ""),
            Some("true") => (Filter::Unread, "unread=true"),
            Some(_) => {
                return Err(ApiError::BadRequest(
                    "unread takes one value, true (leave it out to list every notification)".into(),
                ));
            }
        };
        let scope = Scope {
            tenant,
            route: LIST_ROUTE,
            filters,
        };
        let now = self.clock.now_secs();
        let page = self.cursors.page_request(request, &scope, now)?;
        let (listed, unread_count) = tokio::try_join!(
            self.notifications
                .list(tenant, filter, page.limit, page.after),
            self.notifications.unread_count(tenant),
        )?;
        let items = listed
            .items
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|error| ApiError::Internal(format!("a notification: {error}")))?;
        let mut body = self
            .cursors
            .page_body(items, listed.next.as_ref(), &scope, now);
        body["unread_count"] = serde_json::json!(unread_count);
        json(StatusCode::OK, &body)
    }

    async fn mark_read(&self, request: &Request, tenant: &str) -> Result<Response<Body>, ApiError> {
        let now_ms = self.clock.now_ms();
        let limit_headers = rate_limit::enforce(
            self.limiter.as_ref(),
            &EndpointLimit::writes(tenant),
            now_ms,
        )
        .await?;
        let id = path_param(request, "id")?;
        let notification = self.notifications.mark_read(tenant, &id, now_ms).await?;
        let mut response = json(StatusCode::OK, &notification)?;
        limit_headers.apply(response.headers_mut());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};
    use std::time::Duration;

    use lambda_http::RequestExt;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::Value;

    use super::*;
    use crate::auth::{SessionKeys, Sessions};
    use crate::clock::{ManualClock, SystemClock};
    use crate::embedded_db::EmbeddedDb;
    use crate::http::cursor::{CURSOR_TTL_SECS, MAX_LIMIT};
    use crate::inbox::{Inbox, OrderUpdate};
    use crate::ratelimit::memory::MemoryLimiter;
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::faulty::FaultyStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        sessions: Sessions,
        inbox: Inbox,
        store: Arc<FaultyStore>,
        /// The handler's clock (cursors' expiry, the write limit): the real time until
        /// a test moves it on.
        clock: Arc<ManualClock>,
        handler: NotificationsHandler,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let embedded: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        let store = Arc::new(FaultyStore::new(embedded));
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(store.clone(), Arc::new(keys), Duration::from_secs(3600));
        let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
        let handler = NotificationsHandler {
            authenticator: Authenticator::new(sessions.clone()),
            notifications: Notifications::new(store.clone()),
            cursors: Arc::new(Cursors::new(&SecretString::from("c".repeat(32))).unwrap()),
            limiter: Arc::new(MemoryLimiter::new()),
            clock: clock.clone(),
        };
        Fixture {
            _dir: dir,
            sessions,
            inbox: Inbox::new(store.clone()),
            store,
            clock,
            handler,
        }
    }

    impl Fixture {
        async fn token(&self, tenant: &str) -> SecretString {
            self.sessions
                .start(&format!("ml:{tenant}"), tenant, SystemClock.now_secs())
                .await
                .unwrap()
                .token
        }

        /// `count` new notifications for `tenant`, orders `first..first + count`.
        async fn orders(&self, tenant: &str, first: u64, count: u64) {
            for order_id in first..first + count {
                let order = OrderUpdate {
                    order_id,
                    status: "paid".into(),
                    total: None,
                    currency: None,
                };
                self.inbox
                    .apply_order(tenant, &order, SystemClock.now_ms(), &[])
                    .await
                    .unwrap();
            }
        }

        async fn call(&self, request: Request) -> Result<Value, ApiError> {
            let response = self.handler.handle(request).await?;
            assert_eq!(response.status(), StatusCode::OK);
            Ok(serde_json::from_slice(response.body().as_ref()).unwrap())
        }

        async fn list(&self, token: &SecretString, query: &[(&str, &str)]) -> Value {
            self.call(list(token, query)).await.unwrap()
        }
    }

    fn list(token: &SecretString, query: &[(&str, &str)]) -> Request {
        let query: HashMap<String, String> = query
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        http::Request::builder()
            .method("GET")
            .uri("/v1/notifications")
            .header("authorization", format!("Bearer {}", token.expose_secret()))
            .body(Body::Empty)
            .unwrap()
            .with_query_string_parameters(query)
    }

    fn mark(token: &SecretString, id: &str) -> Request {
        http::Request::builder()
            .method("POST")
            .uri(format!("/v1/notifications/{id}/read"))
            .header("authorization", format!("Bearer {}", token.expose_secret()))
            .body(Body::Empty)
            .unwrap()
            .with_path_parameters(HashMap::from([("id".to_owned(), id.to_owned())]))
    }

    fn order_ids(body: &Value) -> Vec<u64> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["data"]["order_id"].as_u64().unwrap())
            .collect()
    }

    fn ids(body: &Value) -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn pages_walk_newest_first_to_the_end_with_the_unread_count() {
        let f = fixture();
        let token = f.token("t1").await;
        f.orders("t1", 1, 60).await;

        let first = f.list(&token, &[]).await;
        assert_eq!(order_ids(&first), (41..=60).rev().collect::<Vec<_>>());
        assert_eq!(first["has_more"], true);
        assert_eq!(first["unread_count"], 60);
        let item = &first["items"][0];
        assert_eq!(item["type"], "order.updated");
        assert_eq!(item["read"], false);
        assert!(item["at_ms"].is_i64());

        let clamped = f.list(&token, &[("limit", "500")]).await;
        assert_eq!(order_ids(&clamped).len(), MAX_LIMIT);

        let mut walked = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "7")];
            if let Some(cursor) = &cursor {
                query.push(("cursor", cursor));
            }
            let page = f.list(&token, &query).await;
            walked.extend(order_ids(&page));
            match page["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(page["has_more"], true);
                    cursor = Some(next.to_owned());
                }
                None => {
                    assert_eq!(page["has_more"], false);
                    break;
                }
            }
        }
        assert_eq!(
            walked,
            (1..=60).rev().collect::<Vec<_>>(),
            "each once, in order"
        );
    }

    #[tokio::test]
    async fn marking_read_is_idempotent_and_counts_down_once() {
        let f = fixture();
        let token = f.token("t1").await;
        f.orders("t1", 1, 3).await;
        let listed = f.list(&token, &[]).await;
        let id = ids(&listed)[1].clone();

        let marked = f.call(mark(&token, &id)).await.unwrap();
        assert_eq!(marked["id"], id.as_str());
        assert_eq!(marked["read"], true);
        let response = f.handler.handle(mark(&token, &id)).await.unwrap();
        assert!(response.headers().contains_key("ratelimit-remaining"));
        let again: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
        assert_eq!(again, marked, "the same answer, changing nothing");

        let all = f.list(&token, &[]).await;
        assert_eq!(all["unread_count"], 2);
        assert_eq!(all["items"][1]["read"], true);
        let unread = f.list(&token, &[("unread", "true")]).await;
        assert_eq!(order_ids(&unread), [3, 1]);
        assert_eq!(unread["unread_count"], 2);

        let concurrent = (0..20).map(|_| f.call(mark(&token, &ids(&listed)[0])));
        for answer in futures_util::future::join_all(concurrent).await {
            assert_eq!(answer.unwrap()["read"], true);
        }
        assert_eq!(f.list(&token, &[]).await["unread_count"], 1);
    }

    #[tokio::test]
    async fn a_tenant_never_reaches_another_tenants_notifications() {
        let f = fixture();
        let (one, two) = (f.token("t1").await, f.token("t2").await);
        f.orders("t1", 1, 3).await;
        f.orders("t2", 100, 3).await;
        let theirs = f.list(&two, &[("limit", "1")]).await;
        let their_id = ids(&theirs)[0].clone();

        let error = f.call(mark(&one, &their_id)).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
        assert_eq!(f.list(&two, &[]).await["unread_count"], 3, "untouched");

        let their_cursor = theirs["next_cursor"].as_str().unwrap();
        let error = f
            .call(list(&one, &[("cursor", their_cursor)]))
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);

        let own = f.list(&one, &[("limit", "50")]).await;
        assert_eq!(order_ids(&own), [3, 2, 1]);
        assert_eq!(own["unread_count"], 3);
        let mine: BTreeSet<String> = ids(&own).into_iter().collect();
        let all_theirs: BTreeSet<String> = ids(&f.list(&two, &[]).await).into_iter().collect();
        assert!(mine.is_disjoint(&all_theirs));
    }

    #[tokio::test]
    async fn bad_parameters_are_400_and_unknown_ids_404() {
        let f = fixture();
        let token = f.token("t1").await;
        f.orders("t1", 1, 3).await;
        let unread_page = f.list(&token, &[("unread", "true"), ("limit", "1")]).await;
        let unread_cursor = unread_page["next_cursor"].as_str().unwrap();

        for query in [
            vec![("unread", "yes")],
            vec![("unread", "false")],
            vec![("limit", "0")],
            vec![("limit", "many")],
            vec![("cursor", "forged.cursor")],
            // A cursor of the unread list, on the list of all.
            vec![("cursor", unread_cursor)],
        ] {
            let error = f.call(list(&token, &query)).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{query:?}");
        }
        let next = f
            .list(&token, &[("unread", "true"), ("cursor", unread_cursor)])
            .await;
        assert_eq!(order_ids(&next), [2, 1]);
        f.clock
            .advance(Duration::from_secs(CURSOR_TTL_SECS.unsigned_abs()));
        let expired = list(&token, &[("unread", "true"), ("cursor", unread_cursor)]);
        let error = f.call(expired).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST, "an expired cursor");

        for id in [
            "0190f5a4c7d87c4f8e6b3a2d1c0b9a87",
            "../../TENANT#t2#NOTIFS",
            "",
            &"f".repeat(2000),
        ] {
            let error = f.call(mark(&token, id)).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::NOT_FOUND, "{id}");
        }
    }

    #[tokio::test]
    async fn no_session_is_401_a_store_down_503_and_writes_are_limited() {
        let f = fixture();
        let token = f.token("t1").await;
        f.orders("t1", 1, 1).await;
        let id = ids(&f.list(&token, &[]).await)[0].clone();

        let anonymous = http::Request::builder()
            .method("GET")
            .uri("/v1/notifications")
            .body(Body::Empty)
            .unwrap();
        let error = f.handler.handle(anonymous).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);
        let forged = SecretString::from("not.a.token");
        let error = f.call(mark(&forged, &id)).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);

        f.store.set_down(true);
        for request in [list(&token, &[]), mark(&token, &id)] {
            let error = f.handler.handle(request).await.unwrap_err();
            assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        f.store.set_down(false);

        // The burst of the writes limit, 25 back to back (the clock stands still), then 429.
        let mut statuses = Vec::new();
        for _ in 0..30 {
            let status = match f.handler.handle(mark(&token, &id)).await {
                Ok(response) => response.status(),
                Err(error) => error.status(),
            };
            statuses.push(status);
        }
        let mut expected = vec![StatusCode::OK; 25];
        expected.extend([StatusCode::TOO_MANY_REQUESTS; 5]);
        assert_eq!(statuses, expected);
    }
}
