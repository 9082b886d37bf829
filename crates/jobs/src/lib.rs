//! Background jobs. The recording pipeline (here): a call whose `recording_status` is
//! `queued` has its recording downloaded from the provider and stored in object storage under
//! its org's prefix. The SMS confirmations (`sms.rs`): a queued confirmation is sent through
//! the clinic's own SMS provider account.
//!
//! How it stays fair and tenant-safe (docs/TENANCY.md section 5): a batch is claimed with ONE
//! statement, `voxanne_db::system::claim_recordings`, which shares the batch out round-robin
//! across the active orgs that have work; everything done afterwards for a job runs in its
//! own org's tenant transaction (`Db::job_tenant`), under RLS. A claim carries a lease and an
//! attempt number: a worker that dies leaves `processing` rows that the stale sweep puts back
//! in the queue once the lease has run out, and a late writer whose claim was taken over
//! changes nothing (its final update is conditional on its attempt).
//!
//! Idempotence: an object's key is a function of the call (`{org}/recordings/{call}.{ext}`),
//! so running a job twice overwrites one object rather than storing two.

mod download;
pub mod egress;
pub mod media_hosts;
mod metrics;
mod rounds;
pub mod sms;
pub mod twilio;

pub use download::{Credentials, DownloadError, PART_BYTES};
pub use media_hosts::MediaHosts;
pub use metrics::Metrics;
pub use sms::{SmsConfig, SmsOutcome, SmsWorker};

use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_db::recordings::AfterFailure;
use voxanne_db::system::{self, ClaimedRecording};
use voxanne_db::{Db, DbError, TenantError};
use voxanne_domain::{IntegrationProvider, OrgId};

/// The worker's knobs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs claimed (and run concurrently) per batch.
    pub batch: u32,
    /// How long a claim is held before the stale sweep may give the job to another worker.
    pub lease: Duration,
    /// Sleep between batches when there was nothing to do.
    pub idle_poll: Duration,
    /// The attempt that fails with this number ends `failed`.
    pub max_attempts: i32,
    /// Backoff after attempt n is about `backoff_base * 2^(n-1)` (with jitter), at most `backoff_max`.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The whole download: connect, redirects, and streaming the body into storage.
    pub http_timeout: Duration,
    /// Recordings larger than this are refused.
    pub max_bytes: u64,
    /// How often `run` sweeps orphans (objects without a row, rows without an object).
    pub orphan_sweep_every: Duration,
    /// Download from loopback and private addresses too, and send credentials over plain http
    /// to a listed media host (development and tests only; see `egress.rs` for why production
    /// must not).
    pub allow_private_addresses: bool,
    /// The only hosts that get a clinic's Twilio credentials (see `media_hosts.rs`).
    pub twilio_media_hosts: MediaHosts,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch: 20,
            lease: Duration::from_secs(300),
            idle_poll: Duration::from_secs(2),
            max_attempts: 5,
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(60),
            max_bytes: 200 * 1024 * 1024,
            orphan_sweep_every: Duration::from_secs(3600),
            allow_private_addresses: false,
            twilio_media_hosts: MediaHosts::twilio(),
        }
    }
}

/// The worker's HTTP client: public addresses only unless the config allows private ones.
/// It follows no redirect itself: `download::get` does, checking each hop.
pub fn http_client(config: &WorkerConfig) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(config.http_timeout)
        .connect_timeout(config.http_timeout)
        .redirect(reqwest::redirect::Policy::none());
    if config.allow_private_addresses {
        builder.build()
    } else {
        builder
            .dns_resolver(std::sync::Arc::new(egress::PublicOnly))
            .build()
    }
}

/// What one job ended as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Stored {
        path: String,
    },
    /// Failed; back in the queue for a later attempt.
    Retry {
        error: String,
    },
    /// Failed for good.
    Failed {
        error: String,
    },
    /// The claim no longer held (taken over after a lease ran out), or the org is no longer
    /// active: nothing written.
    Abandoned,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Storage(#[from] object_store::Error),
}

/// What an orphan sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects with no call row pointing at them, deleted.
    pub objects_deleted: usize,
    /// Calls whose stored object was missing, marked `failed`.
    pub rows_marked: usize,
}

/// A recording worker. Several may run at once against one database.
#[derive(Clone)]
pub struct Worker {
    db: Db,
    store: Arc<dyn ObjectStore>,
    keyring: Arc<Keyring>,
    http: reqwest::Client,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish()
    }
}

impl Worker {
    pub fn new(
        db: Db,
        store: Arc<dyn ObjectStore>,
        keyring: Arc<Keyring>,
        config: WorkerConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = http_client(&config)?;
        Ok(Self {
            db,
            store,
            keyring,
            http,
            config,
            metrics,
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// One round: puts stale jobs back in the queue, claims a batch and runs it to the end.
    /// Returns the batch's outcomes.
    pub async fn run_once(&self) -> Result<Vec<(ClaimedRecording, Outcome)>, JobError> {
        let requeued = system::requeue_stale_recordings(&self.db).await?;
        if requeued > 0 {
            tracing::warn!(
                requeued,
                "recordings whose worker died went back to the queue"
            );
        }
        let batch = self.claim().await?;
        Ok(rounds::run_batch(
            batch,
            |job| async move {
                let outcome = self.process(&job).await;
                (job, outcome)
            },
            |job, e| {
                tracing::error!(org_id = %job.org_id, call_id = %job.call_id, error = %e,
                    "recording job failed to record its outcome");
            },
        )
        .await)
    }

    /// Claims the next batch (one statement, fair across orgs).
    pub async fn claim(&self) -> Result<Vec<ClaimedRecording>, JobError> {
        Ok(system::claim_recordings(&self.db, self.config.batch, self.config.lease).await?)
    }

    /// Runs until `shutdown` resolves. A batch in flight when it does is finished (each job
    /// is bounded by the HTTP timeout); no new batch is claimed after.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let mut last_sweep: Option<std::time::Instant> = None;
        rounds::poll("recording", self.config.idle_poll, shutdown, || {
            let sweep = last_sweep.is_none_or(|at| at.elapsed() >= self.config.orphan_sweep_every);
            if sweep {
                last_sweep = Some(std::time::Instant::now());
            }
            let worker = &self;
            async move {
                if sweep {
                    match worker.sweep_orphans().await {
                        Ok(report) => tracing::info!(?report, "orphan sweep done"),
                        Err(e) => tracing::error!(error = %e, "orphan sweep failed"),
                    }
                }
                Ok(!worker.run_once().await?.is_empty())
            }
        })
        .await;
    }

    /// Runs one claimed job to its end, in its org's tenant transactions.
    pub async fn process(&self, job: &ClaimedRecording) -> Result<Outcome, JobError> {
        let org = OrgId::from_uuid(job.org_id);
        let result = self.fetch_and_store(org, job).await;
        let mut tx = match self.db.job_tenant(org).await {
            Ok(tx) => tx,
            // Suspended or erased meanwhile: leave the row; the stale sweep requeues it once
            // the org is active again (an erased org's rows are gone).
            Err(TenantError::Suspended | TenantError::NotMember) => return Ok(Outcome::Abandoned),
            Err(e) => return Err(e.into()),
        };
        let outcome = match result {
            Ok(path) => {
                if tx.recording_stored(job.call_id, job.attempt, &path).await? {
                    self.metrics.processed.inc();
                    Outcome::Stored { path }
                } else {
                    Outcome::Abandoned
                }
            }
            Err(error) => {
                let error = error.to_string();
                let after = if job.attempt >= self.config.max_attempts {
                    AfterFailure::GiveUp
                } else {
                    AfterFailure::RetryAt(Utc::now() + self.backoff(job.attempt))
                };
                if !tx
                    .recording_failed(job.call_id, job.attempt, &error, after)
                    .await?
                {
                    Outcome::Abandoned
                } else if after == AfterFailure::GiveUp {
                    self.metrics.failed.inc();
                    tracing::warn!(org_id = %org, call_id = %job.call_id, attempt = job.attempt, %error, "recording failed for good");
                    Outcome::Failed { error }
                } else {
                    self.metrics.retried.inc();
                    tracing::info!(org_id = %org, call_id = %job.call_id, attempt = job.attempt, %error, "recording failed, will retry");
                    Outcome::Retry { error }
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// The orphan sweep. Deletes stored recordings that no call row points at (e.g. an erased
    /// clinic's, or a job's whose commit never happened), once they are older than a lease
    /// (so a job between its upload and its commit is left alone); and marks `failed` the
    /// calls of active orgs whose stored object is missing. Both cross-org reads are named
    /// operations; each mark runs in its org's tenant transaction.
    pub async fn sweep_orphans(&self) -> Result<SweepReport, JobError> {
        use futures_util::TryStreamExt;
        let mut report = SweepReport::default();
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::zero());
        let objects: Vec<_> = self.store.list(None).try_collect().await?;
        let candidates: Vec<(Uuid, Uuid, String)> = objects
            .iter()
            .filter(|o| o.last_modified < cutoff)
            .filter_map(|o| parse_key(o.location.as_ref()))
            .collect();
        for chunk in candidates.chunks(500) {
            let known: std::collections::HashSet<String> =
                system::known_recording_objects(&self.db, chunk)
                    .await?
                    .into_iter()
                    .collect();
            for (_, _, key) in chunk {
                if !known.contains(key) {
                    match self.store.delete(&Path::from(key.as_str())).await {
                        Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                            report.objects_deleted += 1;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        let mut after = None;
        loop {
            let page = system::stored_recordings(&self.db, after, 500).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.0, last.1));
            for (org, call, key) in &page {
                let Ok(path) = Path::parse(key) else { continue };
                match self.store.head(&path).await {
                    Ok(_) => {}
                    Err(object_store::Error::NotFound { .. }) => {
                        let mut tx = match self.db.job_tenant(OrgId::from_uuid(*org)).await {
                            Ok(tx) => tx,
                            Err(TenantError::Suspended | TenantError::NotMember) => continue,
                            Err(e) => return Err(e.into()),
                        };
                        if tx.recording_object_missing(*call, key).await? {
                            report.rows_marked += 1;
                            tracing::warn!(org_id = %org, call_id = %call, %key, "a stored recording is missing from storage");
                        }
                        tx.commit().await?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(report)
    }

    /// Gives claimed jobs back to the queue without running them (used when a worker stops
    /// with jobs claimed but not started).
    pub async fn release(&self, job: &ClaimedRecording) -> Result<bool, JobError> {
        let mut tx = self.db.job_tenant(OrgId::from_uuid(job.org_id)).await?;
        let released = tx.release_recording(job.call_id, job.attempt).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// `base * 2^(attempt-1)`, capped, with jitter: uniformly in [half, full].
    pub fn backoff(&self, attempt: i32) -> chrono::Duration {
        backoff_delay(self.config.backoff_base, self.config.backoff_max, attempt)
    }

    /// Downloads the recording and streams it into storage under the org's prefix, with the
    /// org's Twilio credentials only if the URL is on one of Twilio's media hosts. Returns the
    /// object's key.
    async fn fetch_and_store(
        &self,
        org: OrgId,
        job: &ClaimedRecording,
    ) -> Result<String, DownloadError> {
        let url = job.recording_url.as_deref().ok_or(DownloadError::NoUrl)?;
        let parsed = reqwest::Url::parse(url).map_err(|e| DownloadError::Refused(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.config.http_timeout;
        let policy = download::Policy {
            media_hosts: &self.config.twilio_media_hosts,
            allow_private: self.config.allow_private_addresses,
        };
        // Read only when they could be sent: a clinic's secrets are not decrypted for a URL
        // that never gets them.
        let credentials = if policy.media_hosts.allows(&parsed, policy.allow_private) {
            self.credentials(org).await?
        } else {
            None
        };
        let response =
            download::get(&self.http, &parsed, credentials.as_ref(), policy, deadline).await?;
        let content_type = download::content_type(&response);
        let key = object_key(org, job.call_id, url, content_type.as_deref());
        let path = Path::parse(&key).map_err(|e| DownloadError::Storage(e.to_string()))?;
        download::store(response, self.store.as_ref(), &path, self.config.max_bytes).await?;
        Ok(key)
    }

    /// HTTP basic credentials from the org's twilio integration (account_sid, auth_token),
    /// read in the org's tenant transaction; none when it has no such integration.
    async fn credentials(&self, org: OrgId) -> Result<Option<Credentials>, DownloadError> {
        let mut tx = self
            .db
            .job_tenant(org)
            .await
            .map_err(|e| DownloadError::Credentials(e.to_string()))?;
        let integration = tx
            .get_integration(IntegrationProvider::Twilio)
            .await
            .map_err(|e| DownloadError::Credentials(e.to_string()))?;
        drop(tx);
        let Some(integration) = integration else {
            return Ok(None);
        };
        let sid = integration
            .config
            .get("account_sid")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let secrets = integration
            .open_secrets(&self.keyring, org)
            .map_err(|e| DownloadError::Credentials(e.to_string()))?;
        Ok(match (sid, secrets.get("auth_token")) {
            (Some(user), Some(token)) => Some(Credentials {
                user,
                password: token.clone(),
            }),
            _ => None,
        })
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

/// `{org}/recordings/{call}.{ext}`: the extension from the URL's path, else from the content
/// type, else `wav`.
pub fn object_key(org: OrgId, call: Uuid, url: &str, content_type: Option<&str>) -> String {
    const KNOWN: [&str; 4] = ["wav", "mp3", "ogg", "m4a"];
    let from_url = url
        .split(['?', '#'])
        .next()
        .and_then(|p| p.rsplit('/').next())
        .and_then(|name| name.rsplit_once('.'))
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .filter(|ext| KNOWN.contains(&ext.as_str()));
    let from_type = content_type.and_then(|t| match t.split(';').next().map(str::trim) {
        Some("audio/mpeg") => Some("mp3".to_owned()),
        Some("audio/ogg") => Some("ogg".to_owned()),
        Some("audio/mp4") => Some("m4a".to_owned()),
        _ => None,
    });
    let ext = from_url.or(from_type).unwrap_or_else(|| "wav".to_owned());
    format!("{org}/recordings/{call}.{ext}")
}

/// `{org}/recordings/{call}.{ext}` to (org, call, key); `None` for any other shape.
fn parse_key(key: &str) -> Option<(Uuid, Uuid, String)> {
    let mut parts = key.split('/');
    let org = parts.next()?.parse().ok()?;
    (parts.next()? == "recordings").then_some(())?;
    let call = parts.next()?.split_once('.')?.0.parse().ok()?;
    parts.next().is_none().then(|| (org, call, key.to_owned()))
}

/// Deletes every stored object under `{org}/` (an erased clinic). Returns how many.
pub async fn remove_org_objects(
    store: &dyn ObjectStore,
    org: OrgId,
) -> Result<usize, object_store::Error> {
    use futures_util::TryStreamExt;
    let prefix = Path::from(org.to_string());
    let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut removed = 0;
    for object in objects {
        match store.delete(&object.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => removed += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}
