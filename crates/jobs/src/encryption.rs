//! The encryption job (migrations/0033): every clinic's patient text encrypted with the
//! current key, on the shared job runner. It encrypts what was stored before values were
//! encrypted, and after a key rotation encrypts again what the older key encrypted, so that
//! the older key can then be retired.
//!
//! A claim is one clinic whose text is not known to be encrypted with the current key, the
//! longest waiting first. It goes through the clinic's rows field by field in id order, a
//! bounded step at a time, each step one tenant transaction that also records where the pass
//! stands: a pass cut off resumes where it stopped, and a claim does at most `steps` steps, so
//! every clinic takes its turn whatever the size of the others. When the last field is done
//! the clinic is known to be encrypted with the key, and is not claimed again until the key
//! changes.

use crate::job::open_tenant;
use crate::metrics::JobCounters;
use crate::{Job, JobError, Metrics, Schedule};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::encrypted::FIELDS;
use voxanne_db::system::{self, ClaimedEncryption};
use voxanne_db::{Db, DbError};

const VIA: &str = "job:encryption";

#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    pub schedule: Schedule,
    /// Rows looked at per step.
    pub step: u32,
    /// Steps per claim.
    pub steps: u32,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule {
                batch: 2,
                lease: Duration::from_secs(600),
                idle_poll: Duration::from_secs(60),
                ..Schedule::default()
            },
            step: 500,
            steps: 20,
        }
    }
}

/// What one claim did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncryptionOutcome {
    /// Rows looked at, and values encrypted with the current key.
    pub looked: usize,
    pub encrypted: usize,
    /// Rows of secrets (provider credentials, calendar tokens) encrypted with the current key.
    pub secrets: usize,
    /// Every patient text of the clinic is now encrypted with the current key.
    pub done: bool,
    /// The claim no longer held, or the clinic is gone or suspended.
    pub abandoned: bool,
}

impl crate::Claim for ClaimedEncryption {
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

pub struct EncryptionJob {
    db: Db,
    config: EncryptionConfig,
    metrics: Arc<Metrics>,
}

impl EncryptionJob {
    pub fn new(db: Db, config: EncryptionConfig, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            config,
            metrics,
        }
    }

    /// Goes on with the pass of one claimed clinic, within the claim's bounds.
    pub async fn seal(&self, claim: &ClaimedEncryption) -> Result<EncryptionOutcome, JobError> {
        let mut outcome = EncryptionOutcome::default();
        let (mut field, mut after) = (claim.field, claim.after);
        for step in 0..self.config.steps.max(1) {
            let Some(mut tx) = open_tenant(&self.db, claim.org_id, VIA).await? else {
                outcome.abandoned = true;
                return Ok(outcome);
            };
            if let Some(&f) = FIELDS.get(field) {
                let done = tx.encrypt_step(f, after, self.config.step).await?;
                outcome.looked += done.looked;
                outcome.encrypted += done.encrypted;
                after = done.after;
                if after.is_none() {
                    field += 1;
                }
            }
            // The pass ends with the clinic's few secrets, in the step that finishes it.
            if field >= FIELDS.len() {
                outcome.secrets += tx.encrypt_secrets().await?;
            }
            let last = field >= FIELDS.len() || step + 1 == self.config.steps.max(1);
            let held = tx
                .encryption_progress(claim.claim, &claim.key, field, after, last)
                .await?;
            tx.commit().await?;
            if !held {
                outcome.abandoned = true;
                return Ok(outcome);
            }
            if field >= FIELDS.len() {
                outcome.done = true;
                break;
            }
        }
        self.counters()
            .done
            .add(u64::try_from(outcome.encrypted + outcome.secrets).unwrap_or(0));
        if outcome.encrypted > 0 || outcome.secrets > 0 || outcome.done {
            tracing::info!(org_id = %claim.org_id, key = %claim.key, looked = outcome.looked,
                encrypted = outcome.encrypted, secrets = outcome.secrets, done = outcome.done,
                "patient text and secrets encrypted");
        }
        Ok(outcome)
    }
}

impl Job for EncryptionJob {
    const NAME: &'static str = "sealing";
    type Claimed = ClaimedEncryption;
    type Outcome = EncryptionOutcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.encryption
    }

    async fn claim_due(
        db: &Db,
        batch: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedEncryption>, DbError> {
        system::claim_encryption(db, batch, lease).await
    }

    /// Nothing to put back: a clinic whose lease ran out is claimable as it is.
    async fn requeue_stale(_db: &Db) -> Result<i64, DbError> {
        Ok(0)
    }

    /// A failed step is logged by the runner; the lease runs out, the clinic is claimed
    /// again and the pass resumes from its last recorded place.
    async fn process(&self, claim: &ClaimedEncryption) -> Result<EncryptionOutcome, JobError> {
        self.seal(claim).await
    }
}
