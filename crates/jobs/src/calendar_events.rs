//! The calendar event writer: every booking, move and cancellation lands in the clinic's
//! diary.
//!
//! Booking, moving or cancelling an appointment queues, in the booking's own transaction, one
//! write per linked calendar of its resource (`TenantTx::queue_calendar_writes`): the database
//! is the truth, and this [`Job`] makes each calendar match it. `app.claim_calendar_writes`
//! claims them (ONE statement, fair across the clinics). For one write: read the appointment
//! as it is now and the calendar's tokens (tenant transaction; commit), then, with no
//! transaction open, create or update its event (a booked appointment of the calendar's
//! resource) or remove it (cancelled, or no longer this calendar's resource), and record the
//! outcome conditional on the claim's attempt.
//!
//! Writes are idempotent: Google's event id is derived from the appointment's, Graph's
//! create carries the appointment's id as its `transactionId`, so a write retried after a
//! lost answer does not make a second event. A 5xx, 429 (after its `Retry-After`), timeout
//! or expired token is retried with backoff; a refusal (4xx) fails at once, and the failure
//! is visible on the appointment (`GET /appointments/{id}`, `calendar_events`).

use crate::job::{open_tenant, Claim, Failure, Job, Schedule};
use crate::metrics::{JobCounters, Metrics};
use crate::JobError;
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_calendar::{CalendarError, CalendarOAuth, CalendarRef, EventWrite};
use voxanne_db::calendar_sync::EventTarget;
use voxanne_db::crypto::Keyring;
use voxanne_db::recordings::AfterFailure;
use voxanne_db::system::{self, ClaimedCalendarWrite};
use voxanne_db::{Db, DbError};
use voxanne_domain::availability::Span;
use voxanne_domain::{CalendarConnectionStatus, OrgId};

/// An access token this close to its expiry is not used: the sync refreshes it first.
const TOKEN_MARGIN: chrono::Duration = chrono::Duration::seconds(30);

/// What one write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The calendar has the appointment's event, `event_id`.
    Written { event_id: String },
    /// The calendar no longer has an event for it.
    Removed,
    /// Failed; back in the queue for a later attempt.
    Retry { error: String },
    /// Refused for good: the appointment shows it.
    Failed { error: String },
    /// The claim no longer held, the appointment or the calendar is gone, or the org is no
    /// longer active: nothing written.
    Abandoned,
}

impl From<Failure> for WriteOutcome {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Retry { error } => Self::Retry { error },
            Failure::Failed { error } => Self::Failed { error },
            Failure::Abandoned => Self::Abandoned,
        }
    }
}

impl Claim for ClaimedCalendarWrite {
    fn org(&self) -> OrgId {
        self.org_id
    }
    fn id(&self) -> Uuid {
        self.appointment_id.into()
    }
    fn attempt(&self) -> i32 {
        self.attempt
    }
}

/// The calendar event writer. Several may run at once against one database.
#[derive(Clone)]
pub struct CalendarWriter {
    db: Db,
    keyring: Arc<Keyring>,
    providers: Arc<CalendarOAuth>,
    schedule: Schedule,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CalendarWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarWriter")
            .field("schedule", &self.schedule)
            .finish()
    }
}

/// The event's title and text: who and where, for the staff reading their diary.
fn event_of(target: &EventTarget, appointment: Uuid) -> EventWrite {
    let summary = match &target.contact_name {
        Some(name) => format!("Appointment: {name}"),
        None => "Appointment".to_owned(),
    };
    let mut description = format!(
        "Booked with Voxanne for {} ({}).",
        target.clinic_name, target.appointment_resource
    );
    if let Some(notes) = target.notes.as_deref().filter(|n| !n.trim().is_empty()) {
        description.push_str("\n\n");
        description.push_str(notes);
    }
    EventWrite {
        appointment_id: appointment,
        existing_event_id: target.event_id.clone(),
        summary,
        description,
        start: target.starts_at,
        end: target.ends_at,
        time_zone: target.time_zone.clone(),
    }
}

impl Job for CalendarWriter {
    const NAME: &'static str = "calendar_events";
    type Claimed = ClaimedCalendarWrite;
    type Outcome = WriteOutcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.calendar_events
    }

    async fn claim_due(
        db: &Db,
        batch: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedCalendarWrite>, DbError> {
        system::claim_calendar_writes(db, batch, lease).await
    }

    async fn requeue_stale(db: &Db) -> Result<i64, DbError> {
        system::requeue_stale_calendar_writes(db).await
    }

    async fn process(&self, claim: &ClaimedCalendarWrite) -> Result<WriteOutcome, JobError> {
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-writes").await? else {
            return Ok(WriteOutcome::Abandoned);
        };
        let target = tx
            .calendar_event_target(&self.keyring, claim.appointment_id, claim.connection_id)
            .await?;
        tx.commit().await?;
        let Some(target) = target else {
            return Ok(WriteOutcome::Abandoned);
        };
        if target.link.status == CalendarConnectionStatus::Broken {
            return self
                .fail(
                    claim,
                    "the calendar connection is broken: link the account again".to_owned(),
                    true,
                    None,
                )
                .await;
        }
        let Some(access) = target.link.tokens.access_token.clone().filter(|_| {
            target
                .link
                .token_expires_at
                .is_none_or(|at| at - Utc::now() > TOKEN_MARGIN)
        }) else {
            // The sync job is the one that refreshes: ask it to, and come back.
            if let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-writes").await?
            {
                tx.calendar_sync_now(claim.connection_id).await?;
                tx.commit().await?;
            }
            return self
                .fail(
                    claim,
                    "waiting for a fresh access token".to_owned(),
                    false,
                    None,
                )
                .await;
        };
        let cal = CalendarRef {
            provider: target.link.provider,
            calendar_id: &target.link.calendar_id,
            account_email: &target.link.account_email,
        };
        let appointment: Uuid = claim.appointment_id.into();

        let result = if target.wants_event() {
            let mut event = event_of(&target, appointment);
            let mut written = self.providers.upsert_event(&cal, &access, &event).await;
            if matches!(written, Err(CalendarError::NotFound { .. }))
                && event.existing_event_id.is_some()
            {
                // Deleted in the calendar meanwhile: it is made again.
                event.existing_event_id = None;
                written = self.providers.upsert_event(&cal, &access, &event).await;
            }
            written.map(Some)
        } else {
            match &target.event_id {
                Some(id) => self
                    .providers
                    .delete_event(&cal, &access, id)
                    .await
                    .map(|()| None),
                None => Ok(None),
            }
        };

        match result {
            Ok(event_id) => {
                let span = event_id.as_ref().map(|_| Span {
                    start: target.starts_at,
                    end: target.ends_at,
                });
                let Some(mut tx) =
                    open_tenant(&self.db, claim.org_id, "job:calendar-writes").await?
                else {
                    return Ok(WriteOutcome::Abandoned);
                };
                let recorded = tx
                    .calendar_event_written(
                        claim.appointment_id,
                        claim.connection_id,
                        claim.attempt,
                        claim.wanted,
                        event_id.as_deref(),
                        span,
                    )
                    .await?;
                tx.commit().await?;
                if !recorded {
                    return Ok(WriteOutcome::Abandoned);
                }
                self.metrics.calendar_events.done.inc();
                Ok(match event_id {
                    Some(event_id) => WriteOutcome::Written { event_id },
                    None => WriteOutcome::Removed,
                })
            }
            Err(e) => {
                if matches!(e, CalendarError::Unauthorized { .. }) {
                    if let Some(mut tx) =
                        open_tenant(&self.db, claim.org_id, "job:calendar-writes").await?
                    {
                        tx.calendar_sync_now(claim.connection_id).await?;
                        tx.commit().await?;
                    }
                }
                let permanent = e.permanent();
                let retry_after = e.retry_after();
                self.fail(claim, e.to_string(), permanent, retry_after)
                    .await
            }
        }
    }
}

impl CalendarWriter {
    pub fn new(
        db: Db,
        keyring: Arc<Keyring>,
        providers: Arc<CalendarOAuth>,
        schedule: Schedule,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            keyring,
            providers,
            schedule,
            metrics,
        }
    }

    /// Records a failed attempt: `failed` for good when `permanent` or at the last attempt,
    /// else back in the queue after a backoff, and not before the provider's `Retry-After`.
    async fn fail(
        &self,
        claim: &ClaimedCalendarWrite,
        error: String,
        permanent: bool,
        retry_after: Option<Duration>,
    ) -> Result<WriteOutcome, JobError> {
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-writes").await? else {
            return Ok(WriteOutcome::Abandoned);
        };
        let message = error.clone();
        let tx_ref = &mut tx;
        let write = move |after: AfterFailure| {
            let after = match (after, retry_after) {
                (AfterFailure::RetryAt(at), Some(wait)) => AfterFailure::RetryAt(
                    at.max(Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default()),
                ),
                (after, _) => after,
            };
            async move {
                tx_ref
                    .calendar_event_failed(
                        claim.appointment_id,
                        claim.connection_id,
                        claim.attempt,
                        &error,
                        after,
                    )
                    .await
            }
        };
        let outcome = self.failed(claim, message, permanent, write).await?.into();
        tx.commit().await?;
        Ok(outcome)
    }
}
