//! Free slots: the clinic's opening hours (in its time zone) minus appointments and live
//! holds, on a grid of the asked duration from the start of each opening interval.

use crate::error::ApiError;
use crate::extract::{AppQuery, Tenant};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_domain::availability::{free_slots, Span};
use voxanne_domain::booking::{self, SlotRefusal};

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
    /// Slot length in minutes, 5 to 480.
    #[param(required = true, value_type = u32)]
    duration: Option<String>,
    /// Default `default`.
    resource: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Slot {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Availability {
    /// The clinic's IANA time zone, in which the opening hours are read.
    pub time_zone: String,
    pub resource: String,
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

/// Free slots of `duration` minutes in `[from, to)`.
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
    let duration = required("duration", &params.duration)?
        .parse::<u32>()
        .map_err(|_| SlotRefusal::Length)?;
    let length = booking::slot_length(u64::from(duration))?;
    let resource = booking::resource(params.resource.as_deref())?;
    let window = Span {
        start: from,
        end: to,
    };
    let schedule = tx.schedule(resource, window).await?;
    let org = tx.org();
    tx.commit().await?;
    if !schedule.stale_calendars.is_empty() {
        tracing::warn!(org_id = %org, resource, calendars = ?schedule.stale_calendars,
            "availability answered from calendar busy times that are not current");
    }
    let tz: Tz = schedule.time_zone.parse().map_err(|_| {
        ApiError::internal(format!(
            "agent configuration has an unknown time zone `{}`",
            schedule.time_zone
        ))
    })?;
    let slots = match &schedule.opening_hours {
        Some(hours) => free_slots(hours, tz, window, length, &schedule.busy, schedule.now),
        None => Vec::new(),
    };
    Ok(Json(Availability {
        time_zone: schedule.time_zone,
        resource: resource.to_owned(),
        duration,
        slots: slots
            .into_iter()
            .map(|s| Slot {
                starts_at: s.start,
                ends_at: s.end,
            })
            .collect(),
    }))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new().routes(routes!(get))
}
