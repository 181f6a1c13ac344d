//! The live event stream's settings (GET /v1/events, see `crate::events::stream`).

use std::time::Duration;

use super::vars::Vars;
use super::{ConfigError, Profile};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventStreamSettings {
    /// EVENTS_HEARTBEAT_MS: a comment is sent after this long without anything else, so
    /// API Gateway (5 minutes idle) and proxies keep the stream open.
    pub heartbeat: Duration,
    /// EVENTS_STREAM_MS: how long one stream lasts before the server ends it (the client
    /// reconnects and resumes). A Lambda function also ends it before its own timeout.
    pub stream_for: Duration,
    /// EVENTS_RETRY_MS: the `retry:` hint, how long a browser waits before reconnecting.
    pub retry: Duration,
    /// EVENTS_SETTLE_MS: how old an event must be before it is sent, so that no event
    /// with a smaller id can still be committed after it (see `crate::events::stream`).
    /// Lambda (writers in other processes): the bound on an event write's latency.
    /// Local (every write in flight is known): only the instant between an id's making
    /// and its write reaching the store.
    pub settle: Duration,
    /// EVENTS_POLL_MS: how often a Lambda function's stream reads the store for new
    /// events (the local runner's are pushed as they commit).
    pub poll: Duration,
    /// EVENTS_LIVE_BUFFER: local runner, events a stream may fall behind the writers
    /// before it is closed (the client resumes from its last id).
    pub live_buffer: usize,
}

pub(super) fn read<F: Fn(&str) -> Option<String>>(
    vars: &Vars<F>,
    profile: Profile,
) -> Result<EventStreamSettings, ConfigError> {
    let settle_ms = match profile {
        Profile::Lambda => 2000,
        Profile::Local => 10,
    };
    Ok(EventStreamSettings {
        heartbeat: vars.millis("EVENTS_HEARTBEAT_MS", 30_000)?,
        stream_for: vars.millis("EVENTS_STREAM_MS", 14 * 60 * 1000)?,
        retry: vars.millis("EVENTS_RETRY_MS", 1000)?,
        settle: Duration::from_millis(vars.parsed("EVENTS_SETTLE_MS", settle_ms)?),
        poll: vars.millis("EVENTS_POLL_MS", 1000)?,
        live_buffer: usize::try_from(vars.count("EVENTS_LIVE_BUFFER", 1024)?).unwrap_or(usize::MAX),
    })
}
