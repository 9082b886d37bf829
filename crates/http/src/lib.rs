//! Voxanne's HTTP API. Routes are in `routes/`, the error policy in `error.rs`, and the
//! tenant boundary of a request in `extract.rs` (`Tenant`).

pub mod accounts;
pub mod auth;
pub mod calendar_oauth;
pub mod dashboard;
pub mod error;
pub mod extract;
pub mod fields;
pub mod found;
pub mod idempotency;
pub mod limits;
pub mod openapi;
pub mod pagination;
pub mod routes;
pub mod security_log;
pub mod server;
pub mod storable;
pub mod storage;
pub mod vapi;
pub mod vapi_sync;

use crate::auth::JwtVerifier;
use crate::error::ApiError;
pub use crate::server::ServerConfig;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::response::IntoResponse;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::{Modify, OpenApi as _};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::crypto::Keyring;
use voxanne_db::Db;

/// What every handler can reach. The database handle only opens tenant transactions.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub auth: Arc<JwtVerifier>,
    /// Where call recordings are stored, keyed `{org_id}/recordings/...`.
    pub recordings: Arc<dyn object_store::ObjectStore>,
    /// Seals and opens the secrets stored in tenant rows (Debug shows key ids only).
    pub keyring: Arc<Keyring>,
    /// The recording jobs' counters of this process (zero when no worker runs in it).
    pub metrics: Arc<voxanne_jobs::Metrics>,
    /// Where requests report security findings, written off the request path.
    pub security: Arc<security_log::SecurityLog>,
    /// Rate limits: failed authentications per address, webhooks per number.
    pub limits: Arc<limits::Limits>,
    /// Where Vapi reaches this server and this server reaches Vapi.
    pub vapi: Arc<vapi::VapiSettings>,
    /// The calendar providers clinics connect with OAuth 2.0.
    pub calendar: Arc<calendar_oauth::CalendarOAuth>,
    /// Built-in accounts: sessions, mail, demo sign-in.
    pub accounts: Arc<accounts::AccountSettings>,
    /// Wakes the live streams of a clinic whose calls changed.
    pub live: Arc<routes::live::LiveHub>,
}

pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with its OpenAPI operation.
fn routes() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .merge(routes::me::routes())
        .merge(routes::calls::routes())
        .merge(routes::live::routes())
        .merge(routes::security_events::routes())
        .merge(routes::access_log::routes())
        .merge(routes::retention::routes())
        .merge(routes::contacts::routes())
        .merge(routes::campaigns::routes())
        .merge(routes::leads::routes())
        .merge(routes::dnc::routes())
        .merge(routes::scheduling::routes())
        .merge(routes::knowledge_base::routes())
        .merge(routes::sms_confirmations::routes())
        .merge(routes::messages::routes())
        .merge(routes::organizations::routes())
        .merge(routes::members::routes())
        .merge(routes::invitations::routes())
        .merge(routes::calendar_connections::routes())
        .merge(routes::calendar_oauth::routes())
        .merge(routes::integrations::routes())
        .merge(routes::agent_configuration::routes())
        .merge(routes::appointments::routes())
        .merge(routes::availability::routes())
        .merge(routes::holds::routes())
        .merge(routes::phone_numbers::routes());
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::webhooks::vapi))
        .routes(routes!(routes::webhooks::twilio))
        .routes(routes!(routes::webhooks::sms_twilio_status))
        .routes(routes!(routes::webhooks::sms_twilio_inbound))
        .routes(routes!(routes::oauth::vapi_token))
        .routes(routes!(routes::calendar_oauth::callback))
        .routes(routes!(routes::calendar_notifications::google))
        .routes(routes!(routes::calendar_notifications::microsoft))
        .merge(routes::auth::routes())
        .nest("/api/v1", api)
}

/// The OpenAPI document of [`router`].
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut api) = routes().split_for_parts();
    openapi::Conventions.modify(&mut api);
    api
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "meta", responses((status = 200, description = "OpenAPI 3.1 document")))]
async fn openapi_json() -> axum::response::Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = DOCUMENT.get_or_init(|| openapi().to_json().unwrap_or_default());
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.as_str(),
    )
        .into_response()
}

/// Reports the probes that handlers found (an id missing from the active org) to the
/// security log, which classifies them off the request path: the answer and the work done
/// before it are the same whoever owns the id.
async fn report_probes(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = format!("{} {}", request.method(), request.uri().path());
    let mut response = next.run(request).await;
    if let Some(probe) = response
        .extensions_mut()
        .remove::<voxanne_db::system::Probe>()
    {
        state
            .security
            .report(security_log::Finding::Probe { probe, route });
    }
    response
}

/// Request bodies larger than this are refused with 413.
pub const BODY_LIMIT: usize = 1024 * 1024;

pub fn router(state: AppState, config: &ServerConfig) -> Router {
    let (router, _) = routes().split_for_parts();
    let router = router.merge(dashboard::routes());
    let config = Arc::new(config.clone());
    router
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            report_probes,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        // Outermost of the route layers: the body is in memory before any extractor runs.
        .layer(axum::middleware::from_fn_with_state(
            config.clone(),
            server::read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            config,
            server::request_timeout,
        ))
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal("handler panicked"))
        }))
        .layer(
            TraceLayer::new_for_http()
                // The error policy logs what matters itself (internal errors at ERROR, an
                // unreachable database once per episode): not one ERROR line per 5xx.
                .on_failure(tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG))
                .make_span_with(|request: &Request| {
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map(MatchedPath::as_str)
                        .unwrap_or("unmatched");
                    let request_id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        route,
                        request_id,
                        user_id = tracing::field::Empty,
                        org_id = tracing::field::Empty,
                    )
                }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// The operators' listener: `GET /metrics` (totals over all clinics, so never on the API's
/// address; the binary binds it to loopback by default, `VOXANNE_METRICS_ADDR`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(routes::health::metrics))
        .fallback(|| async { ApiError::NoRoute })
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, then gives in-flight requests
/// `config.shutdown_grace` to finish. The binary binds the configured address; tests bind
/// `127.0.0.1:0`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state, &config);
    server::run(listener, app, config, shutdown).await
}
