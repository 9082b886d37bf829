//! The scheduling model as availability reads it (migrations/0018): whose hours a resource
//! has (its practitioner's, else their location's, else the clinic's), the closures that cut
//! days out of them, and which practitioners give a service. The rows' own CRUD is
//! `practitioners.rs`.

use crate::{DbError, TenantTx};
use chrono::{Duration, NaiveDate, NaiveTime, TimeZone};
use chrono_tz::Tz;
use voxanne_domain::availability::{OpeningHours, Span};
use voxanne_domain::{PractitionerId, ServiceId};

/// A resource's own hours, when its practitioner or their location sets them.
#[derive(Debug, Clone, PartialEq)]
pub enum ResourceHours {
    /// No practitioner or location sets them: the clinic's.
    Clinic,
    /// Its practitioner's or their location's.
    Own(OpeningHours),
    /// Its practitioner is inactive: offered to nobody.
    Inactive,
}

/// Someone who can be booked: a practitioner (their resource is the booking key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bookable {
    pub practitioner_id: PractitionerId,
    pub name: String,
    pub resource: String,
}

/// What booking a service takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLength {
    pub id: ServiceId,
    pub name: String,
    pub duration_minutes: i32,
    pub buffer_minutes: i32,
    pub active: bool,
}

/// The instant local midnight of `day` is in `tz` (the first instant of the day, if a DST
/// change skips midnight).
fn day_start(tz: Tz, day: NaiveDate) -> Option<chrono::DateTime<chrono::Utc>> {
    let local = day.and_time(NaiveTime::MIN);
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl TenantTx {
    /// Whose hours `resource` has.
    pub async fn resource_hours(&mut self, resource: &str) -> Result<ResourceHours, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"SELECT p.active, coalesce(p.opening_hours, l.opening_hours) AS hours
                 FROM practitioners p
                 LEFT JOIN locations l ON l.org_id = p.org_id AND l.id = p.location_id
                WHERE p.org_id = $1 AND p.resource = $2"#,
            org,
            resource
        )
        .fetch_optional(self.conn())
        .await?;
        Ok(match row {
            None => ResourceHours::Clinic,
            Some(row) if !row.active => ResourceHours::Inactive,
            Some(row) => match row.hours {
                None => ResourceHours::Clinic,
                Some(hours) => ResourceHours::Own(
                    serde_json::from_value(hours).map_err(|e| DbError::Corrupt(e.to_string()))?,
                ),
            },
        })
    }

    /// The closures of the clinic and of `resource`'s practitioner that touch `window`, as
    /// spans of whole local days in `tz`.
    pub async fn closure_spans(
        &mut self,
        resource: &str,
        window: Span,
        tz: Tz,
    ) -> Result<Vec<Span>, DbError> {
        let org = self.org().as_uuid();
        let first = window.start.with_timezone(&tz).date_naive() - Duration::days(1);
        let last = window.end.with_timezone(&tz).date_naive() + Duration::days(1);
        let rows = sqlx::query!(
            r#"SELECT c.starts_on, c.ends_on FROM closures c
                WHERE c.org_id = $1 AND c.ends_on >= $3 AND c.starts_on <= $4
                  AND (c.practitioner_id IS NULL
                       OR c.practitioner_id = (SELECT p.id FROM practitioners p
                                                WHERE p.org_id = $1 AND p.resource = $2))
                ORDER BY c.starts_on"#,
            org,
            resource,
            first,
            last
        )
        .fetch_all(self.conn())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let start = day_start(tz, row.starts_on)?;
                let end = day_start(tz, row.ends_on.succ_opt()?)?;
                Some(Span { start, end })
            })
            .filter(|s| s.overlaps(&window))
            .collect())
    }

    /// The active practitioners who can be booked, by name: those who give `service` (all
    /// of them without one), and only `practitioner` when it is named.
    pub async fn bookables(
        &mut self,
        service: Option<ServiceId>,
        practitioner: Option<PractitionerId>,
    ) -> Result<Vec<Bookable>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as!(
            Bookable,
            r#"SELECT p.id AS "practitioner_id: PractitionerId", p.name, p.resource
                 FROM practitioners p
                WHERE p.org_id = $1 AND p.active
                  AND ($2::uuid IS NULL OR EXISTS (
                        SELECT 1 FROM practitioner_services ps
                         WHERE ps.org_id = p.org_id AND ps.practitioner_id = p.id
                           AND ps.service_id = $2))
                  AND ($3::uuid IS NULL OR p.id = $3)
                ORDER BY p.name, p.id"#,
            org,
            service.map(uuid::Uuid::from),
            practitioner.map(uuid::Uuid::from)
        )
        .fetch_all(self.conn())
        .await?)
    }

    /// A service's length and buffer; `None` when the org has no such service.
    pub async fn service_length(
        &mut self,
        id: ServiceId,
    ) -> Result<Option<ServiceLength>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as!(
            ServiceLength,
            r#"SELECT id AS "id: ServiceId", name, duration_minutes, buffer_minutes, active
                 FROM services WHERE org_id = $1 AND id = $2"#,
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?)
    }

    /// The clinic's active services, by name (the agent's list).
    pub async fn active_services(&mut self) -> Result<Vec<ServiceLength>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as!(
            ServiceLength,
            r#"SELECT id AS "id: ServiceId", name, duration_minutes, buffer_minutes, active
                 FROM services WHERE org_id = $1 AND active ORDER BY name, id"#,
            org
        )
        .fetch_all(self.conn())
        .await?)
    }
}

/// A free time of one bookable resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// `[start, start + length)`: the appointment (its buffer is kept free after it).
    pub span: Span,
    pub resource: String,
    /// The practitioner the resource is, if one is.
    pub practitioner: Option<Bookable>,
}

/// Free times, and the calendars whose busy times were not current when they were read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Offers {
    pub offers: Vec<Offer>,
    pub time_zone: String,
    pub stale_calendars: Vec<voxanne_domain::CalendarConnectionId>,
}

impl TenantTx {
    /// The free times of `length` (plus `buffer` kept free after each) in `window` for each
    /// of `resources`, in time order: each resource's opening hours minus its appointments,
    /// live holds, closures and linked calendars' busy times (`schedule`). Times before the
    /// database's clock are never offered.
    pub async fn offers(
        &mut self,
        resources: &[(String, Option<Bookable>)],
        window: Span,
        length: Duration,
        buffer: Duration,
    ) -> Result<Offers, DbError> {
        let org = self.org().as_uuid();
        let time_zone = sqlx::query_scalar!(
            "SELECT time_zone FROM agent_configurations WHERE org_id = $1",
            org
        )
        .fetch_optional(self.conn())
        .await?
        .unwrap_or_else(|| "UTC".to_owned());
        let mut all = Offers {
            time_zone,
            ..Offers::default()
        };
        for (resource, practitioner) in resources {
            let schedule = self.schedule(resource, window).await?;
            let tz: Tz = schedule.time_zone.parse().map_err(|_| {
                DbError::Corrupt(format!("an unknown time zone `{}`", schedule.time_zone))
            })?;
            all.stale_calendars.extend(schedule.stale_calendars);
            let Some(hours) = &schedule.opening_hours else {
                continue;
            };
            let slots = voxanne_domain::availability::free_slots(
                hours,
                tz,
                window,
                length + buffer,
                &schedule.busy,
                schedule.now,
            );
            all.offers.extend(slots.into_iter().map(|s| Offer {
                span: Span {
                    start: s.start,
                    end: s.start + length,
                },
                resource: resource.clone(),
                practitioner: practitioner.clone(),
            }));
        }
        all.offers
            .sort_by(|a, b| (a.span.start, &a.resource).cmp(&(b.span.start, &b.resource)));
        all.stale_calendars.sort();
        all.stale_calendars.dedup();
        Ok(all)
    }
}
