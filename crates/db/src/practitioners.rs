//! The scheduling model's own rows (migrations/0018): locations, practitioners and the
//! services they give, services, closures. What availability reads of them is
//! `scheduling.rs`.

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use uuid::Uuid;
use voxanne_domain::OpeningHours;
use voxanne_domain::{ClosureId, LocationId, PractitionerId, ServiceId};

/// A row of `locations`.
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub id: LocationId,
    pub name: String,
    pub address: Option<String>,
    /// `None`: the clinic's.
    pub opening_hours: Option<Json<OpeningHours>>,
    pub created_at: DateTime<Utc>,
}

/// What a location is made of.
#[derive(Debug, Clone)]
pub struct LocationFields {
    pub name: String,
    pub address: Option<String>,
    pub opening_hours: Option<OpeningHours>,
}

macro_rules! location_query {
    ($($query:tt)*) => {
        query_row!(
            Location,
            r#"id AS "id: LocationId", name, address,
               opening_hours AS "opening_hours: Json<OpeningHours>", created_at"#,
            $($query)*
        )
    };
}

tenant_row!(Location, LocationId, "locations", location_query);

/// A row of `practitioners`, with the services they give.
#[derive(Debug, Clone, PartialEq)]
pub struct Practitioner {
    pub id: PractitionerId,
    pub name: String,
    /// The appointments' resource this practitioner is (fixed once created).
    pub resource: String,
    pub location_id: Option<LocationId>,
    /// `None`: their location's, else the clinic's.
    pub opening_hours: Option<Json<OpeningHours>>,
    pub active: bool,
    /// By id.
    pub service_ids: Vec<ServiceId>,
    pub created_at: DateTime<Utc>,
}

/// What a practitioner is made of (their resource is set once, at creation).
#[derive(Debug, Clone)]
pub struct PractitionerFields {
    pub name: String,
    pub location_id: Option<LocationId>,
    pub opening_hours: Option<OpeningHours>,
    pub active: bool,
}

macro_rules! practitioner_query {
    ($($query:tt)*) => {
        query_row!(
            Practitioner,
            r#"id AS "id: PractitionerId", name, resource, location_id AS "location_id: LocationId",
               opening_hours AS "opening_hours: Json<OpeningHours>", active,
               ARRAY(SELECT ps.service_id FROM practitioner_services ps
                      WHERE ps.org_id = practitioners.org_id AND ps.practitioner_id = practitioners.id
                      ORDER BY ps.service_id) AS "service_ids!: Vec<ServiceId>",
               created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    Practitioner,
    PractitionerId,
    "practitioners",
    practitioner_query
);

/// A row of `services`.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub id: ServiceId,
    pub name: String,
    pub duration_minutes: i32,
    pub buffer_minutes: i32,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// What a service is made of.
#[derive(Debug, Clone)]
pub struct ServiceFields {
    pub name: String,
    pub duration_minutes: i32,
    pub buffer_minutes: i32,
    pub active: bool,
}

macro_rules! service_query {
    ($($query:tt)*) => {
        query_row!(
            Service,
            r#"id AS "id: ServiceId", name, duration_minutes, buffer_minutes, active, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(Service, ServiceId, "services", service_query);

/// A row of `closures`: whole local days off, `starts_on..=ends_on`.
#[derive(Debug, Clone, PartialEq)]
pub struct Closure {
    pub id: ClosureId,
    /// `None`: the whole clinic.
    pub practitioner_id: Option<PractitionerId>,
    pub starts_on: NaiveDate,
    pub ends_on: NaiveDate,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

macro_rules! closure_query {
    ($($query:tt)*) => {
        query_row!(
            Closure,
            r#"id AS "id: ClosureId", practitioner_id AS "practitioner_id: PractitionerId",
               starts_on, ends_on, reason, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(Closure, ClosureId, "closures", closure_query);

/// Why a change to the scheduling model was refused.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleModelError {
    /// The org has no such row: `field` names `id` (another clinic's id included).
    #[error("{field}: no such object in this organization")]
    InvalidReference {
        field: &'static str,
        table: &'static str,
        id: Uuid,
    },
    /// A unique name or resource is already taken in the org.
    #[error("{0} is already taken")]
    Taken(&'static str),
    /// Practitioners are still at the location.
    #[error("practitioners are still at this location")]
    LocationInUse,
    /// Appointments were booked for the service.
    #[error("appointments were booked for this service")]
    ServiceInUse,
    /// The practitioner still has appointments to come.
    #[error("the practitioner has appointments to come")]
    HasAppointments,
    #[error(transparent)]
    Db(DbError),
}

impl From<DbError> for ScheduleModelError {
    fn from(e: DbError) -> Self {
        match &e {
            DbError::Constraint { constraint } => match constraint.as_str() {
                "locations_org_id_name_key" => ScheduleModelError::Taken("name"),
                "services_org_id_name_key" => ScheduleModelError::Taken("name"),
                "practitioners_org_id_resource_key" => ScheduleModelError::Taken("resource"),
                "practitioners_org_id_location_id_fkey" => ScheduleModelError::LocationInUse,
                "appointments_service_fkey" => ScheduleModelError::ServiceInUse,
                _ => ScheduleModelError::Db(e),
            },
            _ => ScheduleModelError::Db(e),
        }
    }
}

impl From<sqlx::Error> for ScheduleModelError {
    fn from(e: sqlx::Error) -> Self {
        DbError::from(e).into()
    }
}

fn hours_json(hours: &Option<OpeningHours>) -> Result<Option<serde_json::Value>, DbError> {
    hours
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| DbError::Corrupt(e.to_string()))
}

/// A practitioner's location FK refusing: the location is not the org's.
fn location_reference(e: DbError, location: Option<LocationId>) -> ScheduleModelError {
    match (&e, location) {
        (DbError::Constraint { constraint }, Some(id))
            if constraint == "practitioners_org_id_location_id_fkey" =>
        {
            ScheduleModelError::InvalidReference {
                field: "location_id",
                table: "locations",
                id: id.as_uuid(),
            }
        }
        _ => e.into(),
    }
}

impl TenantTx {
    pub async fn list_locations(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Location>, DbError> {
        self.page::<Location>(after, limit).await
    }

    pub async fn insert_location(
        &mut self,
        f: &LocationFields,
    ) -> Result<Location, ScheduleModelError> {
        let org = self.org().as_uuid();
        let hours = hours_json(&f.opening_hours)?;
        Ok(location_query!(
            [
                "INSERT INTO locations (org_id, name, address, opening_hours)
                 VALUES ($1, $2, $3, $4) RETURNING ",
                ""
            ],
            org,
            f.name,
            f.address,
            hours
        )
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn update_location(
        &mut self,
        id: LocationId,
        f: &LocationFields,
    ) -> Result<Option<Location>, ScheduleModelError> {
        let org = self.org().as_uuid();
        let hours = hours_json(&f.opening_hours)?;
        Ok(location_query!(
            [
                "UPDATE locations SET name = $3, address = $4, opening_hours = $5
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            f.name,
            f.address,
            hours
        )
        .fetch_optional(self.conn())
        .await?)
    }

    /// Deletes a location no practitioner is at; whether there was one.
    pub async fn delete_location(&mut self, id: LocationId) -> Result<bool, ScheduleModelError> {
        Ok(self.delete::<Location>(id).await?)
    }

    pub async fn list_practitioners(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Practitioner>, DbError> {
        self.page::<Practitioner>(after, limit).await
    }

    /// The practitioner whose resource `resource` is, if one is.
    pub async fn practitioner_of_resource(
        &mut self,
        resource: &str,
    ) -> Result<Option<Practitioner>, DbError> {
        let org = self.org().as_uuid();
        Ok(practitioner_query!(
            [
                "SELECT ",
                " FROM practitioners WHERE org_id = $1 AND resource = $2"
            ],
            org,
            resource
        )
        .fetch_optional(self.conn())
        .await?)
    }

    /// A new practitioner giving `services`.
    pub async fn insert_practitioner(
        &mut self,
        resource: &str,
        f: &PractitionerFields,
        services: &[ServiceId],
    ) -> Result<Practitioner, ScheduleModelError> {
        let org = self.org().as_uuid();
        let hours = hours_json(&f.opening_hours)?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO practitioners (org_id, name, resource, location_id, opening_hours, active)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id AS "id: PractitionerId""#,
            org,
            f.name,
            resource,
            f.location_id.map(Uuid::from),
            hours,
            f.active
        )
        .fetch_one(self.conn())
        .await
        .map_err(|e| location_reference(e.into(), f.location_id))?;
        self.set_practitioner_services(id, services).await?;
        self.find::<Practitioner>(id)
            .await?
            .ok_or(ScheduleModelError::Db(DbError::NotFound))
    }

    /// Changes a practitioner; `services`, when given, replaces the ones they give.
    pub async fn update_practitioner(
        &mut self,
        id: PractitionerId,
        f: &PractitionerFields,
        services: Option<&[ServiceId]>,
    ) -> Result<Option<Practitioner>, ScheduleModelError> {
        let org = self.org().as_uuid();
        let hours = hours_json(&f.opening_hours)?;
        let done = sqlx::query!(
            "UPDATE practitioners SET name = $3, location_id = $4, opening_hours = $5, active = $6
              WHERE org_id = $1 AND id = $2",
            org,
            id.as_uuid(),
            f.name,
            f.location_id.map(Uuid::from),
            hours,
            f.active
        )
        .execute(self.conn())
        .await
        .map_err(|e| location_reference(e.into(), f.location_id))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(services) = services {
            self.set_practitioner_services(id, services).await?;
        }
        Ok(self.find::<Practitioner>(id).await?)
    }

    /// Makes `services` the ones practitioner `id` gives, or names the first the org does
    /// not have.
    async fn set_practitioner_services(
        &mut self,
        id: PractitionerId,
        services: &[ServiceId],
    ) -> Result<(), ScheduleModelError> {
        let org = self.org().as_uuid();
        let wanted: Vec<Uuid> = services.iter().map(|s| s.as_uuid()).collect();
        let unknown = sqlx::query_scalar!(
            r#"SELECT w AS "w!" FROM unnest($2::uuid[]) WITH ORDINALITY AS t (w, n)
                WHERE NOT EXISTS (SELECT 1 FROM services s WHERE s.org_id = $1 AND s.id = t.w)
                ORDER BY n LIMIT 1"#,
            org,
            &wanted
        )
        .fetch_optional(self.conn())
        .await?;
        if let Some(id) = unknown {
            return Err(ScheduleModelError::InvalidReference {
                field: "service_ids",
                table: "services",
                id,
            });
        }
        sqlx::query!(
            "DELETE FROM practitioner_services
              WHERE org_id = $1 AND practitioner_id = $2 AND NOT (service_id = ANY ($3))",
            org,
            id.as_uuid(),
            &wanted
        )
        .execute(self.conn())
        .await?;
        sqlx::query!(
            "INSERT INTO practitioner_services (org_id, practitioner_id, service_id)
             SELECT $1, $2, w FROM unnest($3::uuid[]) AS w
             ON CONFLICT DO NOTHING",
            org,
            id.as_uuid(),
            &wanted
        )
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Deletes a practitioner with no appointments to come (their closures and the services
    /// they give go with them; past appointments keep their resource); whether there was one.
    pub async fn delete_practitioner(
        &mut self,
        id: PractitionerId,
    ) -> Result<bool, ScheduleModelError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            // a.org_id = $1 as well as the join: Citus locks (FOR UPDATE) only in a query
            // that names the one clinic of every table it reads.
            r#"SELECT EXISTS (SELECT 1 FROM appointments a
                               WHERE a.org_id = $1 AND a.org_id = p.org_id AND a.resource = p.resource
                                 AND a.status = 'booked' AND a.ends_at > now()) AS "busy!"
                 FROM practitioners p WHERE p.org_id = $1 AND p.id = $2
                  FOR UPDATE"#,
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        match row {
            None => Ok(false),
            Some(row) if row.busy => Err(ScheduleModelError::HasAppointments),
            Some(_) => Ok(self.delete::<Practitioner>(id).await?),
        }
    }

    pub async fn list_services(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Service>, DbError> {
        self.page::<Service>(after, limit).await
    }

    pub async fn insert_service(
        &mut self,
        f: &ServiceFields,
    ) -> Result<Service, ScheduleModelError> {
        let org = self.org().as_uuid();
        Ok(service_query!(
            [
                "INSERT INTO services (org_id, name, duration_minutes, buffer_minutes, active)
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                ""
            ],
            org,
            f.name,
            f.duration_minutes,
            f.buffer_minutes,
            f.active
        )
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn update_service(
        &mut self,
        id: ServiceId,
        f: &ServiceFields,
    ) -> Result<Option<Service>, ScheduleModelError> {
        let org = self.org().as_uuid();
        Ok(service_query!(
            [
                "UPDATE services SET name = $3, duration_minutes = $4, buffer_minutes = $5,
                        active = $6
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            f.name,
            f.duration_minutes,
            f.buffer_minutes,
            f.active
        )
        .fetch_optional(self.conn())
        .await?)
    }

    /// Deletes a service no appointment was booked for; whether there was one.
    pub async fn delete_service(&mut self, id: ServiceId) -> Result<bool, ScheduleModelError> {
        Ok(self.delete::<Service>(id).await?)
    }

    pub async fn list_closures(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Closure>, DbError> {
        self.page::<Closure>(after, limit).await
    }

    /// A new closure of the clinic, or of one practitioner.
    pub async fn insert_closure(
        &mut self,
        practitioner: Option<PractitionerId>,
        starts_on: NaiveDate,
        ends_on: NaiveDate,
        reason: Option<&str>,
    ) -> Result<Closure, ScheduleModelError> {
        let org = self.org().as_uuid();
        closure_query!(
            [
                "INSERT INTO closures (org_id, practitioner_id, starts_on, ends_on, reason)
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                ""
            ],
            org,
            practitioner.map(Uuid::from),
            starts_on,
            ends_on,
            reason
        )
        .fetch_one(self.conn())
        .await
        .map_err(|e| match (DbError::from(e), practitioner) {
            (DbError::Constraint { constraint }, Some(id))
                if constraint == "closures_org_id_practitioner_id_fkey" =>
            {
                ScheduleModelError::InvalidReference {
                    field: "practitioner_id",
                    table: "practitioners",
                    id: id.as_uuid(),
                }
            }
            (e, _) => e.into(),
        })
    }
}
