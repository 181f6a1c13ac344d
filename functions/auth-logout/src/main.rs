//! The `auth-logout` Lambda (POST /auth/logout); its handler: `shared::handlers::auth_logout`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::auth_logout::AuthLogout>().await
}
