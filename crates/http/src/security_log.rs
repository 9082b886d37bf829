//! Security findings are written off the request path. A request that meets a missing id, a
//! denied membership or a badly signed webhook reports it here and answers at once: the same
//! work, and so the same time, whether the id belongs to another clinic or to nobody, and
//! whether a number belongs to a clinic or not. A background task writes the findings in
//! batches: denials into the clinic they name, probes through `app.classify_probes` (the
//! owning clinic's security log and the operators' log, never the prober's own).
//!
//! The queue is bounded, and classification has a budget per minute: a flood of probes costs
//! bounded memory and database work, and what is dropped is counted and logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use voxanne_db::system::{classify_probes, record_denied, DeniedKind, Probe};
use voxanne_db::Db;
use voxanne_domain::{OrgId, UserId};

/// Findings waiting to be written, at most.
const QUEUE: usize = 10_000;
/// Findings written per batch, at most.
const BATCH: usize = 200;
/// Probes classified per minute, at most (each may scan a table for the id).
const PROBES_PER_MINUTE: u32 = 1_200;

/// What a request found.
#[derive(Debug, Clone)]
pub enum Finding {
    /// A member of `probe.org` asked for an id that org does not have, through `route`.
    Probe { probe: Probe, route: String },
    /// Something refused at the door of `org`: a non-member, a bad token naming it, a webhook
    /// to its number not signed with its secret.
    Denied {
        org: OrgId,
        user: Option<UserId>,
        kind: DeniedKind,
        route: String,
        detail: serde_json::Value,
    },
}

enum Message {
    Finding(Finding),
    Flush(oneshot::Sender<()>),
}

/// The request path's end of the queue.
#[derive(Debug)]
pub struct SecurityLog {
    sender: mpsc::Sender<Message>,
    dropped: AtomicU64,
}

impl SecurityLog {
    /// Starts the writer on `db`. It ends once every handle is dropped and the queue is
    /// written; await the returned task to let it finish.
    pub fn start(db: Db) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let task = tokio::spawn(write(db, receiver));
        (
            Arc::new(Self {
                sender,
                dropped: AtomicU64::new(0),
            }),
            task,
        )
    }

    /// Queues `finding` without waiting; a full queue drops it (counted).
    pub fn report(&self, finding: Finding) {
        if self.sender.try_send(Message::Finding(finding)).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the security log queue is full; findings dropped");
            }
        }
    }

    /// Waits until everything reported before this call is written.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Findings dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn write(db: Db, mut receiver: mpsc::Receiver<Message>) {
    let mut budget = Budget::new();
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut probes = Vec::new();
        let mut flushed = Vec::new();
        for message in batch.drain(..) {
            match message {
                Message::Flush(done) => flushed.push(done),
                Message::Finding(Finding::Probe { probe, route }) => {
                    if budget.take() {
                        probes.push((probe, route));
                    }
                }
                Message::Finding(Finding::Denied {
                    org,
                    user,
                    kind,
                    route,
                    detail,
                }) => {
                    if let Err(e) = record_denied(&db, org, user, kind, &route, detail).await {
                        tracing::warn!(error = %e, "recording a security event failed");
                    }
                }
            }
        }
        match classify_probes(&db, &probes).await {
            Ok(found) => budget.found(found),
            Err(e) => tracing::warn!(error = %e, "classifying probes failed"),
        }
        for done in flushed {
            let _ = done.send(());
        }
    }
}

/// Probes classified per minute, and what the minute found: logged once a minute at most,
/// so that a flood of probes is one line, not one per batch.
struct Budget {
    window: Instant,
    used: u32,
    skipped: u64,
    found: u64,
    reported: bool,
}

impl Budget {
    fn new() -> Self {
        Self {
            window: Instant::now(),
            used: 0,
            skipped: 0,
            found: 0,
            reported: false,
        }
    }

    fn found(&mut self, found: u64) {
        self.found += found;
        if found > 0 && !self.reported {
            self.reported = true;
            tracing::warn!(
                target: "voxanne::security",
                found,
                "ids of other clinics were asked for; recorded for the clinics that own them \
                 (the operators' log has each one)"
            );
        }
    }

    fn take(&mut self) -> bool {
        if self.window.elapsed() >= Duration::from_secs(60) {
            if self.skipped > 0 || self.found > 1 {
                tracing::warn!(
                    target: "voxanne::security",
                    found = self.found,
                    skipped = self.skipped,
                    "probes of the last minute: found to be other clinics' ids, and left \
                     unclassified over the budget"
                );
            }
            *self = Self::new();
        }
        if self.used < PROBES_PER_MINUTE {
            self.used += 1;
            true
        } else {
            self.skipped += 1;
            false
        }
    }
}
