//! Server-Sent Events framing (WHATWG HTML, "Server-sent events"): the response head and
//! the lines of an event stream.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use lambda_http::Response;

use super::{ApiError, StreamingBody};

/// A 200 `text/event-stream` response streaming `body`: never cached, never buffered by a
/// proxy (API Gateway's STREAM transfer mode forbids content encoding on the route).
pub fn response(body: StreamingBody) -> Result<Response<StreamingBody>, ApiError> {
    Response::builder()
        .status(StatusCode::OK)
        .header(
            http::header::CONTENT_TYPE,
            "text/event-stream; charset=utf-8",
        )
        .header(http::header::CACHE_CONTROL, "no-store")
        .header("x-accel-buffering", "no")
        .body(body)
        .map_err(|error| ApiError::Internal(format!("event stream response: {error}")))
}

/// The stream's opening (and its last words): the reconnection delay, and `id` as the
/// last event id without an event (a browser keeps it and sends it back as Last-Event-ID
/// when it reconnects, even if no event came before the stream ended).
pub fn opening(retry: Duration, id: &str) -> Bytes {
    Bytes::from(format!("retry: {}\nid: {id}\n\n", retry.as_millis()))
}

/// One event: its id and its data, as one line of JSON (compact JSON has no line breaks).
pub fn event(id: &str, data: &serde_json::Value) -> Bytes {
    Bytes::from(format!("id: {id}\ndata: {data}\n\n"))
}

/// A comment: ignored by clients, it keeps an idle stream open.
pub fn comment(text: &str) -> Bytes {
    Bytes::from(format!(": {text}\n\n"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn events_comments_and_the_opening_are_blank_line_terminated_fields() {
        assert_eq!(
            opening(Duration::from_secs(2), "0190aa"),
            "retry: 2000\nid: 0190aa\n\n"
        );
        let data = json!({"data": {"text": "two\nlines"}});
        assert_eq!(
            event("0190ab", &data),
            "id: 0190ab\ndata: {\"data\":{\"text\":\"two\\nlines\"}}\n\n"
        );
        assert_eq!(comment("heartbeat"), ": heartbeat\n\n");
    }
}
