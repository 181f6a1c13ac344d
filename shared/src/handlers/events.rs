//! GET /v1/events: the caller's tenant's events as Server-Sent Events, each with its `id:`
//! (the rules of the stream, exactly-once resumption included: `crate::events::stream`).
//!
//! It resumes after the id in the `Last-Event-ID` header, else in `?last_event_id=` (for
//! clients that cannot set headers; the header wins, because a browser reconnecting sends
//! it while the URL keeps the query of its first connection); without either, from now.
//! An id this server cannot have sent is a 400. Only the caller's tenant's log is read,
//! whatever the id: a position is only a place in that log.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use lambda_http::{Request, RequestExt, Response};
use tokio::time::Instant;

use super::StreamingHandler;
use crate::auth::{Authenticator, Principal};
use crate::clock::Clock;
use crate::config::{ConfigError, EventStreamSettings};
use crate::events::live::LiveEvents;
use crate::events::stream::{self, EventStream, Source, TenantLog};
use crate::events::{Events, Position};
use crate::http::{ApiError, StreamingBody, query_param, sse};
use crate::services::Services;

/// How long before a Lambda invocation's deadline its stream ends: time for the end to
/// reach API Gateway and for the runtime to report the invocation done.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

pub struct EventsHandler {
    authenticator: Authenticator,
    events: Events,
    live: Option<Arc<LiveEvents>>,
    clock: Arc<dyn Clock>,
    settings: EventStreamSettings,
}

impl StreamingHandler for EventsHandler {
    const FUNCTION: &'static str = "events";

    fn build(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            authenticator: services.authenticator()?,
            events: Events::new(services.store()),
            live: services.live_events(),
            clock: services.clock(),
            settings: services.config().events,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<StreamingBody>, ApiError> {
        if request.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        let principal = self.authenticator.authenticate(&request).await?;
        let now_ms = self.clock.now_ms();
        let from = match resume_from(&request, now_ms)? {
            Some(position) => position,
            None => stream::start_now(now_ms, &self.settings),
        };
        let tenant = principal.tenant();
        let source = match &self.live {
            Some(live) => Source::Live(live.subscribe(tenant)),
            None => Source::Poll(self.settings.poll),
        };
        let log = TenantLog {
            events: self.events.clone(),
            tenant: tenant.to_owned(),
            clock: Arc::clone(&self.clock),
        };
        let ends_at = self.ends_at(&request, &principal, now_ms);
        let stream = EventStream::new(log, from, source, &self.settings, ends_at);
        sse::response(stream.into_body())
    }
}

impl EventsHandler {
    /// When the stream ends: after EVENTS_STREAM_MS, before the Lambda invocation's
    /// deadline, and when the session expires.
    fn ends_at(&self, request: &Request, principal: &Principal, now_ms: i64) -> Instant {
        let now_ms = u64::try_from(now_ms).unwrap_or(0);
        let mut lasts = self.settings.stream_for;
        if let Some(context) = request.lambda_context_ref() {
            let deadline_in = Duration::from_millis(context.deadline.saturating_sub(now_ms));
            lasts = lasts.min(deadline_in.saturating_sub(DEADLINE_MARGIN));
        }
        let expires_ms = u64::try_from(principal.claims.exp).unwrap_or(0) * 1000;
        lasts = lasts.min(Duration::from_millis(expires_ms.saturating_sub(now_ms)));
        Instant::now() + lasts
    }
}

/// The position to resume after, if the client sent one.
fn resume_from(request: &Request, now_ms: i64) -> Result<Option<Position>, ApiError> {
    let given = |id: &str| Some(id.trim().to_owned()).filter(|id| !id.is_empty());
    let header = match request.headers().get("last-event-id") {
        Some(value) => given(
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID is not text".into()))?,
        ),
        None => None,
    };
    let Some(id) = header.or_else(|| given(&query_param(request, "last_event_id")?)) else {
        return Ok(None);
    };
    Position::parse(&id, now_ms)
        .map(Some)
        .map_err(|error| ApiError::BadRequest(format!("Last-Event-ID: {error}")))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use http::StatusCode;
    use http_body::Body as _;
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use secrecy::{ExposeSecret, SecretString};
    use serde_json::json;

    use super::*;
    use crate::auth::{SessionKeys, Sessions};
    use crate::clock::SystemClock;
    use crate::embedded_db::EmbeddedDb;
    use crate::store::Store;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::faulty::FaultyStore;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<FaultyStore>,
        sessions: Sessions,
        writer: Events,
        handler: EventsHandler,
    }

    fn settings() -> EventStreamSettings {
        EventStreamSettings {
            heartbeat: Duration::from_millis(100),
            stream_for: Duration::from_secs(30),
            retry: Duration::from_millis(1500),
            settle: Duration::from_millis(10),
            poll: Duration::from_millis(20),
            live_buffer: 64,
        }
    }

    /// The handler on an embedded store, live (the local runner) or polling (Lambda).
    fn fixture(live: bool, settings: EventStreamSettings) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let embedded = EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap();
        let faulty = Arc::new(FaultyStore::new(Arc::new(embedded)));
        let live = live.then(|| LiveEvents::new(settings.live_buffer));
        let store: Arc<dyn Store> = match &live {
            Some(live) => live.watch(faulty.clone()),
            None => faulty.clone(),
        };
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let sessions = Sessions::new(store.clone(), Arc::new(keys), Duration::from_secs(3600));
        let handler = EventsHandler {
            authenticator: Authenticator::new(sessions.clone()),
            events: Events::new(store.clone()),
            live,
            clock: Arc::new(SystemClock),
            settings,
        };
        Fixture {
            _dir: dir,
            store: faulty,
            sessions,
            writer: Events::new(store),
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

        async fn record(&self, tenant: &str, n: u64) {
            self.writer
                .record(tenant, "test", json!({ "n": n }), SystemClock.now_secs())
                .await
                .unwrap();
        }
    }

    fn request(token: Option<&SecretString>, last_event_id: Option<&str>, query: &str) -> Request {
        let mut builder = http::Request::builder().method("GET").uri("/v1/events");
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {}", token.expose_secret()));
        }
        if let Some(id) = last_event_id {
            builder = builder.header("last-event-id", id);
        }
        let mut request = builder.body(lambda_http::Body::Empty).unwrap();
        if !query.is_empty() {
            let map: HashMap<String, Vec<String>> =
                HashMap::from([("last_event_id".to_owned(), vec![query.to_owned()])]);
            request = request.with_query_string_parameters(QueryMap::from(map));
        }
        request
    }

    /// What a client reads of a stream: its chunks, until `enough` says so or it ends.
    struct Client {
        body: StreamingBody,
        text: String,
    }

    impl Client {
        async fn open(fixture: &Fixture, request: Request) -> Self {
            let response = fixture.handler.handle(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                response.headers()["content-type"],
                "text/event-stream; charset=utf-8"
            );
            Self {
                body: response.into_body(),
                text: String::new(),
            }
        }

        /// Reads until `enough` holds for what was read; false if the stream ended first.
        async fn read_until(&mut self, enough: impl Fn(&str) -> bool) -> bool {
            let mut body = std::pin::Pin::new(&mut self.body);
            while !enough(&self.text) {
                let frame = tokio::time::timeout(
                    Duration::from_secs(20),
                    std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)),
                )
                .await
                .expect("the stream went quiet");
                match frame {
                    Some(Ok(frame)) => {
                        let bytes = frame.into_data().unwrap();
                        self.text.push_str(std::str::from_utf8(&bytes).unwrap());
                    }
                    None | Some(Err(_)) => return false,
                }
            }
            true
        }

        /// The (id, n) of every event read.
        fn events(&self) -> Vec<(String, u64)> {
            self.text
                .split("\n\n")
                .filter_map(|block| {
                    let id = block.lines().find_map(|l| l.strip_prefix("id: "))?;
                    let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
                    let data: serde_json::Value = serde_json::from_str(data).unwrap();
                    Some((id.to_owned(), data["data"]["n"].as_u64().unwrap()))
                })
                .collect()
        }

        /// Reads until a heartbeat follows the last event: nothing more was coming.
        async fn read_until_quiet(&mut self) -> bool {
            self.read_until(|text| {
                text.rsplit("data: ")
                    .next()
                    .is_some_and(|tail| tail.contains(": heartbeat"))
            })
            .await
        }

        fn last_id(&self) -> String {
            self.text
                .lines()
                .filter_map(|l| l.strip_prefix("id: "))
                .next_back()
                .unwrap()
                .to_owned()
        }
    }

    fn numbers(events: &[(String, u64)]) -> Vec<u64> {
        events.iter().map(|(_, n)| *n).collect()
    }

    async fn resumes_exactly_once_across_a_disconnection(live: bool) {
        // Polling trusts every write to commit within the settle window: a generous one
        // on a loaded test machine (a live stream knows the writes in flight).
        let settle = Duration::from_millis(if live { 10 } else { 500 });
        let f = fixture(
            live,
            EventStreamSettings {
                settle,
                ..settings()
            },
        );
        let token = f.token("t1").await;
        let other = f.token("t2").await;
        let mut first = Client::open(&f, request(Some(&token), None, "")).await;
        assert!(
            first
                .read_until(|text| text.starts_with("retry: 1500\nid: "))
                .await
        );

        // Writers race: ids are made in one order and may commit in another.
        let writers: Vec<_> = (0..8u64)
            .map(|writer| {
                let writer_events = f.writer.clone();
                tokio::spawn(async move {
                    for i in 0..10 {
                        let n = writer * 100 + i;
                        writer_events
                            .record("t1", "test", json!({ "n": n }), SystemClock.now_secs())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        f.record("t2", 999).await;
        assert!(
            first
                .read_until(|text| text.matches("data: ").count() >= 30)
                .await
        );
        // The client goes away mid-stream.
        let (seen, last_id) = (first.events(), first.last_id());
        drop(first);
        for writer in writers {
            writer.await.unwrap();
        }
        let mut resumed = Client::open(&f, request(Some(&token), Some(&last_id), "")).await;
        let rest = 80 - seen.len();
        assert!(
            resumed
                .read_until(|text| text.matches("data: ").count() >= rest)
                .await
        );
        assert!(resumed.read_until_quiet().await);

        let all: Vec<(String, u64)> = seen.into_iter().chain(resumed.events()).collect();
        let ids: Vec<&String> = all.iter().map(|(id, _)| id).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(ids, sorted, "in id order, each once");
        let mut got = numbers(&all);
        got.sort_unstable();
        let expected: Vec<u64> = (0..8)
            .flat_map(|w| (0..10).map(move |i| w * 100 + i))
            .collect();
        assert_eq!(got, expected, "every event of t1, none of t2");

        // Another tenant's stream, even from the start of time, shows only its own.
        let mut theirs = Client::open(&f, request(Some(&other), Some(&"0".repeat(32)), "")).await;
        assert!(theirs.read_until(|text| text.contains("data: ")).await);
        assert!(theirs.read_until_quiet().await);
        assert_eq!(numbers(&theirs.events()), [999]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_live_stream_resumes_exactly_once_and_in_order() {
        resumes_exactly_once_across_a_disconnection(true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_polling_stream_resumes_exactly_once_and_in_order() {
        resumes_exactly_once_across_a_disconnection(false).await;
    }

    #[tokio::test]
    async fn the_query_parameter_resumes_when_no_header_does() {
        let f = fixture(true, settings());
        let token = f.token("t1").await;
        for n in 0..3 {
            f.record("t1", n).await;
        }
        let mut all = Client::open(&f, request(Some(&token), Some(&"0".repeat(32)), "")).await;
        assert!(
            all.read_until(|text| text.matches("data: ").count() == 3)
                .await
        );
        let first_id = all.events()[0].0.clone();

        for empty_header in [None, Some("")] {
            let mut by_query =
                Client::open(&f, request(Some(&token), empty_header, &first_id)).await;
            let two = |text: &str| text.matches("data: ").count() == 2;
            assert!(by_query.read_until(two).await);
            assert!(by_query.read_until_quiet().await);
            assert_eq!(numbers(&by_query.events()), [1, 2]);
        }

        let second_id = all.events()[1].0.clone();
        let mut header_wins =
            Client::open(&f, request(Some(&token), Some(&second_id), &first_id)).await;
        assert!(header_wins.read_until(|text| text.contains("data: ")).await);
        assert!(header_wins.read_until_quiet().await);
        assert_eq!(numbers(&header_wins.events()), [2]);
    }

    #[tokio::test]
    async fn heartbeats_keep_an_idle_stream_open_until_it_ends() {
        for live in [true, false] {
            let f = fixture(
                live,
                EventStreamSettings {
                    stream_for: Duration::from_millis(600),
                    ..settings()
                },
            );
            let token = f.token("t1").await;
            let mut client = Client::open(&f, request(Some(&token), None, "")).await;
            assert!(
                !client.read_until(|_| false).await,
                "the stream ends by itself"
            );
            assert!(
                client.text.starts_with("retry: 1500\nid: "),
                "{}",
                client.text
            );
            assert!(
                client.text.contains("\n\n: heartbeat\n\n"),
                "{}",
                client.text
            );
        }
    }

    #[tokio::test]
    async fn a_stream_ends_when_its_session_does() {
        let f = fixture(true, settings());
        let keys = SessionKeys::new(
            &SecretString::from("0123456789abcdef0123456789abcdef"),
            "sellerhub",
        )
        .unwrap();
        let now = SystemClock.now_secs();
        let token = keys
            .sign(&crate::auth::Claims {
                iss: "sellerhub".into(),
                sub: "ml:1".into(),
                tenant: "t1".into(),
                sid: "s".into(),
                jti: "j".into(),
                iat: now,
                exp: now + 1,
                nbf: None,
            })
            .unwrap();
        let mut client = Client::open(&f, request(Some(&token), None, "")).await;
        assert!(
            !client.read_until(|_| false).await,
            "ended with the session"
        );
    }

    #[tokio::test]
    async fn a_stream_that_falls_behind_is_closed_and_resumes_losing_nothing() {
        let f = fixture(
            true,
            EventStreamSettings {
                live_buffer: 3,
                ..settings()
            },
        );
        let token = f.token("t1").await;
        let mut slow = Client::open(&f, request(Some(&token), None, "")).await;
        assert!(slow.read_until(|text| text.contains("id: ")).await);
        let mut fast = Client::open(&f, request(Some(&token), None, "")).await;
        assert!(fast.read_until(|text| text.contains("id: ")).await);
        let fast = tokio::spawn(async move {
            let ten = |text: &str| text.matches("data: ").count() >= 10;
            (fast.read_until(ten).await, fast.events())
        });
        // The slow one reads nothing while 10 events are written, more than its buffer;
        // the other one reads along.
        for n in 0..10 {
            f.record("t1", n).await;
        }
        let (all_read, fast_events) = fast.await.unwrap();
        assert!(all_read, "the slow stream held no other back");
        assert_eq!(numbers(&fast_events), (0..10).collect::<Vec<_>>());
        assert!(!slow.read_until(|_| false).await, "closed");
        let mut resumed = Client::open(&f, request(Some(&token), Some(&slow.last_id()), "")).await;
        let rest = 10 - slow.events().len();
        assert!(
            resumed
                .read_until(|text| text.matches("data: ").count() >= rest)
                .await
        );
        assert!(resumed.read_until_quiet().await);
        let mut got = numbers(&slow.events());
        got.extend(numbers(&resumed.events()));
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn no_session_is_401_a_bad_id_400_and_a_store_down_503() {
        let f = fixture(true, settings());
        let error = f.handler.handle(request(None, None, "")).await.unwrap_err();
        assert_eq!(error.status(), StatusCode::UNAUTHORIZED);

        let token = f.token("t1").await;
        let future = format!("{:x}", u128::MAX);
        for bad in ["nope", "0190aaaa", &"g".repeat(32), &future] {
            for (header, query) in [(Some(bad), ""), (None, bad)] {
                let error = f
                    .handler
                    .handle(request(Some(&token), header, query))
                    .await
                    .unwrap_err();
                assert_eq!(error.status(), StatusCode::BAD_REQUEST, "{bad}");
            }
        }

        f.store.set_down(true);
        let error = f
            .handler
            .handle(request(Some(&token), None, ""))
            .await
            .unwrap_err();
        assert_eq!(error.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_store_failure_mid_stream_ends_the_stream() {
        let f = fixture(false, settings());
        let token = f.token("t1").await;
        let mut client = Client::open(&f, request(Some(&token), None, "")).await;
        assert!(client.read_until(|text| text.contains("id: ")).await);
        f.store.set_down(true);
        assert!(
            !client.read_until(|_| false).await,
            "ended: the client retries"
        );
    }
}
