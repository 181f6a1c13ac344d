//! The `events` Lambda (GET /v1/events, streamed); its handler: `shared::handlers::events`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http_streaming::<shared::handlers::events::EventsHandler>().await
}
