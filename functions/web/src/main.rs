//! The `web` Lambda (GET / and GET /assets/{name}: the inbox page); its handler:
//! `shared::handlers::web`. It needs no configuration, store or secret.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http_standalone(shared::handlers::web::Web).await
}
