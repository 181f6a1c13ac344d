//! The call pipeline every Mercado Livre request goes through, one attempt at a time:
//! circuit breaker → limiter (global + per-account, atomically; global only before the
//! account is known; a sign-in's calls also spend the sign-in share) → HTTP with a
//! timeout → classification; transient failures are retried with backoff. Each attempt
//! consumes limiter budget, as each one counts against Mercado Livre's limits.

use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;
use http::{Method, StatusCode};
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use super::backoff::RetryPolicy;
use super::breaker::{CircuitBreaker, CircuitState, Permit, Refusal};
use super::error::{UnavailableCause, UpstreamError};
use super::retry_after;
use crate::clock::{Clock, SystemClock};
use crate::config::{HourlyBudget, MercadoLivreSettings, RateLimitSettings, ThrottleScope};
use crate::outbound::ClientError;
use crate::ratelimit::{Check, Limiter, Rule};
use crate::telemetry::{self, emf, redact};
use crate::tls::Tls;

/// The dependency's name in logs and metrics.
pub const DEPENDENCY: &str = "mercadolivre";

/// The limiter key of the application-wide budget.
pub const GLOBAL_KEY: &str = "ml:global";

/// The limiter key of the sign-in share of the application-wide budget.
pub const SIGN_IN_KEY: &str = "ml:signin";

/// The limiter key of one seller account's budget.
pub fn account_key(seller_id: u64) -> String {
    format!("ml:account:{seller_id}")
}

/// A 429 without a usable Retry-After (Mercado Livre documents none) blocks this long.
pub const DEFAULT_THROTTLE: Duration = Duration::from_secs(60);
/// A 429 blocks for at least this long, whatever its header says.
const MIN_THROTTLE: Duration = Duration::from_secs(1);

/// The budgets every call is checked against, and what a 429 blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamLimits {
    pub global: Rule,
    pub per_account: Rule,
    /// The part of `global` sign-ins may spend (checked together with it), so that no
    /// amount of anonymous callbacks can take what the workers need.
    pub sign_in: Rule,
    pub throttle_scope: ThrottleScope,
}

impl From<&RateLimitSettings> for UpstreamLimits {
    fn from(settings: &RateLimitSettings) -> Self {
        Self {
            global: rule(settings.mercadolivre_global),
            per_account: rule(settings.mercadolivre_account),
            sign_in: share_of(settings.mercadolivre_global, settings.sign_in_share),
            throttle_scope: settings.mercadolivre_throttle_scope,
        }
    }
}

fn rule(budget: HourlyBudget) -> Rule {
    Rule::new(budget.limit, HourlyBudget::PERIOD, budget.burst)
}

/// `share` (0 to 1) of `budget`: of its hourly limit and of its burst alike, so the part
/// sustains at most `share` of the budget's rate and takes at most `share` of its burst.
fn share_of(budget: HourlyBudget, share: f64) -> Rule {
    let part = |whole: u32| (f64::from(whole) * share).floor() as u32;
    Rule::new(part(budget.limit), HourlyBudget::PERIOD, part(budget.burst))
}

/// Which part of the application's budget a call spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Budget {
    /// Work for a signed-in seller: workers, the refresher, the reconciler.
    Work,
    /// Signing a seller in: anonymous callers can start it, so it spends the sign-in
    /// share as well as the global budget.
    SignIn,
}

impl UpstreamLimits {
    /// The two limits a call for `seller_id` is checked against, in one check.
    pub fn checks(&self, seller_id: u64) -> [Check; 2] {
        [
            self.global_check(),
            Check {
                key: account_key(seller_id),
                rule: self.per_account,
            },
        ]
    }

    /// The one limit a call on no account's behalf is checked against: the exchange of
    /// an authorization code, made before the seller's account is known.
    pub fn global_check(&self) -> Check {
        Check {
            key: GLOBAL_KEY.to_owned(),
            rule: self.global,
        }
    }

    /// What a call spending `budget` for `seller_id` (or for no account yet) is checked
    /// against, in one check.
    fn checks_for(&self, budget: Budget, seller_id: Option<u64>) -> Vec<Check> {
        let mut checks = vec![self.global_check()];
        if budget == Budget::SignIn {
            checks.push(Check {
                key: SIGN_IN_KEY.to_owned(),
                rule: self.sign_in,
            });
        }
        if let Some(seller_id) = seller_id {
            checks.push(Check {
                key: account_key(seller_id),
                rule: self.per_account,
            });
        }
        checks
    }

    /// The limiter keys a 429 on a call for `seller_id` (or for no account yet) blocks.
    /// Mercado Livre's 429 (`{"error":"too_many_requests"}`, no Retry-After promised)
    /// does not say whether the application's limit or the account's was hit, so unless
    /// configured otherwise both are blocked.
    pub fn throttled_keys(&self, seller_id: Option<u64>) -> Vec<String> {
        let account = seller_id.map(account_key);
        match self.throttle_scope {
            ThrottleScope::Application => std::iter::once(GLOBAL_KEY.to_owned())
                .chain(account)
                .collect(),
            ThrottleScope::Account => account.into_iter().collect(),
        }
    }
}

/// The Mercado Livre API client. Build one per process, at init.
pub struct MercadoLivre {
    http: reqwest::Client,
    api_url: Url,
    /// `api_url` as text without a trailing slash: paths are appended to it.
    api_base: String,
    call_timeout: Duration,
    retry: RetryPolicy,
    limits: UpstreamLimits,
    limiter: Arc<dyn Limiter>,
    breaker: CircuitBreaker,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MercadoLivre {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MercadoLivre")
            .field("api_url", &self.api_url.as_str())
            .field("call_timeout", &self.call_timeout)
            .field("retry", &self.retry)
            .field("limits", &self.limits)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

/// One request, as every attempt makes it.
pub(super) struct Call<'a> {
    pub operation: &'static str,
    pub method: Method,
    pub url: Url,
    pub auth: Auth<'a>,
    /// The seller account the call is made for: its budget is checked along with the
    /// global one, and a 429 blocks it. `None` only before the account is known.
    pub seller_id: Option<u64>,
    pub budget: Budget,
    pub body: Body<'a>,
}

/// How a request is authorised, which also says what a refusal means.
#[derive(Clone, Copy)]
pub(super) enum Auth<'a> {
    /// On a seller's behalf, with their access token as a bearer: a 401 means the token
    /// was refused ([`UpstreamError::Unauthorized`]).
    Bearer(&'a SecretString),
    /// The token endpoint: the application's credentials travel in the form body and no
    /// Authorization header is sent. A 4xx `invalid_grant` is
    /// [`UpstreamError::InvalidGrant`]; any other refusal (a 401 `invalid_client`
    /// included) is [`UpstreamError::Rejected`].
    TokenEndpoint,
}

/// A request's body.
pub(super) enum Body<'a> {
    Empty,
    Json(serde_json::Value),
    /// `application/x-www-form-urlencoded`, fields in this order.
    Form(&'a [FormField<'a>]),
}

/// One field of a form body. No `Debug`: values may be secrets.
pub(super) struct FormField<'a> {
    pub name: &'static str,
    pub value: &'a str,
    /// Scrubbed from any error message Mercado Livre sends back (besides the redactor's
    /// masking of token shapes).
    pub secret: bool,
}

impl<'a> FormField<'a> {
    pub fn plain(name: &'static str, value: &'a str) -> Self {
        FormField {
            name,
            value,
            secret: false,
        }
    }

    pub fn secret(name: &'static str, value: &'a str) -> Self {
        FormField {
            name,
            value,
            secret: true,
        }
    }
}

impl Call<'_> {
    /// The secret values the request carries in its body.
    fn body_secrets(&self) -> Vec<&str> {
        match &self.body {
            Body::Form(fields) => fields
                .iter()
                .filter(|field| field.secret && !field.value.is_empty())
                .map(|field| field.value)
                .collect(),
            Body::Empty | Body::Json(_) => Vec::new(),
        }
    }
}

/// An attempt's failure and whether another attempt may follow.
struct Failure {
    error: UpstreamError,
    retry: Retry,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    Never,
    /// The request may have reached Mercado Livre: retried only if repeating it is safe.
    IfIdempotent,
    /// The request never left (no connection): always safe to repeat.
    Always,
}

impl Failure {
    fn last(error: UpstreamError) -> Self {
        Self {
            error,
            retry: Retry::Never,
        }
    }

    fn may_retry(&self, idempotent: bool) -> bool {
        match self.retry {
            Retry::Never => false,
            Retry::IfIdempotent => idempotent,
            Retry::Always => true,
        }
    }
}

/// What came back from one attempt that got an answer.
struct Reply {
    status: StatusCode,
    retry_after: Option<String>,
    body: Vec<u8>,
}

impl MercadoLivre {
    pub fn new(
        http: reqwest::Client,
        settings: &MercadoLivreSettings,
        limits: UpstreamLimits,
        limiter: Arc<dyn Limiter>,
    ) -> Self {
        Self {
            http,
            api_url: settings.api_url.clone(),
            api_base: settings.api_url.as_str().trim_end_matches('/').to_owned(),
            call_timeout: settings.call_timeout,
            retry: settings.retry,
            limits,
            limiter,
            breaker: CircuitBreaker::new(DEPENDENCY, settings.breaker),
            clock: Arc::new(SystemClock),
        }
    }

    /// The client `settings` describe, on an HTTP client of its own whose connect timeout
    /// is the attempt's (MERCADOLIVRE_TIMEOUT_MS bounds an attempt from connecting to its
    /// last byte), limited by `limiter` to the budgets of `rate_limit`.
    pub fn from_settings(
        settings: &MercadoLivreSettings,
        rate_limit: &RateLimitSettings,
        limiter: Arc<dyn Limiter>,
        tls: &Tls,
    ) -> Result<Self, ClientError> {
        let http = crate::outbound::http_client(tls, settings.call_timeout)?;
        Ok(Self::new(
            http,
            settings,
            UpstreamLimits::from(rate_limit),
            limiter,
        ))
    }

    /// The same client reading time from `clock` (the limiter's and the breaker's).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn circuit_state(&self) -> CircuitState {
        self.breaker.state(self.clock.now_ms())
    }

    /// GET `path` (e.g. a notification's `resource`, `/orders/2000009876543210`) on
    /// behalf of `seller_id`, decoded as `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        access_token: &SecretString,
        seller_id: u64,
        path: &str,
    ) -> Result<T, UpstreamError> {
        self.get("GetResource", access_token, seller_id, path).await
    }

    /// GET `path` under the API base, counted in metrics as `operation`.
    pub(super) async fn get<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        access_token: &SecretString,
        seller_id: u64,
        path: &str,
    ) -> Result<T, UpstreamError> {
        let url = self.url(path)?;
        self.call(&Self::get_call(operation, access_token, seller_id, url))
            .await
    }

    /// A GET of `url` on behalf of `seller_id`.
    pub(super) fn get_call<'a>(
        operation: &'static str,
        access_token: &'a SecretString,
        seller_id: u64,
        url: Url,
    ) -> Call<'a> {
        Call {
            operation,
            method: Method::GET,
            url,
            auth: Auth::Bearer(access_token),
            seller_id: Some(seller_id),
            budget: Budget::Work,
            body: Body::Empty,
        }
    }

    /// The URL of `segments` (each one percent-encoded, never a separator) under the API
    /// base, with `query`. For ids that come from elsewhere (a notification's bare message
    /// id): an empty segment, `.` or `..` is refused rather than dropped or followed.
    pub(super) fn resource_url(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, UpstreamError> {
        let invalid = || UpstreamError::InvalidPath(segments.join("/").chars().take(200).collect());
        if segments
            .iter()
            .any(|segment| matches!(*segment, "" | "." | ".."))
        {
            return Err(invalid());
        }
        let mut url = self.api_url.clone();
        url.path_segments_mut()
            .map_err(|()| invalid())?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// The URL of `path` under the API base. The path usually comes from a notification,
    /// so anything that would leave the API (another host, `..` above the base) is
    /// refused: the seller's token must only ever go to Mercado Livre.
    pub(super) fn url(&self, path: &str) -> Result<Url, UpstreamError> {
        let invalid = || UpstreamError::InvalidPath(path.chars().take(200).collect());
        if !path.starts_with('/') || path.starts_with("//") || path.contains('\\') {
            return Err(invalid());
        }
        let url = Url::parse(&format!("{}{path}", self.api_base)).map_err(|_| invalid())?;
        let base_path = self.api_url.path().trim_end_matches('/');
        let under_base = url
            .path()
            .strip_prefix(base_path)
            .is_some_and(|rest| rest.starts_with('/'));
        if url.origin() != self.api_url.origin() || !under_base || url.fragment().is_some() {
            return Err(invalid());
        }
        Ok(url)
    }

    /// Makes `call` with retries, and decodes its JSON answer.
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
    ) -> Result<T, UpstreamError> {
        let body = self.call_bytes(call).await?;
        serde_json::from_slice(&body).map_err(|error| {
            UpstreamError::Malformed(format!(
                "{}: {}",
                call.operation,
                redact::redact_text(&error.to_string())
            ))
        })
    }

    /// Makes `call` with retries, and returns the body of its successful answer.
    pub(super) async fn call_bytes(&self, call: &Call<'_>) -> Result<Vec<u8>, UpstreamError> {
        let idempotent = call.method.is_idempotent();
        let max_delay = self.retry.max_delay;
        (|| self.attempt(call))
            .retry(self.retry.backoff())
            .when(|failure: &Failure| failure.may_retry(idempotent))
            .adjust(|failure: &Failure, next: Option<Duration>| {
                // A Retry-After longer than any backoff ends the retries: the caller
                // defers the work instead of holding the invocation.
                let next = next?;
                match failure.error.retry_after() {
                    Some(wait) if wait > max_delay => None,
                    Some(wait) => Some(wait),
                    None => Some(next),
                }
            })
            .notify(|failure: &Failure, delay: Duration| {
                tracing::info!(
                    dependency = DEPENDENCY,
                    operation = call.operation,
                    error = %failure.error,
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "retrying"
                );
            })
            .await
            .map_err(|failure| failure.error)
    }

    async fn attempt(&self, call: &Call<'_>) -> Result<Vec<u8>, Failure> {
        let permit = match self.breaker.acquire(self.clock.now_ms()) {
            Ok(permit) => permit,
            Err(refusal) => {
                count(call.operation, "ShortCircuited", None);
                let retry_after = match refusal {
                    Refusal::Open { retry_after } => retry_after,
                    // The probe settles within one call timeout.
                    Refusal::Probing => self.call_timeout,
                };
                return Err(Failure::last(UpstreamError::Unavailable {
                    cause: UnavailableCause::CircuitOpen,
                    retry_after: Some(retry_after),
                }));
            }
        };

        let checks = self.limits.checks_for(call.budget, call.seller_id);
        let verdict = self
            .limiter
            .check(&checks, self.clock.now_ms())
            .await
            .map_err(|error| Failure::last(UpstreamError::Limiter(error)))?;
        if !verdict.allowed {
            let scope = match call.budget {
                Budget::Work => DEPENDENCY,
                Budget::SignIn => "mercadolivre-signin",
            };
            emf::emit(
                &[("Scope", scope)],
                &[emf::Metric::count("RateLimited", 1.0)],
            );
            return Err(Failure::last(UpstreamError::RateLimited {
                retry_after: verdict.retry_after,
            }));
        }

        let sent = telemetry::observe(DEPENDENCY, call.operation, self.send(call)).await;
        let now_ms = self.clock.now_ms();
        match sent {
            Ok(reply) => self.classify(call, reply, permit, now_ms).await,
            Err(error) => {
                permit.failed(now_ms);
                let cause = if error.is_timeout() {
                    UnavailableCause::Timeout
                } else if error.is_connect() {
                    UnavailableCause::Connect
                } else {
                    UnavailableCause::Transport(describe(&error))
                };
                let label = match cause {
                    UnavailableCause::Timeout => "timeout",
                    UnavailableCause::Connect => "connect_error",
                    _ => "transport_error",
                };
                count(call.operation, "UpstreamCalls", Some(label));
                Err(Failure {
                    error: UpstreamError::Unavailable {
                        cause,
                        retry_after: None,
                    },
                    retry: if error.is_connect() {
                        Retry::Always
                    } else {
                        Retry::IfIdempotent
                    },
                })
            }
        }
    }

    async fn send(&self, call: &Call<'_>) -> Result<Reply, reqwest::Error> {
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .timeout(self.call_timeout);
        match call.auth {
            Auth::Bearer(access_token) => {
                request = request.bearer_auth(access_token.expose_secret());
            }
            Auth::TokenEndpoint => {}
        }
        match &call.body {
            Body::Empty => {}
            Body::Json(body) => request = request.json(body),
            Body::Form(fields) => {
                let pairs: Vec<(&str, &str)> = fields
                    .iter()
                    .map(|field| (field.name, field.value))
                    .collect();
                request = request.form(&pairs);
            }
        }
        let response = request.send().await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }

    async fn classify(
        &self,
        call: &Call<'_>,
        reply: Reply,
        permit: Permit<'_>,
        now_ms: i64,
    ) -> Result<Vec<u8>, Failure> {
        let status = reply.status;
        count(call.operation, "UpstreamCalls", Some(status.as_str()));
        let retry_after = reply
            .retry_after
            .as_deref()
            .and_then(|value| retry_after::parse(value, now_ms));
        if status.is_server_error() {
            permit.failed(now_ms);
            return Err(Failure {
                error: UpstreamError::Unavailable {
                    cause: UnavailableCause::Status(status.as_u16()),
                    retry_after,
                },
                retry: Retry::IfIdempotent,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Being throttled says nothing about Mercado Livre's health.
            drop(permit);
            let retry_after = retry_after.unwrap_or(DEFAULT_THROTTLE).max(MIN_THROTTLE);
            self.block(call, retry_after, now_ms).await;
            return Err(Failure::last(UpstreamError::RateLimited { retry_after }));
        }
        permit.succeeded(now_ms);
        if status.is_success() {
            return Ok(reply.body);
        }
        let token_endpoint = matches!(call.auth, Auth::TokenEndpoint);
        let error_code = status
            .is_client_error()
            .then(|| error_code(&reply.body))
            .flatten();
        Err(Failure::last(match status {
            _ if token_endpoint && error_code.as_deref() == Some("invalid_grant") => {
                UpstreamError::InvalidGrant
            }
            _ if error_code.as_deref() == Some("invalid_operator_user_id") => {
                UpstreamError::OperatorUser
            }
            // Only a bearer token can be "the access token refused".
            StatusCode::UNAUTHORIZED if !token_endpoint => UpstreamError::Unauthorized,
            StatusCode::NOT_FOUND => UpstreamError::NotFound,
            _ => UpstreamError::Rejected {
                status: status.as_u16(),
                message: error_message(&reply.body, &call.body_secrets()),
            },
        }))
    }

    /// Stops every instance from making the calls a 429 says to stop (the keys of
    /// [`UpstreamLimits::throttled_keys`]) until the wait is over.
    async fn block(&self, call: &Call<'_>, retry_after: Duration, now_ms: i64) {
        let wait_ms = i64::try_from(retry_after.as_millis()).unwrap_or(i64::MAX);
        let until_ms = now_ms.saturating_add(wait_ms);
        let keys = self.limits.throttled_keys(call.seller_id);
        tracing::warn!(
            dependency = DEPENDENCY,
            operation = call.operation,
            seller_id = call.seller_id,
            retry_after_ms = wait_ms,
            blocked = ?keys,
            "throttled by Mercado Livre"
        );
        for key in &keys {
            if let Err(error) = self.limiter.block_until(key, until_ms, now_ms).await {
                tracing::warn!(dependency = DEPENDENCY, key, %error, "could not block in the limiter");
            }
        }
    }
}

/// An error's chain of causes on one line ("error sending request: connection reset").
fn describe(error: &reqwest::Error) -> String {
    redact::redact_text(&crate::aws::error_chain(error)).into_owned()
}

/// A Mercado Livre error body: `{"message", "error", "status", "cause"}`; the token
/// endpoint may say `error_description` (RFC 6749 §5.2) instead of `message`.
#[derive(serde::Deserialize)]
struct ErrorBody {
    message: Option<String>,
    error_description: Option<String>,
    error: Option<String>,
}

/// The `error` code of an error body (`invalid_grant`, `invalid_operator_user_id`…).
fn error_code(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<ErrorBody>(body).ok()?.error
}

/// The readable part of a Mercado Livre error body, short and redacted, with each of
/// `secrets` (values the request carried) scrubbed before anything is cut.
fn error_message(body: &[u8], secrets: &[&str]) -> String {
    let mut text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            error,
            message,
            error_description,
        }) => match (error, message.or(error_description)) {
            (Some(error), Some(message)) => format!("{error}: {message}"),
            (Some(text), None) | (None, Some(text)) => text,
            (None, None) => format!("a {}-byte body that is not an error object", body.len()),
        },
        Err(_) => format!("a {}-byte body that is not an error object", body.len()),
    };
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        if text.contains(secret) {
            text = text.replace(secret, redact::REDACTED);
        }
    }
    redact::redact_text(&text).chars().take(200).collect()
}

fn count(operation: &str, metric: &str, status: Option<&str>) {
    let mut dimensions = vec![("Dependency", DEPENDENCY), ("Operation", operation)];
    if let Some(status) = status {
        dimensions.push(("Status", status));
    }
    emf::emit(&dimensions, &[emf::Metric::count(metric, 1.0)]);
}
