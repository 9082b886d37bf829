//! Appointment holds: a slot kept for a caller for a short time (while the voice agent
//! confirms with the patient), then confirmed into an appointment or released. An expired
//! hold blocks nothing and cannot be confirmed.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::idempotency::IdempotencyKey;
use crate::pagination::{Cursor, Page, PageParams};
use crate::routes::appointments::Appointment;
use crate::routes::appointments::{slot_request, Asked};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_db::appointments::AppointmentHold as HoldRow;
use voxanne_domain::{CallId, ContactId, HoldId, OrgId, PractitionerId, ServiceId};

/// A hold as the API shows it (the row is the database's).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AppointmentHold {
    pub id: HoldId,
    pub org_id: OrgId,
    pub contact_id: Option<ContactId>,
    pub call_id: Option<CallId>,
    pub resource: String,
    /// The service it is for, if any.
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// After this instant the hold blocks nothing and cannot be confirmed.
    pub expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<HoldRow> for AppointmentHold {
    fn from(row: HoldRow) -> Self {
        Self {
            id: row.id,
            org_id: row.org_id,
            contact_id: row.contact_id,
            call_id: row.call_id,
            resource: row.resource,
            service_id: row.service_id,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            expires_at: row.expires_at,
            created_at: row.created_at,
        }
    }
}

/// The live (unexpired) holds, by start time, keyset-paginated.
#[utoipa::path(get, path = "/appointment-holds", tag = "appointments", params(PageParams), responses((status = 200, body = Page<AppointmentHold>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<Page<AppointmentHold>>, ApiError> {
    let (cursor, limit) = params.parse()?;
    let mut rows = tx
        .list_live_holds(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |h| Cursor {
            at: h.starts_at,
            id: h.id.as_uuid(),
        })
        .map(AppointmentHold::from),
    ))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "resource": "default",
    "starts_at": "2031-03-04T17:00:00Z",
    "ends_at": "2031-03-04T17:30:00Z",
    "ttl_seconds": 120
}))]
pub struct NewHold {
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub contact_id: Option<voxanne_domain::ContactId>,
    #[serde(default)]
    pub call_id: Option<voxanne_domain::CallId>,
    /// Default `default`. Not with `practitioner_id`.
    #[serde(default)]
    pub resource: Option<String>,
    /// The practitioner held (their resource is what is held).
    #[serde(default)]
    pub practitioner_id: Option<PractitionerId>,
    /// The service held; the practitioner must give it.
    #[serde(default)]
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    /// Default: the service's length.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// 1 to 900, default 120.
    #[serde(default)]
    pub ttl_seconds: Option<u32>,
}

/// Holds a slot for `ttl_seconds`.
#[utoipa::path(post, path = "/appointment-holds", tag = "appointments", request_body = NewHold,
    responses((status = 201, body = AppointmentHold),
              (status = 409, description = "the slot overlaps an appointment or a live hold: `slot_taken`", body = crate::openapi::ErrorBody)))]
pub async fn create(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewHold>,
) -> Result<(StatusCode, Json<AppointmentHold>), ApiError> {
    let slot = slot_request(
        &mut tx,
        Asked {
            contact_id: body.contact_id,
            call_id: body.call_id,
            resource: body.resource.as_deref(),
            practitioner_id: body.practitioner_id,
            service_id: body.service_id,
            starts_at: body.starts_at,
            ends_at: body.ends_at,
        },
    )
    .await?;
    let ttl = voxanne_domain::booking::hold_seconds(body.ttl_seconds)?;
    let m = *tx.membership();
    let hold = tx
        .insert_hold(&slot, ttl)
        .await
        .map_err(|e| ApiError::booking(&m, ("appointment_holds", Uuid::nil()), e))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(hold.into())))
}

/// Turns a live hold into an appointment, atomically. `Idempotency-Key` replays the first
/// response to the same request.
#[utoipa::path(post, path = "/appointment-holds/{id}/confirm", tag = "appointments",
    params(("id" = Uuid, Path, description = "the hold's id"),
           ("Idempotency-Key" = Option<String>, Header, description = "replays the first response to the same request")),
    responses((status = 201, body = Appointment),
              (status = 409, description = "confirmed already (`hold_already_confirmed`) or the slot is taken (`slot_taken`)", body = crate::openapi::ErrorBody),
              (status = 410, description = "the hold has expired: `hold_expired`", body = crate::openapi::ErrorBody)))]
pub async fn confirm(
    Tenant(mut tx): Tenant,
    key: IdempotencyKey,
    AppPath(id): AppPath<HoldId>,
) -> Result<Response, ApiError> {
    let request = json!({ "op": "confirm_hold", "hold_id": id });
    if let Some(replay) = key.claim(&mut tx, &request).await? {
        return Ok(replay);
    }
    let m = *tx.membership();
    let appointment = tx
        .confirm_hold(id, None)
        .await
        .map_err(|e| ApiError::booking(&m, ("appointment_holds", id.as_uuid()), e))?;
    let response = key
        .respond(
            &mut tx,
            StatusCode::CREATED,
            &Appointment::from(appointment),
        )
        .await?;
    tx.commit().await?;
    Ok(response)
}

/// Releases a hold.
#[utoipa::path(delete, path = "/appointment-holds/{id}", tag = "appointments",
    params(("id" = Uuid, Path, description = "the hold's id")),
    responses((status = 204, description = "released")))]
pub async fn release(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<HoldId>,
) -> Result<Response, ApiError> {
    if !tx.delete_hold(id).await? {
        return Err(ApiError::missing(
            tx.membership(),
            "appointment_holds",
            "id",
            id.as_uuid(),
        ));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(confirm))
        .routes(routes!(release))
}
