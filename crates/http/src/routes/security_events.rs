use crate::error::ApiError;
use crate::extract::{AppQuery, Tenant};
use crate::pagination::{Cursor, Page, PageParams};
use axum::Json;
use chrono::{DateTime, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::security_events::SecurityEvent as SecurityEventRow;

/// A security event as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SecurityEvent {
    pub id: voxanne_domain::SecurityEventId,
    /// `cross_tenant_reference`, `membership_denied` or `invalid_token`.
    pub kind: String,
    /// The user who acted, when known (a bad token has none).
    pub actor_user_id: Option<voxanne_domain::UserId>,
    /// Method and path of the request.
    pub route: Option<String>,
    /// The id that was asked for (cross-tenant references).
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl From<SecurityEventRow> for SecurityEvent {
    fn from(row: SecurityEventRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            actor_user_id: row.actor_user_id,
            route: row.route,
            target: row.target,
            detail: row.detail,
            created_at: row.created_at,
        }
    }
}

/// The org's security events, newest first (admins only): its users' references to other
/// orgs' ids, denied memberships, and bad tokens that named it.
#[utoipa::path(get, path = "/security-events", tag = "security", params(PageParams), responses((status = 200, body = Page<SecurityEvent>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<Page<SecurityEvent>>, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins read security events")?;
    let (after, limit) = params.parse()?;
    let mut events = tx
        .list_security_events(after.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut events, limit, |e| Cursor {
            at: e.created_at,
            id: e.id.as_uuid(),
        })
        .map(SecurityEvent::from),
    ))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new().routes(routes!(list))
}
