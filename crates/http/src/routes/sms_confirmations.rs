use crate::error::ApiError;
use crate::extract::{AppPath, AppQuery, Tenant};
use crate::pagination::{Cursor, Page, PageParams};
use axum::Json;
use uuid::Uuid;
use voxanne_db::sms_confirmations::SmsConfirmation;

/// SMS confirmations sent for appointments, newest first.
#[utoipa::path(get, path = "/sms-confirmations", tag = "sms-confirmations", params(PageParams), responses((status = 200, body = Page<SmsConfirmation>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<SmsConfirmation>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_sms_confirmations(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(Page::from_overfetch(&mut rows, limit, |s| Cursor {
        at: s.created_at,
        id: s.id.as_uuid(),
    })))
}

#[utoipa::path(get, path = "/sms-confirmations/{id}", tag = "sms-confirmations", params(("id" = Uuid, Path)), responses((status = 200, body = SmsConfirmation)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<SmsConfirmation>, ApiError> {
    let sms = tx
        .get_sms_confirmation(id)
        .await?
        .ok_or_else(|| ApiError::missing(tx.membership(), "sms_confirmation_logs", "id", id))?;
    tx.commit().await?;
    Ok(Json(sms))
}
