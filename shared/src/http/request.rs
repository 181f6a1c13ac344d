//! What handlers read off a request: its ids, its route, the caller's address, its body.

use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};

use super::ApiError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestIds {
    /// API Gateway's request id (or the caller's X-Request-Id locally, else a new one).
    pub request_id: String,
    /// The caller's X-Correlation-Id, else the request id: follows the work through
    /// queues and workers.
    pub correlation_id: String,
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

fn context(
    request: &Request,
) -> Option<&lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext> {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV1(context)) => Some(context),
        _ => None,
    }
}

pub fn request_ids(request: &Request) -> RequestIds {
    let request_id = context(request)
        .and_then(|context| context.request_id.clone())
        .or_else(|| header(request, super::REQUEST_ID_HEADER).map(str::to_owned))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let correlation_id = header(request, "x-correlation-id")
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.clone());
    RequestIds {
        request_id,
        correlation_id,
    }
}

/// The route's resource path (`/v1/questions/{id}/answer`), else the raw path.
pub fn resource_path(request: &Request) -> String {
    context(request)
        .and_then(|context| context.resource_path.clone())
        .unwrap_or_else(|| request.raw_http_path().to_owned())
}

/// The path as the caller asked for it: API Gateway's request context path, which keeps
/// the stage (`/prod/`) or a custom domain's base path, else the request's own path.
pub fn public_path(request: &Request) -> String {
    context(request)
        .and_then(|context| context.path.clone())
        .unwrap_or_else(|| request.uri().path().to_owned())
}

/// The caller's address as API Gateway saw it.
pub fn client_ip(request: &Request) -> Option<String> {
    context(request).and_then(|context| context.identity.source_ip.clone())
}

/// The first value of query parameter `name`.
pub fn query_param(request: &Request, name: &str) -> Option<String> {
    request
        .query_string_parameters_ref()
        .and_then(|query| query.first(name))
        .map(str::to_owned)
}

/// Path parameter `name` of the route (`{id}` in `/v1/questions/{id}/answer`); a route
/// that has it always carries it, so its absence is a 404.
pub fn path_param(request: &Request, name: &str) -> Result<String, ApiError> {
    request
        .path_parameters_ref()
        .and_then(|parameters| parameters.first(name))
        .map(str::to_owned)
        .ok_or(ApiError::NotFound)
}

/// The body, refused with 413 past `limit` bytes.
pub fn body_bytes(request: &Request, limit: usize) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;

    use super::*;

    fn with_context(request_id: Option<&str>) -> Request {
        let mut context = ApiGatewayProxyRequestContext::default();
        context.request_id = request_id.map(str::to_owned);
        context.resource_path = Some("/health".into());
        context.identity.source_ip = Some("203.0.113.9".into());
        http::Request::builder()
            .uri("/prod/health")
            .header("x-correlation-id", "corr-9")
            .body(Body::Text("hello".into()))
            .unwrap()
            .with_request_context(RequestContext::ApiGatewayV1(context))
    }

    #[test]
    fn ids_route_and_caller_come_from_api_gateway() {
        let request = with_context(Some("apigw-1"));
        assert_eq!(
            request_ids(&request),
            RequestIds {
                request_id: "apigw-1".into(),
                correlation_id: "corr-9".into()
            }
        );
        assert_eq!(resource_path(&request), "/health");
        assert_eq!(client_ip(&request).as_deref(), Some("203.0.113.9"));
    }

    #[test]
    fn a_request_without_ids_gets_a_fresh_one() {
        let request = http::Request::builder().body(Body::Empty).unwrap();
        let ids = request_ids(&request);
        assert_eq!(ids.request_id.len(), 36);
        assert_eq!(ids.correlation_id, ids.request_id);
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let request = with_context(None);
        assert_eq!(body_bytes(&request, 5).unwrap(), b"hello");
        assert!(matches!(
            body_bytes(&request, 4),
            Err(ApiError::PayloadTooLarge { limit: 4 })
        ));
    }
}
