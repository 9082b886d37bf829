use crate::error::ApiError;
use crate::extract::{AppPath, AppQuery, Tenant};
use crate::pagination::{Cursor, Page, PageParams};
use axum::Json;
use chrono::{DateTime, Utc};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_db::sms_confirmations::SmsConfirmation as SmsConfirmationRow;
use voxanne_domain::SmsStatus;

/// An SMS confirmation as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SmsConfirmation {
    pub id: voxanne_domain::SmsId,
    pub appointment_id: Option<voxanne_domain::AppointmentId>,
    /// The appointment's start this message confirms (a move is confirmed by a new message).
    pub appointment_starts_at: Option<DateTime<Utc>>,
    pub to_number: String,
    /// The clinic's number it was sent from, once sent.
    pub from_number: Option<String>,
    pub body: String,
    /// `confirmation` (of a booking or a move) or `reminder`.
    #[schema(example = "reminder")]
    pub kind: String,
    /// When a reminder is due (kept once it went); absent for confirmations.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The provider's id of the message (Twilio's `SM…` sid), once sent.
    pub provider_message_id: Option<String>,
    /// `queued`, `sending`, `sent` (accepted by the provider), `delivered`, `undelivered`,
    /// `failed` or `suppressed` (never sent: the number is on the do-not-call list, or the
    /// appointment was cancelled first).
    pub status: SmsStatus,
    /// Sending attempts so far.
    pub attempts: i32,
    /// When a failed attempt will be retried.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt failed, or why the message was suppressed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<SmsConfirmationRow> for SmsConfirmation {
    fn from(row: SmsConfirmationRow) -> Self {
        Self {
            id: row.id,
            appointment_id: row.appointment_id,
            appointment_starts_at: row.appointment_starts_at,
            to_number: row.to_number,
            from_number: row.from_number,
            body: row.body,
            kind: row.kind,
            scheduled_for: row.scheduled_for,
            provider_message_id: row.provider_message_id,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_error: row.last_error,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

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
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |s| Cursor {
            at: s.created_at,
            id: s.id.as_uuid(),
        })
        .map(SmsConfirmation::from),
    ))
}

#[utoipa::path(get, path = "/sms-confirmations/{id}", tag = "sms-confirmations", params(("id" = Uuid, Path)), responses((status = 200, body = SmsConfirmation)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<Uuid>,
) -> Result<Json<SmsConfirmation>, ApiError> {
    let sms = tx
        .get_sms_confirmation(id.into())
        .await?
        .ok_or_else(|| ApiError::missing(tx.membership(), "sms_confirmation_logs", "id", id))?;
    tx.commit().await?;
    Ok(Json(sms.into()))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
}
