//! The `me` Lambda (GET /v1/me); its handler: `shared::handlers::me`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::me::Me>().await
}
