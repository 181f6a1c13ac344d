//! GET /v1/events over real HTTP against the local runner: two sellers sign in through
//! the sandbox and link a WhatsApp number each; signed Meta messages to those numbers go
//! through the webhook queue and the worker, which writes each tenant's events; each
//! seller's stream, read as a browser's EventSource reads it (reconnecting with
//! Last-Event-ID when a stream ends), shows exactly its own events, once, in order.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use sellerhub_tests::local_runner::LocalRunner;
use sellerhub_tests::sandbox_login::{browser, sign_in};
use sellerhub_tests::sse::{Block, SseEvent, SseStream};
use sellerhub_tests::whatsapp;

const META_SECRET: &str = "events-stream-meta-app-secret";
const QUIET: Duration = Duration::from_secs(30);

/// The runner, with short streams and heartbeats so that both happen within a test.
fn runner(dir: &std::path::Path) -> LocalRunner {
    LocalRunner::start(
        dir,
        &[
            ("META_APP_SECRET", META_SECRET),
            ("EVENTS_HEARTBEAT_MS", "300"),
            ("EVENTS_STREAM_MS", "4000"),
            ("EVENTS_RETRY_MS", "700"),
            ("HEALTH_CACHE_MS", "0"),
        ],
    )
}

struct Seller {
    token: String,
    phone: &'static str,
}

async fn seller(runner: &LocalRunner, id: u64, phone: &'static str) -> Seller {
    let client = browser();
    let token = sign_in(runner, &client, id).await;
    let linked = client
        .put(runner.url("/v1/channels/whatsapp"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "phone_number_id": phone }))
        .send()
        .await
        .unwrap();
    assert_eq!(linked.status(), 201, "{}", linked.text().await.unwrap());
    Seller { token, phone }
}

/// Sends message number `n` to the number `phone` of the runner at `base_url`, from a
/// customer of its own (one conversation each: no write contends with another).
async fn send(base_url: &str, client: &reqwest::Client, phone: &str, n: u64) {
    let from = format!("55119{n:08}");
    let body = whatsapp::message(phone, &from, &format!("wamid.{n}"), &format!("n:{n}"));
    let response = whatsapp::post(client, base_url, body, META_SECRET)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The number a message event carries.
fn number(event: &SseEvent) -> u64 {
    assert_eq!(event.data["type"], "message.new", "{event:?}");
    event.data["data"]["text"]
        .as_str()
        .and_then(|text| text.strip_prefix("n:"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not one of ours: {event:?}"))
}

/// Follows `token`'s stream as a browser does from `last_id` on, reconnecting with
/// Last-Event-ID whenever a stream ends, until `want` events came and a heartbeat after
/// the last one says nothing more is coming.
async fn follow(
    runner: &LocalRunner,
    token: &str,
    mut last_id: Option<String>,
    want: usize,
) -> Vec<SseEvent> {
    let client = reqwest::Client::new();
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "got {} of {want} events",
            events.len()
        );
        let mut stream = SseStream::open(
            &client,
            &runner.url("/v1/events"),
            token,
            last_id.as_deref(),
        )
        .await
        .unwrap_or_else(|(status, body)| panic!("{status}: {body}"));
        while let Some(block) = stream.next_block(QUIET).await {
            match block {
                Block::Event(event) => events.push(event),
                Block::Comment(_) if events.len() >= want => return events,
                _ => {}
            }
        }
        last_id = stream.last_id.clone();
    }
}

fn assert_in_order_once(events: &[SseEvent]) {
    let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids strictly increasing: {ids:?}"
    );
}

#[tokio::test]
async fn each_tenant_streams_its_own_events_once_in_order_across_a_disconnection() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let a = seller(&runner, 468_424_240, "106540352242922").await;
    let b = seller(&runner, 468_424_241, "106540352242933").await;
    let client = reqwest::Client::new();
    let url = runner.url("/v1/events");

    let mut first = SseStream::open(&client, &url, &a.token, None)
        .await
        .unwrap();
    assert_eq!(
        first.next_block(QUIET).await,
        Some(Block::Fields),
        "the opening"
    );
    assert_eq!(first.retry_ms, Some(700));
    let opened_at = first.last_id.clone().expect("the opening sets the last id");

    // Both tenants' messages, interleaved, all in flight at once.
    let mut sending = tokio::task::JoinSet::new();
    for n in 0..40u64 {
        for (phone, n) in [(a.phone, n), (b.phone, 1000 + n)]
            .into_iter()
            .take(if n < 20 { 2 } else { 1 })
        {
            let (base_url, client) = (runner.base_url.clone(), client.clone());
            sending.spawn(async move { send(&base_url, &client, phone, n).await });
        }
    }

    // The client goes away mid-stream, then comes back with the last id it got.
    let mut seen = Vec::new();
    while seen.len() < 15 {
        match first.next_block(QUIET).await {
            Some(Block::Event(event)) => seen.push(event),
            Some(_) => {}
            None => {
                // The stream ended by itself (EVENTS_STREAM_MS): reconnect, as a browser.
                let last = first.last_id.clone();
                first = SseStream::open(&client, &url, &a.token, last.as_deref())
                    .await
                    .unwrap();
            }
        }
    }
    let last_id = first.last_id.clone();
    drop(first);
    sending.join_all().await;
    let rest = follow(&runner, &a.token, last_id, 40 - seen.len()).await;
    let a_events: Vec<SseEvent> = seen.into_iter().chain(rest).collect();
    assert_in_order_once(&a_events);
    let numbers: Vec<u64> = a_events.iter().map(number).collect();
    assert_eq!(
        numbers.iter().copied().collect::<BTreeSet<_>>(),
        (0..40).collect::<BTreeSet<_>>(),
        "each of A's 40 messages once, none of B's: {numbers:?}"
    );
    assert_eq!(numbers.len(), 40);
    assert!(a_events[0].id.as_str() > opened_at.as_str());

    let zero = "0".repeat(32);
    let b_events = follow(&runner, &b.token, Some(zero.clone()), 20).await;
    assert_in_order_once(&b_events);
    let b_numbers: BTreeSet<u64> = b_events.iter().map(number).collect();
    assert_eq!(b_numbers, (1000..1020).collect());
    assert_eq!(b_events.len(), 20);

    // Whatever position A sends (B's ids, the start of time, as header or query), it
    // reads its own log only.
    let everything = follow(&runner, &a.token, Some(zero.clone()), 40).await;
    assert_eq!(
        everything.iter().map(number).collect::<BTreeSet<_>>(),
        (0..40).collect()
    );
    let from_b = follow(&runner, &a.token, Some(b_events[0].id.clone()), 0).await;
    assert!(
        from_b.iter().all(|event| number(event) < 1000),
        "{from_b:?}"
    );
    let mut by_query = SseStream::open(
        &client,
        &format!("{url}?last_event_id={zero}"),
        &a.token,
        None,
    )
    .await
    .unwrap();
    let mut numbers = BTreeSet::new();
    while numbers.len() < 40 {
        let event = by_query.next_event(QUIET).await.expect("more events");
        numbers.insert(number(&event));
    }
    assert_eq!(numbers, (0..40).collect());
}

#[tokio::test]
async fn a_stream_opens_with_a_retry_hint_beats_and_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let a = seller(&runner, 468_424_240, "106540352242922").await;
    let client = reqwest::Client::new();
    let mut stream = SseStream::open(&client, &runner.url("/v1/events"), &a.token, None)
        .await
        .unwrap();
    assert!(stream.read_to_end(QUIET).await, "the stream ends by itself");
    assert_eq!(stream.blocks.first(), Some(&Block::Fields));
    assert_eq!(stream.retry_ms, Some(700));
    assert!(stream.heartbeats() >= 1, "{:?}", stream.blocks);
    assert!(stream.events().is_empty());
}

#[tokio::test]
async fn no_session_is_a_401_and_a_bad_last_event_id_a_400() {
    let dir = tempfile::tempdir().unwrap();
    let runner = runner(dir.path());
    let client = reqwest::Client::new();
    let url = runner.url("/v1/events");
    let anonymous = client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        anonymous.headers()["content-type"],
        "application/problem+json"
    );

    let a = seller(&runner, 468_424_240, "106540352242922").await;
    for bad in ["42", "not-an-id", &"z".repeat(32), &"f".repeat(32)] {
        let by_header = SseStream::open(&client, &url, &a.token, Some(bad)).await;
        let (status, body) = by_header.err().expect("refused");
        assert_eq!(status, 400, "{bad}: {body}");
        let by_query = client
            .get(format!("{url}?last_event_id={bad}"))
            .bearer_auth(&a.token)
            .send()
            .await
            .unwrap();
        assert_eq!(by_query.status(), 400, "{bad}");
        let problem: serde_json::Value = by_query.json().await.unwrap();
        assert_eq!(problem["status"], 400);
    }
}

#[tokio::test]
async fn open_streams_end_when_the_runner_shuts_down() {
    let dir = tempfile::tempdir().unwrap();
    let runner = LocalRunner::start(
        dir.path(),
        &[
            ("META_APP_SECRET", META_SECRET),
            ("EVENTS_STREAM_MS", "600000"),
        ],
    );
    let a = seller(&runner, 468_424_240, "106540352242922").await;
    let client = reqwest::Client::new();
    let mut stream = SseStream::open(&client, &runner.url("/v1/events"), &a.token, None)
        .await
        .unwrap();
    assert_eq!(stream.next_block(QUIET).await, Some(Block::Fields));
    // SIGTERM: the runner drains its requests, and a stream would hold that open for ten
    // minutes; it ends it instead (its client would resume elsewhere, later).
    let stopped = tokio::task::spawn_blocking(move || runner.terminate());
    assert!(stream.read_to_end(QUIET).await, "the stream ended");
    assert_eq!(
        stream.blocks.last(),
        Some(&Block::Fields),
        "its last words are the retry hint and the last id: {:?}",
        stream.blocks
    );
    assert_eq!(stream.blocks.len(), 2, "{:?}", stream.blocks);
    assert!(
        stopped.await.unwrap().success(),
        "the runner stopped cleanly"
    );
}
