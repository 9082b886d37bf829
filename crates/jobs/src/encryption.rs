//! The encryption job (migrations/0033, 0034): every clinic's patient text and recordings
//! encrypted with the current key, on the shared job runner. It encrypts what was stored
//! before values were encrypted, and after a key rotation encrypts again what the older key
//! encrypted, so that the older key can then be retired.
//!
//! A claim is one clinic whose data is not known to be encrypted with the current key, the
//! longest waiting first. It goes through the clinic's rows field by field in id order, a
//! bounded step at a time, each step one tenant transaction that also records where the pass
//! stands: a pass cut off resumes where it stopped, and a claim does at most `steps` steps, so
//! every clinic takes its turn whatever the size of the others. After the text fields come
//! the clinic's recordings (phase [`RECORDINGS`]), `recordings_step` objects a step, and last
//! its secrets. When the pass is done the clinic is known to be encrypted with the key, and
//! is not claimed again until the key changes.
//!
//! A recording is written again outside any transaction (an object can take minutes), then
//! recorded in one: if its call was erased or purged meanwhile, the object written is deleted,
//! so the job never brings back what an erasure removed.

use crate::job::open_tenant;
use crate::metrics::JobCounters;
use crate::objects::{self, Resealed};
use crate::{Job, JobError, Metrics, Schedule};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::crypto::CryptoError;
use voxanne_db::encrypted::{FIELDS, RECORDINGS};
use voxanne_db::system::{self, ClaimedEncryption};
use voxanne_db::{Db, DbError};
use voxanne_domain::OrgId;

const VIA: &str = "job:encryption";

#[derive(Debug, Clone)]
pub struct EncryptionConfig {
    pub schedule: Schedule,
    /// Rows looked at per step.
    pub step: u32,
    /// Steps per claim.
    pub steps: u32,
    /// Recordings written again per step.
    pub recordings_step: u32,
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
            recordings_step: 10,
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
    /// Recordings written again: stored before recordings were encrypted, or with their data
    /// key under an older key.
    pub recordings: usize,
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
    store: Arc<dyn ObjectStore>,
    config: EncryptionConfig,
    metrics: Arc<Metrics>,
}

/// One step over a clinic's recordings.
struct RecordingsStep {
    written: usize,
    /// The last call done, `None` when there are no more.
    after: Option<Uuid>,
}

impl EncryptionJob {
    /// The job over `db` (whose keyring encrypts) and the recordings' `store`.
    pub fn new(
        db: Db,
        store: Arc<dyn ObjectStore>,
        config: EncryptionConfig,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            store,
            config,
            metrics,
        }
    }

    /// Up to `recordings_step` of the clinic's recordings after call `after`, written again
    /// encrypted with the current key.
    async fn recordings_step(
        &self,
        org: OrgId,
        after: Option<Uuid>,
    ) -> Result<Option<RecordingsStep>, JobError> {
        let keyring = self
            .db
            .keyring()
            .ok_or(DbError::from(CryptoError::NoKeyring))?;
        let current = keyring.current_key_id();
        let Some(mut tx) = open_tenant(&self.db, org, VIA).await? else {
            return Ok(None);
        };
        let limit = self.config.recordings_step.max(1);
        let due = tx.recordings_to_encrypt(current, after, limit).await?;
        tx.commit().await?;
        let mut written = 0;
        for (call, key) in &due {
            // A key outside the clinic's prefix is a bug, never written.
            if !key.starts_with(&format!("{org}/")) {
                tracing::error!(org_id = %org, %key, "a recording key outside its clinic's prefix");
                continue;
            }
            let resealed = objects::reseal(self.store.as_ref(), keyring, org, key).await?;
            if resealed == Resealed::Missing {
                // The orphan sweep marks the call; nothing to encrypt.
                continue;
            }
            let Some(mut tx) = open_tenant(&self.db, org, VIA).await? else {
                return Ok(None);
            };
            let kept = tx.recording_encrypted(*call, key, current).await?;
            tx.commit().await?;
            if !kept && resealed != Resealed::Current {
                // Erased or purged while it was written again: it must not come back.
                match self.store.delete(&Path::from(key.as_str())).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            } else if resealed != Resealed::Current {
                written += 1;
            }
        }
        let after = (due.len() >= limit as usize)
            .then(|| due.last().map(|(call, _)| call.as_uuid()))
            .flatten();
        Ok(Some(RecordingsStep { written, after }))
    }

    /// Goes on with the pass of one claimed clinic, within the claim's bounds.
    pub async fn seal(&self, claim: &ClaimedEncryption) -> Result<EncryptionOutcome, JobError> {
        let mut outcome = EncryptionOutcome::default();
        let (mut field, mut after) = (claim.field, claim.after);
        for step in 0..self.config.steps.max(1) {
            if field == RECORDINGS {
                let Some(done) = self.recordings_step(claim.org_id, after).await? else {
                    outcome.abandoned = true;
                    return Ok(outcome);
                };
                outcome.recordings += done.written;
                after = done.after;
                if after.is_none() {
                    field += 1;
                }
            }
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
            if field > RECORDINGS {
                outcome.secrets += tx.encrypt_secrets().await?;
            }
            let last = field > RECORDINGS || step + 1 == self.config.steps.max(1);
            let held = tx
                .encryption_progress(claim.claim, &claim.key, field, after, last)
                .await?;
            tx.commit().await?;
            if !held {
                outcome.abandoned = true;
                return Ok(outcome);
            }
            if field > RECORDINGS {
                outcome.done = true;
                break;
            }
        }
        self.counters().done.add(
            u64::try_from(outcome.encrypted + outcome.secrets + outcome.recordings).unwrap_or(0),
        );
        if outcome.encrypted > 0 || outcome.secrets > 0 || outcome.recordings > 0 || outcome.done {
            tracing::info!(org_id = %claim.org_id, key = %claim.key, looked = outcome.looked,
                encrypted = outcome.encrypted, recordings = outcome.recordings,
                secrets = outcome.secrets, done = outcome.done,
                "patient text, recordings and secrets encrypted");
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
