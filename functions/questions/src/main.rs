//! The `questions` Lambda (GET /v1/questions, POST /v1/questions/{id}/answer); its
//! handler: `shared::handlers::questions`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    shared::lambda::serve_http::<shared::handlers::questions::QuestionsHandler>().await
}
