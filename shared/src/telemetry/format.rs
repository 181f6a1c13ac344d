//! The log line format: one flat JSON object per event, carrying the event's fields and
//! the fields of every span it happens in (request_id, correlation_id, cold_start…),
//! with each value redacted.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use super::redact::{REDACTED, is_secret_name, redact_field, redact_text};

pub struct JsonLines {
    function: String,
    /// Written as text for a person instead ([`render_text`]): the same fields, the
    /// same redaction.
    text: bool,
}

impl JsonLines {
    pub fn new(function: &str) -> Self {
        Self {
            function: function.to_owned(),
            text: false,
        }
    }

    /// Lines for a person at a terminal: `12:00:00 INFO message: error key=value`.
    pub fn text(function: &str) -> Self {
        Self {
            text: true,
            ..Self::new(function)
        }
    }
}

/// Fields a person at a terminal does not need on every line.
const NOT_FOR_PEOPLE: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "message",
    "error",
    "request_id",
    "correlation_id",
    "cold_start",
];

/// `line` as `HH:MM:SS LEVEL message: error key=value …` (`function` only when it is not
/// the process's own).
fn render_text(line: &Map<String, Value>, own_function: &str) -> String {
    let text = |key: &str| match line.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let timestamp = text("timestamp");
    let time = timestamp.get(11..19).unwrap_or(&timestamp);
    let mut out = format!("{time} {:<5} {}", text("level"), text("message"));
    if line.contains_key("error") {
        out.push_str(": ");
        out.push_str(&text("error"));
    }
    for (key, value) in line {
        if NOT_FOR_PEOPLE.contains(&key.as_str())
            || (key == "function" && value.as_str() == Some(own_function))
        {
            continue;
        }
        let value = match value {
            Value::String(text) if !text.is_empty() && !text.contains([' ', '"', '=']) => {
                text.clone()
            }
            other => other.to_string(),
        };
        out.push_str(&format!(" {key}={value}"));
    }
    out
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        let timestamp = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), timestamp.into());
        line.insert("level".into(), event.metadata().level().as_str().into());
        line.insert("target".into(), event.metadata().target().into());
        line.insert("function".into(), self.function.as_str().into());

        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(fields) = extensions.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields) {
                    for (name, value) in fields {
                        line.insert(name.clone(), redact_value(&name, value));
                    }
                }
            }
        }

        event.record(&mut Fields(&mut line));
        if self.text {
            writeln!(writer, "{}", render_text(&line, &self.function))
        } else {
            writeln!(writer, "{}", Value::Object(line))
        }
    }
}

fn redact_value(name: &str, value: Value) -> Value {
    if is_secret_name(name) {
        return REDACTED.into();
    }
    match value {
        Value::String(text) => redact_text(&text).into_owned().into(),
        other => other,
    }
}

struct Fields<'a>(&'a mut Map<String, Value>);

impl Fields<'_> {
    fn text(&mut self, field: &Field, text: &str) {
        let value = if field.name() == "message" {
            redact_text(text)
        } else {
            redact_field(field.name(), text)
        };
        self.0
            .insert(field.name().into(), value.into_owned().into());
    }

    fn plain(&mut self, field: &Field, value: Value) {
        self.0
            .insert(field.name().into(), redact_value(field.name(), value));
    }
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.plain(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.plain(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, value.into());
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.plain(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use crate::telemetry::{invocation_span, subscriber};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(level: &str, log: impl FnOnce()) -> Vec<serde_json::Value> {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = subscriber("health", level.parse().unwrap(), move || sink.clone());
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[derive(Debug)]
    #[allow(dead_code)]
    struct Grant {
        seller: u64,
        access_token: String,
    }

    #[test]
    fn lines_are_flat_json_with_the_invocation_fields() {
        let lines = capture("info", || {
            let span = invocation_span("req-1", "corr-1");
            let _entered = span.enter();
            tracing::info!(seller = 42, "checked");
        });
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        assert_eq!(line["message"], "checked");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["function"], "health");
        assert_eq!(line["request_id"], "req-1");
        assert_eq!(line["correlation_id"], "corr-1");
        assert_eq!(line["seller"], 42);
        assert!(line["cold_start"].is_boolean());
        assert!(line["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
    }

    #[test]
    fn secrets_cannot_reach_a_log_line() {
        let token = "APP_USR-1234567-112233-abcdef0123456789-99";
        let lines = capture("debug", || {
            tracing::info!(access_token = token, "stored grant");
            tracing::info!("calling with Authorization: Bearer {token}");
            tracing::debug!(grant = ?Grant { seller: 1, access_token: "opaque-but-secret".into() }, "grant loaded");
            let span = tracing::info_span!("login", client_secret = "hunter2-secret-value");
            let _entered = span.enter();
            tracing::warn!(refresh_token = 7, "numbers too");
        });
        let text = lines
            .iter()
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        for secret in [token, "opaque-but-secret", "hunter2-secret-value"] {
            assert!(!text.contains(secret), "{secret} leaked into: {text}");
        }
        assert_eq!(lines[0]["access_token"], "[REDACTED]");
        assert_eq!(lines[3]["refresh_token"], "[REDACTED]");
        assert_eq!(lines[3]["client_secret"], "[REDACTED]");
        assert_eq!(
            lines[2]["grant"],
            "Grant { seller: 1, access_token: \"[REDACTED]\" }"
        );
    }

    #[test]
    fn text_lines_are_for_people_and_redacted_alike() {
        let captured = Captured::default();
        let sink = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(super::JsonLines::text("local"))
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = invocation_span("req-1", "corr-1");
            let _entered = span.enter();
            tracing::error!(error = "boom", function = "webhook-worker", "record failed");
            tracing::info!(
                access_token = "APP_USR-1234567-112233-abcdef",
                path = "/a b",
                "stored"
            );
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        // 12:00:00 ERROR record failed: boom function=webhook-worker
        assert_eq!(lines[0].as_bytes()[2], b':', "{text}");
        assert!(
            lines[0].ends_with(" ERROR record failed: boom function=webhook-worker"),
            "{text}"
        );
        assert!(
            lines[1].ends_with(r#" INFO  stored access_token=[REDACTED] path="/a b""#),
            "{text}"
        );
        assert!(
            !text.contains("req-1") && !text.contains("APP_USR"),
            "{text}"
        );
    }

    #[test]
    fn the_level_filter_drops_lower_levels() {
        let lines = capture("warn", || {
            tracing::info!("quiet");
            tracing::warn!("loud");
        });
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["message"], "loud");
    }

    #[test]
    fn slow_dependency_calls_are_warnings_naming_the_dependency() {
        let lines = capture("info", || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            runtime.block_on(async {
                let slow = tokio::time::sleep(
                    crate::telemetry::SLOW_CALL + std::time::Duration::from_millis(20),
                );
                crate::telemetry::observe("dynamodb", "GetItem", slow).await;
                crate::telemetry::observe("sqs", "SendMessage", async {}).await;
            });
        });
        assert_eq!(lines.len(), 1, "only the slow call is logged: {lines:?}");
        assert_eq!(lines[0]["level"], "WARN");
        assert_eq!(lines[0]["dependency"], "dynamodb");
        assert_eq!(lines[0]["operation"], "GetItem");
        assert!(lines[0]["elapsed_ms"].as_u64().unwrap() >= 100);
    }
}
