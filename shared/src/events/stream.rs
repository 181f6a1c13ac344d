//! A tenant's log as a stream of Server-Sent Events (GET /v1/events): from a position on,
//! each event once, in order, with its id, resumable from any id it sent.
//!
//! Exactly once across reconnections. Events are sent in id order and a client resumes
//! from the last id it got (Last-Event-ID): it is sent every event after that id. That is
//! only right if no event of a smaller id can appear once a larger one was sent — yet ids
//! are made by writers before they commit, in different processes, so an event whose id
//! was made earlier can commit later. So an event is sent only once it has *settled*:
//! once no write of a smaller id can still commit. Knowing that differs by profile:
//!
//! - Lambda (the writers are other Lambda instances): by time. A stream reads the store
//!   every EVENTS_POLL_MS, up to the ids made EVENTS_SETTLE_MS (2 s) before the read
//!   began: we assume every event commits within that of its id's making (writers make the
//!   id just before their one write; the inbox makes a new one each time it rebuilds a
//!   change that conflicted). A write slower than that (say, the SDK retrying a throttled
//!   transaction for seconds) is missed by the streams that had passed its id; a client
//!   that resumes from before it gets it. Events reach a Lambda stream 2–3 s after their
//!   commit.
//! - Local (one process, which sees every write): exactly. [`super::live`] knows which
//!   event writes are in flight; an event is sent once it has committed, no write of a
//!   smaller id is in flight, and its id is EVENTS_SETTLE_MS (10 ms) old — for the instant
//!   between an id's making and its write reaching the store. Events are pushed as they
//!   commit: no polling. (An event that still commits after a stream passed its id is
//!   logged as a warning.)
//!
//! (The other way, ids that are totally ordered — from a per-tenant counter taken in the
//! write — would make every event write of a tenant contend for one item.)
//!
//! A stream opens with the `retry:` hint and its starting position as `id:`, sends a
//! heartbeat comment after EVENTS_HEARTBEAT_MS without anything else, and ends cleanly at
//! its end (EVENTS_STREAM_MS, before the Lambda function's timeout, before the session
//! expires), after a store failure, or when it fell too far behind the writers: the
//! browser reconnects after `retry` and resumes from its last id.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::live::{Committed, Subscription};
use super::{Event, Events, Position};
use crate::clock::Clock;
use crate::config::EventStreamSettings;
use crate::http::{StreamingBody, sse};
use crate::store::StoreError;

/// Events read from the store at a time.
const PAGE: usize = 100;

/// One tenant's log, as a stream reads it.
pub struct TenantLog {
    pub events: Events,
    pub tenant: String,
    pub clock: Arc<dyn Clock>,
}

/// Where a stream learns of new events.
pub enum Source {
    /// Reading the store every interval (a Lambda function).
    Poll(Duration),
    /// Told by the writers as they commit (the local runner).
    Live(Subscription),
}

pub struct EventStream {
    log: TenantLog,
    feed: Feed,
    heartbeat: Duration,
    retry: Duration,
    ends_at: Instant,
    /// The last position sent.
    cursor: Position,
    state: State,
    next_heartbeat: Instant,
    sent: u64,
    span: tracing::Span,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Opening,
    Open,
    Ended,
}

/// What a feed has next.
enum Next {
    Event(Event),
    /// Nothing came before the time given.
    Waited,
    /// The stream must end (why).
    End(&'static str),
}

enum Feed {
    Polled(Polled),
    Live(Live),
}

impl EventStream {
    /// The stream of `log` after `from`, ending at `ends_at` at the latest.
    pub fn new(
        log: TenantLog,
        from: Position,
        source: Source,
        settings: &EventStreamSettings,
        ends_at: Instant,
    ) -> Self {
        let settle = settings.settle;
        let feed = match source {
            Source::Poll(every) => Feed::Polled(Polled {
                every,
                settle,
                ready: VecDeque::new(),
                read_from: None,
                next_read: Instant::now(),
            }),
            Source::Live(subscription) => Feed::Live(Live {
                settle,
                writing_from: subscription.writing_from.clone(),
                subscription,
                pending: BTreeMap::new(),
                read_from: Some(from.clone()),
                read_up_to: None,
            }),
        };
        Self {
            log,
            feed,
            heartbeat: settings.heartbeat,
            retry: settings.retry,
            ends_at,
            cursor: from,
            state: State::Opening,
            next_heartbeat: Instant::now() + settings.heartbeat,
            sent: 0,
            span: tracing::Span::current(),
        }
    }

    /// The response body: the stream's chunks as they come.
    pub fn into_body(self) -> StreamingBody {
        StreamingBody::new(futures_util::stream::unfold(self, |mut stream| async {
            let span = stream.span.clone();
            let chunk = stream.next_chunk().instrument(span).await?;
            Some((chunk, stream))
        }))
    }

    /// The next chunk to send, None once the stream has ended.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        match self.state {
            State::Ended => return None,
            State::Opening => {
                self.state = State::Open;
                return Some(sse::opening(self.retry, self.cursor.as_str()));
            }
            State::Open => {}
        }
        let until = self.next_heartbeat.min(self.ends_at);
        let next = match &mut self.feed {
            Feed::Polled(feed) => feed.next(&self.log, &self.cursor, until).await,
            Feed::Live(feed) => feed.next(&self.log, &self.cursor, until).await,
        };
        match next {
            Ok(Next::Event(event)) => {
                self.cursor = event.position;
                self.sent += 1;
                self.next_heartbeat = Instant::now() + self.heartbeat;
                Some(sse::event(self.cursor.as_str(), &event.data))
            }
            Ok(Next::Waited) if Instant::now() < self.ends_at => {
                self.next_heartbeat = Instant::now() + self.heartbeat;
                Some(sse::comment("heartbeat"))
            }
            Ok(Next::Waited) => self.end("its time is up"),
            Ok(Next::End(why)) => self.end(why),
            Err(error) => {
                tracing::warn!(error = %error, "event stream: the store failed");
                self.end("the store failed")
            }
        }
    }

    /// The stream's last chunk: the retry hint and the last id again, so that however it
    /// ends (its time, a shutdown, a slow client) the client reconnects after `retry` and
    /// resumes right here.
    fn end(&mut self, why: &'static str) -> Option<Bytes> {
        self.state = State::Ended;
        tracing::info!(
            tenant = %self.log.tenant,
            sent = self.sent,
            last_id = %self.cursor.as_str(),
            why,
            "event stream ended"
        );
        Some(sse::opening(self.retry, self.cursor.as_str()))
    }
}

/// Where a stream without a Last-Event-ID starts: after the events settled at `now_ms`.
pub fn start_now(now_ms: i64, settings: &EventStreamSettings) -> Position {
    Position::after_ms(now_ms - millis(settings.settle))
}

/// The instant `at_ms` (milliseconds since the epoch) on `clock`'s time.
fn instant_at(clock: &dyn Clock, at_ms: i64) -> Instant {
    let wait = at_ms.saturating_sub(clock.now_ms());
    Instant::now() + Duration::from_millis(u64::try_from(wait).unwrap_or(0))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Reads the store every `every`, up to the ids made `settle` before the read began.
struct Polled {
    every: Duration,
    settle: Duration,
    /// Settled events read, not sent yet.
    ready: VecDeque<Event>,
    /// Where the last read stopped when more may follow.
    read_from: Option<Position>,
    next_read: Instant,
}

impl Polled {
    async fn next(
        &mut self,
        log: &TenantLog,
        cursor: &Position,
        until: Instant,
    ) -> Result<Next, StoreError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(Next::Event(event));
            }
            if self.next_read > Instant::now() {
                if until <= self.next_read {
                    sleep_until(until).await;
                    return Ok(Next::Waited);
                }
                sleep_until(self.next_read).await;
            }
            // Every event up to here committed before the read begins (the settle window).
            let up_to = Position::after_ms(log.clock.now_ms() - millis(self.settle));
            let after = self.read_from.as_ref().unwrap_or(cursor);
            let page = log
                .events
                .read_after(&log.tenant, after, Some(&up_to), PAGE)
                .await?;
            self.next_read = match page.more {
                Some(_) => Instant::now(),
                None => Instant::now() + self.every,
            };
            self.read_from = page.more;
            self.ready.extend(page.events);
        }
    }
}

/// Reads the store until it has caught up, then hears of every event write as it ends.
struct Live {
    settle: Duration,
    subscription: Subscription,
    /// The smallest id being written, as last heard.
    writing_from: Option<Position>,
    /// Events committed after the cursor, not sent yet.
    pending: BTreeMap<Position, Value>,
    /// While the store has not been read to its end: where reading goes on. Pending
    /// events past it may not be sent yet (an event before them may not be read yet).
    read_from: Option<Position>,
    /// The last position read from the store.
    read_up_to: Option<Position>,
}

impl Live {
    async fn next(
        &mut self,
        log: &TenantLog,
        cursor: &Position,
        until: Instant,
    ) -> Result<Next, StoreError> {
        loop {
            let settles_at = match self.take_ready(log) {
                Ok(event) => return Ok(Next::Event(event)),
                Err(settles_at) => settles_at,
            };
            if let Some(from) = &self.read_from
                && self
                    .pending
                    .first_key_value()
                    .is_none_or(|(first, _)| first > from)
            {
                let page = log.events.read_after(&log.tenant, from, None, PAGE).await?;
                if let Some(last) = page.events.last() {
                    self.read_up_to = Some(last.position.clone());
                }
                for event in page.events {
                    self.pending.insert(event.position, event.data);
                }
                self.read_from = page.more;
                continue;
            }
            let wake = settles_at.map_or(until, |at| at.min(until));
            let Subscription {
                updates, closing, ..
            } = &mut self.subscription;
            // Time before updates: a stream of updates must not hold off its end.
            let update = tokio::select! {
                biased;
                _ = closing.wait_for(|closing| *closing) => {
                    return Ok(Next::End("the server is shutting down"));
                }
                _ = sleep_until(wake) => {
                    if wake >= until {
                        return Ok(Next::Waited);
                    }
                    continue;
                }
                update = updates.recv() => update,
            };
            match update {
                Ok(update) => self.apply(&update, cursor),
                Err(RecvError::Lagged(_)) => return Ok(Next::End("it fell behind the writers")),
                Err(RecvError::Closed) => return Ok(Next::End("its log closed")),
            }
        }
    }

    /// The first pending event, if it may be sent now; else when it will have settled,
    /// when only time holds it back.
    fn take_ready(&mut self, log: &TenantLog) -> Result<Event, Option<Instant>> {
        let Some(first) = self.pending.first_entry() else {
            return Err(None);
        };
        let position = first.key();
        let unread_before = self.read_from.as_ref().is_some_and(|from| position > from);
        let written_before = self
            .writing_from
            .as_ref()
            .is_some_and(|from| position >= from);
        if unread_before || written_before {
            return Err(None);
        }
        let settles_ms = position.ms().saturating_add(millis(self.settle));
        if settles_ms > log.clock.now_ms() {
            return Err(Some(instant_at(log.clock.as_ref(), settles_ms)));
        }
        let (position, data) = first.remove_entry();
        Ok(Event { position, data })
    }

    fn apply(&mut self, update: &Committed, cursor: &Position) {
        self.writing_from = update.writing_from.clone();
        for event in &update.events {
            if event.position > *cursor {
                self.pending
                    .insert(event.position.clone(), event.data.clone());
            } else if self
                .read_up_to
                .as_ref()
                .is_none_or(|read| event.position > *read)
            {
                // Neither sent (never read) nor to be sent (the stream has passed its id):
                // its write outlasted the settle window.
                tracing::warn!(
                    id = %event.position.as_str(),
                    cursor = %cursor.as_str(),
                    "event stream: an event committed after the stream passed its id"
                );
            }
        }
    }
}
