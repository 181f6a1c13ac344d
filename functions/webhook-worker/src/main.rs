//! The `webhook-worker` Lambda (the webhook queue's SQS event source); its handler:
//! `shared::handlers::webhook_worker`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    shared::lambda::serve_sqs::<shared::handlers::webhook_worker::WebhookWorker>().await
}
