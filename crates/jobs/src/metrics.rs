//! The worker's counters and the Prometheus text of `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use voxanne_db::{Db, DbError};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One job's counters in this process.
#[derive(Debug, Default)]
pub struct JobCounters {
    /// Units done: recordings stored, messages the provider accepted.
    pub done: Counter,
    /// Units that failed for good.
    pub failed: Counter,
    /// Failed attempts put back in the queue.
    pub retried: Counter,
    /// Units dropped without being done, on purpose (an SMS to a do-not-call number, or for a
    /// cancelled appointment).
    pub suppressed: Counter,
}

/// Counters of this process's jobs.
#[derive(Debug, Default)]
pub struct Metrics {
    pub recordings: JobCounters,
    pub sms: JobCounters,
}

impl Metrics {
    /// Prometheus text format: the queue depths by status (all orgs, counts only) and this
    /// process's counters.
    pub async fn render(&self, db: &Db) -> Result<String, DbError> {
        let depth = voxanne_db::system::recording_queue_depth(db).await?;
        let mut out = String::new();
        out.push_str("# HELP voxanne_recordings Recording jobs in the queue, by state (all orgs).\n# TYPE voxanne_recordings gauge\n");
        for (status, n) in depth {
            let _ = writeln!(out, "voxanne_recordings{{status=\"{status}\"}} {n}");
        }
        let depth = voxanne_db::system::sms_queue_depth(db).await?;
        out.push_str("# HELP voxanne_sms SMS confirmations in the queue, by state (all orgs).\n# TYPE voxanne_sms gauge\n");
        for (status, n) in depth {
            let _ = writeln!(out, "voxanne_sms{{status=\"{status}\"}} {n}");
        }
        for (name, help, counter) in [
            (
                "voxanne_recordings_processed_total",
                "Recordings stored by this process.",
                &self.recordings.done,
            ),
            (
                "voxanne_recordings_failed_total",
                "Recordings that failed for good in this process.",
                &self.recordings.failed,
            ),
            (
                "voxanne_recordings_retried_total",
                "Failed recording attempts put back in the queue.",
                &self.recordings.retried,
            ),
            (
                "voxanne_sms_sent_total",
                "SMS confirmations the provider accepted, from this process.",
                &self.sms.done,
            ),
            (
                "voxanne_sms_failed_total",
                "SMS confirmations that failed for good in this process.",
                &self.sms.failed,
            ),
            (
                "voxanne_sms_retried_total",
                "Failed SMS attempts put back in the queue.",
                &self.sms.retried,
            ),
            (
                "voxanne_sms_suppressed_total",
                "SMS confirmations not sent (do-not-call list, cancelled appointment).",
                &self.sms.suppressed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        Ok(out)
    }
}
