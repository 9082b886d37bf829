//! Calendar sync's rows (migrations/0017): what the sync job reads and writes for a linked
//! calendar (fresh tokens, the busy-time cache, `broken`), the event writes the booking
//! methods queue, and the busy times availability and booking subtract.
//!
//! Every write of a job is conditional on its claim (`sync_claims` for a connection's sync,
//! `attempts` for an event write), so a worker whose lease was taken over changes nothing.

use crate::calendar_connections::{token_aad, CalendarTokens};
use crate::crypto::Keyring;
use crate::recordings::AfterFailure;
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use voxanne_domain::availability::Span;
use voxanne_domain::{
    AppointmentId, AppointmentStatus, CalendarConnectionId, CalendarConnectionStatus,
    CalendarProvider, CalendarWriteStatus,
};

/// How old a calendar's busy times may be and still count as current (availability logs an
/// answer given from older ones). Syncs run every couple of minutes and on every push
/// notification, so this means the sync is failing.
pub const BUSY_FRESH_FOR: chrono::Duration = chrono::Duration::minutes(10);

/// The longest error kept on a row, in characters.
const MAX_ERROR_CHARS: usize = 2000;
/// The longest reason a connection is broken, in characters.
const MAX_REASON_CHARS: usize = 500;

fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// A linked calendar as the jobs use it: where it is, and its tokens, opened.
#[derive(Debug)]
pub struct CalendarLink {
    pub id: CalendarConnectionId,
    pub provider: CalendarProvider,
    pub account_email: String,
    pub calendar_id: String,
    pub resource: String,
    pub status: CalendarConnectionStatus,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub tokens: CalendarTokens,
    /// Its push channel or subscription, if one was started.
    pub watch: WatchState,
    /// Push notifications received, and how many the last check of the events had seen.
    pub notifications: i32,
    pub notifications_checked: i32,
    /// When every upcoming event was last compared with its appointment.
    pub events_checked_at: Option<DateTime<Utc>>,
}

/// A connection's push channel (Google) or subscription (Graph).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchState {
    pub id: Option<String>,
    pub resource_id: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The last try to start one.
    pub attempted_at: Option<DateTime<Utc>>,
}

/// An appointment's event as Voxanne last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenEvent {
    pub appointment_id: AppointmentId,
    pub event_id: String,
    pub span: Span,
}

/// What the connection's calendar says is busy for a resource, and how fresh that is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CalendarBusy {
    /// Busy spans that touch the window, Voxanne's own events left out.
    pub spans: Vec<Span>,
    /// The resource's connections whose busy times do not cover the window as of a recent
    /// sync: never synced, synced too long ago, broken, or covering less than the window.
    pub stale: Vec<CalendarConnectionId>,
}

/// One appointment's event in one calendar, as the appointment shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarEvent {
    pub connection_id: CalendarConnectionId,
    pub provider: CalendarProvider,
    pub status: CalendarWriteStatus,
    pub event_id: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// What an event write must make true: the appointment as it is now, and where its event is.
#[derive(Debug)]
pub struct EventTarget {
    pub link: CalendarLink,
    pub appointment_status: AppointmentStatus,
    pub appointment_resource: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub notes: Option<String>,
    pub contact_name: Option<String>,
    /// The clinic's name and time zone, for the event.
    pub clinic_name: String,
    pub time_zone: String,
    /// The provider's id of the event, once written.
    pub event_id: Option<String>,
}

impl EventTarget {
    /// Whether the calendar should hold an event for the appointment: it is booked (or done)
    /// and still this calendar's resource.
    pub fn wants_event(&self) -> bool {
        self.appointment_status != AppointmentStatus::Cancelled
            && self.appointment_resource == self.link.resource
            && self.link.status == CalendarConnectionStatus::Active
    }
}

impl TenantTx {
    /// A linked calendar with its tokens opened; `None` if the org has no such connection.
    pub async fn calendar_link(
        &mut self,
        keyring: &Keyring,
        id: CalendarConnectionId,
    ) -> Result<Option<CalendarLink>, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"SELECT provider AS "provider: CalendarProvider", account_email, calendar_id,
                      resource, status AS "status: CalendarConnectionStatus", token_expires_at,
                      watch_id, watch_resource_id, watch_expires_at, watch_attempted_at,
                      notifications, notifications_checked, events_checked_at
                 FROM calendar_connections WHERE org_id = $1 AND id = $2"#,
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let tokens = self
            .calendar_tokens(keyring, id.into())
            .await?
            .ok_or(DbError::NotFound)?;
        Ok(Some(CalendarLink {
            id,
            provider: row.provider,
            account_email: row.account_email,
            calendar_id: row.calendar_id,
            resource: row.resource,
            status: row.status,
            token_expires_at: row.token_expires_at,
            tokens,
            watch: WatchState {
                id: row.watch_id,
                resource_id: row.watch_resource_id,
                expires_at: row.watch_expires_at,
                attempted_at: row.watch_attempted_at,
            },
            notifications: row.notifications,
            notifications_checked: row.notifications_checked,
            events_checked_at: row.events_checked_at,
        }))
    }

    /// Stores tokens the provider gave for a refresh, both sealed with the current key, if
    /// sync claim `claim` still holds the connection. Returns whether it did.
    pub async fn calendar_tokens_refreshed(
        &mut self,
        keyring: &Keyring,
        id: CalendarConnectionId,
        claim: i32,
        access_token: &SecretString,
        refresh_token: &SecretString,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<bool, DbError> {
        let org = self.org();
        let row = id.into();
        let access = keyring.seal(
            access_token.expose_secret().as_bytes(),
            &token_aad("access_token_enc", org, row),
        )?;
        let refresh = keyring.seal(
            refresh_token.expose_secret().as_bytes(),
            &token_aad("refresh_token_enc", org, row),
        )?;
        Ok(sqlx::query!(
            "UPDATE calendar_connections
                SET access_token_enc = $4, refresh_token_enc = $5, key_id = $6,
                    token_expires_at = $7, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND sync_claims = $3 AND status = 'active'",
            org.as_uuid(),
            row,
            claim,
            access.bytes,
            refresh.bytes,
            access.key_id,
            expires_at
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// Marks the connection `broken` (the provider refused its grant) and records it in the
    /// clinic's security log, if sync claim `claim` still holds it. Returns whether it did.
    pub async fn calendar_broken(
        &mut self,
        id: CalendarConnectionId,
        claim: i32,
        reason: &str,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let reason = clip(reason, MAX_REASON_CHARS);
        let broken = sqlx::query!(
            r#"UPDATE calendar_connections
                  SET status = 'broken', broken_reason = $4, broken_at = now(),
                      sync_lease_until = NULL, updated_at = now()
                WHERE org_id = $1 AND id = $2 AND sync_claims = $3 AND status = 'active'
                RETURNING provider, account_email"#,
            org,
            id.as_uuid(),
            claim,
            reason
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(broken) = broken else {
            return Ok(false);
        };
        sqlx::query!(
            "INSERT INTO security_events (org_id, kind, route, target, detail)
             VALUES ($1, 'calendar_connection_broken', 'calendar sync', $2, $3)",
            org,
            format!("calendar_connections/{id}"),
            serde_json::json!({
                "provider": broken.provider,
                "account_email": broken.account_email,
                "reason": reason,
            })
        )
        .execute(self.conn())
        .await?;
        Ok(true)
    }

    /// Replaces the connection's busy times with `busy` (what the provider answered for
    /// `[from, until)`), clears its failures and makes its next sync due at `next` (unless a
    /// sync was asked for meanwhile: `due_at`, the time it was claimed for, moved), if sync
    /// claim `claim` still holds it. Returns whether it did.
    #[allow(clippy::too_many_arguments)]
    pub async fn calendar_busy_synced(
        &mut self,
        id: CalendarConnectionId,
        claim: i32,
        due_at: DateTime<Utc>,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        busy: &[Span],
        next: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let held = sqlx::query!(
            "UPDATE calendar_connections
                SET busy_synced_at = now(), busy_from = $4, busy_until = $5,
                    sync_due_at = CASE WHEN sync_due_at = $6 THEN $7 ELSE sync_due_at END,
                    sync_failures = 0, last_sync_error = NULL, sync_lease_until = NULL,
                    updated_at = now()
              WHERE org_id = $1 AND id = $2 AND sync_claims = $3 AND status = 'active'",
            org,
            id.as_uuid(),
            claim,
            from,
            until,
            due_at,
            next
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        if !held {
            return Ok(false);
        }
        sqlx::query!(
            "DELETE FROM calendar_busy WHERE org_id = $1 AND connection_id = $2",
            org,
            id.as_uuid()
        )
        .execute(self.conn())
        .await?;
        let (starts, ends): (Vec<_>, Vec<_>) = busy
            .iter()
            .filter(|s| s.end > s.start)
            .map(|s| (s.start, s.end))
            .unzip();
        sqlx::query!(
            // RETURNING: on Citus an INSERT … SELECT that the coordinator computes then
            // reaches the shards as an INSERT (under their row level security), not as a COPY,
            // which row level security refuses (docs/SCALING.md).
            "INSERT INTO calendar_busy (org_id, connection_id, starts_at, ends_at)
             SELECT $1, $2, b.starts_at, b.ends_at
               FROM unnest($3::timestamptz[], $4::timestamptz[]) AS b (starts_at, ends_at)
             RETURNING connection_id",
            org,
            id.as_uuid(),
            &starts,
            &ends
        )
        .fetch_all(self.conn())
        .await?;
        Ok(true)
    }

    /// Records a failed sync (the busy times already held stay) and when to try again, if
    /// sync claim `claim` still holds the connection. Returns whether it did.
    pub async fn calendar_sync_failed(
        &mut self,
        id: CalendarConnectionId,
        claim: i32,
        error: &str,
        next: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE calendar_connections
                SET sync_failures = sync_failures + 1, last_sync_error = $4, sync_due_at = $5,
                    sync_lease_until = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND sync_claims = $3",
            org,
            id.as_uuid(),
            claim,
            clip(error, MAX_ERROR_CHARS),
            next
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// Records the push channel or subscription just started for the connection (its
    /// notifications carry the secret whose sha256 is `token_hash`), if sync claim `claim`
    /// still holds it. Returns whether it did.
    #[allow(clippy::too_many_arguments)]
    pub async fn calendar_watch_started(
        &mut self,
        id: CalendarConnectionId,
        claim: i32,
        watch_id: &str,
        resource_id: Option<&str>,
        expires_at: DateTime<Utc>,
        token_hash: &[u8; 32],
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE calendar_connections
                SET watch_id = $4, watch_resource_id = $5, watch_expires_at = $6,
                    watch_token_hash = $7, watch_attempted_at = now(), updated_at = now()
              WHERE org_id = $1 AND id = $2 AND sync_claims = $3 AND status = 'active'",
            org,
            id.as_uuid(),
            claim,
            watch_id,
            resource_id,
            expires_at,
            token_hash.as_slice()
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// Records a failed try to start a watch (the next is not before an hour), if sync claim
    /// `claim` still holds the connection.
    pub async fn calendar_watch_attempted(
        &mut self,
        id: CalendarConnectionId,
        claim: i32,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE calendar_connections SET watch_attempted_at = now(), updated_at = now()
              WHERE org_id = $1 AND id = $2 AND sync_claims = $3",
            org,
            id.as_uuid(),
            claim
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// The upcoming booked appointments whose event this calendar has (as last written),
    /// soonest first; up to `limit`.
    pub async fn calendar_written_events(
        &mut self,
        id: CalendarConnectionId,
        limit: u32,
    ) -> Result<Vec<WrittenEvent>, DbError> {
        let org = self.org().as_uuid();
        let rows = sqlx::query!(
            r#"SELECT w.appointment_id AS "appointment_id: AppointmentId",
                      w.event_id AS "event_id!", w.written_starts_at AS "start!",
                      w.written_ends_at AS "end!"
                 FROM calendar_event_writes w
                 JOIN appointments a ON a.org_id = w.org_id AND a.id = w.appointment_id
                WHERE w.org_id = $1 AND w.connection_id = $2 AND w.status = 'synced'
                  AND w.event_id IS NOT NULL AND w.written_starts_at IS NOT NULL
                  AND w.written_ends_at IS NOT NULL
                  AND a.status = 'booked' AND a.ends_at > now()
                ORDER BY a.starts_at, a.id
                LIMIT $3"#,
            org,
            id.as_uuid(),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| WrittenEvent {
                appointment_id: row.appointment_id,
                event_id: row.event_id,
                span: Span {
                    start: row.start,
                    end: row.end,
                },
            })
            .collect())
    }

    /// Records that the upcoming events were compared with their appointments, having seen
    /// `notifications` push notifications, if sync claim `claim` still holds the connection.
    pub async fn calendar_events_checked(
        &mut self,
        id: CalendarConnectionId,
        claim: i32,
        notifications: i32,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE calendar_connections
                SET events_checked_at = now(),
                    notifications_checked = greatest(notifications_checked, $4),
                    updated_at = now()
              WHERE org_id = $1 AND id = $2 AND sync_claims = $3",
            org,
            id.as_uuid(),
            claim,
            notifications
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// Staff moved the appointment's event in the calendar to `span`: the appointment follows
    /// (with the SMS the move of an appointment sends), unless the new time is taken in
    /// Voxanne, which stays the truth (the caller writes the event back). The event's new
    /// span is its own busy time, not a collision.
    pub async fn appointment_moved_in_calendar(
        &mut self,
        appointment: AppointmentId,
        connection: CalendarConnectionId,
        span: Span,
    ) -> Result<crate::appointments::Appointment, crate::appointments::BookingError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "UPDATE calendar_event_writes SET written_starts_at = $4, written_ends_at = $5,
                    updated_at = now()
              WHERE org_id = $1 AND appointment_id = $2 AND connection_id = $3",
            org,
            appointment.as_uuid(),
            connection.as_uuid(),
            span.start,
            span.end
        )
        .execute(self.conn())
        .await?;
        self.reschedule_appointment(appointment, Some(span.start), Some(span.end), None)
            .await
    }

    /// Asks for the connection to be synced as soon as a worker is free (a push notification
    /// said its calendar changed, or a write found its token expired). Whether it exists.
    pub async fn calendar_sync_now(&mut self, id: CalendarConnectionId) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE calendar_connections SET sync_due_at = now(), updated_at = now()
              WHERE org_id = $1 AND id = $2",
            org,
            id.as_uuid()
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// Makes the connection the diary of `resource` and/or reads `calendar_id` of its account;
    /// its next sync is due at once. Remapping the resource moves the events: the new
    /// resource's upcoming appointments are written to it, the old one's removed. Returns
    /// whether the connection exists.
    pub async fn map_calendar_connection(
        &mut self,
        id: CalendarConnectionId,
        resource: Option<&str>,
        calendar_id: Option<&str>,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let changed = sqlx::query!(
            "UPDATE calendar_connections
                SET resource = coalesce($3, resource), calendar_id = coalesce($4, calendar_id),
                    sync_due_at = now(), updated_at = now()
              WHERE org_id = $1 AND id = $2",
            org,
            id.as_uuid(),
            resource,
            calendar_id
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        if changed && resource.is_some() {
            // The connection's new resource's upcoming appointments go to its calendar, and
            // the events it holds of another resource's come out of it.
            sqlx::query!(
                "INSERT INTO calendar_event_writes (org_id, appointment_id, connection_id)
                 SELECT a.org_id, a.id, $2 FROM appointments a
                  WHERE a.org_id = $1 AND a.resource = $3 AND a.status = 'booked'
                    AND a.ends_at > now()
                 ON CONFLICT (org_id, appointment_id, connection_id) DO NOTHING",
                org,
                id.as_uuid(),
                resource
            )
            .execute(self.conn())
            .await?;
            sqlx::query!(
                "UPDATE calendar_event_writes
                    SET wanted = wanted + 1,
                        status = CASE WHEN status = 'writing' THEN 'writing' ELSE 'pending' END,
                        attempts = CASE WHEN status = 'writing' THEN attempts ELSE 0 END,
                        next_attempt_at = NULL, updated_at = now()
                  WHERE org_id = $1 AND connection_id = $2",
                org,
                id.as_uuid()
            )
            .execute(self.conn())
            .await?;
        }
        Ok(changed)
    }

    /// Asks for appointment `id`'s event to be written (or moved, or removed) in every active
    /// calendar of `resource`, and in every calendar that already has a row for it: in the
    /// booking's own transaction, so that a booking never misses its diary. Returns how many
    /// writes are pending.
    pub async fn queue_calendar_writes(
        &mut self,
        id: AppointmentId,
        resource: &str,
    ) -> Result<u64, DbError> {
        let org = self.org().as_uuid();
        // Two statements (Citus does not run an upsert from a UNION): the calendars that
        // already have a row for the appointment are asked again, then the active calendars
        // of the resource that have none get one. A row is counted once either way.
        let again = sqlx::query!(
            "UPDATE calendar_event_writes
                SET wanted = wanted + 1,
                    status = CASE WHEN status = 'writing' THEN 'writing' ELSE 'pending' END,
                    attempts = CASE WHEN status = 'writing' THEN attempts ELSE 0 END,
                    next_attempt_at = NULL, updated_at = now()
              WHERE org_id = $1 AND appointment_id = $2",
            org,
            id.as_uuid()
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        let added = sqlx::query!(
            "INSERT INTO calendar_event_writes (org_id, appointment_id, connection_id)
             SELECT c.org_id, $2, c.id FROM calendar_connections c
              WHERE c.org_id = $1 AND c.status = 'active' AND c.resource = $3
             ON CONFLICT (org_id, appointment_id, connection_id) DO NOTHING",
            org,
            id.as_uuid(),
            resource
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(again + added)
    }

    /// What event write (`appointment`, `connection`) must make true; `None` when either is
    /// gone.
    pub async fn calendar_event_target(
        &mut self,
        keyring: &Keyring,
        appointment: AppointmentId,
        connection: CalendarConnectionId,
    ) -> Result<Option<EventTarget>, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"SELECT a.status AS "status: AppointmentStatus", a.resource, a.starts_at, a.ends_at,
                      a.notes, ct.name AS "contact_name?", w.event_id,
                      o.name AS clinic_name,
                      coalesce(ac.time_zone, 'UTC') AS "time_zone!"
                 FROM calendar_event_writes w
                 JOIN appointments a ON a.org_id = w.org_id AND a.id = w.appointment_id
                 JOIN organizations o ON o.id = w.org_id
                 LEFT JOIN contacts ct ON ct.org_id = a.org_id AND ct.id = a.contact_id
                 LEFT JOIN agent_configurations ac ON ac.org_id = w.org_id
                WHERE w.org_id = $1 AND w.appointment_id = $2 AND w.connection_id = $3"#,
            org,
            appointment.as_uuid(),
            connection.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = row else { return Ok(None) };
        // Written to the clinic's calendar provider: the appointment and its patient's name.
        self.note_access(
            crate::access::subject::APPOINTMENT,
            Some(appointment.into()),
            crate::Action::Read,
            [],
        );
        let Some(link) = self.calendar_link(keyring, connection).await? else {
            return Ok(None);
        };
        Ok(Some(EventTarget {
            link,
            appointment_status: row.status,
            appointment_resource: row.resource,
            starts_at: row.starts_at,
            ends_at: row.ends_at,
            notes: self.open_opt(
                crate::encrypted::APPOINTMENT_NOTES,
                appointment.as_uuid(),
                row.notes,
            )?,
            contact_name: row.contact_name,
            clinic_name: row.clinic_name,
            time_zone: row.time_zone,
            event_id: row.event_id,
        }))
    }

    /// Records that the calendar has version `wanted` of the appointment: its event `event_id`
    /// over `span` (both `None` when the event was removed), if claim `attempt` still holds
    /// the write. The write is `synced`, or pending again if a newer version was asked for
    /// meanwhile. Returns whether it did.
    pub async fn calendar_event_written(
        &mut self,
        appointment: AppointmentId,
        connection: CalendarConnectionId,
        attempt: i32,
        wanted: i32,
        event_id: Option<&str>,
        span: Option<Span>,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE calendar_event_writes
                SET event_id = $5, written_starts_at = $6, written_ends_at = $7, written = $4,
                    status = CASE WHEN wanted = $4 THEN 'synced' ELSE 'pending' END,
                    attempts = CASE WHEN wanted = $4 THEN attempts ELSE 0 END,
                    lease_until = NULL, last_error = NULL, updated_at = now()
              WHERE org_id = $1 AND appointment_id = $2 AND connection_id = $3
                AND status = 'writing' AND attempts = $8",
            org,
            appointment.as_uuid(),
            connection.as_uuid(),
            wanted,
            event_id,
            span.map(|s| s.start),
            span.map(|s| s.end),
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// Records a failed event write: back in the queue at `after`'s time, or `failed` with
    /// `error` for the appointment to show, if claim `attempt` still holds it. Returns whether
    /// it did.
    pub async fn calendar_event_failed(
        &mut self,
        appointment: AppointmentId,
        connection: CalendarConnectionId,
        attempt: i32,
        error: &str,
        after: AfterFailure,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let (status, next) = match after {
            AfterFailure::RetryAt(at) => (CalendarWriteStatus::Pending, Some(at)),
            AfterFailure::GiveUp => (CalendarWriteStatus::Failed, None),
        };
        Ok(sqlx::query!(
            "UPDATE calendar_event_writes
                SET status = $4, next_attempt_at = $5, last_error = $6, lease_until = NULL,
                    updated_at = now()
              WHERE org_id = $1 AND appointment_id = $2 AND connection_id = $3
                AND status = 'writing' AND attempts = $7",
            org,
            appointment.as_uuid(),
            connection.as_uuid(),
            status.as_str(),
            next,
            clip(error, MAX_ERROR_CHARS),
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// The appointment's events in the clinic's calendars.
    pub async fn appointment_calendar_events(
        &mut self,
        appointment: AppointmentId,
    ) -> Result<Vec<CalendarEvent>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as!(
            CalendarEvent,
            r#"SELECT w.connection_id AS "connection_id: CalendarConnectionId",
                      c.provider AS "provider: CalendarProvider",
                      w.status AS "status: CalendarWriteStatus", w.event_id, w.last_error,
                      w.updated_at
                 FROM calendar_event_writes w
                 JOIN calendar_connections c ON c.org_id = w.org_id AND c.id = w.connection_id
                WHERE w.org_id = $1 AND w.appointment_id = $2
                ORDER BY c.created_at, c.id"#,
            org,
            appointment.as_uuid()
        )
        .fetch_all(self.conn())
        .await?)
    }

    /// What the calendars of `resource` say is busy in `window`, by the cache the sync job
    /// keeps: never a call to a provider, so availability answers in time whatever the
    /// providers do. An event Voxanne wrote itself (a busy span exactly its appointment's
    /// event) is left out: the appointment is busy on its own account, and moving it must not
    /// collide with its own old event. `fresh_for`: how old a sync may be and still count as
    /// current.
    pub async fn calendar_busy(
        &mut self,
        resource: &str,
        window: Span,
        fresh_for: chrono::Duration,
    ) -> Result<CalendarBusy, DbError> {
        let org = self.org().as_uuid();
        let spans = sqlx::query!(
            r#"SELECT b.starts_at, b.ends_at
                 FROM calendar_busy b
                 JOIN calendar_connections c ON c.org_id = b.org_id AND c.id = b.connection_id
                WHERE b.org_id = $1 AND c.resource = $2
                  AND tstzrange(b.starts_at, b.ends_at) && tstzrange($3, $4)
                  AND NOT EXISTS (
                        SELECT 1 FROM calendar_event_writes w
                         WHERE w.org_id = b.org_id AND w.connection_id = b.connection_id
                           AND w.written_starts_at = b.starts_at
                           AND w.written_ends_at = b.ends_at)
                ORDER BY b.starts_at"#,
            org,
            resource,
            window.start,
            window.end
        )
        .fetch_all(self.conn())
        .await?
        .into_iter()
        .map(|row| Span {
            start: row.starts_at,
            end: row.ends_at,
        })
        .collect();
        let stale = sqlx::query_scalar!(
            r#"SELECT id AS "id: CalendarConnectionId" FROM calendar_connections
                WHERE org_id = $1 AND resource = $2
                  AND (status <> 'active' OR busy_synced_at IS NULL
                       OR busy_synced_at < now() - $5 * interval '1 millisecond'
                       OR busy_from > $3 OR busy_until < $4)
                ORDER BY id"#,
            org,
            resource,
            window.start,
            window.end,
            fresh_for.num_milliseconds() as f64
        )
        .fetch_all(self.conn())
        .await?;
        Ok(CalendarBusy { spans, stale })
    }
}

/// A fresh secret for a push channel or subscription: 32 random bytes, base64url. Its
/// notifications carry it back (`X-Goog-Channel-Token`, Graph's `clientState`, which allows
/// up to 128 characters).
pub fn new_watch_token() -> String {
    use aes_gcm::aead::rand_core::RngCore;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a watch's secret: its sha256.
pub fn watch_token_hash(token: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).into()
}
