//! The HTTP API: the axum router of `spec/api.md` (every method under `/rest/v3`, the PowerAuth
//! envelope), the operations endpoints (`/health`, `/ready`, `/metrics`, `/openapi.json`) and the
//! layers every request passes: request id and trace span, sensitive `Authorization` header, panic
//! catcher, metrics, request timeout, body limit, and integration-credential authentication.
//!
//! This is the only module that imports axum. It is thin: wire types (`wire`), the error mapping and
//! the JSON extractor (`error`), authentication (`auth`), the handlers (`api`). Everything else is the
//! service's business.
//!
//! Order of work for an API request: authentication (401 before the body is read) → a concurrency
//! slot (503 `ERR_BUSY` at once when `max_concurrent_requests` are running; never queued) →
//! `Content-Type: application/json` (415) → body read within `body_limit_bytes` (413) → JSON parse
//! (ERR0024) → field bounds of [`input`] (ERR0024, before anything is logged or looked up) → the use
//! case.
//!
//! Timeouts: a request that has not handed a write to the store when `request_timeout_ms` runs out
//! is cancelled and answered 503 `ERR_TIMEOUT` (nothing changed). One that has is never cancelled:
//! it is given [`outcome_grace`] more to finish and answered with what was stored, or, if it still
//! has not finished, 503 `ERR_OUTCOME_UNKNOWN` (read the activation's status before retrying); the
//! work itself always runs to its end.

pub mod api;
pub mod auth;
pub mod conn;
pub mod error;
pub mod input;
pub mod integration;
pub mod wire;

use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;

use crate::service::{self, Service, WriteGate};
pub use conn::{ConnectionSettings, TlsError, TlsSettings};
use error::{ApiError, Outcome};
use input::DocumentedBounds;
use wire::HealthResponse;

/// The base path of every PowerAuth method.
pub const API_PREFIX: &str = "/rest/v3";

/// What the router needs from the configuration.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Prefix of [`API_PREFIX`] (empty, or e.g. `/powerauth-java-server`); validated by `config`.
    pub base_path: String,
    /// HTTP Basic with integration credentials on every API method.
    pub restrict_access: bool,
    /// Larger request bodies are refused with 413.
    pub body_limit_bytes: usize,
    /// Longest a request may take before it is answered 503 `ERR_TIMEOUT` (see the module docs
    /// for requests that already wrote).
    pub request_timeout: Duration,
    /// API requests handled at once; more are answered 503 `ERR_BUSY` immediately.
    pub max_concurrent_requests: usize,
}

/// The default of [`ApiSettings::max_concurrent_requests`].
pub const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 128;

/// State of the operations endpoints.
#[derive(Clone)]
struct OpsState {
    service: Service,
    metrics: Option<PrometheusHandle>,
    base_path: String,
    readiness: Arc<Readiness>,
}

/// How often `/ready` may probe the HSM and the store, whatever the request rate.
pub const READY_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// The last readiness verdict and when its probe started; probes run in a background task, one at
/// a time, at most one per [`READY_PROBE_INTERVAL`].
#[derive(Default)]
struct Readiness {
    state: Mutex<ReadyState>,
    updated: tokio::sync::Notify,
}

#[derive(Default)]
struct ReadyState {
    verdict: Option<Result<(), String>>,
    probe_started: Option<Instant>,
    probing: bool,
}

impl Readiness {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadyState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current verdict; starts a background probe when the last one is older than the
    /// interval; waits for it only when there has never been a verdict.
    async fn verdict(self: &Arc<Self>, service: &Service) -> Result<(), String> {
        loop {
            let notified = self.updated.notified();
            let current = {
                let mut state = self.lock();
                let due = state
                    .probe_started
                    .is_none_or(|at| at.elapsed() >= READY_PROBE_INTERVAL);
                if due && !state.probing {
                    state.probing = true;
                    state.probe_started = Some(Instant::now());
                    let me = Arc::clone(self);
                    let service = service.clone();
                    tokio::spawn(async move {
                        let verdict = service.ready().await.map_err(|e| e.to_string());
                        let mut state = me.lock();
                        state.verdict = Some(verdict);
                        state.probing = false;
                        drop(state);
                        me.updated.notify_waiters();
                    });
                }
                state.verdict.clone()
            };
            match current {
                Some(verdict) => return verdict,
                None => notified.await,
            }
        }
    }
}

/// The OpenAPI 3.1 document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "offline-signer",
        description = "PowerAuth-compatible offline signatures with keys in a PKCS#11 HSM (spec/api.md)."
    ),
    paths(
        api::create_application,
        api::application_detail,
        api::create_application_version,
        api::init_activation,
        api::create_temporary_key,
        api::ecies_decryptor,
        api::prepare_activation,
        api::register_activation,
        api::commit_activation,
        api::activation_status,
        api::block_activation,
        api::unblock_activation,
        api::remove_activation,
        api::create_personalized,
        api::create_non_personalized,
        api::verify,
        integration::create,
        integration::list,
        integration::remove,
        health,
        ready,
        metrics_text,
        openapi_json,
    ),
    components(schemas(wire::ErrorEnvelope, wire::HealthResponse)),
    modifiers(&BasicAuthScheme, &DocumentedBounds)
)]
pub struct ApiDoc;

struct BasicAuthScheme;

impl utoipa::Modify for BasicAuthScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basicAuth",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// Histogram buckets (seconds) for request and HSM latencies.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide Prometheus recorder: installed by the first call, shared afterwards. `None` when
/// another metrics recorder was installed first (then `/metrics` answers 503).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .and_then(PrometheusBuilder::install_recorder)
        {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(error = %e, "cannot install the Prometheus recorder; /metrics is off");
                None
            }
        })
        .clone()
}

/// The whole router: API methods, operations endpoints, fallbacks and layers.
pub fn router(service: Service, settings: ApiSettings) -> Router {
    build(service, settings, true)
}

/// The router of the API methods only (no operations endpoints: they answer 404), for when those
/// have their own listener (`ops_listen`).
pub fn api_router(service: Service, settings: ApiSettings) -> Router {
    build(service, settings, false)
}

fn build(service: Service, settings: ApiSettings, with_ops: bool) -> Router {
    let mut api = Router::new()
        .route("/application/create", post(api::create_application))
        .route("/application/detail", post(api::application_detail))
        .route(
            "/application/version/create",
            post(api::create_application_version),
        )
        .route("/activation/init", post(api::init_activation))
        .route("/keystore/create", post(api::create_temporary_key))
        .route("/ecies/decryptor", post(api::ecies_decryptor))
        .route("/activation/prepare", post(api::prepare_activation))
        .route("/activation/register", post(api::register_activation))
        .route("/activation/commit", post(api::commit_activation))
        .route("/activation/status", post(api::activation_status))
        .route("/activation/block", post(api::block_activation))
        .route("/activation/unblock", post(api::unblock_activation))
        .route("/activation/remove", post(api::remove_activation))
        .route(
            "/signature/offline/personalized/create",
            post(api::create_personalized),
        )
        .route(
            "/signature/offline/non-personalized/create",
            post(api::create_non_personalized),
        )
        .route("/signature/offline/verify", post(api::verify))
        .route("/integration/create", post(integration::create))
        .route("/integration/list", post(integration::list))
        .route("/integration/remove", post(integration::remove))
        .with_state(service.clone())
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .route_layer(middleware::from_fn_with_state(
            Arc::new(tokio::sync::Semaphore::new(
                settings.max_concurrent_requests.max(1),
            )),
            limit_concurrency,
        ));
    if settings.restrict_access {
        api = api.route_layer(middleware::from_fn_with_state(
            service.clone(),
            auth::require_credentials,
        ));
    } else {
        api = api.route_layer(middleware::from_fn(auth::open_access));
    }

    let mut routes = Router::new().nest(&format!("{}{API_PREFIX}", settings.base_path), api);
    if with_ops {
        routes = routes.merge(ops_routes(service, &settings));
    }
    with_layers(routes, settings.request_timeout)
}

/// The operations endpoints alone (`/health`, `/ready`, `/metrics`, `/openapi.json`).
pub fn ops_router(service: Service, settings: ApiSettings) -> Router {
    with_layers(ops_routes(service, &settings), settings.request_timeout)
}

fn ops_routes(service: Service, settings: &ApiSettings) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .with_state(OpsState {
            service,
            metrics: metrics_handle(),
            base_path: settings.base_path.clone(),
            readiness: Arc::new(Readiness::default()),
        })
}

/// Fallbacks and the layers every request passes (innermost first): timeout and panic catcher,
/// error logging, metrics, then sensitive headers, request id and the trace span.
fn with_layers(routes: Router, timeout: Duration) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(move |req, next| {
            run_guarded(timeout, req, next)
        }))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn(log_error))
        .layer(middleware::from_fn(record_request))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                ]))
                .layer(middleware::from_fn(drop_unfit_request_id))
                .layer(SetRequestIdLayer::new(
                    x_request_id.clone(),
                    MakeRequestUuid,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
                )
                .layer(PropagateRequestIdLayer::new(x_request_id)),
        )
}

/// `application/detail`-style JSON (the API's field names), for the command line.
pub fn application_json(detail: crate::service::ApplicationDetail) -> String {
    let wire: wire::ApplicationResponse = detail.into();
    serde_json::to_string_pretty(&wire).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Serves [`router`] on `listener` (and, when given, [`ops_router`] on `ops_listener`, the API
/// listener then answering 404 for the operations paths) until `shutdown` completes, with the
/// connection limits and TLS of `connections` (see [`conn`]); in-flight requests finish first.
///
/// # Errors
/// [`std::io::ErrorKind::InvalidInput`] when the TLS files cannot be used.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ops_listener: Option<tokio::net::TcpListener>,
    service: Service,
    settings: ApiSettings,
    connections: ConnectionSettings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = match &connections.tls {
        None => None,
        Some(tls) => Some(
            tls.acceptor()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        ),
    };
    let connections = Arc::new(connections);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let (api, ops) = match ops_listener {
        None => (router(service, settings), None),
        Some(ops_listener) => (
            api_router(service.clone(), settings.clone()),
            Some((ops_listener, ops_router(service, settings))),
        ),
    };
    let api_loop = conn::accept_loop(
        listener,
        api,
        Arc::clone(&connections),
        tls,
        stop_rx.clone(),
    );
    match ops {
        None => api_loop.await,
        Some((ops_listener, ops)) => {
            // The operations listener is plain HTTP with the same limits.
            let ops_loop = conn::accept_loop(ops_listener, ops, connections, None, stop_rx);
            tokio::join!(api_loop, ops_loop);
        }
    }
    Ok(())
}

/// Longest `x-request-id` taken from a caller.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A caller's `x-request-id` is kept only when it is 1–128 characters of `A-Z a-z 0-9 . _ : -`;
/// otherwise it is removed before it is logged, and a fresh UUID takes its place.
async fn drop_unfit_request_id(mut request: Request, next: Next) -> Response {
    let fit = |v: &axum::http::HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID_LEN
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || b"._:-".contains(c))
    };
    if request
        .headers()
        .get_all("x-request-id")
        .iter()
        .any(|v| !fit(v))
        || request.headers().get_all("x-request-id").iter().count() > 1
    {
        request.headers_mut().remove("x-request-id");
    }
    next.run(request).await
}

/// One span per request: method, path and request id only (never headers or body).
fn request_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
    )
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Answers 503 `ERR_BUSY` at once when `max_concurrent_requests` API requests are running.
async fn limit_concurrency(
    State(slots): State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match slots.try_acquire_owned() {
        Ok(slot) => {
            let response = next.run(request).await;
            drop(slot);
            response
        }
        Err(_) => {
            tracing::warn!("request shed: max_concurrent_requests reached");
            ApiError::Busy.into_response()
        }
    }
}

/// How long a request whose store write began may run past its timeout: as long again, and at
/// least 5 s (a write handed to the store normally ends in milliseconds; one that does not is a
/// store in trouble, and the caller is better told so).
pub fn outcome_grace(timeout: Duration) -> Duration {
    timeout.max(Duration::from_secs(5))
}

/// Runs the rest of the stack with a [`WriteGate`] under the request timeout (module docs): a
/// timeout before any store write drops (cancels) the request and answers 503 `ERR_TIMEOUT`; a
/// timeout after one keeps polling it up to [`outcome_grace`] more for the stored outcome, then
/// answers 503 `ERR_OUTCOME_UNKNOWN` and moves the work to a task of its own to finish there.
async fn run_guarded(timeout: Duration, request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    let gate = Arc::new(WriteGate::new());
    let mut work = Box::pin(service::with_write_gate(
        Arc::clone(&gate),
        next.run(request),
    ));
    tokio::select! {
        response = &mut work => return response,
        () = tokio::time::sleep(timeout) => {}
    }
    if gate.close() {
        metrics::counter!("offline_signer_http_timeouts_total", "phase" => "before_write")
            .increment(1);
        tracing::warn!(
            timeout_ms = timeout.as_millis(),
            "request timed out; nothing was written"
        );
        return ApiError::Timeout.into_response();
    }
    metrics::counter!("offline_signer_http_timeouts_total", "phase" => "after_write").increment(1);
    tracing::warn!(
        timeout_ms = timeout.as_millis(),
        "request timed out after its store write began; waiting for the stored outcome"
    );
    match tokio::time::timeout(outcome_grace(timeout), &mut work).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("offline_signer_http_timeouts_total", "phase" => "outcome_unknown")
                .increment(1);
            tracing::error!("the store write has not finished; outcome unknown to the caller");
            tokio::spawn(work.in_current_span());
            ApiError::OutcomeUnknown.into_response()
        }
    }
}

/// Runs the rest of the stack in its own task so that a panic becomes a 500 `ERR0000` answer instead
/// of a dropped connection. (The task also finishes its work if the client goes away.)
async fn catch_panic(request: Request, next: Next) -> Response {
    use tracing::Instrument as _;
    match tokio::spawn(next.run(request).in_current_span()).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(panicked = e.is_panic(), "request handler failed");
            ApiError::Panicked.into_response()
        }
    }
}

/// Writes the internal detail of an error answer ([`error::ErrorDetail`], attached by
/// [`ApiError`]'s `IntoResponse`) to the log, once, inside the request's span.
async fn log_error(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    if let Some(detail) = response.extensions_mut().remove::<error::ErrorDetail>() {
        detail.log();
    }
    response
}

/// Request count and latency per method (route) and outcome (`OK` or the error code).
async fn record_request(request: Request, next: Next) -> Response {
    let method = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| {
            let path = p.as_str();
            path.split_once(API_PREFIX)
                .map_or(path, |(_, method)| method)
                .to_owned()
        })
        .unwrap_or_else(|| "unmatched".to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    let outcome = response
        .extensions()
        .get::<Outcome>()
        .map_or_else(|| response.status().as_str().to_owned(), |o| o.0.to_owned());
    let labels = [("method", method), ("outcome", outcome)];
    metrics::counter!("offline_signer_http_requests_total", &labels).increment(1);
    metrics::histogram!("offline_signer_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up", body = HealthResponse)))]
async fn health() -> axum::Json<HealthResponse> {
    axum::Json(HealthResponse {
        status: "UP",
        reason: None,
    })
}

/// The HSM answers and the store is writable, as of the last probe (at most one per second, run in
/// the background: a flood of `/ready` costs no HSM job and no write per call).
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = HealthResponse),
        (status = 503, description = "Not ready, with the reason", body = HealthResponse),
    ))]
async fn ready(State(ops): State<OpsState>) -> Response {
    let down = |reason: String| {
        tracing::warn!(reason = %reason, "not ready");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(HealthResponse {
                status: "DOWN",
                reason: Some(reason),
            }),
        )
            .into_response()
    };
    match ops.readiness.verdict(&ops.service).await {
        Ok(()) => axum::Json(HealthResponse {
            status: "UP",
            reason: None,
        })
        .into_response(),
        Err(reason) => down(reason),
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
async fn metrics_text(State(ops): State<OpsState>) -> Response {
    match &ops.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "metrics recorder not installed\n",
        )
            .into_response(),
    }
}

/// This contract as OpenAPI 3.1, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi_json(State(ops): State<OpsState>) -> Response {
    let mut doc = ApiDoc::openapi();
    if !ops.base_path.is_empty() {
        // The API methods live under the configured base path; the operations endpoints do not.
        doc.paths.paths = std::mem::take(&mut doc.paths.paths)
            .into_iter()
            .map(|(path, item)| {
                if path.starts_with(API_PREFIX) {
                    (format!("{}{path}", ops.base_path), item)
                } else {
                    (path, item)
                }
            })
            .collect();
    }
    match doc.to_json() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize the OpenAPI document");
            ApiError::Panicked.into_response()
        }
    }
}
