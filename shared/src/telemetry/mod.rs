//! Logs and metrics. Logs are JSON, one line per event, with the function name, the
//! invocation's request id, correlation id and cold-start flag, and every value passed
//! through [`redact`] so tokens and secrets cannot reach a log line. Metrics are
//! CloudWatch Embedded Metric Format lines ([`emf`]).

pub mod emf;
mod format;
pub mod redact;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

pub use format::JsonLines;

/// Calls to a dependency slower than this are logged as warnings.
pub const SLOW_CALL: Duration = Duration::from_millis(100);

/// The metric counting calls slower than [`SLOW_CALL`], by `Dependency`.
pub const SLOW_CALLS: &str = "SlowCalls";

/// The log filter: LOG_LEVEL, else Lambda's AWS_LAMBDA_LOG_LEVEL, else `info`; one that
/// does not parse ([`parse_log_filter`]) falls back to `info` here, and the configuration
/// refuses it at init, naming LOG_LEVEL.
pub fn log_filter(log_level: Option<&str>, lambda_log_level: Option<&str>) -> Targets {
    log_level
        .or(lambda_log_level)
        .and_then(|wanted| parse_log_filter(wanted).ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// A level (`debug`; `fatal` is `error`) or per-target levels (`info,shared=debug`).
pub fn parse_log_filter(text: &str) -> Result<Targets, String> {
    let wanted = match text.trim().to_ascii_lowercase().as_str() {
        "fatal" => "error".to_owned(),
        other => other.to_owned(),
    };
    // A bare word is a level; `Targets` would take it as a target name and log nothing.
    let bare_words_are_levels = wanted
        .split(',')
        .filter(|directive| !directive.contains('='))
        .all(|level| level.trim().parse::<LevelFilter>().is_ok());
    match wanted.parse() {
        Ok(targets) if bare_words_are_levels && !wanted.is_empty() => Ok(targets),
        _ => Err(format!(
            "{text:?}: expected a level (error, warn, info, debug, trace) or levels by \
             target (info,shared=debug)"
        )),
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line: what Lambda and CloudWatch read.
    Json,
    /// `12:00:00 INFO message: error key=value`, for a person at a terminal.
    Text,
}

impl LogFormat {
    /// LOG_FORMAT (`json` or `text`) when set, else text for a terminal, else JSON.
    pub fn choose(log_format: Option<&str>, terminal: bool) -> Result<Self, String> {
        match log_format
            .map(|text| text.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("") => Ok(if terminal { Self::Text } else { Self::Json }),
            Some("json") => Ok(Self::Json),
            Some("text") => Ok(Self::Text),
            Some(_) => Err(format!(
                "{:?}: expected json or text",
                log_format.unwrap_or_default()
            )),
        }
    }
}

/// Installs the JSON logger for this process, writing to stdout. Call once, at init.
pub fn init(function: &str) {
    init_with_writer(function, std::io::stdout);
}

/// [`init`], writing to `writer` instead of stdout.
pub fn init_with_writer<W>(function: &str, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    init_with_format(function, LogFormat::Json, writer);
}

/// [`init_with_writer`] in `format`.
pub fn init_with_format<W>(function: &str, format: LogFormat, writer: W)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = log_filter(
        std::env::var("LOG_LEVEL").ok().as_deref(),
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
    );
    let lines = match format {
        LogFormat::Json => JsonLines::new(function),
        LogFormat::Text => JsonLines::text(function),
    };
    let _ = tracing::subscriber::set_global_default(with_lines(lines, filter, writer));
}

/// The JSON logger, writing to any writer (tests capture lines with it).
pub fn subscriber<W>(
    function: &str,
    filter: Targets,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    with_lines(JsonLines::new(function), filter, writer)
}

fn with_lines<W>(
    lines: JsonLines,
    filter: Targets,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
        .event_format(lines)
        .with_writer(writer)
        .finish()
        .with(filter)
}

/// The metric counting cold starts: one per process, at its first invocation.
pub const COLD_STARTS: &str = "ColdStarts";

static WARM: AtomicBool = AtomicBool::new(false);

/// True for the first invocation this process serves, false after; the first is counted
/// in [`COLD_STARTS`].
pub fn take_cold_start() -> bool {
    take_cold_start_of(&WARM)
}

fn take_cold_start_of(warm: &AtomicBool) -> bool {
    let cold = !warm.swap(true, Ordering::Relaxed);
    if cold {
        emf::emit(&[], &[emf::Metric::count(COLD_STARTS, 1.0)]);
    }
    cold
}

/// The span every invocation's log lines belong to.
pub fn invocation_span(request_id: &str, correlation_id: &str) -> tracing::Span {
    tracing::info_span!(
        "invocation",
        request_id = request_id,
        correlation_id = correlation_id,
        cold_start = take_cold_start(),
        // Recorded once the caller is authenticated.
        tenant = tracing::field::Empty
    )
}

/// Awaits a call to `dependency`; a call slower than [`SLOW_CALL`] is logged as a warning
/// naming the dependency and counted in the `SlowCalls` metric.
pub async fn observe<F: Future>(
    dependency: &'static str,
    operation: &'static str,
    call: F,
) -> F::Output {
    observe_waiting(dependency, operation, Duration::ZERO, call).await
}

/// [`observe`] for a call that waits on purpose (a long poll) up to `expected_wait`: only
/// time past that wait counts as slow.
pub async fn observe_waiting<F: Future>(
    dependency: &'static str,
    operation: &'static str,
    expected_wait: Duration,
    call: F,
) -> F::Output {
    let started = Instant::now();
    let output = call.await;
    let elapsed = started.elapsed();
    if elapsed > expected_wait + SLOW_CALL {
        let elapsed_ms = elapsed.as_millis() as u64;
        tracing::warn!(dependency, operation, elapsed_ms, "slow dependency call");
        emf::emit(
            &[("Dependency", dependency)],
            &[emf::Metric::count(SLOW_CALLS, 1.0)],
        );
    }
    output
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::LevelFilter;

    use super::{emf, log_filter};

    #[test]
    fn the_level_comes_from_log_level_then_lambda_then_info() {
        let enabled = |filter: &tracing_subscriber::filter::Targets, target: &str, level: Level| {
            filter.would_enable(target, &level)
        };
        let filter = log_filter(Some("debug"), Some("ERROR"));
        assert!(enabled(&filter, "shared", Level::DEBUG));
        let filter = log_filter(None, Some("FATAL"));
        assert!(
            enabled(&filter, "shared", Level::ERROR) && !enabled(&filter, "shared", Level::WARN)
        );
        let filter = log_filter(None, None);
        assert!(
            enabled(&filter, "shared", Level::INFO) && !enabled(&filter, "shared", Level::DEBUG)
        );
        let filter = log_filter(Some("warn,shared::store=trace"), None);
        assert!(enabled(&filter, "shared::store::dynamodb", Level::TRACE));
        assert!(!enabled(&filter, "local", Level::INFO));
        let filter = log_filter(Some("loud!!"), None);
        assert_eq!(filter.default_level(), Some(LevelFilter::INFO));
    }

    #[tokio::test]
    async fn the_first_invocation_of_a_process_is_counted_as_its_cold_start() {
        let warm = std::sync::atomic::AtomicBool::new(false);
        let (starts, lines) = emf::capture::lines(async {
            [
                super::take_cold_start_of(&warm),
                super::take_cold_start_of(&warm),
            ]
        })
        .await;
        assert_eq!(starts, [true, false]);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0][super::COLD_STARTS], 1.0);
        assert_eq!(
            emf::capture::dimension_sets(&lines[0]),
            serde_json::json!([[]])
        );
    }

    #[tokio::test]
    async fn a_slow_call_is_counted_by_its_dependency() {
        let slow = tokio::time::sleep(super::SLOW_CALL * 2);
        let ((), lines) = emf::capture::lines(super::observe("dynamodb", "get", slow)).await;
        let slow_calls = emf::capture::of(&lines, super::SLOW_CALLS);
        assert_eq!(slow_calls.len(), 1, "{lines:?}");
        assert_eq!(slow_calls[0]["Dependency"], "dynamodb");
        assert_eq!(
            emf::capture::dimension_sets(slow_calls[0]),
            serde_json::json!([["Dependency"]])
        );
    }

    #[test]
    fn a_log_level_that_does_not_parse_is_refused() {
        for bad in ["loud!!", "verbose", "info,shared=loud", ""] {
            let error = super::parse_log_filter(bad).unwrap_err();
            assert!(error.contains("expected a level"), "{bad}: {error}");
        }
        for good in ["debug", "FATAL", "warn,shared::store=trace"] {
            assert!(super::parse_log_filter(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn logs_are_text_at_a_terminal_unless_log_format_says() {
        use super::LogFormat;
        assert_eq!(LogFormat::choose(None, true), Ok(LogFormat::Text));
        assert_eq!(LogFormat::choose(None, false), Ok(LogFormat::Json));
        assert_eq!(LogFormat::choose(Some("JSON"), true), Ok(LogFormat::Json));
        assert_eq!(LogFormat::choose(Some("text"), false), Ok(LogFormat::Text));
        assert!(LogFormat::choose(Some("pretty"), true).is_err());
    }
}
