use crate::error::ApiError;
use crate::extract::{AppQuery, Tenant};
use crate::pagination::{Cursor, Page, PageParams};
use axum::Json;
use voxanne_db::security_events::SecurityEvent;

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
    Ok(Json(Page::from_overfetch(&mut events, limit, |e| Cursor {
        at: e.created_at,
        id: e.id.as_uuid(),
    })))
}
