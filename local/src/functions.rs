//! Every function's handler, built once from the composition root by the same
//! `build` its Lambda binary calls, and found by the function's name.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::{Body, Request, Response};
use shared::config::ConfigError;
use shared::handlers::auth_callback::AuthCallback;
use shared::handlers::auth_login::AuthLogin;
use shared::handlers::auth_logout::AuthLogout;
use shared::handlers::channels::ChannelsHandler;
use shared::handlers::cleanup::Cleanup;
use shared::handlers::conversations::ConversationsHandler;
use shared::handlers::events::EventsHandler;
use shared::handlers::health::Health;
use shared::handlers::me::Me;
use shared::handlers::notifications::NotificationsHandler;
use shared::handlers::questions::QuestionsHandler;
use shared::handlers::reconciler::Reconciler;
use shared::handlers::token_refresher::TokenRefresher;
use shared::handlers::web::Web;
use shared::handlers::webhook_mercadolivre::WebhookMercadoLivre;
use shared::handlers::webhook_meta::WebhookMeta;
use shared::handlers::webhook_worker::WebhookWorker;
use shared::handlers::{HttpHandler, QueueHandler, ScheduledHandler, StreamingHandler};
use shared::http::{ApiError, StreamingBody};
use shared::services::Services;
use shared::store::EpochSeconds;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub type Handler =
    Arc<dyn Fn(Request) -> BoxFuture<Result<Response<ResponseBody>, ApiError>> + Send + Sync>;

/// What an HTTP handler answers with: a whole body, or one streamed as it is produced.
pub enum ResponseBody {
    Whole(Body),
    Streamed(StreamingBody),
}

impl From<Body> for ResponseBody {
    fn from(body: Body) -> Self {
        ResponseBody::Whole(body)
    }
}
/// One run of a scheduled worker at a time: its error, if it failed, as text.
pub type Run = Arc<dyn Fn(EpochSeconds) -> BoxFuture<Result<(), String>> + Send + Sync>;
/// One batch of a queue worker, answered as Lambda's partial batch response; the second
/// argument is the invocation's deadline (milliseconds since the epoch).
pub type Batch = Arc<dyn Fn(SqsEvent, i64) -> BoxFuture<SqsBatchResponse> + Send + Sync>;

/// Builds one function's handler, named by its function.
type Build<T> = fn(&Services) -> Result<(&'static str, T), ConfigError>;

/// Every HTTP function's handler, by type: its name comes with it.
const HTTP: &[Build<Handler>] = &[
    http::<Health>,
    http::<AuthLogin>,
    http::<AuthCallback>,
    http::<AuthLogout>,
    http::<Me>,
    http::<ChannelsHandler>,
    http::<QuestionsHandler>,
    http::<ConversationsHandler>,
    http::<NotificationsHandler>,
    streaming::<EventsHandler>,
    http::<WebhookMercadoLivre>,
    http::<WebhookMeta>,
    http::<Web>,
];

/// Every scheduled worker's handler.
const SCHEDULED: &[Build<Run>] = &[
    scheduled::<TokenRefresher>,
    scheduled::<Reconciler>,
    scheduled::<Cleanup>,
];

/// Every queue worker's handler.
const QUEUED: &[Build<Batch>] = &[queued::<WebhookWorker>];

fn http<H: HttpHandler>(services: &Services) -> Result<(&'static str, Handler), ConfigError> {
    let handler = Arc::new(H::build(services)?);
    let handle: Handler = Arc::new(move |request| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let response = handler.handle(request).await?;
            Ok(response.map(ResponseBody::Whole))
        })
    });
    Ok((H::FUNCTION, handle))
}

fn streaming<H: StreamingHandler>(
    services: &Services,
) -> Result<(&'static str, Handler), ConfigError> {
    let handler = Arc::new(H::build(services)?);
    let handle: Handler = Arc::new(move |request| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let response = handler.handle(request).await?;
            Ok(response.map(ResponseBody::Streamed))
        })
    });
    Ok((H::FUNCTION, handle))
}

fn scheduled<H: ScheduledHandler>(services: &Services) -> Result<(&'static str, Run), ConfigError> {
    let handler = Arc::new(H::build(services)?);
    let run: Run = Arc::new(move |now| {
        let handler = Arc::clone(&handler);
        Box::pin(async move {
            let report = handler.run(now).await.map_err(|error| error.to_string())?;
            tracing::debug!(function = H::FUNCTION, report = ?report, "scheduled run finished");
            Ok(())
        })
    });
    Ok((H::FUNCTION, run))
}

fn queued<H: QueueHandler>(services: &Services) -> Result<(&'static str, Batch), ConfigError> {
    let handler = Arc::new(H::build(services)?);
    let batch: Batch = Arc::new(move |event, deadline_ms| {
        Box::pin(shared::lambda::process_batch(
            Arc::clone(&handler),
            event,
            deadline_ms,
        ))
    });
    Ok((H::FUNCTION, batch))
}

/// The handlers of every function, by name.
pub struct Functions {
    http: BTreeMap<&'static str, Handler>,
    scheduled: BTreeMap<&'static str, Run>,
    queued: BTreeMap<&'static str, Batch>,
}

impl Functions {
    pub fn new(services: &Services) -> Result<Self, ConfigError> {
        Ok(Self {
            http: build_all(HTTP, services)?,
            scheduled: build_all(SCHEDULED, services)?,
            queued: build_all(QUEUED, services)?,
        })
    }

    /// The handler of HTTP function `function`. Every function the route table names
    /// has one (a test checks it).
    pub fn handler(&self, function: &str) -> Handler {
        find(&self.http, function)
    }

    /// The run of scheduled worker `function`. Every scheduled worker of the worker table
    /// has one (a test checks it).
    pub fn scheduled(&self, function: &str) -> Run {
        find(&self.scheduled, function)
    }

    /// The batch handler of queue worker `function`. Every queue worker of the worker
    /// table has one (a test checks it).
    pub fn queued(&self, function: &str) -> Batch {
        find(&self.queued, function)
    }
}

fn build_all<T>(
    builds: &[Build<T>],
    services: &Services,
) -> Result<BTreeMap<&'static str, T>, ConfigError> {
    builds.iter().map(|build| build(services)).collect()
}

fn find<T: Clone>(handlers: &BTreeMap<&'static str, T>, function: &str) -> T {
    match handlers.get(function) {
        Some(handler) => handler.clone(),
        None => panic!("the local runner has no handler for function {function:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use shared::config::{Config, Profile};
    use shared::routes::{ROUTES, Trigger, WORKERS};

    use super::*;

    #[tokio::test]
    async fn every_function_of_the_route_and_worker_tables_has_a_handler_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().display().to_string();
        let vars = [
            ("DATA_DIR", data_dir.as_str()),
            ("MERCADOLIVRE_API_URL", "http://127.0.0.1:9/api"),
            ("MERCADOLIVRE_CLIENT_ID", "app"),
            ("MERCADOLIVRE_CLIENT_SECRET", "app-secret"),
            (
                "MERCADOLIVRE_REDIRECT_URI",
                "http://127.0.0.1:3000/auth/callback",
            ),
        ];
        let mut config = Config::from_vars(Profile::Local, |name| {
            vars.iter()
                .find(|(known, _)| *known == name)
                .map(|(_, value)| value.to_string())
        })
        .unwrap();
        crate::local_secrets::fill_in(&mut config).unwrap();
        let adapters = crate::adapters::build(&config).await.unwrap();
        let functions = Functions::new(&Services::new(config, adapters)).unwrap();

        let http: BTreeSet<&str> = functions.http.keys().copied().collect();
        let routed: BTreeSet<&str> = ROUTES.iter().map(|route| route.function).collect();
        assert_eq!(http, routed);

        let scheduled: BTreeSet<&str> = functions.scheduled.keys().copied().collect();
        let workers: BTreeSet<&str> = WORKERS
            .iter()
            .filter(|worker| matches!(worker.trigger, Trigger::Every { .. }))
            .map(|worker| worker.function)
            .collect();
        assert_eq!(scheduled, workers);

        let queued: BTreeSet<&str> = functions.queued.keys().copied().collect();
        let consumers: BTreeSet<&str> = WORKERS
            .iter()
            .filter(|worker| worker.trigger == Trigger::WebhookQueue)
            .map(|worker| worker.function)
            .collect();
        assert_eq!(queued, consumers);
    }
}
