//! Between axum and the handlers: an HTTP request becomes the `lambda_http::Request` API
//! Gateway would have delivered (path and query parameters, request context with the
//! resource path, request id and caller address), and the response goes back.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, RawPathParams, Request as AxumRequest};
use axum::response::{IntoResponse, Response as AxumResponse};
use lambda_http::aws_lambda_events::apigw::ApiGatewayProxyRequestContext;
use lambda_http::aws_lambda_events::query_map::QueryMap;
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt};
use shared::http::{ApiError, request_ids};
use shared::routes::Route;

use crate::functions::{Handler, ResponseBody};

/// API Gateway's payload limit for a Lambda proxy integration (6 MB); handlers set their
/// own, smaller limits.
const MAX_BODY: usize = 6 * 1024 * 1024;

pub async fn call(
    route: &'static Route,
    handler: Handler,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: RawPathParams,
    request: AxumRequest,
) -> AxumResponse {
    let (parts, body) = request.into_parts();
    let path_parameters: HashMap<String, String> = path
        .iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let request = http::Request::from_parts(parts, Body::Empty);
            let error = ApiError::PayloadTooLarge { limit: MAX_BODY };
            return respond(
                shared::http::serve(request, |_| async { Err::<_, ApiError>(error) })
                    .await
                    .map(ResponseBody::Whole),
            );
        }
    };
    let query = parts.uri.query().map(parse_query).unwrap_or_default();

    let mut context = ApiGatewayProxyRequestContext::default();
    context.request_id = Some(uuid::Uuid::new_v4().to_string());
    context.resource_path = Some(route.path.to_owned());
    context.http_method = parts.method.clone();
    context.path = Some(parts.uri.path().to_owned());
    context.stage = Some("local".to_owned());
    context.identity.source_ip = Some(peer.ip().to_string());

    let body = if bytes.is_empty() {
        Body::Empty
    } else {
        Body::Binary(bytes.to_vec())
    };
    let request = http::Request::from_parts(parts, body)
        .with_path_parameters(path_parameters)
        .with_query_string_parameters(query)
        .with_request_context(RequestContext::ApiGatewayV1(context));
    respond(shared::http::serve(request, |request| handler(request)).await)
}

/// A problem response for a request no route takes.
pub async fn problem(request: AxumRequest, error: ApiError) -> AxumResponse {
    let (parts, _) = request.into_parts();
    let request = http::Request::from_parts(parts, Body::Empty);
    let request_id = request_ids(&request).request_id;
    respond(
        error
            .problem()
            .into_response(&request_id)
            .map(ResponseBody::Whole),
    )
}

fn parse_query(query: &str) -> QueryMap {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        map.entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    QueryMap::from(map)
}

fn respond(response: http::Response<ResponseBody>) -> AxumResponse {
    let (parts, body) = response.into_parts();
    let body = match body {
        ResponseBody::Whole(Body::Empty) => axum::body::Body::empty(),
        ResponseBody::Whole(Body::Text(text)) => axum::body::Body::from(text),
        ResponseBody::Whole(Body::Binary(bytes)) => axum::body::Body::from(bytes),
        ResponseBody::Whole(_) => axum::body::Body::empty(),
        ResponseBody::Streamed(body) => axum::body::Body::new(body),
    };
    (parts, body).into_response()
}
