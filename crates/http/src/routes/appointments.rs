//! Appointments: booking, listing, rescheduling, cancelling. Front-desk work: every member,
//! staff included, may do it. Overlaps are refused by the database (`slot_taken`).

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::found::found;
use crate::idempotency::IdempotencyKey;
use crate::pagination::{parse_page, Cursor, Page};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_db::appointments::{Appointment as AppointmentRow, SlotRequest};
use voxanne_db::practitioners::Practitioner;
use voxanne_db::TenantTx;
use voxanne_domain::booking::{self, SlotRefusal};
use voxanne_domain::{
    AppointmentId, AppointmentStatus, CalendarConnectionId, CalendarProvider, CalendarWriteStatus,
    CallId, ContactId, HoldId, OrgId, PractitionerId, ServiceId,
};

/// An appointment as the API shows it (the row is the database's).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Appointment {
    pub id: AppointmentId,
    pub org_id: OrgId,
    pub contact_id: Option<ContactId>,
    pub call_id: Option<CallId>,
    /// The hold this appointment was confirmed from, if any.
    pub hold_id: Option<HoldId>,
    /// What is booked: a practitioner's resource, a room, or `default`.
    pub resource: String,
    /// The service it was booked as, if any.
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub notes: Option<String>,
    /// When the patient confirmed it (answered "C" to its confirmation or a reminder).
    pub confirmed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Its event in each of the clinic's linked calendars of its resource (only in
    /// `GET /appointments/{id}`): `pending` until written, `failed` with the provider's
    /// message when the calendar refused it for good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar_events: Option<Vec<CalendarEvent>>,
}

/// An appointment's event in one linked calendar.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CalendarEvent {
    pub connection_id: CalendarConnectionId,
    pub provider: CalendarProvider,
    pub status: CalendarWriteStatus,
    /// The provider's id of the event, once written.
    pub event_id: Option<String>,
    /// Why the last write failed.
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl From<voxanne_db::calendar_sync::CalendarEvent> for CalendarEvent {
    fn from(e: voxanne_db::calendar_sync::CalendarEvent) -> Self {
        Self {
            connection_id: e.connection_id,
            provider: e.provider,
            status: e.status,
            event_id: e.event_id,
            error: e.last_error,
            updated_at: e.updated_at,
        }
    }
}

impl From<AppointmentRow> for Appointment {
    fn from(row: AppointmentRow) -> Self {
        Self {
            id: row.id,
            org_id: row.org_id,
            contact_id: row.contact_id,
            call_id: row.call_id,
            hold_id: row.hold_id,
            resource: row.resource,
            service_id: row.service_id,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            status: row.status,
            notes: row.notes,
            confirmed_at: row.confirmed_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            calendar_events: None,
        }
    }
}

/// What a new appointment or hold asks for, as its body says it.
pub(crate) struct Asked<'a> {
    pub contact_id: Option<ContactId>,
    pub call_id: Option<CallId>,
    pub resource: Option<&'a str>,
    pub practitioner_id: Option<PractitionerId>,
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// Validates what a new appointment or hold asks for: the practitioner (or resource) and
/// the service must be the clinic's, the practitioner must give the service, and without an
/// `ends_at` the service's length sets it; then the booking rule.
pub(crate) async fn slot_request(
    tx: &mut TenantTx,
    asked: Asked<'_>,
) -> Result<SlotRequest, ApiError> {
    let m = *tx.membership();
    // Ids first: another clinic's id is a probe whatever else is wrong with the body.
    let practitioner = match (asked.resource, asked.practitioner_id) {
        (resource, Some(id)) => {
            let p = tx.find::<Practitioner>(id).await?.ok_or_else(|| {
                ApiError::invalid_reference(&m, "practitioner_id", "practitioners", id.as_uuid())
            })?;
            if resource.is_some() {
                return Err(ApiError::validation(
                    "practitioner_id",
                    "give a practitioner_id or a resource, not both",
                ));
            }
            Some(p)
        }
        (Some(resource), None) => tx.practitioner_of_resource(resource).await?,
        (None, None) => None,
    };
    let service = match asked.service_id {
        Some(id) => Some(tx.service_length(id).await?.ok_or_else(|| {
            ApiError::invalid_reference(&m, "service_id", "services", id.as_uuid())
        })?),
        None => None,
    };
    if let (Some(p), Some(s)) = (&practitioner, &service) {
        if !p.service_ids.contains(&s.id) {
            return Err(ApiError::validation(
                "service_id",
                format!("{} does not give {}", p.name, s.name),
            ));
        }
    }
    let ends_at = match (asked.ends_at, &service) {
        (Some(ends_at), _) => ends_at,
        (None, Some(s)) => {
            asked.starts_at + chrono::Duration::minutes(i64::from(s.duration_minutes))
        }
        (None, None) => {
            return Err(ApiError::validation(
                "ends_at",
                "required unless a service_id gives the length",
            ))
        }
    };
    let resource = practitioner.as_ref().map(|p| p.resource.as_str());
    let slot = booking::requested_slot(resource.or(asked.resource), asked.starts_at, ends_at)?;
    Ok(SlotRequest::new(asked.contact_id, asked.call_id, slot).for_service(asked.service_id))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Appointments starting at or after: RFC 3339, or a date (start of day, UTC).
    from: Option<String>,
    /// Appointments starting before: RFC 3339, or a date (that whole day included).
    to: Option<String>,
    /// One contact's appointments.
    #[param(value_type = Option<String>, format = Uuid)]
    contact_id: Option<String>,
    /// The appointments a call made.
    #[param(value_type = Option<String>, format = Uuid)]
    call_id: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// The clinic's appointments (cancelled ones included) by start time, keyset-paginated.
#[utoipa::path(get, path = "/appointments", tag = "appointments", params(ListParams), responses((status = 200, body = Page<Appointment>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<Page<Appointment>>, ApiError> {
    let (from, to) = crate::fields::time_range(params.from.as_deref(), params.to.as_deref())?;
    let (cursor, limit) = parse_page(params.cursor.as_deref(), params.limit.as_deref())?;
    let of = voxanne_db::appointments::AppointmentsOf {
        contact: crate::fields::uuid_param("contact_id", params.contact_id.as_deref())?
            .map(ContactId::from_uuid),
        call: crate::fields::uuid_param("call_id", params.call_id.as_deref())?
            .map(CallId::from_uuid),
    };
    let mut rows = tx
        .list_appointments(from, to, of, cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |a| Cursor {
            at: a.starts_at,
            id: a.id.as_uuid(),
        })
        .map(Appointment::from),
    ))
}

#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "resource": "default",
    "starts_at": "2031-03-03T17:00:00Z",
    "ends_at": "2031-03-03T17:30:00Z",
    "notes": "Annual check-up"
}))]
pub struct NewAppointment {
    /// A contact of this clinic.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Uuid)]
    pub contact_id: Option<ContactId>,
    /// The call that booked it, of this clinic.
    #[serde(default)]
    pub call_id: Option<CallId>,
    /// What is booked (a room, a practitioner's resource); default `default`. Not with
    /// `practitioner_id`.
    #[serde(default)]
    pub resource: Option<String>,
    /// The practitioner booked (their resource is what is booked).
    #[serde(default)]
    pub practitioner_id: Option<PractitionerId>,
    /// The service booked; the practitioner must give it. Its length is the default length.
    #[serde(default)]
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    /// After `starts_at`, at most 24 hours later. Default: the service's length.
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// Books a slot. `Idempotency-Key` replays the first response to the same request.
#[utoipa::path(post, path = "/appointments", tag = "appointments", request_body = NewAppointment,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response to the same request")),
    responses((status = 201, body = Appointment),
              (status = 409, description = "the slot overlaps an appointment or a live hold: `slot_taken`", body = crate::openapi::ErrorBody)))]
pub async fn create(
    Tenant(mut tx): Tenant,
    key: IdempotencyKey,
    AppJson(body): AppJson<NewAppointment>,
) -> Result<Response, ApiError> {
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
    booking::notes(body.notes.as_deref())?;
    let request = json!({ "op": "create_appointment", "body": body });
    if let Some(replay) = key.claim(&mut tx, &request).await? {
        return Ok(replay);
    }
    let m = *tx.membership();
    let appointment = tx
        .insert_appointment(&slot, body.notes.as_deref())
        .await
        .map_err(|e| ApiError::booking(&m, ("appointments", Uuid::nil()), e))?;
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

/// One appointment.
#[utoipa::path(get, path = "/appointments/{id}", tag = "appointments", params(("id" = Uuid, Path, description = "the appointment's id")), responses((status = 200, body = Appointment)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<AppointmentId>,
) -> Result<Json<Appointment>, ApiError> {
    let appointment = found::<AppointmentRow>(&mut tx, id).await?;
    let events = tx.appointment_calendar_events(id).await?;
    tx.commit().await?;
    Ok(Json(Appointment {
        calendar_events: Some(events.into_iter().map(CalendarEvent::from).collect()),
        ..appointment.into()
    }))
}

/// `Some(None)` for an explicit `null`, `None` when absent.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "starts_at": "2031-03-03T18:00:00Z",
    "ends_at": "2031-03-03T18:30:00Z",
    "notes": "Moved at the patient's request"
}))]
pub struct AppointmentChange {
    #[serde(default)]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
    /// `null` clears the notes.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
}

/// Reschedules a booked appointment and/or changes its notes.
#[utoipa::path(patch, path = "/appointments/{id}", tag = "appointments", request_body = AppointmentChange,
    params(("id" = Uuid, Path, description = "the appointment's id")),
    responses((status = 200, body = Appointment),
              (status = 409, description = "the new slot is taken (`slot_taken`), or the appointment is not booked (`appointment_not_booked`)", body = crate::openapi::ErrorBody)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<AppointmentId>,
    AppJson(body): AppJson<AppointmentChange>,
) -> Result<Json<Appointment>, ApiError> {
    if let (Some(starts_at), Some(ends_at)) = (body.starts_at, body.ends_at) {
        booking::span(starts_at, ends_at)?;
    }
    booking::notes(body.notes.as_ref().and_then(|n| n.as_deref()))?;
    let m = *tx.membership();
    let appointment = tx
        .reschedule_appointment(
            id,
            body.starts_at,
            body.ends_at,
            body.notes.as_ref().map(|n| n.as_deref()),
        )
        .await
        .map_err(|e| ApiError::booking(&m, ("appointments", id.as_uuid()), e))?;
    if appointment.ends_at - appointment.starts_at > booking::MAX_LENGTH {
        return Err(SlotRefusal::TooLong.into());
    }
    tx.commit().await?;
    Ok(Json(appointment.into()))
}

/// Cancels an appointment: its slot is free again. Cancelling a cancelled one is a no-op.
#[utoipa::path(post, path = "/appointments/{id}/cancel", tag = "appointments",
    params(("id" = Uuid, Path, description = "the appointment's id")),
    responses((status = 200, body = Appointment),
              (status = 409, description = "completed or no-show: `appointment_not_booked`", body = crate::openapi::ErrorBody)))]
pub async fn cancel(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<AppointmentId>,
) -> Result<Json<Appointment>, ApiError> {
    let m = *tx.membership();
    let appointment = tx
        .cancel_appointment(id)
        .await
        .map_err(|e| ApiError::booking(&m, ("appointments", id.as_uuid()), e))?;
    tx.commit().await?;
    Ok(Json(appointment.into()))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update))
        .routes(routes!(cancel))
}
