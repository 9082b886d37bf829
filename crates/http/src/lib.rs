//! Voxanne's HTTP API. Routes are in `routes/`, the error policy in `error.rs`, and the
//! tenant boundary of a request in `extract.rs` (`Tenant`).

pub mod auth;
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
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every route, with its OpenAPI operation.
fn routes() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(routes::me::me))
        .routes(routes!(routes::calls::list))
        .routes(routes!(routes::calls::get))
        .routes(routes!(routes::calls::recording))
        .routes(routes!(routes::security_events::list))
        .routes(routes!(routes::contacts::list, routes::contacts::create))
        .routes(routes!(
            routes::contacts::get,
            routes::contacts::update,
            routes::contacts::delete
        ))
        .routes(routes!(routes::campaigns::list, routes::campaigns::create))
        .routes(routes!(
            routes::campaigns::get,
            routes::campaigns::update,
            routes::campaigns::delete
        ))
        .routes(routes!(routes::dnc::list, routes::dnc::add))
        .routes(routes!(routes::dnc::check))
        .routes(routes!(routes::dnc::get, routes::dnc::remove))
        .routes(routes!(
            routes::knowledge_base::list,
            routes::knowledge_base::create
        ))
        .routes(routes!(
            routes::knowledge_base::get,
            routes::knowledge_base::update,
            routes::knowledge_base::delete
        ))
        .routes(routes!(routes::knowledge_base::search))
        .routes(routes!(routes::sms_confirmations::list))
        .routes(routes!(routes::sms_confirmations::get))
        .routes(routes!(routes::organizations::create))
        .routes(routes!(
            routes::organizations::get,
            routes::organizations::update,
            routes::organizations::delete
        ))
        .routes(routes!(routes::members::list, routes::members::add))
        .routes(routes!(routes::members::update, routes::members::remove))
        .routes(routes!(
            routes::calendar_connections::list,
            routes::calendar_connections::link
        ))
        .routes(routes!(
            routes::calendar_connections::get,
            routes::calendar_connections::unlink
        ))
        .routes(routes!(routes::integrations::list))
        .routes(routes!(routes::integrations::sync_vapi))
        .routes(routes!(
            routes::integrations::get,
            routes::integrations::put
        ))
        .routes(routes!(
            routes::agent_configuration::get,
            routes::agent_configuration::put
        ))
        .routes(routes!(
            routes::appointments::list,
            routes::appointments::create
        ))
        .routes(routes!(
            routes::appointments::get,
            routes::appointments::update
        ))
        .routes(routes!(routes::appointments::cancel))
        .routes(routes!(routes::availability::get))
        .routes(routes!(routes::holds::list, routes::holds::create))
        .routes(routes!(routes::holds::confirm))
        .routes(routes!(routes::holds::release))
        .routes(routes!(
            routes::phone_numbers::list,
            routes::phone_numbers::add
        ))
        .routes(routes!(
            routes::phone_numbers::get,
            routes::phone_numbers::remove
        ));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(routes::health::healthz))
        .routes(routes!(routes::health::readyz))
        .routes(routes!(routes::webhooks::vapi))
        .routes(routes!(routes::webhooks::twilio))
        .routes(routes!(routes::webhooks::sms_twilio_status))
        .routes(routes!(routes::oauth::vapi_token))
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
