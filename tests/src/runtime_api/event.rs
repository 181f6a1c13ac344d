//! API Gateway REST API (v1) proxy events.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{ACCOUNT_ID, REGION, random_hex};

/// The fake REST API's id (also in `Host` and `domainName`).
pub const API_ID: &str = "a1b2c3d4e5";
/// The stage every event comes through. Note: lambda_http prefixes the request URI's path
/// with it (`/prod/health`) unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set;
/// `RequestExt::raw_http_path()` is always the path without the stage.
pub const STAGE: &str = "prod";

const SOURCE_IP: &str = "203.0.113.10";

/// A REST API (v1) Lambda proxy integration event as API Gateway sends it (regional
/// endpoint, no authorizer), in the documented shape:
/// <https://docs.aws.amazon.com/apigateway/latest/developerguide/set-up-lambda-proxy-integrations.html#api-gateway-simple-proxy-for-lambda-input-format>.
///
/// * `path` is the request path without the stage or query (`/v1/notifications/n1/read`);
///   `resource` the resource template (`/v1/notifications/{id}/read`); path parameters are
///   extracted from it (`{proxy+}` takes the rest of the path).
/// * `headers` override the defaults (Accept, Host, User-Agent, X-Amzn-Trace-Id,
///   X-Forwarded-For/Port/Proto) case-insensitively; a name repeated goes to
///   `multiValueHeaders` with every value and to `headers` with the last, as API Gateway does.
///   `requestContext.identity.sourceIp` is the last `X-Forwarded-For` entry.
/// * `query` values are decoded values; repeated keys work like repeated headers.
pub fn apigw_rest_event(
    method: &str,
    path: &str,
    resource: &str,
    headers: &[(&str, &str)],
    query: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let method = method.to_ascii_uppercase();
    let now = OffsetDateTime::now_utc();
    let host = format!("{API_ID}.execute-api.{REGION}.amazonaws.com");
    let trace = format!("Root=1-{:08x}-{}", now.unix_timestamp(), random_hex(24));

    let defaults = [
        ("Accept", "*/*"),
        ("Host", host.as_str()),
        ("User-Agent", "sellerhub-tests/1.0"),
        ("X-Amzn-Trace-Id", trace.as_str()),
        ("X-Forwarded-For", SOURCE_IP),
        ("X-Forwarded-Port", "443"),
        ("X-Forwarded-Proto", "https"),
    ];
    let overridden = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let header_list = group(
        defaults
            .into_iter()
            .filter(|(name, _)| !overridden(name))
            .chain(headers.iter().copied()),
        str::eq_ignore_ascii_case,
    );
    let header_value = |wanted: &str| {
        header_list
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .and_then(|(_, values)| values.last())
            .map(String::as_str)
    };
    let source_ip = header_value("X-Forwarded-For")
        .and_then(|xff| xff.rsplit(',').next())
        .map_or(SOURCE_IP, str::trim);
    let user_agent = header_value("User-Agent");

    let query_list = group(query.iter().copied(), |a, b| a == b);
    let (single_query, multi_query) = if query_list.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (
            Value::Object(last_values(&query_list)),
            Value::Object(all_values(&query_list)),
        )
    };
    let path_parameters = match path_parameters(resource, path) {
        Some(params) if !params.is_empty() => Value::Object(params),
        _ => Value::Null,
    };
    let epoch_ms = now.unix_timestamp_nanos() / 1_000_000;

    json!({
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": last_values(&header_list),
        "multiValueHeaders": all_values(&header_list),
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": path_parameters,
        "stageVariables": null,
        "requestContext": {
            "resourceId": random_hex(6),
            "resourcePath": resource,
            "httpMethod": method,
            "extendedRequestId": format!("{}=", random_hex(15)),
            "requestTime": request_time(now),
            "path": format!("/{STAGE}{path}"),
            "accountId": ACCOUNT_ID,
            "protocol": "HTTP/1.1",
            "stage": STAGE,
            "domainPrefix": API_ID,
            "requestTimeEpoch": i64::try_from(epoch_ms).unwrap_or(i64::MAX),
            "requestId": uuid::Uuid::new_v4().to_string(),
            "identity": {
                "cognitoIdentityPoolId": null,
                "accountId": null,
                "cognitoIdentityId": null,
                "caller": null,
                "sourceIp": source_ip,
                "principalOrgId": null,
                "accessKey": null,
                "cognitoAuthenticationType": null,
                "cognitoAuthenticationProvider": null,
                "userArn": null,
                "userAgent": user_agent,
                "user": null
            },
            "domainName": host,
            "apiId": API_ID
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// `(name, value)` pairs grouped by name (as `same` compares names), in first-seen order.
fn group<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    same: impl Fn(&str, &str) -> bool,
) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, value) in pairs {
        match groups.iter_mut().find(|(existing, _)| same(existing, name)) {
            Some((_, values)) => values.push(value.to_owned()),
            None => groups.push((name.to_owned(), vec![value.to_owned()])),
        }
    }
    groups
}

fn last_values(groups: &[(String, Vec<String>)]) -> Map<String, Value> {
    groups
        .iter()
        .map(|(name, values)| (name.clone(), json!(values.last())))
        .collect()
}

fn all_values(groups: &[(String, Vec<String>)]) -> Map<String, Value> {
    groups
        .iter()
        .map(|(name, values)| (name.clone(), json!(values)))
        .collect()
}

/// Matches `path` against a resource template; `None` when it does not match.
fn path_parameters(resource: &str, path: &str) -> Option<Map<String, Value>> {
    let mut params = Map::new();
    let template: Vec<&str> = resource.trim_start_matches('/').split('/').collect();
    let actual: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    for (i, segment) in template.iter().enumerate() {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
            let rest = actual.get(i..)?.join("/");
            params.insert(name.to_owned(), Value::String(rest));
            return Some(params);
        }
        let value = actual.get(i)?;
        match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => {
                params.insert(name.to_owned(), Value::String((*value).to_owned()));
            }
            None if segment == value => {}
            None => return None,
        }
    }
    (template.len() == actual.len()).then_some(params)
}

/// API Gateway's `requestTime`, `dd/Mon/yyyy:HH:mm:ss +0000`.
fn request_time(at: OffsetDateTime) -> String {
    let format =
        format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    at.to_offset(time::UtcOffset::UTC)
        .format(format)
        .expect("an OffsetDateTime has every field of the format")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::apigw::ApiGatewayProxyRequest;
    use lambda_http::RequestExt;
    use lambda_http::request::LambdaRequest;
    use time::macros::datetime;

    fn sample() -> Value {
        apigw_rest_event(
            "post",
            "/v1/notifications/n-42/read",
            "/v1/notifications/{id}/read",
            &[
                ("content-type", "application/json"),
                ("Cookie", "a=1"),
                ("Cookie", "b=2"),
                ("X-Forwarded-For", "198.51.100.7, 192.0.2.55"),
            ],
            &[("limit", "20"), ("tag", "x"), ("tag", "y z")],
            Some(r#"{"ok":true}"#),
        )
    }

    #[test]
    fn rest_event_deserializes_as_apigw_proxy_request() {
        let event: ApiGatewayProxyRequest = serde_json::from_value(sample()).unwrap();
        assert_eq!(event.http_method, http::Method::POST);
        assert_eq!(event.path.as_deref(), Some("/v1/notifications/n-42/read"));
        assert_eq!(
            event.resource.as_deref(),
            Some("/v1/notifications/{id}/read")
        );
        assert_eq!(
            event.path_parameters.get("id").map(String::as_str),
            Some("n-42")
        );
        assert_eq!(event.headers["content-type"], "application/json");
        assert_eq!(event.headers["cookie"], "b=2");
        assert_eq!(
            event.multi_value_headers.get_all("cookie").iter().count(),
            2
        );
        assert_eq!(event.query_string_parameters.first("limit"), Some("20"));
        assert_eq!(
            event.multi_value_query_string_parameters.all("tag"),
            Some(vec!["x", "y z"])
        );
        let ctx = &event.request_context;
        assert_eq!(ctx.stage.as_deref(), Some(STAGE));
        assert_eq!(
            ctx.path.as_deref(),
            Some("/prod/v1/notifications/n-42/read")
        );
        assert_eq!(
            ctx.resource_path.as_deref(),
            Some("/v1/notifications/{id}/read")
        );
        assert_eq!(ctx.http_method, http::Method::POST);
        assert_eq!(ctx.account_id.as_deref(), Some(ACCOUNT_ID));
        assert_eq!(ctx.apiid.as_deref(), Some(API_ID));
        assert_eq!(ctx.identity.source_ip.as_deref(), Some("192.0.2.55"));
        assert_eq!(
            ctx.identity.user_agent.as_deref(),
            Some("sellerhub-tests/1.0")
        );
        assert!(ctx.request_time_epoch > 1_600_000_000_000);
        let at = OffsetDateTime::from_unix_timestamp_nanos(
            i128::from(ctx.request_time_epoch) * 1_000_000,
        )
        .unwrap();
        assert_eq!(ctx.request_time.as_deref(), Some(request_time(at).as_str()));
        assert_eq!(event.body.as_deref(), Some(r#"{"ok":true}"#));
        assert!(!event.is_base64_encoded);
    }

    #[test]
    fn rest_event_is_what_lambda_http_hands_a_handler() {
        let raw = serde_json::to_string(&sample()).unwrap();
        let lambda_request: LambdaRequest = serde_json::from_str(&raw).unwrap();
        assert!(matches!(lambda_request, LambdaRequest::ApiGatewayV1(_)));
        let request: lambda_http::Request = lambda_request.into();
        assert_eq!(request.method(), http::Method::POST);
        // lambda_http puts the stage in front of the path unless
        // AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH is set; the raw path has no stage.
        assert_eq!(request.uri().path(), "/prod/v1/notifications/n-42/read");
        assert_eq!(request.raw_http_path(), "/v1/notifications/n-42/read");
        assert_eq!(
            request.uri().host(),
            Some(format!("{API_ID}.execute-api.{REGION}.amazonaws.com").as_str())
        );
        assert_eq!(request.path_parameters().first("id"), Some("n-42"));
        assert_eq!(
            request.query_string_parameters().all("tag"),
            Some(vec!["x", "y z"])
        );
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.body().as_ref(), br#"{"ok":true}"#);
    }

    #[test]
    fn event_without_query_or_parameters_uses_nulls_like_api_gateway() {
        let event = apigw_rest_event("GET", "/health", "/health", &[], &[], None);
        assert_eq!(event["queryStringParameters"], Value::Null);
        assert_eq!(event["multiValueQueryStringParameters"], Value::Null);
        assert_eq!(event["pathParameters"], Value::Null);
        assert_eq!(event["body"], Value::Null);
        assert_eq!(event["requestContext"]["path"], "/prod/health");
        let parsed: ApiGatewayProxyRequest = serde_json::from_value(event).unwrap();
        assert!(parsed.path_parameters.is_empty());
    }

    #[test]
    fn greedy_path_parameter() {
        let params = path_parameters("/files/{proxy+}", "/files/a/b/c").unwrap();
        assert_eq!(params["proxy"], "a/b/c");
        assert!(path_parameters("/v1/me", "/v1/other").is_none());
        assert!(path_parameters("/v1/{id}", "/v1/a/b").is_none());
    }

    #[test]
    fn request_time_format() {
        // The example in AWS's docs: 1583349317135 = 04/Mar/2020:19:15:17 +0000.
        assert_eq!(
            request_time(datetime!(2020-03-04 19:15:17.135 UTC)),
            "04/Mar/2020:19:15:17 +0000"
        );
        assert_eq!(
            request_time(OffsetDateTime::UNIX_EPOCH),
            "01/Jan/1970:00:00:00 +0000"
        );
    }
}
