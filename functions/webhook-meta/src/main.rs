//! The `webhook-meta` Lambda (GET and POST /webhooks/meta); its handler:
//! `shared::handlers::webhook_meta`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::webhook_meta::WebhookMeta>().await
}
