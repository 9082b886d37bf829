//! SMS confirmations of appointments: queued with the booking (in its transaction), sent by
//! the worker (`voxanne_jobs::sms`), moved on by the provider's status callbacks. Every write
//! here runs in the clinic's tenant transaction; claiming, which spans orgs, is in `system.rs`.

use crate::access::subject;
use crate::encrypted::SMS_BODY;
use crate::recordings::AfterFailure;
use crate::rows::{query_row, tenant_row, After, FromStored};
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::{confirmation_body, moved_body, AppointmentId, SmsId, SmsStatus};

/// A row of `sms_confirmation_logs` (the API's view is the HTTP layer's), its body opened;
/// `SmsConfirmation<Vec<u8>>` as stored, encrypted (encrypted.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsConfirmation<Text = String> {
    pub id: voxanne_domain::SmsId,
    pub appointment_id: Option<voxanne_domain::AppointmentId>,
    /// The appointment's start this message confirms (a move is confirmed by a new message).
    pub appointment_starts_at: Option<DateTime<Utc>>,
    pub to_number: String,
    /// The clinic's number it was sent from, once sent.
    pub from_number: Option<String>,
    pub body: Text,
    /// `confirmation` (of a booking or a move) or `reminder`.
    pub kind: String,
    /// When a reminder is due (kept once it went).
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

type StoredSms = SmsConfirmation<Vec<u8>>;

impl FromStored<StoredSms> for SmsConfirmation {
    fn from_stored(tx: &TenantTx, s: StoredSms) -> Result<Self, DbError> {
        Ok(SmsConfirmation {
            body: tx.open(SMS_BODY, s.id.as_uuid(), &s.body)?,
            id: s.id,
            appointment_id: s.appointment_id,
            appointment_starts_at: s.appointment_starts_at,
            to_number: s.to_number,
            from_number: s.from_number,
            kind: s.kind,
            scheduled_for: s.scheduled_for,
            provider_message_id: s.provider_message_id,
            status: s.status,
            attempts: s.attempts,
            next_attempt_at: s.next_attempt_at,
            last_error: s.last_error,
            created_at: s.created_at,
            updated_at: s.updated_at,
        })
    }
}

/// `query_as!` for [`SmsConfirmation`]: the column list goes between the first two pieces.
macro_rules! sms_query {
    ($($query:tt)*) => {
        query_row!(
            StoredSms,
            r#"id, appointment_id AS "appointment_id: AppointmentId", appointment_starts_at,
               to_number, from_number, body, kind, scheduled_for, provider_message_id, status AS "status: SmsStatus",
               attempts, next_attempt_at, last_error, created_at, updated_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    SmsConfirmation,
    SmsId,
    "sms_confirmation_logs",
    sms_query,
    subject = "sms",
    patient = |_| None,
);

/// `last_error` holds at most this many characters.
const MAX_ERROR_CHARS: usize = 2000;

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}

/// Why an appointment's confirmation is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// It was just booked.
    Booked,
    /// It was just moved to a new start.
    Moved,
}

/// Where a message goes and how, for the worker: read in the clinic's tenant transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmsRoute {
    /// The number is on the clinic's do-not-call list.
    pub do_not_contact: bool,
    /// The appointment the message confirms was cancelled (or is no longer booked).
    pub appointment_gone: bool,
    /// The appointment moved after the message was queued: a later one confirms the new start.
    pub superseded: bool,
    /// The numbers the clinic owns, oldest first.
    pub clinic_numbers: Vec<String>,
    /// A reminder (rather than a confirmation): it goes only out of the clinic's quiet hours
    /// and before the appointment.
    pub reminder: Option<ReminderWindow>,
}

/// When a reminder may still go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderWindow {
    /// The appointment's start: nothing is reminded after it.
    pub starts_at: DateTime<Utc>,
    pub quiet_hours: voxanne_domain::messages::QuietHours,
    /// The clinic's time zone (UTC if it has none or an unknown one).
    pub time_zone: chrono_tz::Tz,
}

impl TenantTx {
    pub async fn list_sms_confirmations(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<SmsConfirmation>, DbError> {
        self.page::<SmsConfirmation>(after, limit).await
    }

    pub async fn get_sms_confirmation(
        &mut self,
        id: SmsId,
    ) -> Result<Option<SmsConfirmation>, DbError> {
        self.find::<SmsConfirmation>(id).await
    }

    /// Queues the confirmation of an appointment just booked or moved, in that change's
    /// transaction: to its contact's phone, in the clinic's time zone (its agent
    /// configuration's, else UTC). A move first supersedes the appointment's confirmations that
    /// are still queued (they would name the old start). Nothing when the appointment has no
    /// contact or the contact no phone. Returns the queued row's id.
    pub(crate) async fn queue_confirmation(
        &mut self,
        appointment_id: voxanne_domain::AppointmentId,
        contact_id: Option<voxanne_domain::ContactId>,
        starts_at: DateTime<Utc>,
        why: Confirm,
    ) -> Result<Option<Uuid>, DbError> {
        let org = self.org().as_uuid();
        if why == Confirm::Moved {
            sqlx::query!(
                "UPDATE sms_confirmation_logs
                    SET status = 'suppressed', updated_at = now(), next_attempt_at = NULL,
                        last_error = 'superseded: the appointment moved before this was sent'
                  WHERE org_id = $1 AND appointment_id = $2 AND status = 'queued'",
                org,
                appointment_id.as_uuid()
            )
            .execute(self.conn())
            .await?;
        }
        let Some(contact_id) = contact_id else {
            return Ok(None);
        };
        let found = sqlx::query!(
            r#"SELECT c.phone AS "phone!", o.name, a.time_zone AS "time_zone?"
                 FROM contacts c
                 JOIN organizations o ON o.id = c.org_id
                 LEFT JOIN agent_configurations a ON a.org_id = c.org_id
                WHERE c.org_id = $1 AND c.id = $2 AND c.phone IS NOT NULL"#,
            org,
            contact_id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?
        .map(|row| (row.phone, row.name, row.time_zone));
        let Some((phone, clinic, time_zone)) = found else {
            return Ok(None);
        };
        let time_zone = time_zone.as_deref().unwrap_or("UTC");
        let body = match why {
            Confirm::Booked => confirmation_body(&clinic, starts_at, time_zone),
            Confirm::Moved => moved_body(&clinic, starts_at, time_zone),
        };
        let id = Uuid::new_v4();
        let body = self.seal(SMS_BODY, id, &body)?;
        let id = sqlx::query_scalar!(
            "INSERT INTO sms_confirmation_logs
                    (org_id, id, appointment_id, to_number, body, appointment_starts_at)
             VALUES ($1, $6, $2, $3, $4, $5) RETURNING id",
            org,
            appointment_id.as_uuid(),
            phone,
            body,
            starts_at,
            id
        )
        .fetch_one(self.conn())
        .await?;
        self.queue_reminders(appointment_id, &phone, &clinic, time_zone, starts_at)
            .await?;
        let patient = Some(contact_id.as_uuid());
        self.note_access(subject::SMS, Some(id), Action::Create, patient);
        Ok(Some(id))
    }

    /// The text of a claimed message (`crate::system::claim_sms`), opened for this clinic.
    pub fn claimed_sms_body(&self, job: &crate::system::ClaimedSms) -> Result<String, DbError> {
        self.open(SMS_BODY, job.sms_id.as_uuid(), &job.body)
    }

    /// What the worker needs to know before sending message `sms_id` to `to_number` for
    /// `appointment_id`.
    pub async fn sms_route(
        &mut self,
        sms_id: SmsId,
        to_number: &str,
        appointment_id: Option<AppointmentId>,
    ) -> Result<SmsRoute, DbError> {
        let org = self.org().as_uuid();
        let (sms_id, appointment_id) = (sms_id.as_uuid(), appointment_id.map(Uuid::from));
        let route = sqlx::query!(
            r#"SELECT EXISTS (SELECT 1 FROM dnc_list WHERE org_id = $1 AND phone = $2)
                        AS "do_not_contact!",
                      EXISTS (SELECT 1 FROM appointments
                               WHERE org_id = $1 AND id = $3 AND status <> 'booked')
                        AS "appointment_gone!",
                      EXISTS (SELECT 1 FROM appointments a
                                JOIN sms_confirmation_logs s
                                  ON s.org_id = a.org_id AND s.appointment_id = a.id
                               WHERE a.org_id = $1 AND a.id = $3 AND s.id = $4
                                 AND s.appointment_starts_at IS DISTINCT FROM a.starts_at
                                 AND s.appointment_starts_at IS NOT NULL)
                        AS "superseded!",
                      coalesce((SELECT array_agg(number ORDER BY created_at, id)
                                  FROM phone_numbers WHERE org_id = $1), '{}')
                        AS "clinic_numbers!",
                      (SELECT s.kind = 'reminder' FROM sms_confirmation_logs s
                        WHERE s.org_id = $1 AND s.id = $4) AS "reminder?",
                      (SELECT starts_at FROM appointments WHERE org_id = $1 AND id = $3)
                        AS "starts_at?",
                      (SELECT time_zone FROM agent_configurations WHERE org_id = $1)
                        AS "time_zone?",
                      (SELECT quiet_start FROM messaging_settings WHERE org_id = $1)
                        AS "quiet_start?",
                      (SELECT quiet_end FROM messaging_settings WHERE org_id = $1)
                        AS "quiet_end?""#,
            org,
            to_number,
            appointment_id,
            sms_id
        )
        .fetch_one(self.conn())
        .await?;
        Ok(SmsRoute {
            do_not_contact: route.do_not_contact,
            appointment_gone: route.appointment_gone,
            superseded: route.superseded,
            clinic_numbers: route.clinic_numbers,
            reminder: match (route.reminder, route.starts_at) {
                (Some(true), Some(starts_at)) => Some(ReminderWindow {
                    starts_at,
                    quiet_hours: match (route.quiet_start, route.quiet_end) {
                        (Some(start), Some(end)) => {
                            voxanne_domain::messages::QuietHours { start, end }
                        }
                        _ => crate::messages::default_quiet_hours(),
                    },
                    time_zone: route
                        .time_zone
                        .and_then(|tz| tz.parse().ok())
                        .unwrap_or(chrono_tz::Tz::UTC),
                }),
                _ => None,
            },
        })
    }

    /// The message was never sent, for `reason`; it stays so. Conditional on this claim
    /// (`attempt`) still holding it, like every write of the worker: returns whether it did.
    pub async fn sms_suppressed(
        &mut self,
        id: SmsId,
        attempt: i32,
        reason: &str,
    ) -> Result<bool, DbError> {
        self.note_access(subject::SMS, Some(id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let id = id.as_uuid();
        Ok(sqlx::query!(
            "UPDATE sms_confirmation_logs
                SET status = 'suppressed', last_error = $3, lease_until = NULL,
                    next_attempt_at = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'sending' AND attempts = $4",
            org,
            id,
            clip(reason),
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// A reminder claimed in the clinic's quiet hours goes back to the queue until `at`; the
    /// claim is not counted as an attempt. Returns whether this claim still held it.
    pub async fn sms_deferred(
        &mut self,
        id: SmsId,
        attempt: i32,
        at: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        self.note_access(subject::SMS, Some(id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            "UPDATE sms_confirmation_logs
                SET status = 'queued', attempts = greatest(attempts - 1, 0), next_attempt_at = $3,
                    lease_until = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'sending' AND attempts = $4",
            org,
            id.as_uuid(),
            at,
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// The provider accepted the message: its id (if it gave one), the status it is in
    /// (`sent` or already an outcome), and the number it went from; `note` (if any) is kept
    /// as `last_error`. Returns whether this claim still held the message.
    pub async fn sms_sent(
        &mut self,
        id: SmsId,
        attempt: i32,
        provider_message_id: Option<&str>,
        status: SmsStatus,
        from_number: &str,
        note: Option<&str>,
    ) -> Result<bool, DbError> {
        self.note_access(subject::SMS, Some(id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let id = id.as_uuid();
        Ok(sqlx::query!(
            "UPDATE sms_confirmation_logs
                SET status = $3, provider_message_id = $4, from_number = $5, last_error = $6,
                    lease_until = NULL, next_attempt_at = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'sending' AND attempts = $7",
            org,
            id,
            status.as_str(),
            provider_message_id,
            from_number,
            note.map(clip),
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// A failed attempt: back in the queue (not before the given time) or `failed` for good,
    /// with the error kept. Returns whether this claim still held the message.
    pub async fn sms_failed(
        &mut self,
        id: SmsId,
        attempt: i32,
        error: &str,
        after: AfterFailure,
    ) -> Result<bool, DbError> {
        self.note_access(subject::SMS, Some(id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let id = id.as_uuid();
        let (status, next) = match after {
            AfterFailure::RetryAt(at) => (SmsStatus::Queued, Some(at)),
            AfterFailure::GiveUp => (SmsStatus::Failed, None),
        };
        Ok(sqlx::query!(
            "UPDATE sms_confirmation_logs
                SET status = $3, next_attempt_at = $4, last_error = $5, lease_until = NULL,
                    updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'sending' AND attempts = $6",
            org,
            id,
            status.as_str(),
            next,
            clip(error),
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }

    /// A provider's status callback for its message `provider_message_id` of this clinic:
    /// applied only if it moves the message forward (`SmsStatus::overwrites`), in one
    /// statement, so two callbacks racing each other still end at the higher rank. `error`
    /// (the provider's error code, for an outcome that is a failure) is kept. Returns whether
    /// the row changed: `false` for an unknown id, a stale status, or a suppressed message.
    pub async fn apply_sms_status(
        &mut self,
        provider_message_id: &str,
        status: SmsStatus,
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let lower: Vec<String> = status
            .overwrites()
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        Ok(sqlx::query!(
            "UPDATE sms_confirmation_logs
                SET status = $3, last_error = coalesce($4, last_error), updated_at = now()
              WHERE org_id = $1 AND provider_message_id = $2 AND status = ANY($5)",
            org,
            provider_message_id,
            status.as_str(),
            error.map(clip),
            &lower
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0)
    }
}
