//! The embedded default: every function of the route table served by one process on
//! 127.0.0.1, with the embedded store and queue unless configured otherwise, the
//! scheduled workers, and — unless a real Mercado Livre is configured — the sandbox
//! provider under /sandbox/mercadolivre.

mod adapters;
mod convert;
mod functions;
mod local_secrets;
pub mod ops;
pub mod sandbox;
mod workers;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

/// Serves until `shutdown` resolves, then stops: no new connection is taken, and the
/// requests in flight, the scheduled runs and the queue batches in progress are given the
/// worker's timeout (what Lambda would give a batch) to finish. Past that it stops anyway:
/// a batch it did not settle comes back on the queue after its visibility timeout, and
/// the worker applies each envelope once however often it arrives.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Box<dyn std::error::Error>> {
    let address = listener.local_addr()?;
    let mut config = config.clone();
    // The embedded database first: opening it locks the data dir, so a second runner
    // started on it fails here, before it could write secrets of its own over ours.
    let adapters = adapters::build(&config).await?;
    local_secrets::fill_in(&mut config)?;
    let sandbox = if config.auth.sandbox {
        Some(use_sandbox(&mut config, address)?)
    } else {
        None
    };
    let services = Services::new(config, adapters);
    let functions = Arc::new(Functions::new(&services)?);
    let app = router(Arc::clone(&functions), sandbox.as_ref())
        .into_make_service_with_connect_info::<SocketAddr>();
    // Event streams would hold the drain open until they end: they end when it begins.
    let live_events = services.live_events();
    let shutdown = async move {
        shutdown.await;
        if let Some(live_events) = live_events {
            live_events.close();
        }
    };
    // No Nagle: a streamed event (a few hundred bytes) must not wait for the client's
    // delayed ACK of the one before.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(error = %error, "could not set TCP_NODELAY");
        }
    });

    let grace = services.config().worker.timeout;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = services.config().local_workers.then(|| {
        tokio::spawn(workers::run(
            Arc::clone(&functions),
            services.clock(),
            services.webhook_queue(),
            grace,
            stopped.clone(),
        ))
    });
    tracing::info!(
        address = %address,
        data_dir = %services.config().data_dir.display(),
        mercadolivre = %services.config().mercadolivre.api_url,
        "listening"
    );
    // The signal stops the server and the workers at once.
    let signalled = async move {
        shutdown.await;
        let _ = stop.send(true);
    };
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(signalled)
            .into_future(),
    );
    let mut signal = stopped;
    tokio::select! {
        _ = signal.wait_for(|stop| *stop) => {}
        served = &mut server => return Ok(served??),
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
        Ok(served) => served??,
        Err(_) => tracing::warn!(
            "shutdown: requests or batches still running after the grace period are cut \
             off (a batch not settled comes back on the queue)"
        ),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Points the Mercado Livre client and the login at the sandbox served on `address`, and
/// the sandbox's notifications at the runner's webhook.
fn use_sandbox(config: &mut Config, address: SocketAddr) -> Result<Arc<Sandbox>, ConfigError> {
    let host = if address.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        address.ip()
    };
    let origin = format!("http://{}", SocketAddr::new(host, address.port()));
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
