//! The `webhook-mercadolivre` Lambda (POST /webhooks/mercadolivre); its handler:
//! `shared::handlers::webhook_mercadolivre`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::webhook_mercadolivre::WebhookMercadoLivre>()
        .await
}
