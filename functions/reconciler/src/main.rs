//! The `reconciler` Lambda (every 15 minutes); its handler: `shared::handlers::reconciler`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_schedule::<shared::handlers::reconciler::Reconciler>().await
}
