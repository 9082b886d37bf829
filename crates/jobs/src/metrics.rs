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
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
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
    /// Calendar syncs: done (busy times read), failed (a connection broken), retried.
    pub calendar_sync: JobCounters,
    /// Calendar event writes: done, failed for good, retried.
    pub calendar_events: JobCounters,
    /// Campaign calls: placed, failed for good, retried, skipped (do-not-call, no consent).
    pub calls: JobCounters,
    /// Retention: rows and recordings purged.
    pub retention: JobCounters,
    /// Encryption at rest: patient texts encrypted with the current key.
    pub encryption: JobCounters,
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
        let depth = voxanne_db::system::calendar_queue_depth(db).await?;
        out.push_str("# HELP voxanne_calendar_connections Linked calendars, by state (all orgs; stale: no sync in 10 minutes).\n# TYPE voxanne_calendar_connections gauge\n");
        for (_, status, n) in depth.iter().filter(|(kind, _, _)| kind == "connections") {
            let _ = writeln!(
                out,
                "voxanne_calendar_connections{{state=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP voxanne_calendar_event_writes Calendar event writes, by status (all orgs).\n# TYPE voxanne_calendar_event_writes gauge\n");
        for (_, status, n) in depth.iter().filter(|(kind, _, _)| kind == "event_writes") {
            let _ = writeln!(
                out,
                "voxanne_calendar_event_writes{{status=\"{status}\"}} {n}"
            );
        }
        let backlog = voxanne_db::system::encryption_backlog(db).await?;
        let _ = writeln!(
            out,
            "# HELP voxanne_clinics_awaiting_encryption Active clinics whose patient text is not yet known to be encrypted with the current key (0: a key rotation is complete).\n# TYPE voxanne_clinics_awaiting_encryption gauge\nvoxanne_clinics_awaiting_encryption {backlog}"
        );
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
            (
                "voxanne_calendar_syncs_total",
                "Calendar busy-time syncs done by this process.",
                &self.calendar_sync.done,
            ),
            (
                "voxanne_calendar_syncs_retried_total",
                "Failed calendar syncs to be tried again (the cached busy times stay).",
                &self.calendar_sync.retried,
            ),
            (
                "voxanne_calendar_connections_broken_total",
                "Calendar connections this process found broken (the provider refused the grant).",
                &self.calendar_sync.failed,
            ),
            (
                "voxanne_calendar_events_written_total",
                "Calendar events written or removed by this process.",
                &self.calendar_events.done,
            ),
            (
                "voxanne_calendar_events_failed_total",
                "Calendar event writes that failed for good in this process.",
                &self.calendar_events.failed,
            ),
            (
                "voxanne_calendar_events_retried_total",
                "Failed calendar event writes put back in the queue.",
                &self.calendar_events.retried,
            ),
            (
                "voxanne_campaign_calls_placed_total",
                "Campaign calls the voice platform took, from this process.",
                &self.calls.done,
            ),
            (
                "voxanne_campaign_calls_failed_total",
                "Campaign calls the voice platform did not take, for good, in this process.",
                &self.calls.failed,
            ),
            (
                "voxanne_campaign_calls_retried_total",
                "Failed campaign dials put back in the queue.",
                &self.calls.retried,
            ),
            (
                "voxanne_retention_purged_total",
                "Recordings, transcripts, SMS bodies and calls purged by this process when their retention ran out.",
                &self.retention.done,
            ),
            (
                "voxanne_patient_text_encrypted_total",
                "Patient texts encrypted with the current key by this process (older plaintext, or an older key's).",
                &self.encryption.done,
            ),
            (
                "voxanne_campaign_calls_skipped_total",
                "Campaign targets never called (do-not-call list, no consent, unknown time zone).",
                &self.calls.suppressed,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                counter.get()
            );
        }
        let (batches, records) = db.access_writer_written();
        for (name, help, value) in [
            (
                "voxanne_access_writer_batches_total",
                "Writing transactions of the access records of reads, in this process.",
                batches,
            ),
            (
                "voxanne_access_writer_records_total",
                "Access records of reads written in them.",
                records,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        }
        Ok(out)
    }
}
