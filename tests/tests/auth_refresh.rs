//! Refreshing grants against the sandbox provider, whose refresh tokens are single-use
//! like Mercado Livre's: concurrent refreshers spend a token once, a refused token marks
//! the grant "needs reconnect" (with an event) and is never tried again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use local::sandbox::{Sandbox, SandboxSettings};
use secrecy::{ExposeSecret, SecretString};
use sellerhub_tests::sandbox_login::{authorization_code, serve_sandbox};
use shared::auth::grants::{GrantInfo, GrantStatus, GrantTokens};
use shared::auth::login::LoginRequest;
use shared::auth::refresh::{RefreshOutcome, Refresher};
use shared::auth::{GrantCipher, Grants};
use shared::clock::{Clock, ManualClock, SystemClock};
use shared::config::{Config, Profile};
use shared::embedded_db::EmbeddedDb;
use shared::events::Events;
use shared::handlers::ScheduledHandler;
use shared::handlers::token_refresher::TokenRefresher;
use shared::ratelimit::memory::MemoryLimiter;
use shared::store::embedded::EmbeddedStore;
use shared::store::{Query, SortKey, Store};
use shared::upstream::{ClientCredentials, MercadoLivre, UpstreamLimits};

const CLIENT_ID: &str = "sellerhub-test";
const REDIRECT_URI: &str = "http://127.0.0.1:1/auth/callback";

struct World {
    _dir: tempfile::TempDir,
    sandbox: Arc<Sandbox>,
    /// The sandbox's base URL (API and authorization alike).
    base: String,
    config: Config,
    credentials: ClientCredentials,
    store: Arc<dyn Store>,
    grants: Grants,
}

impl World {
    async fn start() -> Self {
        let secret = SecretString::from(shared::auth::random_token(32));
        let (sandbox, base) = serve_sandbox(SandboxSettings {
            client_id: CLIENT_ID.into(),
            client_secret: secret.clone(),
            redirect_uri: REDIRECT_URI.into(),
            access_token_ttl: Duration::from_secs(21_600),
            notification_url: None,
        })
        .await;

        let vars = BTreeMap::from([
            ("MERCADOLIVRE_API_URL", base.clone()),
            ("MERCADOLIVRE_AUTH_URL", base.clone()),
        ]);
        let config = Config::from_vars(Profile::Local, |name| vars.get(name).cloned()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(EmbeddedDb::open(dir.path()).unwrap()).unwrap());
        let cipher = GrantCipher::parse(&GrantCipher::generate_key("k1")).unwrap();
        let grants = Grants::new(Arc::clone(&store), Arc::new(cipher));
        World {
            _dir: dir,
            sandbox,
            base,
            credentials: ClientCredentials {
                client_id: CLIENT_ID.into(),
                client_secret: secret,
            },
            config,
            store,
            grants,
        }
    }

    /// A client of its own, as each Lambda instance has.
    fn mercadolivre(&self) -> Arc<MercadoLivre> {
        self.mercadolivre_at(&self.base)
    }

    /// A client of its own calling the Mercado Livre at `base`.
    fn mercadolivre_at(&self, base: &str) -> Arc<MercadoLivre> {
        let mut settings = self.config.mercadolivre.clone();
        settings.api_url = base.parse().unwrap();
        Arc::new(MercadoLivre::new(
            reqwest::Client::new(),
            &settings,
            UpstreamLimits::from(&self.config.rate_limit),
            Arc::new(MemoryLimiter::new()),
        ))
    }

    fn refresher(&self) -> Refresher {
        self.refresher_at(&self.base)
    }

    /// A refresher (lease 60 s, window 600 s) calling the Mercado Livre at `base`.
    fn refresher_at(&self, base: &str) -> Refresher {
        Refresher::new(
            self.grants.clone(),
            Events::new(Arc::clone(&self.store)),
            self.mercadolivre_at(base),
            Arc::new(self.credentials.clone()),
            Duration::from_secs(600),
            Duration::from_secs(60),
        )
    }

    /// Signs `seller` in at the sandbox and stores their grant for `tenant`, its access
    /// token expiring at `expires_at`.
    async fn connect(&self, tenant: &str, seller: u64, expires_at: i64) {
        let login = LoginRequest::new();
        let auth_url = &self.config.mercadolivre.auth_url;
        let code = authorization_code(&login, auth_url, CLIENT_ID, REDIRECT_URI, seller).await;
        let tokens = self
            .mercadolivre()
            .exchange_code(
                &self.credentials,
                &code,
                login.verifier.expose_secret(),
                REDIRECT_URI,
            )
            .await
            .unwrap();
        let info = GrantInfo {
            tenant: tenant.into(),
            seller_id: seller,
            nickname: "SELLER".into(),
            scopes: tokens.scopes,
            status: GrantStatus::Ok,
            expires_at,
            lease_until: None,
            version: 0,
        };
        let tokens = GrantTokens {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
        };
        self.grants.connect(info, &tokens).await.unwrap();
    }
}

#[tokio::test]
async fn concurrent_refreshers_spend_a_refresh_token_once() {
    let world = World::start().await;
    let now = SystemClock.now_secs();
    world.connect("t1", 101, now + 60).await;
    let before = world.grants.load("t1").await.unwrap().unwrap();

    // Two "instances", four refreshes each, all at once; half of them on demand.
    let refreshers = [world.refresher(), world.refresher()];
    let mut runs = Vec::new();
    for round in 0..4 {
        for refresher in &refreshers {
            let refresher = refresher.clone();
            runs.push(tokio::spawn(async move {
                if round % 2 == 0 {
                    refresher.refresh_if_due("t1").await.unwrap()
                } else {
                    refresher.refresh_now("t1").await.unwrap()
                }
            }));
        }
    }
    let mut outcomes = Vec::new();
    for run in runs {
        outcomes.push(run.await.unwrap());
    }
    let refreshed = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, RefreshOutcome::Refreshed { .. }))
        .count();
    assert_eq!(refreshed, 1, "{outcomes:?}");
    assert!(
        outcomes.iter().all(|outcome| matches!(
            outcome,
            RefreshOutcome::Refreshed { .. } | RefreshOutcome::Busy | RefreshOutcome::NotDue
        )),
        "{outcomes:?}"
    );
    let stats = world.sandbox.stats();
    assert_eq!(
        (stats.refreshes, stats.rejected_grants),
        (1, 0),
        "{stats:?}"
    );

    let after = world.grants.load("t1").await.unwrap().unwrap();
    assert_eq!(after.info.status, GrantStatus::Ok);
    assert_eq!(after.info.lease_until, None);
    assert!(after.info.expires_at >= now + 21_000);
    assert_ne!(
        after.tokens.refresh_token.expose_secret(),
        before.tokens.refresh_token.expose_secret()
    );
    // The new access token works, and the next refresh spends the new refresh token.
    let me = world
        .mercadolivre()
        .users_me(&after.tokens.access_token, 101)
        .await
        .unwrap();
    assert_eq!(me.id, 101);
    let outcome = world.refresher().refresh_now("t1").await.unwrap();
    assert!(matches!(outcome, RefreshOutcome::Refreshed { .. }));
    assert_eq!(world.sandbox.stats().rejected_grants, 0);
}

#[tokio::test]
async fn a_refused_refresh_token_marks_the_grant_and_is_not_retried() {
    let world = World::start().await;
    let now = SystemClock.now_secs();
    world.connect("t2", 202, now + 60).await;
    world.sandbox.revoke_user(202);

    let refresher = world.refresher();
    assert_eq!(
        refresher.refresh_if_due("t2").await.unwrap(),
        RefreshOutcome::NeedsReconnect
    );
    let grant = world.grants.load("t2").await.unwrap().unwrap();
    assert_eq!(grant.info.status, GrantStatus::NeedsReconnect);
    assert_eq!(grant.info.lease_until, None);

    let events = world
        .store
        .query(Query::partition("TENANT#t2").sort(SortKey::BeginsWith("EVENT#".into())))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1);
    assert_eq!(events.items[0].data["type"], "grant.needs_reconnect");

    // Never blindly again: neither on demand nor on schedule.
    assert_eq!(
        refresher.refresh_now("t2").await.unwrap(),
        RefreshOutcome::NeedsReconnect
    );
    let report = TokenRefresher::new(refresher).run(now).await.unwrap();
    assert_eq!(
        report.refreshed + report.needs_reconnect + report.failed,
        0,
        "{report:?}"
    );
    assert_eq!(world.sandbox.stats().rejected_grants, 1);
}

#[tokio::test]
async fn the_scheduled_run_refreshes_only_what_is_due() {
    let world = World::start().await;
    let now = SystemClock.now_secs();
    world.connect("due-1", 301, now + 120).await;
    world.connect("due-2", 302, now + 599).await;
    world.connect("later", 303, now + 3_600).await;
    world.connect("revoked", 304, now + 30).await;
    world.sandbox.revoke_user(304);

    let report = TokenRefresher::new(world.refresher())
        .run(now)
        .await
        .unwrap();
    assert_eq!(report.refreshed, 2, "{report:?}");
    assert_eq!(report.needs_reconnect, 1, "{report:?}");
    assert_eq!(report.failed, 0, "{report:?}");
    let later = world.grants.load("later").await.unwrap().unwrap();
    assert_eq!(later.info.expires_at, now + 3_600, "not due: untouched");

    // A second run right after has nothing left to do.
    let again = TokenRefresher::new(world.refresher())
        .run(now)
        .await
        .unwrap();
    assert_eq!(again.refreshed + again.needs_reconnect, 0, "{again:?}");
    assert_eq!(world.sandbox.stats().refreshes, 2);
}

/// In front of the sandbox: holds each token request until released, so a refresh stays
/// in flight for as long as a test needs.
struct SlowTokenEndpoint {
    base: String,
    arrived: Arc<Notify>,
    release: Arc<Notify>,
}

impl SlowTokenEndpoint {
    async fn before(upstream: &str) -> Self {
        let arrived = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let http = reqwest::Client::new();
        let upstream = upstream.to_owned();
        let (on_arrival, on_release) = (Arc::clone(&arrived), Arc::clone(&release));
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let (http, upstream) = (http.clone(), upstream.clone());
            let (arrived, release) = (Arc::clone(&on_arrival), Arc::clone(&on_release));
            async move {
                let (parts, body) = request.into_parts();
                let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                if parts.uri.path().ends_with("/oauth/token") {
                    arrived.notify_one();
                    release.notified().await;
                }
                let mut forwarded = http.request(
                    parts.method,
                    format!("{upstream}{}", parts.uri.path_and_query().unwrap()),
                );
                for name in ["content-type", "authorization", "accept"] {
                    if let Some(value) = parts.headers.get(name) {
                        forwarded = forwarded.header(name, value);
                    }
                }
                let answer = forwarded.body(body).send().await.unwrap();
                let status = answer.status();
                let content_type = answer.headers()["content-type"].clone();
                let body = answer.bytes().await.unwrap();
                axum::response::Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(axum::body::Body::from(body))
                    .unwrap()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            base,
            arrived,
            release,
        }
    }
}

/// Two scheduled runs: the first reaches the grant 50 s after it started and its refresh
/// is slow to come back; the second starts 61 s after the first. The lease runs from
/// when it was taken, so the second run leaves the grant alone and the single-use refresh
/// token is spent once.
#[tokio::test]
async fn a_lease_runs_from_when_it_is_taken_not_from_when_the_run_started() {
    let world = World::start().await;
    let clock = Arc::new(ManualClock::at(SystemClock.now_ms()));
    let first_run = clock.now_secs();
    world.connect("t1", 101, first_run + 120).await;
    let slow = SlowTokenEndpoint::before(&world.base).await;

    clock.advance(Duration::from_secs(50));
    let first = TokenRefresher::new(world.refresher_at(&slow.base).with_clock(clock.clone()));
    let first = tokio::spawn(async move { first.run(first_run).await.unwrap() });
    slow.arrived.notified().await;

    clock.advance(Duration::from_secs(11));
    let second = TokenRefresher::new(world.refresher().with_clock(clock.clone()))
        .run(clock.now_secs())
        .await
        .unwrap();
    assert_eq!(
        (second.busy, second.refreshed, second.needs_reconnect),
        (1, 0, 0),
        "{second:?}"
    );

    slow.release.notify_one();
    let first = first.await.unwrap();
    assert_eq!(first.refreshed, 1, "{first:?}");
    let stats = world.sandbox.stats();
    assert_eq!(
        (stats.refreshes, stats.rejected_grants),
        (1, 0),
        "{stats:?}"
    );
    let grant = world.grants.load("t1").await.unwrap().unwrap();
    assert_eq!(grant.info.status, GrantStatus::Ok);
    assert_eq!(grant.info.lease_until, None);
}
