//! The `health` Lambda (GET /health); its handler: `shared::handlers::health`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::health::Health>().await
}
