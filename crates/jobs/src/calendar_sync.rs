//! The calendar sync: keeps each linked calendar's tokens fresh and its busy times cached.
//!
//! A [`Job`] over the connections: `app.claim_calendar_syncs` claims the due ones (ONE
//! statement, fair across the active clinics). For one connection:
//! 1. In the clinic's tenant transaction, read it (its tokens opened); commit.
//! 2. If its access token expires within `refresh_before` (or is missing), refresh it at the
//!    provider's token endpoint and store the new tokens (a refresh token the provider rotated
//!    replaces the old one). `invalid_grant`, the grant revoked or expired, makes the
//!    connection `broken` with a security event; nothing calls the provider with it again
//!    until the clinic links the account again.
//! 3. Read its busy times for `[now - look_back, now + look_ahead)` (Google's freeBusy.query,
//!    Graph's getSchedule; a 401 is answered by one refresh and one retry) and replace the
//!    cached ones; the next sync is due `interval` later (or at once when a push
//!    notification asked for one meanwhile).
//!
//! A provider that fails (down, slow, 429) leaves the cached busy times as they are; the sync
//! is tried again after a backoff (at least the provider's `Retry-After`), and never given up:
//! only `invalid_grant` breaks a link. No transaction is open while a provider answers.

use crate::job::{open_tenant, Claim, Job, Schedule};
use crate::metrics::{JobCounters, Metrics};
use crate::JobError;
use chrono::Utc;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_calendar::{CalendarError, CalendarOAuth, CalendarRef};
use voxanne_db::calendar_sync::CalendarLink;
use voxanne_db::crypto::Keyring;
use voxanne_db::system::{self, ClaimedCalendarSync};
use voxanne_db::{Db, DbError};
use voxanne_domain::availability::Span;
use voxanne_domain::{CalendarConnectionStatus, CalendarProvider, OrgId};

/// Cancels an appointment whose event staff deleted; one no longer booked (completed,
/// cancelled meanwhile) is left as it is.
async fn cancel(
    tx: &mut voxanne_db::TenantTx,
    id: voxanne_domain::AppointmentId,
) -> Result<(), JobError> {
    use voxanne_db::appointments::BookingError;
    match tx.cancel_appointment(id).await {
        Ok(_) | Err(BookingError::NotBooked(_) | BookingError::NotFound) => Ok(()),
        Err(BookingError::Db(e)) => Err(JobError::Db(e)),
        Err(other) => Err(JobError::Db(DbError::Corrupt(other.to_string()))),
    }
}

/// The sync's knobs.
#[derive(Debug, Clone)]
pub struct CalendarSyncConfig {
    /// Batch, lease and polling; `backoff_*` space the retries of a failing provider
    /// (`max_attempts` is not used: a sync is never given up).
    pub schedule: Schedule,
    /// The next sync after a successful one (push notifications bring it forward).
    pub interval: Duration,
    /// An access token is refreshed when it expires within this.
    pub refresh_before: Duration,
    /// The busy times read: from `look_back` ago to `look_ahead` from now.
    pub look_back: Duration,
    pub look_ahead: Duration,
    /// Voxanne's public base URL: when set, each calendar gets a push channel (Google) or
    /// subscription (Graph) notifying `{public_url}/webhooks/calendar/{provider}`, renewed
    /// before it ends.
    pub public_url: Option<url::Url>,
}

/// Where, under the public URL, the providers' push notifications arrive.
pub fn notification_path(provider: CalendarProvider) -> String {
    format!("/webhooks/calendar/{}", provider.as_str())
}

/// Every upcoming event is compared with its appointment at least this often (and after
/// every push notification); in between, only the events whose busy time vanished.
const FULL_CHECK_EVERY: chrono::Duration = chrono::Duration::hours(1);
/// Events looked up per sync, at most (the rest wait for the next one).
const MAX_EVENTS_CHECKED: u32 = 25;
/// A watch is started again when it ends within this.
const WATCH_RENEW_BEFORE: chrono::Duration = chrono::Duration::days(1);
/// A failed try to start a watch is not repeated within this.
const WATCH_RETRY_AFTER: chrono::Duration = chrono::Duration::hours(1);

/// How long a watch is asked for: Google's channels live up to about a week; Graph's
/// subscriptions on events at most 4230 minutes (documented maxima; the providers may
/// shorten it, and their answer says).
fn watch_lifetime(provider: CalendarProvider) -> chrono::Duration {
    match provider {
        CalendarProvider::Google => chrono::Duration::days(7),
        CalendarProvider::Microsoft => chrono::Duration::minutes(4200),
    }
}

/// Whether `busy` (sorted by start) covers all of `span`.
fn covered(span: Span, busy: &[Span]) -> bool {
    let mut reached = span.start;
    for b in busy {
        if b.start > reached {
            break;
        }
        if b.end > reached {
            reached = b.end;
        }
        if reached >= span.end {
            return true;
        }
    }
    reached >= span.end
}

impl Default for CalendarSyncConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule {
                lease: Duration::from_secs(120),
                backoff_base: Duration::from_secs(30),
                backoff_max: Duration::from_secs(30 * 60),
                ..Schedule::default()
            },
            interval: Duration::from_secs(120),
            refresh_before: Duration::from_secs(10 * 60),
            look_back: Duration::from_secs(24 * 3600),
            look_ahead: Duration::from_secs(62 * 24 * 3600),
            public_url: None,
        }
    }
}

/// What one sync came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// The busy times were read and cached; `refreshed`: the access token was renewed first;
    /// `reflected`: appointments moved or cancelled because staff moved or deleted their
    /// events in the calendar.
    Synced {
        busy: usize,
        refreshed: bool,
        reflected: usize,
    },
    /// The provider refused the grant: the connection is `broken`.
    Broken { reason: String },
    /// Failed; tried again after a backoff. The cached busy times stay.
    Retry { error: String },
    /// The claim no longer held, the connection is gone, or the org is no longer active:
    /// nothing written.
    Abandoned,
}

impl Claim for ClaimedCalendarSync {
    fn org(&self) -> OrgId {
        self.org_id
    }
    fn id(&self) -> Uuid {
        self.connection_id.into()
    }
    fn attempt(&self) -> i32 {
        self.claim
    }
}

/// The calendar sync worker. Several may run at once against one database.
#[derive(Clone)]
pub struct CalendarSync {
    db: Db,
    keyring: Arc<Keyring>,
    providers: Arc<CalendarOAuth>,
    config: CalendarSyncConfig,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for CalendarSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarSync")
            .field("config", &self.config)
            .finish()
    }
}

/// How a token refresh ended.
enum Refresh {
    Fresh(SecretString),
    Ended(SyncOutcome),
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Job for CalendarSync {
    const NAME: &'static str = "calendar_sync";
    type Claimed = ClaimedCalendarSync;
    type Outcome = SyncOutcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.calendar_sync
    }

    async fn claim_due(
        db: &Db,
        batch: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedCalendarSync>, DbError> {
        system::claim_calendar_syncs(db, batch, lease).await
    }

    /// Nothing to put back: a connection whose lease ran out is claimable as it is.
    async fn requeue_stale(_db: &Db) -> Result<i64, DbError> {
        Ok(0)
    }

    async fn process(&self, claim: &ClaimedCalendarSync) -> Result<SyncOutcome, JobError> {
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(SyncOutcome::Abandoned);
        };
        let link = tx.calendar_link(&self.keyring, claim.connection_id).await?;
        tx.commit().await?;
        let Some(link) = link.filter(|l| l.status == CalendarConnectionStatus::Active) else {
            return Ok(SyncOutcome::Abandoned);
        };

        let now = Utc::now();
        let expiring = link
            .token_expires_at
            .is_some_and(|at| at - now < chrono(self.config.refresh_before));
        let mut refreshed = false;
        let mut access = match link.tokens.access_token.clone() {
            Some(token) if !expiring => token,
            _ => match self.refresh(claim, &link).await? {
                Refresh::Fresh(token) => {
                    refreshed = true;
                    token
                }
                Refresh::Ended(outcome) => return Ok(outcome),
            },
        };

        let window = Span {
            start: now - chrono(self.config.look_back),
            end: now + chrono(self.config.look_ahead),
        };
        let cal = CalendarRef {
            provider: link.provider,
            calendar_id: &link.calendar_id,
            account_email: &link.account_email,
        };
        let mut result = self
            .providers
            .free_busy(&cal, &access, window.start, window.end)
            .await;
        if matches!(result, Err(CalendarError::Unauthorized { .. })) && !refreshed {
            // Revoked or expired early: one refresh, one retry.
            access = match self.refresh(claim, &link).await? {
                Refresh::Fresh(token) => token,
                Refresh::Ended(outcome) => return Ok(outcome),
            };
            refreshed = true;
            result = self
                .providers
                .free_busy(&cal, &access, window.start, window.end)
                .await;
        }
        let busy: Vec<Span> = match result {
            Ok(busy) => busy
                .into_iter()
                .map(|b| Span {
                    start: b.start,
                    end: b.end,
                })
                .collect(),
            Err(e) => return self.retry(claim, &e.to_string(), e.retry_after()).await,
        };

        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(SyncOutcome::Abandoned);
        };
        let next = Utc::now() + chrono(self.config.interval);
        let stored = tx
            .calendar_busy_synced(
                claim.connection_id,
                claim.claim,
                claim.due_at,
                window.start,
                window.end,
                &busy,
                next,
            )
            .await?;
        tx.commit().await?;
        if !stored {
            return Ok(SyncOutcome::Abandoned);
        }
        self.metrics.calendar_sync.done.inc();
        tracing::debug!(org_id = %claim.org_id, connection_id = %claim.connection_id,
            busy = busy.len(), refreshed, "calendar busy times synced");
        let reflected = self.reflect(claim, &link, &cal, &access, &busy).await?;
        self.ensure_watch(claim, &link, &cal, &access).await?;
        Ok(SyncOutcome::Synced {
            busy: busy.len(),
            refreshed,
            reflected,
        })
    }
}

impl CalendarSync {
    pub fn new(
        db: Db,
        keyring: Arc<Keyring>,
        providers: Arc<CalendarOAuth>,
        config: CalendarSyncConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            keyring,
            providers,
            config,
            metrics,
        }
    }

    /// Makes the appointments follow what staff did to their events in the calendar: an
    /// event deleted cancels its appointment, an event moved moves it. Looks up the events
    /// whose busy time is no longer in `busy`, or all upcoming ones after a push notification
    /// and every [`FULL_CHECK_EVERY`]. Returns how many appointments changed. A lookup that
    /// fails ends the check (the next sync does it again).
    async fn reflect(
        &self,
        claim: &ClaimedCalendarSync,
        link: &CalendarLink,
        cal: &CalendarRef<'_>,
        access: &SecretString,
        busy: &[Span],
    ) -> Result<usize, JobError> {
        let full = link.notifications > link.notifications_checked
            || link
                .events_checked_at
                .is_none_or(|at| Utc::now() - at > FULL_CHECK_EVERY);
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(0);
        };
        let written = tx
            .calendar_written_events(claim.connection_id, MAX_EVENTS_CHECKED)
            .await?;
        tx.commit().await?;
        let mut changed = 0;
        let mut complete = true;
        for event in written
            .into_iter()
            .filter(|e| full || !covered(e.span, busy))
        {
            let remote = match self.providers.get_event(cal, access, &event.event_id).await {
                Ok(remote) => remote,
                Err(e) => {
                    tracing::warn!(org_id = %claim.org_id, connection_id = %claim.connection_id,
                        error = %e, "looking up a calendar event failed");
                    complete = false;
                    break;
                }
            };
            let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await?
            else {
                return Ok(changed);
            };
            match remote {
                None => {
                    cancel(&mut tx, event.appointment_id).await?;
                    tracing::info!(org_id = %claim.org_id, appointment_id = %event.appointment_id,
                        "appointment cancelled: its event was deleted in the calendar");
                    changed += 1;
                }
                Some(remote) if remote.cancelled => {
                    cancel(&mut tx, event.appointment_id).await?;
                    tracing::info!(org_id = %claim.org_id, appointment_id = %event.appointment_id,
                        "appointment cancelled: its event was cancelled in the calendar");
                    changed += 1;
                }
                Some(remote)
                    if (remote.start, remote.end) != (event.span.start, event.span.end) =>
                {
                    let span = Span {
                        start: remote.start,
                        end: remote.end,
                    };
                    match tx
                        .appointment_moved_in_calendar(
                            event.appointment_id,
                            claim.connection_id,
                            span,
                        )
                        .await
                    {
                        Ok(_) => {
                            tracing::info!(org_id = %claim.org_id,
                                appointment_id = %event.appointment_id,
                                "appointment moved: its event was moved in the calendar");
                            changed += 1;
                        }
                        Err(e) => {
                            // The new time is taken (or the move is invalid): Voxanne's
                            // appointment stays, and its event is written back.
                            drop(tx);
                            tracing::warn!(org_id = %claim.org_id,
                                appointment_id = %event.appointment_id, error = %e,
                                "an event moved in the calendar onto a time that is not free; \
                                 the appointment stays and its event is put back");
                            let Some(mut again) =
                                open_tenant(&self.db, claim.org_id, "job:calendar-sync").await?
                            else {
                                return Ok(changed);
                            };
                            again
                                .queue_calendar_writes(event.appointment_id, &link.resource)
                                .await?;
                            again.commit().await?;
                            continue;
                        }
                    }
                }
                Some(_) => {}
            }
            tx.commit().await?;
        }
        if full && complete {
            if let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? {
                tx.calendar_events_checked(claim.connection_id, claim.claim, link.notifications)
                    .await?;
                tx.commit().await?;
            }
        }
        Ok(changed)
    }

    /// Starts a push channel (Google) or subscription (Graph) on the calendar when there is
    /// none or it ends soon, if a public URL is configured. A failure is logged and tried
    /// again later; it never fails the sync (which runs every `interval` anyway).
    async fn ensure_watch(
        &self,
        claim: &ClaimedCalendarSync,
        link: &CalendarLink,
        cal: &CalendarRef<'_>,
        access: &SecretString,
    ) -> Result<(), JobError> {
        let Some(base) = &self.config.public_url else {
            return Ok(());
        };
        let now = Utc::now();
        let ending = link
            .watch
            .expires_at
            .is_none_or(|at| at - now < WATCH_RENEW_BEFORE);
        let tried = link
            .watch
            .attempted_at
            .is_some_and(|at| now - at < WATCH_RETRY_AFTER);
        if !ending || tried {
            return Ok(());
        }
        let Ok(address) = base.join(&notification_path(link.provider)) else {
            return Ok(());
        };
        let token = voxanne_db::calendar_sync::new_watch_token();
        let started = self
            .providers
            .watch(
                cal,
                access,
                &address,
                Uuid::new_v4(),
                &token,
                now + watch_lifetime(link.provider),
            )
            .await;
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(());
        };
        match started {
            Ok(watch) => {
                tx.calendar_watch_started(
                    claim.connection_id,
                    claim.claim,
                    &watch.id,
                    watch.resource_id.as_deref(),
                    watch.expires_at,
                    &voxanne_db::calendar_sync::watch_token_hash(&token),
                )
                .await?;
                tx.commit().await?;
                tracing::info!(org_id = %claim.org_id, connection_id = %claim.connection_id,
                    expires_at = %watch.expires_at, "calendar push notifications started");
                if let (Some(old), Some(expires_at)) = (&link.watch.id, link.watch.expires_at) {
                    let old = voxanne_calendar::Watch {
                        id: old.clone(),
                        resource_id: link.watch.resource_id.clone(),
                        expires_at,
                    };
                    if let Err(e) = self.providers.stop_watch(cal, access, &old).await {
                        tracing::info!(org_id = %claim.org_id, error = %e,
                            "stopping a replaced calendar watch failed; it ends by itself");
                    }
                }
            }
            Err(e) => {
                tx.calendar_watch_attempted(claim.connection_id, claim.claim)
                    .await?;
                tx.commit().await?;
                tracing::warn!(org_id = %claim.org_id, connection_id = %claim.connection_id,
                    error = %e, "starting calendar push notifications failed; syncs go on \
                    every interval");
            }
        }
        Ok(())
    }

    /// Refreshes the connection's access token and stores what the provider gave.
    async fn refresh(
        &self,
        claim: &ClaimedCalendarSync,
        link: &CalendarLink,
    ) -> Result<Refresh, JobError> {
        let Some(refresh_token) = link.tokens.refresh_token.clone() else {
            let reason = "the access token expired and there is no refresh token: link the \
                          account again";
            return self.broken(claim, reason).await.map(Refresh::Ended);
        };
        let tokens = match self.providers.refresh(link.provider, &refresh_token).await {
            Ok(tokens) => tokens,
            Err(CalendarError::InvalidGrant {
                error, description, ..
            }) => {
                let reason = format!(
                    "{} refused the refresh token ({error}{}): link the account again",
                    link.provider,
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                );
                return self.broken(claim, &reason).await.map(Refresh::Ended);
            }
            Err(e) => {
                let error = format!("refreshing the access token: {e}");
                return self
                    .retry(claim, &error, e.retry_after())
                    .await
                    .map(Refresh::Ended);
            }
        };
        let expires_at = tokens.expires_in.map(|d| Utc::now() + chrono(d));
        let refresh_token = tokens.refresh_token.unwrap_or(refresh_token);
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(Refresh::Ended(SyncOutcome::Abandoned));
        };
        let stored = tx
            .calendar_tokens_refreshed(
                &self.keyring,
                claim.connection_id,
                claim.claim,
                &tokens.access_token,
                &refresh_token,
                expires_at,
            )
            .await?;
        tx.commit().await?;
        if !stored {
            return Ok(Refresh::Ended(SyncOutcome::Abandoned));
        }
        tracing::info!(org_id = %claim.org_id, connection_id = %claim.connection_id,
            "calendar access token refreshed");
        Ok(Refresh::Fresh(tokens.access_token))
    }

    /// Marks the connection broken (and logs it in the clinic's security log).
    async fn broken(
        &self,
        claim: &ClaimedCalendarSync,
        reason: &str,
    ) -> Result<SyncOutcome, JobError> {
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(SyncOutcome::Abandoned);
        };
        let marked = tx
            .calendar_broken(claim.connection_id, claim.claim, reason)
            .await?;
        tx.commit().await?;
        if !marked {
            return Ok(SyncOutcome::Abandoned);
        }
        self.metrics.calendar_sync.failed.inc();
        tracing::warn!(org_id = %claim.org_id, connection_id = %claim.connection_id, %reason,
            "calendar connection broken");
        Ok(SyncOutcome::Broken {
            reason: reason.to_owned(),
        })
    }

    /// Records a failed sync; the next is after a backoff over the failures in a row, and
    /// not before the provider's `Retry-After`.
    async fn retry(
        &self,
        claim: &ClaimedCalendarSync,
        error: &str,
        retry_after: Option<Duration>,
    ) -> Result<SyncOutcome, JobError> {
        let backoff = self.schedule().backoff(claim.failures.saturating_add(1));
        let wait = retry_after.map_or(backoff, |r| backoff.max(chrono(r)));
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, "job:calendar-sync").await? else {
            return Ok(SyncOutcome::Abandoned);
        };
        let recorded = tx
            .calendar_sync_failed(claim.connection_id, claim.claim, error, Utc::now() + wait)
            .await?;
        tx.commit().await?;
        if !recorded {
            return Ok(SyncOutcome::Abandoned);
        }
        self.metrics.calendar_sync.retried.inc();
        tracing::warn!(org_id = %claim.org_id, connection_id = %claim.connection_id, %error,
            failures = claim.failures + 1, "calendar sync failed, will retry");
        Ok(SyncOutcome::Retry {
            error: error.to_owned(),
        })
    }
}
