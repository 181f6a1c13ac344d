//! CloudWatch Embedded Metric Format: a metric is a JSON log line CloudWatch Logs turns
//! into a metric, with no API call and no agent.

use std::io::Write;

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
    let mut root = serde_json::Map::new();
    let mut dimension_names: Vec<&str> = dimensions.iter().map(|(name, _)| *name).collect();
    if let Some(function) = function {
        dimension_names.push("Function");
        root.insert("Function".into(), function.into());
    }
    for (name, value) in dimensions {
        root.insert((*name).into(), (*value).into());
    }
    for metric in metrics {
        root.insert(metric.name.into(), metric.value.into());
    }
    let definitions: Vec<serde_json::Value> = metrics
        .iter()
        .map(|metric| serde_json::json!({ "Name": metric.name, "Unit": metric.unit }))
        .collect();
    root.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimension_names],
                "Metrics": definitions,
            }],
        }),
    );
    serde_json::Value::Object(root).to_string()
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

/// Writes one EMF line to stdout (or where [`write_to`] said).
pub fn emit(dimensions: &[(&str, &str)], metrics: &[Metric]) {
    let now = time::OffsetDateTime::now_utc();
    let millis = (now.unix_timestamp_nanos() / 1_000_000) as i64;
    static FUNCTION: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let function = FUNCTION.get_or_init(|| std::env::var("AWS_LAMBDA_FUNCTION_NAME").ok());
    let mut out = line(millis, function.as_deref(), dimensions, metrics);
    out.push('\n');
    match SINK.get() {
        Some(sink) => sink(out.as_bytes()),
        None => {
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
        }
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
}
