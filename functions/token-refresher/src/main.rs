//! The `token-refresher` Lambda (every 5 minutes); its handler: `shared::handlers::token_refresher`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_schedule::<shared::handlers::token_refresher::TokenRefresher>().await
}
