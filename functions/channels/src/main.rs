//! The `channels` Lambda (GET /v1/channels, PUT /v1/channels/whatsapp); its handler:
//! `shared::handlers::channels`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::channels::ChannelsHandler>().await
}
