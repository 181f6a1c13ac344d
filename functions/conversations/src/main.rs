//! The `conversations` Lambda (GET /v1/conversations, GET /v1/conversations/{id}/messages,
//! POST /v1/conversations/{id}/read); its handler: `shared::handlers::conversations`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::conversations::ConversationsHandler>().await
}
