//! A response body sent as it is produced: what a streaming handler answers with (Server-
//! Sent Events), written out chunk by chunk by lambda_http's streaming response in Lambda
//! and by axum in the local runner. A whole body (a problem response) becomes one chunk.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http_body::Frame;
use lambda_http::Body;

pub struct StreamingBody(Pin<Box<dyn Stream<Item = Bytes> + Send>>);

impl StreamingBody {
    pub fn new(chunks: impl Stream<Item = Bytes> + Send + 'static) -> Self {
        Self(Box::pin(chunks))
    }
}

impl std::fmt::Debug for StreamingBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamingBody")
    }
}

impl From<Body> for StreamingBody {
    fn from(body: Body) -> Self {
        let bytes = match body {
            Body::Text(text) => Bytes::from(text),
            Body::Binary(bytes) => Bytes::from(bytes),
            _ => Bytes::new(),
        };
        Self::new(futures_util::stream::iter(
            (!bytes.is_empty()).then_some(bytes),
        ))
    }
}

impl http_body::Body for StreamingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .as_mut()
            .poll_next(cx)
            .map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    async fn chunks(mut body: StreamingBody) -> Vec<Bytes> {
        let mut chunks = Vec::new();
        while let Some(chunk) = body.0.next().await {
            chunks.push(chunk);
        }
        chunks
    }

    #[tokio::test]
    async fn a_whole_body_is_one_chunk_and_an_empty_one_none() {
        let whole = StreamingBody::from(Body::Text("{\"status\":401}".into()));
        assert_eq!(
            chunks(whole).await,
            [Bytes::from_static(b"{\"status\":401}")]
        );
        assert!(chunks(StreamingBody::from(Body::Empty)).await.is_empty());
    }
}
