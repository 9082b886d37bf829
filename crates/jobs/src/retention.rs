//! The purge: each clinic's data past its retention removed (migrations/0031), on the shared
//! job runner. A claim is one clinic, the longest due first, so every clinic takes its turn
//! whatever the size of the others; a claim does a bounded amount (`steps` steps of `step`
//! rows per kind) and the clinic is due again at once if anything was left, else after
//! `every`.
//!
//! Each step is one tenant transaction under the clinic's purge lock: it finds what is due
//! (never anything a legal hold covers), removes it, records what it removed
//! (`retention_purges`, and an access record per row) and commits. Recordings leave storage
//! before their rows say so; a purge cut off between the two finds the same recordings next
//! time, and a recording already gone from storage counts as removed. So the purge is
//! idempotent and resumes where it stopped.

use crate::job::open_tenant;
use crate::metrics::JobCounters;
use crate::{Job, JobError, Metrics, Schedule};
use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::system::{self, ClaimedRetention};
use voxanne_db::{Db, DbError};

const VIA: &str = "job:retention";

#[derive(Debug, Clone)]
pub struct RetentionConfig {
    pub schedule: Schedule,
    /// Rows per step and kind.
    pub step: u32,
    /// Steps per kind per claim.
    pub steps: u32,
    /// How long after a finished purge a clinic is due again.
    pub every: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule {
                batch: 4,
                lease: Duration::from_secs(600),
                idle_poll: Duration::from_secs(30),
                ..Schedule::default()
            },
            step: 200,
            steps: 5,
            every: Duration::from_secs(3600),
        }
    }
}

/// What one claim removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeOutcome {
    pub recordings: usize,
    pub transcripts: usize,
    pub sms_bodies: usize,
    pub calls: usize,
    pub access_records: usize,
    /// Whether anything due was left for the next claim.
    pub more: bool,
    /// The claim no longer held when it finished.
    pub abandoned: bool,
}

impl crate::Claim for ClaimedRetention {
    fn org(&self) -> voxanne_domain::OrgId {
        self.org_id
    }
    fn id(&self) -> Uuid {
        self.org_id.as_uuid()
    }
    fn attempt(&self) -> i32 {
        self.claim
    }
}

pub struct RetentionJob {
    db: Db,
    store: Arc<dyn ObjectStore>,
    config: RetentionConfig,
    metrics: Arc<Metrics>,
}

/// The kinds, in the order a claim purges them: a call's recording and transcript before
/// the call.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Recordings,
    Transcripts,
    SmsBodies,
    Calls,
    AccessLog,
}

impl RetentionJob {
    pub fn new(
        db: Db,
        store: Arc<dyn ObjectStore>,
        config: RetentionConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            store,
            config,
            metrics,
        }
    }

    /// One step of `kind` for the claimed clinic; how many rows. `None` when the clinic is
    /// gone or suspended.
    async fn step(
        &self,
        claim: &ClaimedRetention,
        kind: Kind,
        now: DateTime<Utc>,
    ) -> Result<Option<usize>, JobError> {
        let days = |d: i32| now - chrono::Duration::days(i64::from(d));
        let policy = &claim.policy;
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, VIA).await? else {
            return Ok(None);
        };
        tx.lock_purge().await?;
        let limit = self.config.step;
        let n = match kind {
            Kind::Recordings => {
                let cutoff = days(policy.recordings_days);
                let due = tx.due_recordings(cutoff, limit).await?;
                for recording in &due {
                    match self
                        .store
                        .delete(&Path::from(recording.path.as_str()))
                        .await
                    {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                tx.recordings_purged(cutoff, &due).await?
            }
            Kind::Transcripts => {
                tx.purge_transcripts(days(policy.transcripts_days), limit)
                    .await?
            }
            Kind::SmsBodies => tx.purge_sms_bodies(days(policy.sms_days), limit).await?,
            Kind::Calls => tx.purge_calls(days(policy.calls_days), limit).await?,
            // The cutoff is the clinic's setting as the database reads it.
            Kind::AccessLog => tx.purge_access_log(limit).await?,
        };
        tx.commit().await?;
        Ok(Some(n))
    }

    /// Purges what is due for one claimed clinic, within the claim's bounds.
    pub async fn purge(&self, claim: &ClaimedRetention) -> Result<PurgeOutcome, JobError> {
        let now = Utc::now();
        let mut outcome = PurgeOutcome::default();
        for kind in [
            Kind::Recordings,
            Kind::Transcripts,
            Kind::SmsBodies,
            Kind::Calls,
            Kind::AccessLog,
        ] {
            for _ in 0..self.config.steps {
                let Some(n) = self.step(claim, kind, now).await? else {
                    outcome.abandoned = true;
                    return Ok(outcome);
                };
                match kind {
                    Kind::Recordings => outcome.recordings += n,
                    Kind::Transcripts => outcome.transcripts += n,
                    Kind::SmsBodies => outcome.sms_bodies += n,
                    Kind::Calls => outcome.calls += n,
                    Kind::AccessLog => outcome.access_records += n,
                }
                // A full step may have left more; the SMS step counts two tables.
                let full = n >= usize::try_from(self.config.step).unwrap_or(usize::MAX);
                if !full {
                    break;
                }
                outcome.more = true;
            }
        }
        let next = if outcome.more {
            now
        } else {
            now + chrono::Duration::from_std(self.config.every)
                .unwrap_or_else(|_| chrono::Duration::hours(1))
        };
        let Some(mut tx) = open_tenant(&self.db, claim.org_id, VIA).await? else {
            outcome.abandoned = true;
            return Ok(outcome);
        };
        let held = tx.purge_finished(claim.claim, next).await?;
        tx.commit().await?;
        outcome.abandoned = !held;
        let total = outcome.recordings
            + outcome.transcripts
            + outcome.sms_bodies
            + outcome.calls
            + outcome.access_records;
        self.counters().done.add(u64::try_from(total).unwrap_or(0));
        if total > 0 {
            tracing::info!(org_id = %claim.org_id, recordings = outcome.recordings,
                transcripts = outcome.transcripts, sms_bodies = outcome.sms_bodies,
                calls = outcome.calls, access_records = outcome.access_records,
                more = outcome.more, "retention purged");
        }
        Ok(outcome)
    }
}

impl Job for RetentionJob {
    const NAME: &'static str = "retention";
    type Claimed = ClaimedRetention;
    type Outcome = PurgeOutcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.retention
    }

    async fn claim_due(
        db: &Db,
        batch: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedRetention>, DbError> {
        system::claim_retention(db, batch, lease).await
    }

    /// Nothing to put back: a clinic whose lease ran out is claimable as it is.
    async fn requeue_stale(_db: &Db) -> Result<i64, DbError> {
        Ok(0)
    }

    /// A failed purge is logged by the runner; the lease runs out and the clinic is claimed
    /// again, and the purge resumes where it stopped.
    async fn process(&self, claim: &ClaimedRetention) -> Result<PurgeOutcome, JobError> {
        self.purge(claim).await
    }
}
