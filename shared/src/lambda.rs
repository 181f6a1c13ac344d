//! One serve helper per trigger, for the functions' main.rs: each initialises the process
//! once (JSON logging, configuration, AWS adapters, the composition root), builds the
//! function's handler from it, and runs the Lambda runtime with it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use tokio::task::JoinSet;

use lambda_http::service_fn;
use lambda_runtime::LambdaEvent;
use tracing::Instrument;

use crate::adapters::Adapters;
use crate::config::{Config, ConfigError, Profile};
use crate::handlers::{HttpHandler, QueueHandler, ScheduledHandler, StreamingHandler};
use crate::services::Services;

/// Runs HTTP function `H` (API Gateway REST proxy events) until the runtime stops it.
pub async fn serve_http<H: HttpHandler>() -> Result<(), lambda_http::Error> {
    let services = init(H::FUNCTION).await?;
    let handler = H::build(&services).inspect_err(log_init_error)?;
    lambda_http::run(service_fn(|request| {
        let response = crate::http::serve(request, |request| handler.handle(request));
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

/// Runs HTTP function `H` as `handler`, which needs nothing from the services (no
/// configuration, no AWS client, no secret): its init is the logging alone, so its cold
/// start costs the least and its role needs no permission.
pub async fn serve_http_standalone<H: HttpHandler>(handler: H) -> Result<(), lambda_http::Error> {
    crate::telemetry::init(H::FUNCTION);
    lambda_http::run(service_fn(|request| {
        let response = crate::http::serve(request, |request| handler.handle(request));
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

/// Runs HTTP function `H`, whose responses are streamed (`lambda_http`'s streaming
/// response: the HTTP integration prelude, then the body as it is produced), until the
/// runtime stops it. Its route's integration must use API Gateway's STREAM transfer mode.
pub async fn serve_http_streaming<H: StreamingHandler>() -> Result<(), lambda_http::Error> {
    let services = init(H::FUNCTION).await?;
    let handler = H::build(&services).inspect_err(log_init_error)?;
    lambda_http::run_with_streaming_response(service_fn(|request| {
        let response = crate::http::serve(request, |request| handler.handle(request));
        async move { Ok::<_, Infallible>(response.await) }
    }))
    .await
}

/// Runs scheduled function `H` (EventBridge events; the event itself carries nothing the
/// run needs): each invocation is one run at the clock's now, answered with its report.
pub async fn serve_schedule<H: ScheduledHandler>() -> Result<(), lambda_runtime::Error> {
    let services = init(H::FUNCTION).await?;
    let handler = H::build(&services).inspect_err(log_init_error)?;
    let clock = services.clock();
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let id = event.context.request_id;
        let span = crate::telemetry::invocation_span(&id, &id);
        let run = handler.run(clock.now_secs());
        async move {
            run.await
                .inspect_err(|error| tracing::error!(error = %error, "{} run failed", H::FUNCTION))
                .map_err(lambda_runtime::Error::from)
        }
        .instrument(span)
    }))
    .await
}

/// Runs SQS-triggered function `H`; see [`process_batch`].
pub async fn serve_sqs<H: QueueHandler>() -> Result<(), lambda_runtime::Error> {
    let services = init(H::FUNCTION).await?;
    let handler = Arc::new(H::build(&services).inspect_err(log_init_error)?);
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let id = event.context.request_id;
        let span = crate::telemetry::invocation_span(&id, &id);
        let deadline_ms = i64::try_from(event.context.deadline).unwrap_or(i64::MAX);
        let batch = process_batch(Arc::clone(&handler), event.payload, deadline_ms);
        async move { Ok::<_, Infallible>(batch.await) }.instrument(span)
    }))
    .await
}

/// Processes every record of `event` concurrently, each in its own task and log span,
/// and reports the ones that failed or panicked (Lambda's partial batch response, with
/// `ReportBatchItemFailures`): only those are delivered again. The invocation times out
/// at `deadline_ms` (milliseconds since the epoch).
pub async fn process_batch<H: QueueHandler>(
    handler: Arc<H>,
    event: SqsEvent,
    deadline_ms: i64,
) -> SqsBatchResponse {
    let mut records = JoinSet::new();
    let mut ids = HashMap::new();
    for record in event.records {
        let handler = Arc::clone(&handler);
        // A record without an id cannot be named in the response; reported with an
        // empty one, Lambda fails the whole batch, so it is never lost.
        let id = record.message_id.clone().unwrap_or_default();
        let span = tracing::info_span!("record", message_id = %id);
        let task = async move { handler.process(record, deadline_ms).await }.instrument(span);
        let abort = records.spawn(task);
        // A panic surfaces as a join error carrying only the task id: keep the mapping.
        ids.insert(abort.id(), id);
    }
    let mut response = SqsBatchResponse::default();
    while let Some(done) = records.join_next_with_id().await {
        let (task, failure) = match done {
            Ok((_, Ok(()))) => continue,
            Ok((task, Err(error))) => (task, error.to_string()),
            Err(error) => (error.id(), format!("the handler panicked: {error}")),
        };
        let id = ids.remove(&task).unwrap_or_default();
        tracing::error!(function = H::FUNCTION, message_id = %id, error = %failure, "record failed");
        response.add_failure(id);
    }
    response
}

/// What every function's init starts with: JSON logging, the configuration (with its
/// secret), the AWS adapters and the composition root over them. A failure is logged
/// before it is returned.
async fn init(function: &'static str) -> Result<Services, ConfigError> {
    crate::telemetry::init(function);
    let init = async {
        let mut config = Config::from_env(Profile::Lambda)?;
        // One SDK configuration (one HTTPS client) for the secret and the adapters alike.
        let sdk = crate::aws::sdk_config(&config.tls).await;
        config.load_secret(&sdk).await?;
        let adapters = Adapters::aws(&config, &sdk)?;
        Ok(Services::new(config, adapters))
    };
    init.await.inspect_err(log_init_error)
}

/// Logs why init failed, before main returns the error and the process exits.
pub fn log_init_error(error: &impl std::fmt::Display) {
    tracing::error!(error = %error, "init failed");
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use aws_lambda_events::sqs::SqsMessage;
    use tokio::sync::Barrier;

    use super::*;

    /// Fails "fail", panics on "panic", and waits for every record of the batch to have
    /// started before finishing any (so only concurrent processing completes).
    struct Worker {
        started: Barrier,
        done: Mutex<Vec<String>>,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("refused {0}")]
    struct Refused(String);

    impl QueueHandler for Worker {
        const FUNCTION: &'static str = "test-worker";
        type Error = Refused;

        fn build(_: &Services) -> Result<Self, ConfigError> {
            Err(ConfigError::Missing("built directly in the test"))
        }

        async fn process(&self, record: SqsMessage, _deadline_ms: i64) -> Result<(), Refused> {
            self.started.wait().await;
            let body = record.body.unwrap_or_default();
            match body.as_str() {
                "fail" => Err(Refused(body)),
                "panic" => panic!("a bug in the handler"),
                _ => {
                    self.done.lock().unwrap().push(body);
                    Ok(())
                }
            }
        }
    }

    fn event(bodies: &[&str]) -> SqsEvent {
        let mut event = SqsEvent::default();
        event.records = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut record = SqsMessage::default();
                record.message_id = Some(format!("m{i}"));
                record.body = Some((*body).to_owned());
                record
            })
            .collect();
        event
    }

    #[tokio::test]
    async fn records_run_concurrently_and_only_the_failed_or_panicked_ones_are_reported() {
        let bodies = ["a", "fail", "b", "panic", "c"];
        let worker = Arc::new(Worker {
            started: Barrier::new(bodies.len()),
            done: Mutex::new(Vec::new()),
        });
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            process_batch(Arc::clone(&worker), event(&bodies), i64::MAX),
        )
        .await
        .expect("the records of a batch run concurrently");

        let mut failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|failure| failure.item_identifier.as_str())
            .collect();
        failed.sort();
        assert_eq!(failed, ["m1", "m3"]);
        let mut done = worker.done.lock().unwrap().clone();
        done.sort();
        assert_eq!(done, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn an_empty_batch_reports_nothing() {
        let worker = Arc::new(Worker {
            started: Barrier::new(1),
            done: Mutex::new(Vec::new()),
        });
        let response = process_batch(worker, SqsEvent::default(), i64::MAX).await;
        assert!(response.batch_item_failures.is_empty());
    }
}
