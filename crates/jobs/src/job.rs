//! The one shape of a background job, and the runner every job shares.
//!
//! A job kind is a type implementing [`Job`]: how to claim a batch (ONE statement, fair
//! across the active clinics: docs/TENANCY.md section 5), how to put back the claims whose
//! lease ran out, and how to process one claim in its clinic's tenant transactions. Everything
//! else is the same for every job and lives here: running a batch concurrently, polling in
//! rounds until shutdown, the backoff with jitter, what a failed attempt becomes (back in the
//! queue, or failed for good at the last attempt) and how it is counted and logged.
//!
//! Adding a job: a claim function and a requeue function in `voxanne_db::system` (a
//! SECURITY DEFINER function of a migration), a `TenantTx` method per outcome, each
//! conditional on the claim's attempt, and a type here implementing `Job`.

use crate::metrics::JobCounters;
use crate::JobError;
use std::future::Future;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::recordings::AfterFailure;
use voxanne_db::system::{ClaimedRecording, ClaimedSms};
use voxanne_db::{Db, DbError, TenantError, TenantTx};
use voxanne_domain::OrgId;

/// The knobs every job has: how much it claims, for how long, how often it looks for work,
/// and how it retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Claims taken (and run concurrently) per batch.
    pub batch: u32,
    /// How long a claim is held before the stale sweep may give it to another worker.
    pub lease: Duration,
    /// Sleep between batches when there was nothing to do.
    pub idle_poll: Duration,
    /// The attempt that fails with this number ends `failed`.
    pub max_attempts: i32,
    /// Backoff after attempt n is about `backoff_base * 2^(n-1)` (with jitter), at most
    /// `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            batch: 20,
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_secs(2),
            max_attempts: 5,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

impl Schedule {
    /// `base * 2^(attempt-1)`, capped, with jitter: uniformly in [half, full].
    pub fn backoff(&self, attempt: i32) -> chrono::Duration {
        backoff_delay(self.backoff_base, self.backoff_max, attempt)
    }

    /// What a failed attempt becomes: failed for good when `permanent` or at the last
    /// attempt, else back in the queue after a backoff.
    pub fn after_failure(&self, attempt: i32, permanent: bool) -> AfterFailure {
        if permanent || attempt >= self.max_attempts {
            AfterFailure::GiveUp
        } else {
            AfterFailure::RetryAt(chrono::Utc::now() + self.backoff(attempt))
        }
    }
}

/// The wait after failed attempt `attempt` (1 for the first): `base * 2^(attempt-1)`, at most
/// `max`, with jitter: uniformly in [half, full], so failures at the same moment do not retry
/// in step.
pub fn backoff_delay(base: Duration, max: Duration, attempt: i32) -> chrono::Duration {
    let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let full = base.saturating_mul(2u32.saturating_pow(exp)).min(max);
    let full_ms = u64::try_from(full.as_millis()).unwrap_or(u64::MAX);
    let random = u64::from_le_bytes(Uuid::new_v4().as_bytes()[..8].try_into().unwrap_or([0; 8]));
    let half = full_ms / 2;
    let ms = half + if half == 0 { 0 } else { random % (half + 1) };
    chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// A claimed unit of work: whose it is, which row, which attempt.
pub trait Claim: Send + Sync {
    fn org(&self) -> OrgId;
    /// The claimed row's id (for the logs).
    fn id(&self) -> Uuid;
    /// 1 for the first attempt; every write of the claim is conditional on it.
    fn attempt(&self) -> i32;
}

impl Claim for ClaimedRecording {
    fn org(&self) -> OrgId {
        self.org_id
    }
    fn id(&self) -> Uuid {
        self.call_id.into()
    }
    fn attempt(&self) -> i32 {
        self.attempt
    }
}

impl Claim for ClaimedSms {
    fn org(&self) -> OrgId {
        self.org_id
    }
    fn id(&self) -> Uuid {
        self.sms_id.into()
    }
    fn attempt(&self) -> i32 {
        self.attempt
    }
}

/// What a failed attempt came to, once recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Back in the queue for a later attempt.
    Retry { error: String },
    /// Failed for good.
    Failed { error: String },
    /// The claim no longer held: nothing written.
    Abandoned,
}

/// A round's claims with their outcomes.
pub type Batch<J> = Vec<(<J as Job>::Claimed, <J as Job>::Outcome)>;

/// A kind of background job. Several workers of one kind may run at once against one
/// database: the claim's lease and attempt keep them from doing one unit twice.
pub trait Job: Sync {
    /// The job's name in the logs.
    const NAME: &'static str;
    type Claimed: Claim;
    type Outcome: Send;

    fn db(&self) -> &Db;
    fn schedule(&self) -> &Schedule;
    fn counters(&self) -> &JobCounters;

    /// Claims up to `batch` units with a lease of `lease`: ONE statement, shared out
    /// round-robin across the active orgs that have due work.
    fn claim_due(
        db: &Db,
        batch: u32,
        lease: Duration,
    ) -> impl Future<Output = Result<Vec<Self::Claimed>, DbError>> + Send;

    /// Puts back in the queue the claims whose lease ran out (their worker died). Returns
    /// how many.
    fn requeue_stale(db: &Db) -> impl Future<Output = Result<i64, DbError>> + Send;

    /// Runs one claim to its end, in its org's tenant transactions, every write conditional
    /// on the claim's attempt.
    fn process(
        &self,
        claim: &Self::Claimed,
    ) -> impl Future<Output = Result<Self::Outcome, JobError>> + Send;

    /// Work done before a round (e.g. a periodic sweep); nothing by default.
    fn before_round(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Claims the next batch with this job's schedule.
    fn claim(&self) -> impl Future<Output = Result<Vec<Self::Claimed>, JobError>> + Send {
        let schedule = self.schedule();
        async move { Ok(Self::claim_due(self.db(), schedule.batch, schedule.lease).await?) }
    }

    /// `base * 2^(attempt-1)`, capped, with jitter.
    fn backoff(&self, attempt: i32) -> chrono::Duration {
        self.schedule().backoff(attempt)
    }

    /// One round: puts stale claims back in the queue, claims a batch and runs all of it
    /// concurrently. Returns the batch's outcomes. A claim whose outcome could not be
    /// recorded is logged and left out: its row keeps its lease, and the stale sweep puts it
    /// back in the queue once the lease has run out.
    fn run_once(&self) -> impl Future<Output = Result<Batch<Self>, JobError>> + Send {
        async move {
            let requeued = Self::requeue_stale(self.db()).await?;
            if requeued > 0 {
                tracing::warn!(
                    job = Self::NAME,
                    requeued,
                    "claims whose worker died went back to the queue"
                );
            }
            let batch = self.claim().await?;
            let outcomes = futures_util::future::join_all(batch.into_iter().map(|claim| async {
                let outcome = self.process(&claim).await;
                (claim, outcome)
            }))
            .await;
            let mut done = Vec::with_capacity(outcomes.len());
            for (claim, outcome) in outcomes {
                match outcome {
                    Ok(outcome) => done.push((claim, outcome)),
                    Err(e) => tracing::error!(job = Self::NAME, org_id = %claim.org(),
                        id = %claim.id(), error = %e, "a job failed to record its outcome"),
                }
            }
            Ok(done)
        }
    }

    /// Runs rounds until `shutdown` resolves: at once again after a round that did work,
    /// after `idle_poll` after one that did none or failed (the failure is logged). A round in
    /// flight when `shutdown` resolves is finished (each unit is bounded by its timeouts); no
    /// new one starts.
    fn run(&self, shutdown: impl Future<Output = ()> + Send) -> impl Future<Output = ()> + Send {
        async move {
            tokio::pin!(shutdown);
            loop {
                self.before_round().await;
                let worked = match self.run_once().await {
                    Ok(done) => !done.is_empty(),
                    Err(e) => {
                        tracing::error!(job = Self::NAME, error = %e, "{} worker round failed", Self::NAME);
                        false
                    }
                };
                let pause = if worked {
                    Duration::ZERO
                } else {
                    self.schedule().idle_poll
                };
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
            tracing::info!(job = Self::NAME, "{} worker stopped", Self::NAME);
        }
    }

    /// Records a failed attempt with `write` (the job's conditional update, given what the
    /// attempt becomes), counts and logs it. `permanent`: the failure will not go away by
    /// retrying (a refusal), so there is no further attempt.
    fn failed<W>(
        &self,
        claim: &Self::Claimed,
        error: String,
        permanent: bool,
        write: impl FnOnce(AfterFailure) -> W + Send,
    ) -> impl Future<Output = Result<Failure, JobError>> + Send
    where
        W: Future<Output = Result<bool, DbError>> + Send,
    {
        async move {
            let after = self.schedule().after_failure(claim.attempt(), permanent);
            if !write(after).await? {
                return Ok(Failure::Abandoned);
            }
            let (job, org_id, id, attempt) = (Self::NAME, claim.org(), claim.id(), claim.attempt());
            Ok(if after == AfterFailure::GiveUp {
                self.counters().failed.inc();
                tracing::warn!(job, %org_id, %id, attempt, %error, "job failed for good");
                Failure::Failed { error }
            } else {
                self.counters().retried.inc();
                tracing::info!(job, %org_id, %id, attempt, %error, "job failed, will retry");
                Failure::Retry { error }
            })
        }
    }
}

/// The org's tenant transaction for the job `via` (`job:sms`: how the access log names it);
/// `None` when the org was suspended or erased meanwhile (the claimed row is left as it is:
/// the stale sweep requeues it once the org is active again, and an erased org's rows are
/// gone).
pub async fn open_tenant(db: &Db, org: OrgId, via: &str) -> Result<Option<TenantTx>, JobError> {
    match db.job_tenant(org).await {
        Ok(mut tx) => {
            tx.set_origin(via, None, None);
            Ok(Some(tx))
        }
        Err(TenantError::Suspended | TenantError::NotMember) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
