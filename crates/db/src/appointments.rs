//! Appointments, appointment holds and what availability needs. No double booking is the
//! database's job (migrations/0006_booking.sql); this module names its refusals.

use crate::access::subject;
use crate::encrypted::APPOINTMENT_NOTES;
use crate::rows::{query_row, tenant_row, FromStored};
use crate::sms_confirmations::Confirm;
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::availability::{OpeningHours, Span};
use voxanne_domain::booking::RequestedSlot;
use voxanne_domain::{
    AppointmentId, AppointmentStatus, CallId, ContactId, HoldId, OrgId, ServiceId,
};

/// A row of `appointments` (the API's view is the HTTP layer's), its notes opened;
/// `Appointment<Vec<u8>>` as stored, encrypted (encrypted.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment<Text = String> {
    pub id: AppointmentId,
    pub org_id: OrgId,
    pub contact_id: Option<ContactId>,
    pub call_id: Option<CallId>,
    /// The hold this appointment was confirmed from, if any.
    pub hold_id: Option<HoldId>,
    pub resource: String,
    /// The service it was booked as, if any.
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub status: AppointmentStatus,
    pub notes: Option<Text>,
    /// When the patient confirmed it (answered "C" to a confirmation or reminder).
    pub confirmed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type StoredAppointment = Appointment<Vec<u8>>;

impl FromStored<StoredAppointment> for Appointment {
    fn from_stored(tx: &TenantTx, a: StoredAppointment) -> Result<Self, DbError> {
        Ok(Appointment {
            notes: tx.open_opt(APPOINTMENT_NOTES, a.id.as_uuid(), a.notes)?,
            id: a.id,
            org_id: a.org_id,
            contact_id: a.contact_id,
            call_id: a.call_id,
            hold_id: a.hold_id,
            resource: a.resource,
            service_id: a.service_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            status: a.status,
            confirmed_at: a.confirmed_at,
            created_at: a.created_at,
            updated_at: a.updated_at,
        })
    }
}

/// `query_as!` for [`Appointment`]: the column list goes between the first two SQL pieces.
macro_rules! appointment_query {
    ($($query:tt)*) => {
        query_row!(
            StoredAppointment,
            r#"id, org_id, contact_id AS "contact_id: ContactId", call_id AS "call_id: CallId",
               hold_id AS "hold_id: HoldId", resource, service_id AS "service_id: ServiceId",
               starts_at, ends_at, status AS "status: AppointmentStatus", notes, confirmed_at,
               created_at, updated_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    Appointment,
    AppointmentId,
    "appointments",
    appointment_query,
    subject = "appointment",
    patient = |a| a.contact_id.map(Into::into),
);

/// A row of `appointment_holds` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
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

/// `query_as!` for [`AppointmentHold`]: the column list goes between the first two pieces.
macro_rules! hold_query {
    ($($query:tt)*) => {
        query_row!(
            AppointmentHold,
            r#"id, org_id, contact_id AS "contact_id: ContactId", call_id AS "call_id: CallId",
               resource, service_id AS "service_id: ServiceId", starts_at, ends_at, expires_at,
               created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    AppointmentHold,
    HoldId,
    "appointment_holds",
    hold_query,
    subject = "hold",
    patient = |h| h.contact_id.map(Into::into),
);

/// What a new appointment or hold is about; validated by the caller
/// (`voxanne_domain::booking`).
#[derive(Debug, Clone)]
pub struct SlotRequest {
    pub contact_id: Option<ContactId>,
    pub call_id: Option<CallId>,
    pub resource: String,
    /// The service booked, if any (its length is the caller's to have applied).
    pub service_id: Option<ServiceId>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl SlotRequest {
    /// The slot asked for (valid by the booking rule), for a contact and a call.
    pub fn new(
        contact_id: Option<ContactId>,
        call_id: Option<CallId>,
        slot: RequestedSlot,
    ) -> Self {
        Self {
            contact_id,
            call_id,
            resource: slot.resource,
            service_id: None,
            starts_at: slot.span.start,
            ends_at: slot.span.end,
        }
    }

    /// The same slot, booked as `service`.
    pub fn for_service(self, service: Option<ServiceId>) -> Self {
        Self {
            service_id: service,
            ..self
        }
    }
}

/// Why a booking write was refused.
#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    /// An overlapping appointment or live hold has the slot.
    #[error("the slot is already booked or held")]
    SlotTaken,
    /// A linked calendar of the resource has the slot busy (as of its last sync).
    #[error("the slot is busy in the clinic's calendar")]
    CalendarBusy,
    /// `field` names `id`, which the org does not have in `table`.
    #[error("{field}: no such object in this organization")]
    InvalidReference {
        field: &'static str,
        table: &'static str,
        id: Uuid,
    },
    #[error("the hold has expired")]
    HoldExpired,
    #[error("the hold was already confirmed")]
    HoldAlreadyConfirmed,
    #[error("the appointment is {0}")]
    NotBooked(AppointmentStatus),
    /// The appointment would end before it starts.
    #[error("ends_at must be after starts_at")]
    EmptyRange,
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Db(DbError),
}

impl BookingError {
    /// Names a violated constraint of the booking tables; `slot` supplies the referenced ids.
    fn from_db(e: impl Into<DbError>, slot: Option<&SlotRequest>) -> Self {
        let e = e.into();
        let DbError::Constraint { constraint } = &e else {
            return BookingError::Db(e);
        };
        let reference = |field, table, id: Option<Uuid>| match id {
            Some(id) => BookingError::InvalidReference { field, table, id },
            None => BookingError::Db(DbError::Constraint {
                constraint: constraint.clone(),
            }),
        };
        match constraint.as_str() {
            "appointments_no_overlap"
            | "appointments_held_slot"
            | "appointment_holds_no_overlap"
            | "appointment_holds_booked_slot" => BookingError::SlotTaken,
            "appointments_org_hold_key" => BookingError::HoldAlreadyConfirmed,
            "appointments_org_id_contact_id_fkey" | "appointment_holds_org_id_contact_id_fkey" => {
                reference(
                    "contact_id",
                    "contacts",
                    slot.and_then(|s| s.contact_id).map(|c| c.as_uuid()),
                )
            }
            "appointments_org_id_call_id_fkey" | "appointment_holds_org_id_call_id_fkey" => {
                reference(
                    "call_id",
                    "calls",
                    slot.and_then(|s| s.call_id).map(|c| c.as_uuid()),
                )
            }
            "appointments_service_fkey" | "appointment_holds_service_fkey" => reference(
                "service_id",
                "services",
                slot.and_then(|s| s.service_id).map(|c| c.as_uuid()),
            ),
            _ => BookingError::Db(e),
        }
    }
}

impl From<DbError> for BookingError {
    fn from(e: DbError) -> Self {
        BookingError::from_db(e, None)
    }
}

impl From<sqlx::Error> for BookingError {
    fn from(e: sqlx::Error) -> Self {
        BookingError::from_db(e, None)
    }
}

/// Whose appointments a list is of: a contact's, a call's (each optional).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppointmentsOf {
    pub contact: Option<ContactId>,
    pub call: Option<CallId>,
}

/// A keyset position in a list ordered by (starts_at, id).
pub type StartKey = (DateTime<Utc>, Uuid);

/// What availability subtracts from the opening hours.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// `None` when the clinic has no agent configuration yet.
    pub opening_hours: Option<OpeningHours>,
    pub time_zone: String,
    /// Live appointments and unexpired holds of the resource that touch the window, and the
    /// busy times of its linked calendars.
    pub busy: Vec<Span>,
    /// The resource's linked calendars whose busy times are not current for the window
    /// (`calendar_sync::CalendarBusy::stale`): the answer is the cache's.
    pub stale_calendars: Vec<voxanne_domain::CalendarConnectionId>,
    /// The database's clock, which decides expiry.
    pub now: DateTime<Utc>,
}

impl TenantTx {
    /// Appointments starting in `[from, to)`, by (starts_at, id), after `after`; up to `limit`.
    pub async fn list_appointments(
        &mut self,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        of: AppointmentsOf,
        after: Option<StartKey>,
        limit: u32,
    ) -> Result<Vec<Appointment>, DbError> {
        let org = self.org().as_uuid();
        let rows = appointment_query!(
            [
                "SELECT ",
                " FROM appointments
                  WHERE org_id = $1
                    AND ($2::timestamptz IS NULL OR starts_at >= $2)
                    AND ($3::timestamptz IS NULL OR starts_at < $3)
                    AND ($4::timestamptz IS NULL OR (starts_at, id) > ($4, $5))
                    AND ($7::uuid IS NULL OR contact_id = $7)
                    AND ($8::uuid IS NULL OR call_id = $8)
                  ORDER BY starts_at, id
                  LIMIT $6"
            ],
            org,
            from,
            to,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit),
            of.contact.map(Uuid::from),
            of.call.map(Uuid::from)
        )
        .fetch_all(self.conn())
        .await?;
        let rows: Vec<Appointment> = self.opened(rows)?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// A contact's booked appointments that have not started yet, soonest first; up to `limit`.
    pub async fn upcoming_appointments_of_contact(
        &mut self,
        contact_id: voxanne_domain::ContactId,
        limit: u32,
    ) -> Result<Vec<Appointment>, DbError> {
        let org = self.org().as_uuid();
        let rows = appointment_query!(
            [
                "SELECT ",
                " FROM appointments
                  WHERE org_id = $1 AND contact_id = $2 AND status = 'booked' AND starts_at > now()
                  ORDER BY starts_at, id
                  LIMIT $3"
            ],
            org,
            contact_id.as_uuid(),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let rows = self.opened(rows)?;
        self.note_access(
            subject::APPOINTMENT,
            None,
            Action::List,
            [contact_id.as_uuid()],
        );
        Ok(rows)
    }

    /// One hold, expired or not.
    pub async fn get_hold(&mut self, id: HoldId) -> Result<Option<AppointmentHold>, DbError> {
        self.find::<AppointmentHold>(id).await
    }

    pub async fn insert_appointment(
        &mut self,
        slot: &SlotRequest,
        notes: Option<&str>,
    ) -> Result<Appointment, BookingError> {
        self.insert_appointment_from(slot, notes, None).await
    }

    /// The one way an appointment comes to be booked (directly, or from a hold): the row, and
    /// in the same transaction its SMS confirmation, queued for the worker when the contact
    /// has a phone (`sms_confirmations.rs`).
    async fn insert_appointment_from(
        &mut self,
        slot: &SlotRequest,
        notes: Option<&str>,
        hold_id: Option<HoldId>,
    ) -> Result<Appointment, BookingError> {
        self.refuse_calendar_busy(&slot.resource, slot.starts_at, slot.ends_at)
            .await?;
        let org = self.org().as_uuid();
        let id = Uuid::new_v4();
        let notes = self.seal_opt(APPOINTMENT_NOTES, id, notes)?;
        let appointment = appointment_query!(
            [
                "INSERT INTO appointments
                        (org_id, id, contact_id, call_id, hold_id, resource, starts_at, ends_at,
                         notes, service_id)
                 VALUES ($1, $10, $2, $3, $4, $5, $6, $7, $8, $9)
                 RETURNING ",
                ""
            ],
            org,
            slot.contact_id.map(Uuid::from),
            slot.call_id.map(Uuid::from),
            hold_id.map(Uuid::from),
            slot.resource,
            slot.starts_at,
            slot.ends_at,
            notes,
            slot.service_id.map(Uuid::from),
            id
        )
        .fetch_one(self.conn())
        .await
        .map_err(|e| BookingError::from_db(e, Some(slot)))?;
        let appointment = Appointment::from_stored(self, appointment)?;
        self.queue_confirmation(
            appointment.id,
            appointment.contact_id,
            appointment.starts_at,
            Confirm::Booked,
        )
        .await?;
        self.queue_calendar_writes(appointment.id, &appointment.resource)
            .await?;
        self.note_row(&appointment, Action::Create);
        Ok(appointment)
    }

    /// Moves a booked appointment and/or changes its notes (`Some(None)` clears them).
    pub async fn reschedule_appointment(
        &mut self,
        id: AppointmentId,
        starts_at: Option<DateTime<Utc>>,
        ends_at: Option<DateTime<Utc>>,
        notes: Option<Option<&str>>,
    ) -> Result<Appointment, BookingError> {
        let current = self
            .lock_appointment(id)
            .await?
            .ok_or(BookingError::NotFound)?;
        if current.status != AppointmentStatus::Booked {
            return Err(BookingError::NotBooked(current.status));
        }
        let starts_at = starts_at.unwrap_or(current.starts_at);
        let ends_at = ends_at.unwrap_or(current.ends_at);
        if ends_at <= starts_at {
            return Err(BookingError::EmptyRange);
        }
        if (starts_at, ends_at) != (current.starts_at, current.ends_at) {
            self.refuse_calendar_busy(&current.resource, starts_at, ends_at)
                .await?;
        }
        let org = self.org().as_uuid();
        let (set_notes, notes) = match notes {
            Some(n) => (true, self.seal_opt(APPOINTMENT_NOTES, id.as_uuid(), n)?),
            None => (false, None),
        };
        let moved = appointment_query!(
            [
                "UPDATE appointments
                    SET starts_at = $3, ends_at = $4,
                        notes = CASE WHEN $5 THEN $6 ELSE notes END,
                        updated_at = now()
                  WHERE org_id = $1 AND id = $2
                  RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            starts_at,
            ends_at,
            set_notes,
            notes
        )
        .fetch_one(self.conn())
        .await
        .map_err(BookingError::from)?;
        let moved = Appointment::from_stored(self, moved)?;
        if moved.starts_at != current.starts_at {
            // The patient hears of the new time, in this same transaction.
            self.queue_confirmation(moved.id, moved.contact_id, moved.starts_at, Confirm::Moved)
                .await?;
        }
        if (moved.starts_at, moved.ends_at) != (current.starts_at, current.ends_at) {
            self.queue_calendar_writes(moved.id, &moved.resource)
                .await?;
        }
        self.note_row(&moved, Action::Update);
        Ok(moved)
    }

    /// Cancels a booked appointment (a cancelled one is answered as it is).
    pub async fn cancel_appointment(
        &mut self,
        id: AppointmentId,
    ) -> Result<Appointment, BookingError> {
        let current = self
            .lock_appointment(id)
            .await?
            .ok_or(BookingError::NotFound)?;
        match current.status {
            AppointmentStatus::Cancelled => return Ok(current),
            AppointmentStatus::Booked => {}
            other => return Err(BookingError::NotBooked(other)),
        }
        let org = self.org().as_uuid();
        let cancelled = appointment_query!(
            [
                "UPDATE appointments SET status = 'cancelled', updated_at = now()
                  WHERE org_id = $1 AND id = $2
                  RETURNING ",
                ""
            ],
            org,
            id.as_uuid()
        )
        .fetch_one(self.conn())
        .await?;
        let cancelled = Appointment::from_stored(self, cancelled)?;
        // Its event comes out of the clinic's calendars.
        self.queue_calendar_writes(cancelled.id, &cancelled.resource)
            .await?;
        self.note_row(&cancelled, Action::Update);
        Ok(cancelled)
    }

    /// Refuses `[starts_at, ends_at)` for `resource` when a linked calendar of the resource
    /// has it busy: the booking rule's last word on the outside diary, for every path that
    /// books (the REST API, the agent, a hold).
    async fn refuse_calendar_busy(
        &mut self,
        resource: &str,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
    ) -> Result<(), BookingError> {
        if ends_at <= starts_at {
            return Ok(());
        }
        let span = Span {
            start: starts_at,
            end: ends_at,
        };
        let busy = self
            .calendar_busy(resource, span, crate::calendar_sync::BUSY_FRESH_FOR)
            .await?;
        if busy.spans.iter().any(|b| b.overlaps(&span)) {
            return Err(BookingError::CalendarBusy);
        }
        Ok(())
    }

    async fn lock_appointment(
        &mut self,
        id: AppointmentId,
    ) -> Result<Option<Appointment>, DbError> {
        let org = self.org().as_uuid();
        let row = appointment_query!(
            [
                "SELECT ",
                " FROM appointments WHERE org_id = $1 AND id = $2 FOR UPDATE"
            ],
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        self.opened_opt(row)
    }

    /// Unexpired holds, by (starts_at, id), after `after`; up to `limit`.
    pub async fn list_live_holds(
        &mut self,
        after: Option<StartKey>,
        limit: u32,
    ) -> Result<Vec<AppointmentHold>, DbError> {
        let org = self.org().as_uuid();
        let rows = hold_query!(
            [
                "SELECT ",
                " FROM appointment_holds
                  WHERE org_id = $1 AND expires_at > now()
                    AND ($2::timestamptz IS NULL OR (starts_at, id) > ($2, $3))
                  ORDER BY starts_at, id
                  LIMIT $4"
            ],
            org,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// Holds a slot for `ttl_seconds`, by the database's clock.
    pub async fn insert_hold(
        &mut self,
        slot: &SlotRequest,
        ttl_seconds: u32,
    ) -> Result<AppointmentHold, BookingError> {
        self.refuse_calendar_busy(&slot.resource, slot.starts_at, slot.ends_at)
            .await?;
        let org = self.org().as_uuid();
        let hold = hold_query!(
            [
                "INSERT INTO appointment_holds
                        (org_id, contact_id, call_id, resource, starts_at, ends_at, expires_at,
                         service_id)
                 VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)
                 RETURNING ",
                ""
            ],
            org,
            slot.contact_id.map(Uuid::from),
            slot.call_id.map(Uuid::from),
            slot.resource,
            slot.starts_at,
            slot.ends_at,
            f64::from(ttl_seconds),
            slot.service_id.map(Uuid::from)
        )
        .fetch_one(self.conn())
        .await
        .map_err(|e| BookingError::from_db(e, Some(slot)))?;
        self.note_row(&hold, Action::Create);
        Ok(hold)
    }

    /// Releases a hold (expired or not). False if there was none.
    pub async fn delete_hold(&mut self, id: HoldId) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let _ = org;
        self.delete::<AppointmentHold>(id).await
    }

    /// Turns a live hold into an appointment, in this transaction: the hold is deleted and the
    /// appointment inserted, or neither. The booking lock of the hold's resource is taken
    /// first, as the triggers take it, so that this never waits for a row while holding
    /// something a lock holder waits for.
    pub async fn confirm_hold(
        &mut self,
        id: HoldId,
        notes: Option<&str>,
    ) -> Result<Appointment, BookingError> {
        let org = self.org().as_uuid();
        let resource = sqlx::query_scalar!(
            "SELECT resource FROM appointment_holds WHERE org_id = $1 AND id = $2",
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(resource) = resource else {
            return Err(self.absent_hold(id).await?);
        };
        sqlx::query!("SELECT app.lock_booking($1, $2)", org, resource)
            .execute(self.conn())
            .await?;
        // Only a live hold is taken (the expiry is compared in the WHERE clause: Citus allows
        // no now() in a RETURNING list); an expired one stays until something needs its slot.
        let taken = sqlx::query!(
            r#"DELETE FROM appointment_holds WHERE org_id = $1 AND id = $2 AND expires_at > now()
               RETURNING contact_id AS "contact_id: ContactId", call_id AS "call_id: CallId",
                         resource, service_id AS "service_id: ServiceId", starts_at, ends_at"#,
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        if taken.is_some() {
            self.note_access(subject::HOLD, Some(id.into()), Action::Delete, []);
        }
        let Some(taken) = taken else {
            let expired = sqlx::query_scalar!(
                r#"SELECT EXISTS (SELECT 1 FROM appointment_holds WHERE org_id = $1 AND id = $2)
                       AS "expired!""#,
                org,
                id.as_uuid()
            )
            .fetch_one(self.conn())
            .await?;
            if expired {
                return Err(BookingError::HoldExpired);
            }
            // Confirmed or released while we waited for the lock.
            return Err(self.absent_hold(id).await?);
        };
        let slot = SlotRequest {
            contact_id: taken.contact_id,
            call_id: taken.call_id,
            resource: taken.resource,
            service_id: taken.service_id,
            starts_at: taken.starts_at,
            ends_at: taken.ends_at,
        };
        self.insert_appointment_from(&slot, notes, Some(id)).await
    }

    /// Why hold `id` is not there: confirmed already, or never was (or was released).
    async fn absent_hold(&mut self, id: HoldId) -> Result<BookingError, DbError> {
        let org = self.org().as_uuid();
        let confirmed = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM appointments WHERE org_id = $1 AND hold_id = $2) AS "confirmed!""#,
            org,
            id.as_uuid()
        )
        .fetch_one(self.conn())
        .await?;
        Ok(if confirmed {
            BookingError::HoldAlreadyConfirmed
        } else {
            BookingError::NotFound
        })
    }

    /// The opening hours of `resource` (its practitioner's, else their location's, else the
    /// clinic's; none for an inactive practitioner), the clinic's time zone, and what is busy
    /// for it in `window`: appointments, live holds, closures and its linked calendars.
    pub async fn schedule(&mut self, resource: &str, window: Span) -> Result<Schedule, DbError> {
        let org = self.org().as_uuid();
        let config = sqlx::query!(
            "SELECT opening_hours, time_zone FROM agent_configurations WHERE org_id = $1",
            org
        )
        .fetch_optional(self.conn())
        .await?;
        let (clinic_hours, time_zone) = match config.map(|c| (c.opening_hours, c.time_zone)) {
            Some((hours, tz)) => (
                Some(
                    serde_json::from_value::<OpeningHours>(hours)
                        .map_err(|e| DbError::Corrupt(e.to_string()))?,
                ),
                tz,
            ),
            None => (None, "UTC".to_owned()),
        };
        let opening_hours = match self.resource_hours(resource).await? {
            crate::scheduling::ResourceHours::Clinic => clinic_hours,
            crate::scheduling::ResourceHours::Own(hours) => Some(hours),
            crate::scheduling::ResourceHours::Inactive => None,
        };
        let tz: chrono_tz::Tz = time_zone
            .parse()
            .map_err(|_| DbError::Corrupt(format!("an unknown time zone `{time_zone}`")))?;
        let closures = self.closure_spans(resource, window, tz).await?;
        let rows = sqlx::query!(
            r#"SELECT starts_at AS "start!", ends_at AS "end!" FROM appointments
                WHERE org_id = $1 AND resource = $2 AND status <> 'cancelled'
                  AND tstzrange(starts_at, ends_at) && tstzrange($3, $4)
               UNION ALL
               SELECT starts_at, ends_at FROM appointment_holds
                WHERE org_id = $1 AND resource = $2 AND expires_at > now()
                  AND tstzrange(starts_at, ends_at) && tstzrange($3, $4)"#,
            org,
            resource,
            window.start,
            window.end
        )
        .fetch_all(self.conn())
        .await?;
        let now = sqlx::query_scalar!(r#"SELECT now() AS "now!""#)
            .fetch_one(self.conn())
            .await?;
        let calendars = self
            .calendar_busy(resource, window, crate::calendar_sync::BUSY_FRESH_FOR)
            .await?;
        let mut busy: Vec<Span> = rows
            .into_iter()
            .map(|row| Span {
                start: row.start,
                end: row.end,
            })
            .chain(calendars.spans)
            .chain(closures)
            .collect();
        busy.sort();
        Ok(Schedule {
            opening_hours,
            time_zone,
            busy,
            stale_calendars: calendars.stale,
            now,
        })
    }
}
