//! CloudWatch Embedded Metric Format: a metric is a JSON log line CloudWatch Logs turns
//! into a metric, with no API call and no agent.

use std::io::Write;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

/// Every sellerhub metric lives in this namespace.
pub const NAMESPACE: &str = "sellerhub";

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: f64,
    pub unit: &'static str,
}

impl<'a> Metric<'a> {
    pub fn count(name: &'a str, value: f64) -> Self {
        Self {
            name,
            value,
            unit: "Count",
        }
    }

    pub fn milliseconds(name: &'a str, value: f64) -> Self {
        Self {
            name,
            value,
            unit: "Milliseconds",
        }
    }
}

/// The EMF line for `metrics` with `dimensions` (plus the function name, when known).
pub fn line(
    timestamp_millis: i64,
    function: Option<&str>,
    dimensions: &[(&str, &str)],
    metrics: &[Metric],
) -> String {
    document(timestamp_millis, function, dimensions, None, metrics)
}

/// The EMF line for `metrics` by `dimensions` and, with `detail`, also by `dimensions`
/// plus `detail`: a second dimension set, so CloudWatch publishes the total and each of
/// its parts from the same line.
fn document(
    timestamp_millis: i64,
    function: Option<&str>,
    dimensions: &[(&str, &str)],
    detail: Option<(&str, &str)>,
    metrics: &[Metric],
) -> String {
    let document = Document {
        timestamp_millis,
        function,
        dimensions,
        detail,
        metrics,
    };
    serde_json::to_string(&document).expect("an EMF document serializes")
}

/// One EMF line, serialized straight to text (a webhook writes one on its hot path).
struct Document<'a> {
    timestamp_millis: i64,
    function: Option<&'a str>,
    dimensions: &'a [(&'a str, &'a str)],
    detail: Option<(&'a str, &'a str)>,
    metrics: &'a [Metric<'a>],
}

impl Serialize for Document<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut root = serializer.serialize_map(None)?;
        for (name, value) in self.dimensions.iter().chain(&self.detail) {
            root.serialize_entry(name, value)?;
        }
        if let Some(function) = self.function {
            root.serialize_entry("Function", function)?;
        }
        for metric in self.metrics {
            root.serialize_entry(metric.name, &metric.value)?;
        }
        let mut names: Vec<&str> = self.dimensions.iter().map(|(name, _)| *name).collect();
        names.extend(self.function.map(|_| "Function"));
        let mut dimension_sets = vec![names.clone()];
        if let Some((name, _)) = self.detail {
            names.push(name);
            dimension_sets.push(names);
        }
        let aws = Aws {
            timestamp: self.timestamp_millis,
            cloud_watch_metrics: [Directive {
                namespace: NAMESPACE,
                dimensions: dimension_sets,
                metrics: Definitions(self.metrics),
            }],
        };
        root.serialize_entry("_aws", &aws)?;
        root.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: i64,
    cloud_watch_metrics: [Directive<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'static str,
    dimensions: Vec<Vec<&'a str>>,
    metrics: Definitions<'a>,
}

/// The metrics' declarations: `{"Name": …, "Unit": …}` each.
struct Definitions<'a>(&'a [Metric<'a>]);

impl Serialize for Definitions<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Definition<'a> {
            name: &'a str,
            unit: &'static str,
        }
        serializer.collect_seq(self.0.iter().map(|metric| Definition {
            name: metric.name,
            unit: metric.unit,
        }))
    }
}

type Sink = Box<dyn Fn(&[u8]) + Send + Sync>;

static SINK: std::sync::OnceLock<Sink> = std::sync::OnceLock::new();

/// Where [`emit`] writes its lines in this process, instead of stdout; set once, before
/// the first line (the local runner: its buffered log writer).
pub fn write_to(sink: impl Fn(&[u8]) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Stops [`emit`] writing anything in this process: for tests that run thousands of
/// operations in process (stdout written directly is not captured by the test harness).
pub fn silence() {
    write_to(|_| {});
}

/// Writes one EMF line to stdout (or where [`write_to`] said), synchronously: nothing
/// is buffered in the process, so a line written is a line CloudWatch Logs gets, however
/// the invocation ends afterwards.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[Metric]) {
    write(dimensions, None, metrics);
}

/// [`emit`], the metrics published both by `dimensions` and by `dimensions` plus
/// `detail` (say, every webhook rejected, and those rejected for each reason).
pub fn emit_detailed(dimensions: &[(&str, &str)], detail: (&str, &str), metrics: &[Metric]) {
    write(dimensions, Some(detail), metrics);
}

fn write(dimensions: &[(&str, &str)], detail: Option<(&str, &str)>, metrics: &[Metric]) {
    let now = time::OffsetDateTime::now_utc();
    let millis = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    static FUNCTION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let function = FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok());
    let mut out = document(millis, function.as_deref(), dimensions, detail, metrics);
    #[cfg(test)]
    if capture::keep(&out) {
        return;
    }
    out.push('\n');
    match SINK.get() {
        Some(sink) => sink(out.as_bytes()),
        None => {
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
        }
    }
}

/// Unit tests' view of the metrics: the lines written on the test's thread while
/// [`capture::lines`] runs (a `#[tokio::test]` runs its tasks on that one thread).
#[cfg(test)]
pub(crate) mod capture {
    use std::cell::RefCell;
    use std::future::Future;

    thread_local! {
        static LINES: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
    }

    /// Keeps `line` if this thread is capturing.
    pub(super) fn keep(line: &str) -> bool {
        LINES.with(|lines| match lines.borrow_mut().as_mut() {
            Some(lines) => {
                lines.push(line.to_owned());
                true
            }
            None => false,
        })
    }

    /// Runs `work`, and returns what it returned with the EMF lines it wrote, parsed.
    pub async fn lines<T>(work: impl Future<Output = T>) -> (T, Vec<serde_json::Value>) {
        LINES.with(|lines| *lines.borrow_mut() = Some(Vec::new()));
        let output = work.await;
        let lines = LINES.with(|lines| lines.borrow_mut().take().unwrap_or_default());
        let parsed = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("an EMF line is JSON"))
            .collect();
        (output, parsed)
    }

    /// The lines that carry metric `name`.
    pub fn of<'a>(lines: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
        lines
            .iter()
            .filter(|line| {
                line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
                    .as_array()
                    .is_some_and(|metrics| metrics.iter().any(|m| m["Name"] == name))
            })
            .collect()
    }

    /// A line's dimension sets, as written.
    pub fn dimension_sets(line: &serde_json::Value) -> serde_json::Value {
        line["_aws"]["CloudWatchMetrics"][0]["Dimensions"].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_every_metric_and_dimension_it_carries() {
        let line = line(
            1_700_000_000_000,
            Some("health"),
            &[("Dependency", "dynamodb")],
            &[
                Metric::count("SlowCalls", 1.0),
                Metric::milliseconds("Latency", 120.0),
            ],
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["SlowCalls"], 1.0);
        assert_eq!(value["Latency"], 120.0);
        assert_eq!(value["Dependency"], "dynamodb");
        assert_eq!(value["Function"], "health");
        let aws = &value["_aws"];
        assert_eq!(aws["Timestamp"], 1_700_000_000_000i64);
        let directive = &aws["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["Dependency", "Function"]])
        );
        assert_eq!(
            directive["Metrics"][1],
            serde_json::json!({"Name": "Latency", "Unit": "Milliseconds"})
        );
    }

    #[test]
    fn a_detailed_line_publishes_the_total_and_the_part() {
        let line = document(
            0,
            Some("webhook-meta"),
            &[("Source", "meta"), ("Outcome", "Rejected")],
            Some(("Reason", "BadSignature")),
            &[Metric::count("Webhooks", 1.0)],
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["Reason"], "BadSignature");
        assert_eq!(
            value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([
                ["Source", "Outcome", "Function"],
                ["Source", "Outcome", "Function", "Reason"]
            ])
        );
    }

    #[tokio::test]
    async fn a_capture_sees_this_threads_lines_only() {
        let ((), lines) = capture::lines(async {
            emit(
                &[("Dependency", "dynamodb")],
                &[Metric::count("SlowCalls", 1.0)],
            );
            std::thread::spawn(|| emit(&[], &[Metric::count("Elsewhere", 1.0)]))
                .join()
                .unwrap();
        })
        .await;
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(capture::of(&lines, "SlowCalls").len(), 1);
        assert_eq!(
            capture::dimension_sets(&lines[0]),
            serde_json::json!([["Dependency"]])
        );
    }
}
