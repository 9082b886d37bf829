//! Free slots: opening hours (in the clinic's time zone) minus appointments, live holds,
//! closures and linked calendars' busy times, on a grid of the slot's length from the start
//! of each opening interval; for one resource, or for every practitioner giving a service.

use crate::error::ApiError;
use crate::extract::{AppQuery, Tenant};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_domain::availability::Span;
use voxanne_domain::booking::{self, SlotRefusal};
use voxanne_domain::{PractitionerId, ServiceId};

const MAX_RANGE: Duration = Duration::days(31);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AvailabilityParams {
    /// Start of the window: RFC 3339, or a date (start of day, UTC).
    #[param(required = true)]
    from: Option<String>,
    /// End of the window, at most 31 days after `from`: RFC 3339, or a date (included).
    #[param(required = true)]
    to: Option<String>,
    /// Slot length in minutes, 5 to 480; required unless `service_id` gives it.
    #[param(value_type = Option<u32>)]
    duration: Option<String>,
    /// One resource's times (default `default`, unless a service or practitioner is asked).
    resource: Option<String>,
    /// The times of every practitioner who gives this service, of its length, with its
    /// buffer kept free after each.
    #[param(value_type = Option<String>, format = Uuid)]
    service_id: Option<String>,
    /// Only this practitioner's times.
    #[param(value_type = Option<String>, format = Uuid)]
    practitioner_id: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Slot {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The resource to book it on.
    pub resource: String,
    /// The practitioner the resource is, if one is.
    pub practitioner_id: Option<PractitionerId>,
    pub practitioner_name: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Availability {
    /// The clinic's IANA time zone, in which the opening hours are read.
    pub time_zone: String,
    /// The resource asked for (none when the times are a service's or a practitioner's).
    pub resource: Option<String>,
    pub service_id: Option<ServiceId>,
    /// Minutes.
    pub duration: u32,
    /// Free slots, in time order; none in the past.
    pub slots: Vec<Slot>,
}

fn required<'a>(field: &str, value: &'a Option<String>) -> Result<&'a str, ApiError> {
    value
        .as_deref()
        .ok_or_else(|| ApiError::validation(field, "required"))
}

fn uuid_param(field: &'static str, value: &Option<String>) -> Result<Option<Uuid>, ApiError> {
    value
        .as_deref()
        .map(|v| {
            Uuid::parse_str(v.trim()).map_err(|_| ApiError::validation(field, "must be a UUID"))
        })
        .transpose()
}

/// Free slots in `[from, to)`: of `duration` minutes for one resource, or of a service's
/// length for each practitioner who gives it (or the one asked for). Opening hours (the
/// practitioner's, their location's or the clinic's) minus appointments, live holds,
/// closures and the busy times of linked calendars.
#[utoipa::path(get, path = "/availability", tag = "appointments", params(AvailabilityParams), responses((status = 200, body = Availability)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<AvailabilityParams>,
) -> Result<Json<Availability>, ApiError> {
    let (from, to) = match crate::fields::time_range(
        Some(required("from", &params.from)?),
        Some(required("to", &params.to)?),
    )? {
        (Some(from), Some(to)) => (from, to),
        _ => return Err(ApiError::internal("a required time bound went missing")),
    };
    if to - from > MAX_RANGE {
        return Err(ApiError::validation("to", "at most 31 days after `from`"));
    }
    let service_id = uuid_param("service_id", &params.service_id)?.map(ServiceId::from);
    let practitioner_id =
        uuid_param("practitioner_id", &params.practitioner_id)?.map(PractitionerId::from);
    if params.resource.is_some() && (service_id.is_some() || practitioner_id.is_some()) {
        return Err(ApiError::validation(
            "resource",
            "not with service_id or practitioner_id (they name the resources)",
        ));
    }
    let m = *tx.membership();
    let (length, buffer) = match service_id {
        Some(id) => {
            let service = tx.service_length(id).await?.ok_or_else(|| {
                ApiError::invalid_reference(&m, "service_id", "services", id.into())
            })?;
            if !service.active {
                return Err(ApiError::validation(
                    "service_id",
                    "the service is not offered",
                ));
            }
            (
                Duration::minutes(i64::from(service.duration_minutes)),
                Duration::minutes(i64::from(service.buffer_minutes)),
            )
        }
        None => {
            let duration = required("duration", &params.duration)?
                .parse::<u32>()
                .map_err(|_| SlotRefusal::Length)?;
            (booking::slot_length(u64::from(duration))?, Duration::zero())
        }
    };
    let resources = if service_id.is_some() || practitioner_id.is_some() {
        if let Some(p) = practitioner_id {
            if tx.bookables(None, Some(p)).await?.is_empty() {
                return Err(ApiError::invalid_reference(
                    &m,
                    "practitioner_id",
                    "practitioners",
                    p.into(),
                ));
            }
        }
        tx.bookables(service_id, practitioner_id)
            .await?
            .into_iter()
            .map(|b| (b.resource.clone(), Some(b)))
            .collect()
    } else {
        vec![(
            booking::resource(params.resource.as_deref())?.to_owned(),
            None,
        )]
    };
    let window = Span {
        start: from,
        end: to,
    };
    let offers = tx.offers(&resources, window, length, buffer).await?;
    let org = tx.org();
    tx.commit().await?;
    if !offers.stale_calendars.is_empty() {
        tracing::warn!(org_id = %org, calendars = ?offers.stale_calendars,
            "availability answered from calendar busy times that are not current");
    }
    Ok(Json(Availability {
        time_zone: offers.time_zone,
        resource: (service_id.is_none() && practitioner_id.is_none())
            .then(|| resources.first().map(|(r, _)| r.clone()))
            .flatten(),
        service_id,
        duration: u32::try_from(length.num_minutes()).unwrap_or(0),
        slots: offers
            .offers
            .into_iter()
            .map(|o| Slot {
                starts_at: o.span.start,
                ends_at: o.span.end,
                resource: o.resource,
                practitioner_id: o.practitioner.as_ref().map(|p| p.practitioner_id),
                practitioner_name: o.practitioner.map(|p| p.name),
            })
            .collect(),
    }))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new().routes(routes!(get))
}
