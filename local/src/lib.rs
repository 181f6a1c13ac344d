//! The embedded default: every function of the route table served by one process on
//! 127.0.0.1, with the embedded store and queue unless configured otherwise, the
//! scheduled workers, and — unless a real Mercado Livre is configured — the sandbox
//! provider under /sandbox/mercadolivre.

mod adapters;
mod banner;
mod convert;
pub mod dotenv;
mod functions;
mod local_secrets;
pub mod log_writer;
pub mod ops;
pub mod sandbox;
mod startup;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{MethodFilter, on};
use axum::serve::ListenerExt;
use shared::config::{Config, ConfigError};
use shared::http::ApiError;
use shared::routes::ROUTES;
use shared::services::Services;
use tokio::net::TcpListener;

pub use functions::Functions;
use sandbox::{Sandbox, SandboxSettings};
pub use startup::{StartupError, bind};

/// Where the sandbox provider is served.
pub const SANDBOX_PATH: &str = "/sandbox/mercadolivre";

/// The client id the local runner registers with its sandbox: a number, as Mercado
/// Livre's are (its notifications carry it as `application_id`).
const SANDBOX_CLIENT_ID: &str = "5000000000000001";

/// The router serving every route of the route table with its function's handler, the
/// API's OpenAPI document at /openapi.json, and the sandbox provider when there is one.
pub fn router(functions: Arc<Functions>, sandbox: Option<&Arc<Sandbox>>) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let handler = functions.handler(route.function);
        let method = MethodFilter::try_from(
            http::Method::from_bytes(route.method.as_bytes()).unwrap_or(http::Method::GET),
        )
        .unwrap_or(MethodFilter::GET);
        router = router.route(
            route.path,
            on(method, move |peer, path, request| {
                convert::call(route, Arc::clone(&handler), peer, path, request)
            }),
        );
    }
    router = router.route(
        "/openapi.json",
        axum::routing::get(|| async {
            (
                [(http::header::CONTENT_TYPE, "application/json")],
                shared::routes::OPENAPI,
            )
        }),
    );
    if let Some(sandbox) = sandbox {
        router = router.nest(SANDBOX_PATH, sandbox.router());
    }
    router
        .fallback(|request| convert::problem(request, ApiError::NotFound))
        .method_not_allowed_fallback(|request| {
            convert::problem(request, ApiError::MethodNotAllowed)
        })
}

/// The runner, ready to serve: its adapters opened, its secrets filled in, every
/// function built and its address taken.
pub struct Started {
    listener: TcpListener,
    address: SocketAddr,
    services: Services,
    functions: Arc<Functions>,
    sandbox: Option<Arc<Sandbox>>,
    /// The secrets taken from DATA_DIR/local-secrets.json (names only).
    generated_secrets: Vec<&'static str>,
}

/// Everything but serving: opens the adapters, fills in the secrets, builds every
/// function. A failure says what to change.
pub async fn start(config: &Config, listener: TcpListener) -> Result<Started, StartupError> {
    let address = listener.local_addr().map_err(|error| {
        StartupError::new(format!("cannot read the listening address: {error}"))
    })?;
    let mut config = config.clone();
    // The embedded database first: opening it locks the data dir, so a second runner
    // started on it fails here, before it could write secrets of its own over ours.
    let adapters = adapters::build(&config)
        .await
        .map_err(|error| startup::data_dir_error(&config.data_dir, error))?;
    let generated_secrets = local_secrets::fill_in(&mut config).map_err(|error| {
        startup::secrets_file_error(&config.data_dir.join(local_secrets::FILE), error)
    })?;
    let sandbox = if config.auth.sandbox {
        Some(use_sandbox(&mut config, address)?)
    } else {
        require_real_mercadolivre(&config)?;
        None
    };
    let services = Services::new(config, adapters);
    let functions = Arc::new(Functions::new(&services)?);
    Ok(Started {
        listener,
        address,
        services,
        functions,
        sandbox,
        generated_secrets,
    })
}

impl Started {
    /// Serves until `shutdown` resolves, then stops: no new connection is taken, and the
    /// requests in flight, the scheduled runs and the queue batches in progress are given
    /// the worker's timeout (what Lambda would give a batch) to finish. Past that it stops
    /// anyway: a batch it did not settle comes back on the queue after its visibility
    /// timeout, and the worker applies each envelope once however often it arrives.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let config = self.services.config();
        let app = router(Arc::clone(&self.functions), self.sandbox.as_ref())
            .into_make_service_with_connect_info::<SocketAddr>();
        // Event streams would hold the drain open until they end: they end when it begins.
        let live_events = self.services.live_events();
        let shutdown = async move {
            shutdown.await;
            if let Some(live_events) = live_events {
                live_events.close();
            }
        };
        // No Nagle: a streamed event (a few hundred bytes) must not wait for the client's
        // delayed ACK of the one before.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::warn!(error = %error, "could not set TCP_NODELAY");
            }
        });

        let grace = config.worker.timeout;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = config.local_workers.then(|| {
            tokio::spawn(workers::run(
                Arc::clone(&self.functions),
                self.services.clock(),
                self.services.webhook_queue(),
                grace,
                stopped.clone(),
            ))
        });
        tracing::info!(
            address = %self.address,
            url = %banner::origin(self.address),
            data_dir = %startup::absolute(&config.data_dir).display(),
            sandbox = self.sandbox.is_some(),
            mercadolivre = %config.mercadolivre.api_url,
            "listening"
        );
        // The signal stops the server and the workers at once.
        let signalled = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let address = self.address;
        let serving_failed =
            move |error: std::io::Error| StartupError::new(format!("serving {address}: {error}"));
        let mut server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(signalled)
                .into_future(),
        );
        let mut signal = stopped;
        tokio::select! {
            _ = signal.wait_for(|stop| *stop) => {}
            served = &mut server => {
                return joined(served)?.map_err(serving_failed);
            }
        }
        tracing::info!(
            grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "shutting down: taking no new connection; draining the requests in flight and the batches in progress"
        );
        let drain = async {
            let served = server.await;
            if let Some(workers) = workers {
                let _ = workers.await;
            }
            served
        };
        match tokio::time::timeout(grace, drain).await {
            Ok(served) => joined(served)?.map_err(serving_failed)?,
            Err(_) => tracing::warn!(
                "shutdown: requests or batches still running after the grace period are cut \
                 off (a batch not settled comes back on the queue)"
            ),
        }
        tracing::info!("stopped");
        Ok(())
    }

    /// What a person starting the runner wants to know: where to go, what is served,
    /// where its data is, whether Mercado Livre is the sandbox and why.
    pub fn banner(&self) -> String {
        banner::text(&banner::Facts {
            address: self.address,
            config: self.services.config(),
            sandbox: self.sandbox.is_some(),
            generated_secrets: &self.generated_secrets,
        })
    }
}

/// The server task's own outcome, or why it did not finish (it panicked).
fn joined<T>(served: Result<T, tokio::task::JoinError>) -> Result<T, StartupError> {
    served.map_err(|error| StartupError::new(format!("the server stopped: {error}")))
}

/// With a real Mercado Livre (MERCADOLIVRE_API_URL set), sign-in needs the application's
/// id, secret and registered redirect: every one missing is named at once.
fn require_real_mercadolivre(config: &Config) -> Result<(), StartupError> {
    let missing: Vec<&str> = [
        ("MERCADOLIVRE_CLIENT_ID", config.auth.client_id.is_none()),
        (
            "MERCADOLIVRE_CLIENT_SECRET",
            config.secrets.get("MERCADOLIVRE_CLIENT_SECRET").is_none(),
        ),
        (
            "MERCADOLIVRE_REDIRECT_URI",
            config.auth.redirect_uri.is_none(),
        ),
    ]
    .into_iter()
    .filter_map(|(name, missing)| missing.then_some(name))
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StartupError::new(format!(
        "{} {} not set: MERCADOLIVRE_API_URL is set, so the sandbox provider is off and \
         sign-in goes to a real Mercado Livre application, which needs its client id, its \
         secret and the redirect URI registered with it (or unset MERCADOLIVRE_API_URL to \
         use the sandbox)",
        missing.join(", "),
        if missing.len() == 1 { "is" } else { "are" }
    )))
}

/// Points the Mercado Livre client and the login at the sandbox served on `address`, and
/// the sandbox's notifications at the runner's webhook.
fn use_sandbox(config: &mut Config, address: SocketAddr) -> Result<Arc<Sandbox>, ConfigError> {
    let origin = banner::origin(address);
    let url = |text: String| {
        reqwest::Url::parse(&text).map_err(|error| ConfigError::Invalid {
            name: "PORT",
            reason: format!("{text}: {error}"),
        })
    };
    let base = url(format!("{origin}{SANDBOX_PATH}"))?;
    config.mercadolivre.api_url = base.clone();
    config.mercadolivre.auth_url = base;
    let client_id = config
        .auth
        .client_id
        .get_or_insert_with(|| SANDBOX_CLIENT_ID.to_owned())
        .clone();
    let redirect_uri = match &config.auth.redirect_uri {
        Some(uri) => uri.clone(),
        None => {
            let uri = url(format!("{origin}/auth/callback"))?;
            config.auth.redirect_uri = Some(uri.clone());
            uri
        }
    };
    // The sandbox notifies the runner's own webhook, as Mercado Livre notifies the
    // callback URL registered with the application.
    let notification_url = ROUTES
        .iter()
        .find(|route| route.function == "webhook-mercadolivre" && route.method == "POST")
        .map(|route| format!("{origin}{}", route.path));
    Ok(Sandbox::new(SandboxSettings {
        client_id,
        client_secret: config
            .secrets
            .require("MERCADOLIVRE_CLIENT_SECRET")?
            .clone(),
        redirect_uri: redirect_uri.to_string(),
        access_token_ttl: Duration::from_secs(21_600),
        notification_url,
    }))
}
