//! The `notifications` Lambda (GET /v1/notifications, POST /v1/notifications/{id}/read);
//! its handler: `shared::handlers::notifications`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::notifications::NotificationsHandler>().await
}
