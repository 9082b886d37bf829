//! The campaign dialer: places each claimed campaign call through the voice platform's
//! outbound API (Vapi `POST /call`, with the clinic's own private key and one of its own
//! numbers), with the clinic's own assistant told what the call is about.
//!
//! A [`Job`] like the others: a batch is claimed with ONE statement (`app.claim_calls`, fair
//! across the clinics, each at most its cap of calls in flight, only targets whose calling
//! window is open in every zone the callee may be in); everything done for a target
//! afterwards runs in its clinic's tenant transaction, each write conditional on the claim's
//! attempt.
//!
//! One call: (1) in the clinic's transaction, check again what the claim promised and what
//! it could not: the campaign still active, the number not on the do-not-call list, a granted
//! `calls` consent on record (else the target is `skipped`, the platform never asked), the
//! window open now (else back in the queue for when it opens); read the clinic's Vapi key and
//! build its assistant; commit. (2) Ask Vapi, with no transaction open: the number's id
//! (`GET /phone-number`), then `POST /call`. (3) In a new transaction, record the attempt:
//! `calling` with Vapi's call id (the end-of-call report settles it, see
//! `TenantTx::campaign_call_ended`), or failed (a 5xx, 429 or timeout goes back to the queue
//! after a backoff; a refusal fails at once).

use crate::job::{open_tenant, Claim, Failure, Job, Schedule};
use crate::metrics::{JobCounters, Metrics};
use crate::vapi::{VapiApi, VapiError, VapiSettings};
use crate::JobError;
use chrono_tz::Tz;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use voxanne_db::crypto::Keyring;
use voxanne_db::recordings::AfterFailure;
use voxanne_db::system::{self, ClaimedCall};
use voxanne_db::{Db, DbError, TenantTx};
use voxanne_domain::outreach::{opening_line, CallingWindow};
use voxanne_domain::{CampaignStatus, IntegrationProvider};

impl Claim for ClaimedCall {
    fn org(&self) -> voxanne_domain::OrgId {
        self.org_id
    }
    fn id(&self) -> uuid::Uuid {
        self.target_id.into()
    }
    fn attempt(&self) -> i32 {
        self.attempt
    }
}

/// The dialer's knobs.
#[derive(Debug, Clone)]
pub struct DialerConfig {
    /// Batch, the lease of a `dialing` claim, polling and retries of refused dials.
    pub schedule: Schedule,
    /// How long a placed call may wait for its end-of-call report, holding its place under
    /// the clinic's cap; past it, the attempt ends `failed` (never dialled twice).
    pub report_lease: Duration,
}

impl Default for DialerConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule {
                batch: 10,
                lease: Duration::from_secs(120),
                backoff_base: Duration::from_secs(60),
                ..Schedule::default()
            },
            report_lease: Duration::from_secs(2 * 3600),
        }
    }
}

/// What one claimed target came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialOutcome {
    /// Vapi took the call: its id.
    Placed { provider_call_id: String },
    /// Never called: `reason`.
    Skipped { reason: String },
    /// Not now: back in the queue until then (`None`: whenever it is due again).
    Deferred {
        until: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Vapi did not take it; back in the queue for a later attempt.
    Retry { error: String },
    /// Failed for good.
    Failed { error: String },
    /// The claim no longer held, or the clinic is no longer active: nothing written.
    Abandoned,
}

impl From<Failure> for DialOutcome {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Retry { error } => Self::Retry { error },
            Failure::Failed { error } => Self::Failed { error },
            Failure::Abandoned => Self::Abandoned,
        }
    }
}

/// What the first transaction decided.
enum Plan {
    Dial {
        key: String,
        from: String,
        body: serde_json::Value,
    },
    Skip(String, bool),
    Defer(Option<chrono::DateTime<chrono::Utc>>),
    Fail(String),
}

/// The campaign dialer. Several may run at once against one database.
#[derive(Clone)]
pub struct Dialer {
    db: Db,
    keyring: Arc<Keyring>,
    vapi: Arc<VapiSettings>,
    config: DialerConfig,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("config", &self.config)
            .finish()
    }
}

impl Job for Dialer {
    const NAME: &'static str = "dialer";
    type Claimed = ClaimedCall;
    type Outcome = DialOutcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.calls
    }

    async fn claim_due(db: &Db, batch: u32, lease: Duration) -> Result<Vec<ClaimedCall>, DbError> {
        system::claim_calls(db, batch, lease).await
    }

    async fn requeue_stale(db: &Db) -> Result<i64, DbError> {
        system::requeue_stale_calls(db).await
    }

    async fn process(&self, job: &ClaimedCall) -> Result<DialOutcome, JobError> {
        let Some(mut tx) = open_tenant(&self.db, job.org_id, "job:dialer").await? else {
            return Ok(DialOutcome::Abandoned);
        };
        let (key, from, mut body) = match self.plan(&mut tx, job).await? {
            Plan::Dial { key, from, body } => (key, from, body),
            Plan::Skip(reason, do_not_call) => {
                let outcome = if tx
                    .call_skipped(job.target_id, job.attempt, &reason, do_not_call)
                    .await?
                {
                    self.metrics.calls.suppressed.inc();
                    tracing::info!(org_id = %job.org_id, target_id = %job.target_id, %reason,
                        "campaign call skipped");
                    DialOutcome::Skipped { reason }
                } else {
                    DialOutcome::Abandoned
                };
                tx.commit().await?;
                return Ok(outcome);
            }
            Plan::Defer(until) => {
                let outcome = if tx.call_deferred(job.target_id, job.attempt, until).await? {
                    DialOutcome::Deferred { until }
                } else {
                    DialOutcome::Abandoned
                };
                tx.commit().await?;
                return Ok(outcome);
            }
            Plan::Fail(error) => {
                let outcome = self.dial_failed(&mut tx, job, "", error, true).await?;
                tx.commit().await?;
                return Ok(outcome);
            }
        };
        // No transaction is held while Vapi answers.
        tx.commit().await?;

        let api = VapiApi::new(&self.vapi, &key);
        let result = async {
            let number_id =
                api.phone_number_id(&from)
                    .await?
                    .ok_or_else(|| VapiError::Refused {
                        status: 404,
                        message: format!("the clinic's number {from} is not in its Vapi account"),
                    })?;
            body["phoneNumberId"] = json!(number_id);
            api.create_call(&body).await
        }
        .await;

        let Some(mut tx) = open_tenant(&self.db, job.org_id, "job:dialer").await? else {
            return Ok(DialOutcome::Abandoned);
        };
        let lease_until = chrono::Utc::now()
            + chrono::Duration::from_std(self.config.report_lease)
                .unwrap_or(chrono::Duration::hours(2));
        let outcome = match result {
            Ok(provider_call_id) => {
                if tx
                    .call_placed(
                        job.target_id,
                        job.attempt,
                        &provider_call_id,
                        &from,
                        lease_until,
                    )
                    .await?
                {
                    self.metrics.calls.done.inc();
                    tracing::info!(org_id = %job.org_id, target_id = %job.target_id,
                        %provider_call_id, "campaign call placed");
                    DialOutcome::Placed { provider_call_id }
                } else {
                    DialOutcome::Abandoned
                }
            }
            Err(e @ (VapiError::RateLimited { .. } | VapiError::Unreachable(_))) => {
                self.dial_failed(&mut tx, job, &from, e.to_string(), false)
                    .await?
            }
            Err(e @ VapiError::Refused { status, .. }) if status >= 500 => {
                self.dial_failed(&mut tx, job, &from, e.to_string(), false)
                    .await?
            }
            Err(e) => {
                self.dial_failed(&mut tx, job, &from, e.to_string(), true)
                    .await?
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

impl Dialer {
    pub fn new(
        db: Db,
        keyring: Arc<Keyring>,
        vapi: Arc<VapiSettings>,
        config: DialerConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            keyring,
            vapi,
            config,
            metrics,
        }
    }

    /// Decides, in the clinic's tenant transaction, whether and how the call goes.
    async fn plan(&self, tx: &mut TenantTx, job: &ClaimedCall) -> Result<Plan, JobError> {
        let Some(route) = tx.call_route(job.campaign_id, &job.phone).await? else {
            return Ok(Plan::Skip("the campaign is gone".into(), false));
        };
        if route.campaign_status != CampaignStatus::Active {
            return Ok(Plan::Defer(None));
        }
        if route.do_not_contact {
            return Ok(Plan::Skip(
                format!("{} is on the clinic's do-not-call list", job.phone),
                true,
            ));
        }
        match route.consent {
            Some(true) => {}
            Some(false) => {
                return Ok(Plan::Skip(
                    format!("{} withdrew its consent to be called", job.phone),
                    true,
                ))
            }
            None => {
                return Ok(Plan::Skip(
                    format!("no consent to be called is recorded for {}", job.phone),
                    false,
                ))
            }
        }
        let zones: Vec<Tz> = job
            .time_zones
            .iter()
            .filter_map(|z| z.parse().ok())
            .collect();
        if zones.len() != job.time_zones.len() || zones.is_empty() {
            return Ok(Plan::Skip(
                format!("the callee's time zones {:?} are not known", job.time_zones),
                false,
            ));
        }
        let Ok(window) = CallingWindow::new(route.window_start, route.window_end) else {
            return Ok(Plan::Fail(
                "the campaign's calling window is outside 08:00-21:00".into(),
            ));
        };
        let now = chrono::Utc::now();
        if !window.open_at(now, &zones) {
            return Ok(match window.next_open(now, &zones) {
                Some(at) => Plan::Defer(Some(at)),
                None => Plan::Skip(
                    "the calling window is never open in every time zone of the callee".into(),
                    false,
                ),
            });
        }
        let Some(integration) = tx.get_integration(IntegrationProvider::Vapi).await? else {
            return Ok(Plan::Fail(
                "the clinic has no vapi integration (api_key)".into(),
            ));
        };
        let secrets = match integration.open_secrets(&self.keyring, job.org_id) {
            Ok(secrets) => secrets,
            Err(e) => {
                return Ok(Plan::Fail(format!(
                    "the clinic's vapi secrets could not be read: {e}"
                )))
            }
        };
        let Some(key) = secrets.get("api_key") else {
            return Ok(Plan::Fail(
                "the clinic's vapi integration has no api_key secret".into(),
            ));
        };
        let key = secrecy::ExposeSecret::expose_secret(key).to_owned();
        let Some(from) = route.clinic_numbers.first().cloned() else {
            return Ok(Plan::Fail(
                "the clinic owns no phone number to call from".into(),
            ));
        };
        let opening = opening_line(&route.script, &job.name, &route.clinic);
        let purpose = if route.script.trim().is_empty() {
            route.campaign_name.clone()
        } else {
            format!("{} ({})", route.campaign_name, route.script)
        };
        let agent = voxanne_agent::Agent::new(self.db.clone(), self.vapi.webhook_url());
        let assistant = agent
            .campaign_assistant(tx, IntegrationProvider::Vapi, now, &opening, &purpose)
            .await?;
        let mut customer = json!({"number": job.phone});
        if !job.name.trim().is_empty() {
            customer["name"] = json!(job.name.chars().take(40).collect::<String>());
        }
        // Vapi's CreateCallDTO: `name` (for the clinic's own reference, at most 40
        // characters), `assistant` (transient), `phoneNumberId`, `customer`.
        let body = json!({
            "name": route.campaign_name.chars().take(40).collect::<String>(),
            "assistant": assistant,
            "customer": customer,
        });
        Ok(Plan::Dial { key, from, body })
    }

    /// Records a dial Vapi did not take: failed for good when `refused` or at the last
    /// attempt, else back in the queue after a backoff.
    async fn dial_failed(
        &self,
        tx: &mut TenantTx,
        job: &ClaimedCall,
        from: &str,
        error: String,
        refused: bool,
    ) -> Result<DialOutcome, JobError> {
        let message = error.clone();
        let write = move |after: AfterFailure| async move {
            tx.call_failed(job.target_id, job.attempt, from, &error, after)
                .await
        };
        Ok(self.failed(job, message, refused, write).await?.into())
    }
}
