//! The `auth-callback` Lambda (GET /auth/callback); its handler: `shared::handlers::auth_callback`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::auth_callback::AuthCallback>().await
}
