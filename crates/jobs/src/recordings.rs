//! The recording job: a call whose `recording_status` is `queued` has its recording
//! downloaded from the provider and stored in object storage under its org's prefix,
//! encrypted for the clinic as it arrives (`objects.rs`).
//!
//! Idempotence: an object's key is a function of the call (`{org}/recordings/{call}.{ext}`),
//! so running a job twice overwrites one object rather than storing two. An orphan sweep
//! (before a round, every `orphan_sweep_every`) deletes objects no call points at and marks
//! the calls whose object went missing.

use crate::download::{self, Credentials, DownloadError};
use crate::job::{open_tenant, Claim, Failure, Job, Schedule};
use crate::media_hosts::MediaHosts;
use crate::metrics::{JobCounters, Metrics};
use crate::{egress, JobError};
use chrono::Utc;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_db::system::{self, ClaimedRecording};
use voxanne_db::{Db, DbError};
use voxanne_domain::{CallId, IntegrationProvider, OrgId};

/// The worker's knobs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Batch, lease, polling and retries.
    pub schedule: Schedule,
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
            schedule: Schedule::default(),
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

/// What an orphan sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Objects with no call row pointing at them, deleted.
    pub objects_deleted: usize,
    /// Calls whose stored object was missing, marked `failed`.
    pub rows_marked: usize,
}

/// The recording job. Several workers may run at once against one database.
#[derive(Clone)]
pub struct Worker {
    db: Db,
    store: Arc<dyn ObjectStore>,
    keyring: Arc<Keyring>,
    http: reqwest::Client,
    config: WorkerConfig,
    metrics: Arc<Metrics>,
    /// When `run` last swept orphans.
    last_sweep: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish()
    }
}

impl Job for Worker {
    const NAME: &'static str = "recording";
    type Claimed = ClaimedRecording;
    type Outcome = Outcome;

    fn db(&self) -> &Db {
        &self.db
    }

    fn schedule(&self) -> &Schedule {
        &self.config.schedule
    }

    fn counters(&self) -> &JobCounters {
        &self.metrics.recordings
    }

    async fn claim_due(
        db: &Db,
        batch: u32,
        lease: Duration,
    ) -> Result<Vec<ClaimedRecording>, DbError> {
        system::claim_recordings(db, batch, lease).await
    }

    async fn requeue_stale(db: &Db) -> Result<i64, DbError> {
        system::requeue_stale_recordings(db).await
    }

    /// The orphan sweep, every `orphan_sweep_every` (and in the first round).
    async fn before_round(&self) {
        let due = {
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            let due = last.is_none_or(|at| at.elapsed() >= self.config.orphan_sweep_every);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            match self.sweep_orphans().await {
                Ok(report) => tracing::info!(?report, "orphan sweep done"),
                Err(e) => tracing::error!(error = %e, "orphan sweep failed"),
            }
        }
    }

    /// Downloads the recording and stores it, then records the outcome in the org's tenant
    /// transaction.
    async fn process(&self, job: &ClaimedRecording) -> Result<Outcome, JobError> {
        let org = job.org();
        let result = self.fetch_and_store(org, job).await;
        let Some(mut tx) = open_tenant(&self.db, org, "job:recordings").await? else {
            return Ok(Outcome::Abandoned);
        };
        let outcome = match result {
            Ok(path) => {
                let key_id = self.keyring.current_key_id();
                if tx
                    .recording_stored(job.call_id, job.attempt, &path, key_id)
                    .await?
                {
                    self.metrics.recordings.done.inc();
                    Outcome::Stored { path }
                } else {
                    Outcome::Abandoned
                }
            }
            Err(error) => {
                let error = error.to_string();
                let message = error.clone();
                let tx = &mut tx;
                let write = move |after| async move {
                    tx.recording_failed(job.call_id, job.attempt, &error, after)
                        .await
                };
                self.failed(job, message, false, write).await?.into()
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }
}

impl From<Failure> for Outcome {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Retry { error } => Self::Retry { error },
            Failure::Failed { error } => Self::Failed { error },
            Failure::Abandoned => Self::Abandoned,
        }
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
            last_sweep: Arc::default(),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
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
            - chrono::Duration::from_std(self.config.schedule.lease)
                .unwrap_or(chrono::Duration::zero());
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
                        let Some(mut tx) =
                            open_tenant(&self.db, OrgId::from_uuid(*org), "job:recordings").await?
                        else {
                            continue;
                        };
                        if tx
                            .recording_object_missing(CallId::from_uuid(*call), key)
                            .await?
                        {
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
        let mut tx = self.db.job_tenant(job.org_id).await?;
        tx.set_origin("job:recordings", None, None);
        let released = tx.release_recording(job.call_id, job.attempt).await?;
        tx.commit().await?;
        Ok(released)
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
        download::store(
            response,
            self.store.as_ref(),
            &path,
            self.config.max_bytes,
            &self.keyring,
            org,
        )
        .await?;
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

/// `{org}/recordings/{call}.{ext}`: the extension from the URL's path, else from the content
/// type, else `wav`.
pub fn object_key(org: OrgId, call: CallId, url: &str, content_type: Option<&str>) -> String {
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
