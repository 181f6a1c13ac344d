//! The `auth-login` Lambda (GET /auth/login); its handler: `shared::handlers::auth_login`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::auth_login::AuthLogin>().await
}
