//! The SMS confirmation sender. Booking an appointment queues its confirmation in the
//! booking's transaction (`voxanne_db::sms_confirmations`); this worker sends it, never the
//! request that booked.
//!
//! A [`Job`] like the recordings: a batch is claimed with ONE statement (`app.claim_sms`, fair
//! across the active orgs); everything done for a message afterwards runs in its own org's
//! tenant transaction; a claim carries a lease and an attempt number, and every write is
//! conditional on the attempt, so a late writer whose claim was taken over changes nothing.
//!
//! One message: (1) in the clinic's tenant transaction, check the do-not-call list (a listed
//! number is `suppressed`, the provider never called), read the clinic's own Twilio account
//! and choose its sending number; commit. (2) POST to the provider, with no transaction
//! open. (3) In a new tenant transaction, record the outcome: `sent` with the provider's
//! message id; on a 5xx, 429, timeout or connection error, back to `queued` after an
//! exponential backoff with jitter (the attempt that reaches the maximum ends `failed`); on
//! any other refusal, `failed` at once with the provider's message.
//!
//! Delivery is at least once: a worker that dies after the provider accepted a message but
//! before recording it leaves a `sending` row that goes back to the queue when its lease runs
//! out, and is sent again.

use crate::job::{open_tenant, Failure, Job, Schedule};
use crate::metrics::{JobCounters, Metrics};
use crate::twilio::{self, Credentials, SendError};
use crate::JobError;
use std::sync::Arc;
use std::time::Duration;
use voxanne_db::crypto::Keyring;
use voxanne_db::messages::OptOutSource;
use voxanne_db::system::{self, ClaimedSms};
use voxanne_db::{Db, DbError, TenantTx};
use voxanne_domain::{IntegrationProvider, OrgId, SmsStatus};

/// Where, under the public URL, the provider reports delivery statuses.
pub const STATUS_CALLBACK_PATH: &str = "/webhooks/sms/twilio/status";

/// The sender's knobs.
#[derive(Debug, Clone)]
pub struct SmsConfig {
    /// Batch, lease, polling and retries.
    pub schedule: Schedule,
    /// One request to the provider, connect included.
    pub http_timeout: Duration,
    /// The provider's REST API (Twilio's, or one that speaks it).
    pub api_url: reqwest::Url,
    /// Voxanne's public base URL; when set, each message asks the provider for status
    /// callbacks at `{public_url}/webhooks/sms/twilio/status`.
    pub public_url: Option<reqwest::Url>,
}

/// Twilio's API.
pub const DEFAULT_API_URL: &str = "https://api.twilio.com";

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule {
                backoff_base: Duration::from_secs(30),
                ..Schedule::default()
            },
            http_timeout: Duration::from_secs(15),
            api_url: reqwest::Url::parse(DEFAULT_API_URL).expect("a valid URL literal"),
            public_url: None,
        }
    }
}

impl SmsConfig {
    /// The `StatusCallback` of every message, if a public URL is configured.
    pub fn status_callback(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}{STATUS_CALLBACK_PATH}", u.as_str().trim_end_matches('/')))
    }
}

/// What one message ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsOutcome {
    /// The provider accepted it.
    Sent {
        sid: Option<String>,
        status: SmsStatus,
    },
    /// Not sent, and never will be: `reason`.
    Suppressed { reason: String },
    /// A reminder claimed in the clinic's quiet hours: back in the queue until they end.
    Deferred {
        until: chrono::DateTime<chrono::Utc>,
    },
    /// Failed; back in the queue for a later attempt.
    Retry { error: String },
    /// Failed for good.
    Failed { error: String },
    /// The claim no longer held (taken over after its lease ran out), or the org is no longer
    /// active: nothing written.
    Abandoned,
}

/// What the first tenant transaction decided.
enum Plan {
    Send {
        credentials: Credentials,
        from: String,
    },
    Suppress(String),
    Defer(chrono::DateTime<chrono::Utc>),
    Fail(String),
}

/// An SMS confirmation sender. Several may run at once against one database.
#[derive(Clone)]
pub struct SmsWorker {
    db: Db,
    keyring: Arc<Keyring>,
    http: reqwest::Client,
    config: SmsConfig,
    status_callback: Option<String>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SmsWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsWorker")
            .field("config", &self.config)
            .finish()
    }
}

impl Job for SmsWorker {
    const NAME: &'static str = "sms";
    type Claimed = ClaimedSms;
    type Outcome = SmsOutcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.sms
    }

    async fn claim_due(db: &Db, batch: u32, lease: Duration) -> Result<Vec<ClaimedSms>, DbError> {
        system::claim_sms(db, batch, lease).await
    }

    async fn requeue_stale(db: &Db) -> Result<i64, DbError> {
        system::requeue_stale_sms(db).await
    }

    /// Sends one claimed message and records its outcome, in its org's tenant transactions.
    async fn process(&self, job: &ClaimedSms) -> Result<SmsOutcome, JobError> {
        let org = job.org_id;
        let Some(mut tx) = open_tenant(&self.db, org, "job:sms").await? else {
            return Ok(SmsOutcome::Abandoned);
        };
        let (credentials, from) = match self.plan(&mut tx, org, job).await? {
            Plan::Send { credentials, from } => (credentials, from),
            Plan::Suppress(reason) => {
                let outcome = if tx.sms_suppressed(job.sms_id, job.attempt, &reason).await? {
                    self.metrics.sms.suppressed.inc();
                    tracing::info!(org_id = %org, sms_id = %job.sms_id, %reason, "SMS suppressed");
                    SmsOutcome::Suppressed { reason }
                } else {
                    SmsOutcome::Abandoned
                };
                tx.commit().await?;
                return Ok(outcome);
            }
            Plan::Defer(until) => {
                let outcome = if tx.sms_deferred(job.sms_id, job.attempt, until).await? {
                    SmsOutcome::Deferred { until }
                } else {
                    SmsOutcome::Abandoned
                };
                tx.commit().await?;
                return Ok(outcome);
            }
            Plan::Fail(error) => {
                let outcome = self.sms_failed(&mut tx, job, error, true).await?;
                tx.commit().await?;
                return Ok(outcome);
            }
        };
        // The text is opened here, in the clinic's own transaction; one that does not open
        // (damaged, or its key is gone) is never sent.
        let body = match tx.claimed_sms_body(job) {
            Ok(body) => body,
            Err(e) => {
                let error = format!("the message's text cannot be opened: {e}");
                let outcome = self.sms_failed(&mut tx, job, error, true).await?;
                tx.commit().await?;
                return Ok(outcome);
            }
        };
        // No transaction is held across the provider's answer.
        tx.commit().await?;

        let message = twilio::Message {
            to: &job.to_number,
            from: &from,
            body: &body,
            status_callback: self.status_callback.as_deref(),
        };
        let result = twilio::send(&self.http, &self.config.api_url, &credentials, &message).await;

        let Some(mut tx) = open_tenant(&self.db, org, "job:sms").await? else {
            return Ok(SmsOutcome::Abandoned);
        };
        let outcome = match result {
            Ok(accepted) => {
                let status = SmsStatus::accepted_as(accepted.status.as_deref());
                let note = accepted
                    .sid
                    .is_none()
                    .then_some("the provider accepted the message without giving its id");
                if tx
                    .sms_sent(
                        job.sms_id,
                        job.attempt,
                        accepted.sid.as_deref(),
                        status,
                        &from,
                        note,
                    )
                    .await?
                {
                    self.metrics.sms.done.inc();
                    SmsOutcome::Sent {
                        sid: accepted.sid,
                        status,
                    }
                } else {
                    SmsOutcome::Abandoned
                }
            }
            Err(SendError::Retryable(error)) => self.sms_failed(&mut tx, job, error, false).await?,
            Err(SendError::Refused(error)) => self.sms_failed(&mut tx, job, error, true).await?,
            Err(SendError::Unsubscribed(error)) => {
                // The carrier's opt-out is the patient's: the clinic stops texting and calling.
                tx.opt_out(
                    &job.to_number,
                    OptOutSource::Carrier,
                    "Twilio error 21610: the recipient unsubscribed",
                )
                .await?;
                tracing::info!(org_id = %org, sms_id = %job.sms_id, "recipient unsubscribed; opted out");
                self.sms_failed(&mut tx, job, error, true).await?
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

impl From<Failure> for SmsOutcome {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Retry { error } => Self::Retry { error },
            Failure::Failed { error } => Self::Failed { error },
            Failure::Abandoned => Self::Abandoned,
        }
    }
}

impl SmsWorker {
    pub fn new(
        db: Db,
        keyring: Arc<Keyring>,
        config: SmsConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .connect_timeout(config.http_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            db,
            keyring,
            http,
            status_callback: config.status_callback(),
            config,
            metrics,
        })
    }

    /// Decides, in the clinic's tenant transaction, whether and how the message goes.
    async fn plan(
        &self,
        tx: &mut TenantTx,
        org: OrgId,
        job: &ClaimedSms,
    ) -> Result<Plan, JobError> {
        let route = tx
            .sms_route(job.sms_id, &job.to_number, job.appointment_id)
            .await?;
        if route.do_not_contact {
            return Ok(Plan::Suppress(format!(
                "{} is on the clinic's do-not-call list",
                job.to_number
            )));
        }
        if route.appointment_gone {
            return Ok(Plan::Suppress(
                "the appointment was cancelled before its confirmation was sent".to_owned(),
            ));
        }
        if route.superseded {
            return Ok(Plan::Suppress(
                "superseded: the appointment moved before this was sent".to_owned(),
            ));
        }
        if let Some(window) = &route.reminder {
            let now = chrono::Utc::now();
            if window.starts_at <= now {
                return Ok(Plan::Suppress(
                    "too late: the appointment has started".to_owned(),
                ));
            }
            let allowed = window.quiet_hours.next_allowed(now, window.time_zone);
            if allowed > now {
                return Ok(if allowed < window.starts_at {
                    Plan::Defer(allowed)
                } else {
                    Plan::Suppress(
                        "the clinic's quiet hours last until after the appointment".to_owned(),
                    )
                });
            }
        }
        let Some(integration) = tx.get_integration(IntegrationProvider::Twilio).await? else {
            return Ok(Plan::Fail(
                "the clinic has no twilio integration (account_sid, auth_token)".to_owned(),
            ));
        };
        let config_text = |name: &str| {
            integration
                .config
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let Some(account_sid) = config_text("account_sid") else {
            return Ok(Plan::Fail(
                "the clinic's twilio integration has no account_sid".to_owned(),
            ));
        };
        let secrets = match integration.open_secrets(&self.keyring, org) {
            Ok(secrets) => secrets,
            Err(e) => {
                return Ok(Plan::Fail(format!(
                    "the clinic's twilio secrets could not be read: {e}"
                )))
            }
        };
        let Some(auth_token) = secrets.get("auth_token").cloned() else {
            return Ok(Plan::Fail(
                "the clinic's twilio integration has no auth_token secret".to_owned(),
            ));
        };
        // Only ever one of the clinic's own numbers: the configured one if it owns it.
        let configured = config_text("from_number");
        let from = configured
            .filter(|n| route.clinic_numbers.contains(n))
            .or_else(|| route.clinic_numbers.first().cloned());
        let Some(from) = from else {
            return Ok(Plan::Fail(
                "the clinic owns no phone number to send from".to_owned(),
            ));
        };
        Ok(Plan::Send {
            credentials: Credentials {
                account_sid,
                auth_token,
            },
            from,
        })
    }

    /// Records a failed attempt: `failed` for good when `refused` or at the last attempt,
    /// else back in the queue after a backoff.
    async fn sms_failed(
        &self,
        tx: &mut TenantTx,
        job: &ClaimedSms,
        error: String,
        refused: bool,
    ) -> Result<SmsOutcome, JobError> {
        let message = error.clone();
        let write =
            move |after| async move { tx.sms_failed(job.sms_id, job.attempt, &error, after).await };
        Ok(self.failed(job, message, refused, write).await?.into())
    }
}
