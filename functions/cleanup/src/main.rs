//! The `cleanup` Lambda (hourly); its handler: `shared::handlers::cleanup`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_schedule::<shared::handlers::cleanup::Cleanup>().await
}
