//! The clinic's scheduling model: locations, practitioners (and the services each gives),
//! services, closures. Everyone reads it; admins change it. Availability and the agent read
//! it through `voxanne_db::scheduling`.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::{nullable, optional_text, text};
use crate::found::found;
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::practitioners::{
    Closure as ClosureRow, Location as LocationRow, LocationFields,
    Practitioner as PractitionerRow, PractitionerFields, ScheduleModelError, Service as ServiceRow,
    ServiceFields,
};
use voxanne_db::Membership;
use voxanne_domain::OpeningHours;
use voxanne_domain::{ClosureId, LocationId, PractitionerId, ServiceId};

const ADMINS: &str =
    "the clinic's practitioners, services, locations and closures are set by admins";

/// A refused change, as the API answers it.
fn refused(m: &Membership, e: ScheduleModelError) -> ApiError {
    match e {
        ScheduleModelError::InvalidReference { field, table, id } => {
            ApiError::invalid_reference(m, field, table, id)
        }
        ScheduleModelError::Taken(field) => ApiError::Conflict {
            code: match field {
                "resource" => "practitioner_exists",
                _ => "name_taken",
            },
            message: format!("this {field} is already taken in the clinic"),
        },
        ScheduleModelError::LocationInUse => ApiError::Conflict {
            code: "location_in_use",
            message: "practitioners are still at this location: move them first".into(),
        },
        ScheduleModelError::ServiceInUse => ApiError::Conflict {
            code: "service_in_use",
            message: "appointments were booked as this service: deactivate it instead".into(),
        },
        ScheduleModelError::HasAppointments => ApiError::Conflict {
            code: "practitioner_has_appointments",
            message: "the practitioner has appointments to come: cancel or move them, or deactivate the practitioner".into(),
        },
        ScheduleModelError::Db(e) => e.into(),
    }
}

fn hours_out(hours: Option<sqlx::types::Json<OpeningHours>>) -> Option<OpeningHours> {
    hours.map(|h| h.0)
}

// ---- locations ----

/// A place the clinic works from.
#[derive(Debug, Serialize, ToSchema)]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    pub address: Option<String>,
    /// `{"mon": [["09:00","17:00"]], …}`; `null`: the clinic's.
    #[schema(value_type = Option<Object>)]
    pub opening_hours: Option<OpeningHours>,
    pub created_at: DateTime<Utc>,
}

impl From<LocationRow> for Location {
    fn from(row: LocationRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            address: row.address,
            opening_hours: hours_out(row.opening_hours),
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Main street", "address": "1 Main St", "opening_hours": {"mon": [["08:00", "16:00"]]}}))]
pub struct NewLocation {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    #[schema(max_length = 500)]
    address: Option<String>,
    #[schema(value_type = Option<Object>)]
    opening_hours: Option<OpeningHours>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"opening_hours": null}))]
pub struct LocationPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 500)]
    address: Option<Option<String>>,
    /// `null`: the clinic's.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    opening_hours: Option<Option<OpeningHours>>,
}

fn location_fields(
    name: &str,
    address: Option<&str>,
    opening_hours: Option<OpeningHours>,
) -> Result<LocationFields, ApiError> {
    Ok(LocationFields {
        name: text("name", name, 1, 200)?,
        address: optional_text("address", address, 500)?,
        opening_hours,
    })
}

#[utoipa::path(get, path = "/locations", tag = "scheduling", params(PageParams), responses((status = 200, body = Page<Location>)))]
pub async fn list_locations(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Location>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_locations(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |r| Cursor {
            at: r.created_at,
            id: r.id.as_uuid(),
        })
        .map(Location::from),
    ))
}

/// Admins only.
#[utoipa::path(post, path = "/locations", tag = "scheduling", request_body = NewLocation, responses((status = 201, body = Location), (status = 409, description = "`name_taken`", body = crate::openapi::ErrorBody)))]
pub async fn create_location(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewLocation>,
) -> Result<(StatusCode, Json<Location>), ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let fields = location_fields(&body.name, body.address.as_deref(), body.opening_hours)?;
    let m = *tx.membership();
    let row = tx
        .insert_location(&fields)
        .await
        .map_err(|e| refused(&m, e))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/locations/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 200, body = Location)))]
pub async fn get_location(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LocationId>,
) -> Result<Json<Location>, ApiError> {
    let row = found::<LocationRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only.
#[utoipa::path(patch, path = "/locations/{id}", tag = "scheduling", params(("id" = Uuid, Path)), request_body = LocationPatch, responses((status = 200, body = Location), (status = 409, description = "`name_taken`", body = crate::openapi::ErrorBody)))]
pub async fn update_location(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LocationId>,
    AppJson(patch): AppJson<LocationPatch>,
) -> Result<Json<Location>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let current = found::<LocationRow>(&mut tx, id).await?;
    let fields = location_fields(
        patch.name.as_deref().unwrap_or(&current.name),
        patch.address.unwrap_or(current.address).as_deref(),
        patch
            .opening_hours
            .unwrap_or_else(|| hours_out(current.opening_hours)),
    )?;
    let m = *tx.membership();
    let row = tx
        .update_location(id, &fields)
        .await
        .map_err(|e| refused(&m, e))?
        .ok_or_else(|| ApiError::missing(&m, "locations", "id", id.as_uuid()))?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only. A location practitioners are still at is kept (`location_in_use`).
#[utoipa::path(delete, path = "/locations/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted"), (status = 409, description = "`location_in_use`", body = crate::openapi::ErrorBody)))]
pub async fn delete_location(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LocationId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let m = *tx.membership();
    if !tx.delete_location(id).await.map_err(|e| refused(&m, e))? {
        return Err(ApiError::missing(&m, "locations", "id", id.as_uuid()));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- practitioners ----

/// Someone patients book: their `resource` is what their appointments book.
#[derive(Debug, Serialize, ToSchema)]
pub struct Practitioner {
    pub id: PractitionerId,
    pub name: String,
    /// The appointments' `resource` this practitioner is (fixed once created).
    pub resource: String,
    pub location_id: Option<LocationId>,
    /// `null`: their location's, else the clinic's.
    #[schema(value_type = Option<Object>)]
    pub opening_hours: Option<OpeningHours>,
    /// An inactive practitioner is offered to nobody; their appointments stay.
    pub active: bool,
    /// The services they give.
    pub service_ids: Vec<ServiceId>,
    pub created_at: DateTime<Utc>,
}

impl From<PractitionerRow> for Practitioner {
    fn from(row: PractitionerRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            resource: row.resource,
            location_id: row.location_id,
            opening_hours: hours_out(row.opening_hours),
            active: row.active,
            service_ids: row.service_ids,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Dr Lee", "service_ids": [], "opening_hours": {"tue": [["09:00", "13:00"]]}}))]
pub struct NewPractitioner {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// The booking key; default: made from the name (`Dr Lee` → `dr-lee`). An existing
    /// resource (appointments already booked on it) becomes this practitioner's.
    #[schema(min_length = 1, max_length = 100)]
    resource: Option<String>,
    location_id: Option<LocationId>,
    #[schema(value_type = Option<Object>)]
    opening_hours: Option<OpeningHours>,
    /// Default true.
    active: Option<bool>,
    /// The services they give. Default none.
    #[serde(default)]
    service_ids: Vec<ServiceId>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"active": false}))]
pub struct PractitionerPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    /// `null`: at no location.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, format = Uuid)]
    location_id: Option<Option<LocationId>>,
    /// `null`: their location's, else the clinic's.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    opening_hours: Option<Option<OpeningHours>>,
    active: Option<bool>,
    /// Replaces the services they give.
    service_ids: Option<Vec<ServiceId>>,
}

/// The booking key made from a name: lower case letters and digits, the rest as `-`.
fn resource_from(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out: String = out.trim_end_matches('-').chars().take(100).collect();
    if out.is_empty() {
        "practitioner".to_owned()
    } else {
        out
    }
}

const MAX_SERVICES: usize = 200;

fn services_field(ids: &[ServiceId]) -> Result<(), ApiError> {
    if ids.len() > MAX_SERVICES {
        return Err(ApiError::validation(
            "service_ids",
            format!("at most {MAX_SERVICES}"),
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/practitioners", tag = "scheduling", params(PageParams), responses((status = 200, body = Page<Practitioner>)))]
pub async fn list_practitioners(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Practitioner>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_practitioners(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |r| Cursor {
            at: r.created_at,
            id: r.id.as_uuid(),
        })
        .map(Practitioner::from),
    ))
}

/// Admins only.
#[utoipa::path(post, path = "/practitioners", tag = "scheduling", request_body = NewPractitioner, responses((status = 201, body = Practitioner), (status = 409, description = "another practitioner has the resource: `practitioner_exists`", body = crate::openapi::ErrorBody)))]
pub async fn create_practitioner(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewPractitioner>,
) -> Result<(StatusCode, Json<Practitioner>), ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let name = text("name", &body.name, 1, 200)?;
    let resource = match body.resource.as_deref() {
        Some(r) => text("resource", r, 1, 100)?,
        None => resource_from(&name),
    };
    services_field(&body.service_ids)?;
    let fields = PractitionerFields {
        name,
        location_id: body.location_id,
        opening_hours: body.opening_hours,
        active: body.active.unwrap_or(true),
    };
    let m = *tx.membership();
    let row = tx
        .insert_practitioner(&resource, &fields, &body.service_ids)
        .await
        .map_err(|e| refused(&m, e))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/practitioners/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 200, body = Practitioner)))]
pub async fn get_practitioner(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<PractitionerId>,
) -> Result<Json<Practitioner>, ApiError> {
    let row = found::<PractitionerRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only.
#[utoipa::path(patch, path = "/practitioners/{id}", tag = "scheduling", params(("id" = Uuid, Path)), request_body = PractitionerPatch, responses((status = 200, body = Practitioner)))]
pub async fn update_practitioner(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<PractitionerId>,
    AppJson(patch): AppJson<PractitionerPatch>,
) -> Result<Json<Practitioner>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let current = found::<PractitionerRow>(&mut tx, id).await?;
    if let Some(ids) = &patch.service_ids {
        services_field(ids)?;
    }
    let fields = PractitionerFields {
        name: text(
            "name",
            patch.name.as_deref().unwrap_or(&current.name),
            1,
            200,
        )?,
        location_id: patch.location_id.unwrap_or(current.location_id),
        opening_hours: patch
            .opening_hours
            .unwrap_or_else(|| hours_out(current.opening_hours)),
        active: patch.active.unwrap_or(current.active),
    };
    let m = *tx.membership();
    let row = tx
        .update_practitioner(id, &fields, patch.service_ids.as_deref())
        .await
        .map_err(|e| refused(&m, e))?
        .ok_or_else(|| ApiError::missing(&m, "practitioners", "id", id.as_uuid()))?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only. Their closures go with them; one with appointments to come is kept
/// (`practitioner_has_appointments`: deactivate them instead).
#[utoipa::path(delete, path = "/practitioners/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted"), (status = 409, description = "`practitioner_has_appointments`", body = crate::openapi::ErrorBody)))]
pub async fn delete_practitioner(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<PractitionerId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let m = *tx.membership();
    if !tx
        .delete_practitioner(id)
        .await
        .map_err(|e| refused(&m, e))?
    {
        return Err(ApiError::missing(&m, "practitioners", "id", id.as_uuid()));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- services ----

/// What patients book: how long it takes, and the time kept free after it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Service {
    pub id: ServiceId,
    pub name: String,
    pub duration_minutes: i32,
    /// Kept free after each appointment of the service.
    pub buffer_minutes: i32,
    /// An inactive service is offered to nobody.
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

impl From<ServiceRow> for Service {
    fn from(row: ServiceRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            duration_minutes: row.duration_minutes,
            buffer_minutes: row.buffer_minutes,
            active: row.active,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Cleaning", "duration_minutes": 30, "buffer_minutes": 10}))]
pub struct NewService {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// 5 to 480.
    #[schema(minimum = 5, maximum = 480)]
    duration_minutes: i64,
    /// 0 to 240, default 0.
    #[schema(minimum = 0, maximum = 240)]
    buffer_minutes: Option<i64>,
    /// Default true.
    active: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"active": false}))]
pub struct ServicePatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    #[schema(minimum = 5, maximum = 480)]
    duration_minutes: Option<i64>,
    #[schema(minimum = 0, maximum = 240)]
    buffer_minutes: Option<i64>,
    active: Option<bool>,
}

fn minutes(field: &str, value: i64, min: i64, max: i64) -> Result<i32, ApiError> {
    if !(min..=max).contains(&value) {
        return Err(ApiError::validation(
            field,
            format!("must be {min} to {max} minutes"),
        ));
    }
    i32::try_from(value).map_err(|_| ApiError::validation(field, "out of range"))
}

fn service_fields(
    name: &str,
    duration: i64,
    buffer: i64,
    active: bool,
) -> Result<ServiceFields, ApiError> {
    Ok(ServiceFields {
        name: text("name", name, 1, 200)?,
        duration_minutes: minutes("duration_minutes", duration, 5, 480)?,
        buffer_minutes: minutes("buffer_minutes", buffer, 0, 240)?,
        active,
    })
}

#[utoipa::path(get, path = "/services", tag = "scheduling", params(PageParams), responses((status = 200, body = Page<Service>)))]
pub async fn list_services(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Service>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_services(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |r| Cursor {
            at: r.created_at,
            id: r.id.as_uuid(),
        })
        .map(Service::from),
    ))
}

/// Admins only.
#[utoipa::path(post, path = "/services", tag = "scheduling", request_body = NewService, responses((status = 201, body = Service), (status = 409, description = "`name_taken`", body = crate::openapi::ErrorBody)))]
pub async fn create_service(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewService>,
) -> Result<(StatusCode, Json<Service>), ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let fields = service_fields(
        &body.name,
        body.duration_minutes,
        body.buffer_minutes.unwrap_or(0),
        body.active.unwrap_or(true),
    )?;
    let m = *tx.membership();
    let row = tx
        .insert_service(&fields)
        .await
        .map_err(|e| refused(&m, e))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/services/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 200, body = Service)))]
pub async fn get_service(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ServiceId>,
) -> Result<Json<Service>, ApiError> {
    let row = found::<ServiceRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only. A new length applies to bookings from now on.
#[utoipa::path(patch, path = "/services/{id}", tag = "scheduling", params(("id" = Uuid, Path)), request_body = ServicePatch, responses((status = 200, body = Service)))]
pub async fn update_service(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ServiceId>,
    AppJson(patch): AppJson<ServicePatch>,
) -> Result<Json<Service>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let current = found::<ServiceRow>(&mut tx, id).await?;
    let fields = service_fields(
        patch.name.as_deref().unwrap_or(&current.name),
        patch
            .duration_minutes
            .unwrap_or(i64::from(current.duration_minutes)),
        patch
            .buffer_minutes
            .unwrap_or(i64::from(current.buffer_minutes)),
        patch.active.unwrap_or(current.active),
    )?;
    let m = *tx.membership();
    let row = tx
        .update_service(id, &fields)
        .await
        .map_err(|e| refused(&m, e))?
        .ok_or_else(|| ApiError::missing(&m, "services", "id", id.as_uuid()))?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only. A service appointments were booked as is kept (`service_in_use`:
/// deactivate it instead).
#[utoipa::path(delete, path = "/services/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted"), (status = 409, description = "`service_in_use`", body = crate::openapi::ErrorBody)))]
pub async fn delete_service(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ServiceId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let m = *tx.membership();
    if !tx.delete_service(id).await.map_err(|e| refused(&m, e))? {
        return Err(ApiError::missing(&m, "services", "id", id.as_uuid()));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- closures ----

/// Whole days off, `starts_on` to `ends_on` inclusive, in the clinic's time zone.
#[derive(Debug, Serialize, ToSchema)]
pub struct Closure {
    pub id: ClosureId,
    /// `null`: the whole clinic is closed.
    pub practitioner_id: Option<PractitionerId>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<ClosureRow> for Closure {
    fn from(row: ClosureRow) -> Self {
        Self {
            id: row.id,
            practitioner_id: row.practitioner_id,
            starts_on: row.starts_on,
            ends_on: row.ends_on,
            reason: row.reason,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"starts_on": "2031-12-24", "ends_on": "2031-12-26", "reason": "Holidays"}))]
pub struct NewClosure {
    /// Absent: the whole clinic.
    practitioner_id: Option<PractitionerId>,
    starts_on: NaiveDate,
    /// On or after `starts_on`, at most 366 days later; default `starts_on`.
    ends_on: Option<NaiveDate>,
    #[schema(max_length = 200)]
    reason: Option<String>,
}

#[utoipa::path(get, path = "/closures", tag = "scheduling", params(PageParams), responses((status = 200, body = Page<Closure>)))]
pub async fn list_closures(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Closure>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_closures(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |r| Cursor {
            at: r.created_at,
            id: r.id.as_uuid(),
        })
        .map(Closure::from),
    ))
}

/// Admins only. Times in it are no longer offered; appointments already booked in it stay
/// (the clinic moves or cancels them).
#[utoipa::path(post, path = "/closures", tag = "scheduling", request_body = NewClosure, responses((status = 201, body = Closure)))]
pub async fn create_closure(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewClosure>,
) -> Result<(StatusCode, Json<Closure>), ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let ends_on = body.ends_on.unwrap_or(body.starts_on);
    let days = (ends_on - body.starts_on).num_days();
    if !(0..=366).contains(&days) {
        return Err(ApiError::validation(
            "ends_on",
            "must be on or after starts_on, at most 366 days later",
        ));
    }
    let reason = optional_text("reason", body.reason.as_deref(), 200)?;
    let m = *tx.membership();
    let row = tx
        .insert_closure(
            body.practitioner_id,
            body.starts_on,
            ends_on,
            reason.as_deref(),
        )
        .await
        .map_err(|e| refused(&m, e))?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

#[utoipa::path(get, path = "/closures/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 200, body = Closure)))]
pub async fn get_closure(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ClosureId>,
) -> Result<Json<Closure>, ApiError> {
    let row = found::<ClosureRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Admins only.
#[utoipa::path(delete, path = "/closures/{id}", tag = "scheduling", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted")))]
pub async fn delete_closure(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ClosureId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    crate::found::delete_found::<ClosureRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_locations, create_location))
        .routes(routes!(get_location, update_location, delete_location))
        .routes(routes!(list_practitioners, create_practitioner))
        .routes(routes!(
            get_practitioner,
            update_practitioner,
            delete_practitioner
        ))
        .routes(routes!(list_services, create_service))
        .routes(routes!(get_service, update_service, delete_service))
        .routes(routes!(list_closures, create_closure))
        .routes(routes!(get_closure, delete_closure))
}

#[cfg(test)]
mod tests {
    use super::resource_from;

    #[test]
    fn a_resource_is_made_from_the_name() {
        assert_eq!(resource_from("Dr Lee"), "dr-lee");
        assert_eq!(
            resource_from("  Dr. Ana-María  O'Neil "),
            "dr-ana-maría-o-neil"
        );
        assert_eq!(resource_from("!!!"), "practitioner");
        assert_eq!(resource_from(&"x".repeat(300)).len(), 100);
    }
}
