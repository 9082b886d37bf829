//! Background jobs, each one kind of [`Job`] run by the same runner (`job.rs`):
//! - the recordings (`recordings.rs`): a call whose `recording_status` is `queued` has its
//!   recording downloaded from the provider and stored in object storage under its org's
//!   prefix;
//! - the SMS confirmations (`sms.rs`): a queued confirmation is sent through the clinic's own
//!   SMS provider account;
//! - the calendar sync (`calendar_sync.rs`): a linked calendar's tokens are refreshed before
//!   they expire and its busy times cached for availability;
//! - the calendar event writes (`calendar_events.rs`): each booking, move and cancellation
//!   is written to the clinic's linked calendars;
//! - the campaign dialer (`dialer.rs`): a campaign's queued target is called through the
//!   voice platform's outbound API, in the callee's calling hours, under the clinic's cap.
//!
//! How they stay fair and tenant-safe (docs/TENANCY.md section 5): a batch is claimed with ONE
//! statement (e.g. `voxanne_db::system::claim_recordings`), which shares the batch out
//! round-robin across the active orgs that have work; everything done afterwards for a claim
//! runs in its own org's tenant transaction (`Db::job_tenant`), under RLS. A claim carries a
//! lease and an attempt number: a worker that dies leaves claimed rows that the stale sweep
//! puts back in the queue once the lease has run out, and a late writer whose claim was taken
//! over changes nothing (its final update is conditional on its attempt).

pub mod access_seal;
pub mod calendar_events;
pub mod calendar_sync;
pub mod dialer;
mod download;
pub mod egress;
pub mod encryption;
pub mod erase;
pub mod export;
pub mod job;
pub mod media_hosts;
mod metrics;
pub mod objects;
pub mod recordings;
pub mod retention;
pub mod sms;
pub mod twilio;
pub mod vapi;

pub use access_seal::{AccessLogSealer, SealConfig};
pub use calendar_events::{CalendarWriter, WriteOutcome};
pub use calendar_sync::{CalendarSync, CalendarSyncConfig, SyncOutcome};
pub use dialer::{DialOutcome, Dialer, DialerConfig};
pub use download::{Credentials, DownloadError};
pub use encryption::{EncryptionConfig, EncryptionJob, EncryptionOutcome};
pub use job::{backoff_delay, Claim, Failure, Job, Schedule};
pub use media_hosts::MediaHosts;
pub use metrics::{JobCounters, Metrics};
pub use objects::PART_BYTES;
pub use recordings::{
    http_client, object_key, remove_org_objects, Outcome, SweepReport, Worker, WorkerConfig,
};
pub use retention::{PurgeOutcome, RetentionConfig, RetentionJob};
pub use sms::{SmsConfig, SmsOutcome, SmsWorker};

use voxanne_db::{DbError, TenantError};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error(transparent)]
    Storage(#[from] object_store::Error),
    #[error(transparent)]
    Object(#[from] objects::ObjectError),
}
