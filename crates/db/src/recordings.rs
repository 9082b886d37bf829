//! The recording pipeline's work on one call, inside its org's tenant transaction (opened
//! with [`crate::Db::job_tenant`]). Claiming, which spans orgs, is in `system.rs`.

use crate::access::subject;
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::CallId;

/// How a failed attempt ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back in the queue, not before this time.
    RetryAt(DateTime<Utc>),
    /// No more attempts: the recording is `failed`.
    GiveUp,
}

impl TenantTx {
    /// Marks the call's recording stored at `path`, its data key encrypted with the keyring's
    /// key `key_id`, if this claim (`attempt`) still holds it, and clears its failure record. Returns whether it did: `false` when the lease was lost
    /// (another worker took the job over, or the call is gone).
    pub async fn recording_stored(
        &mut self,
        call_id: CallId,
        attempt: i32,
        path: &str,
        key_id: &str,
    ) -> Result<bool, DbError> {
        self.note_access(subject::RECORDING, Some(call_id.into()), Action::Create, []);
        let org = self.org().as_uuid();
        let call_id = call_id.as_uuid();
        let updated = sqlx::query!(
            "UPDATE calls
                SET recording_status = 'stored', recording_path = $3, recording_key_id = $5,
                    recording_lease_until = NULL, recording_next_attempt_at = NULL
              WHERE org_id = $1 AND id = $2 AND recording_status = 'processing'
                AND recording_attempts = $4",
            org,
            call_id,
            path,
            attempt,
            key_id
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        if updated {
            sqlx::query!(
                "DELETE FROM failed_recording_uploads WHERE org_id = $1 AND call_id = $2",
                org,
                call_id
            )
            .execute(self.conn())
            .await?;
        }
        Ok(updated)
    }

    /// Records a failed attempt: the call goes back to the queue or ends `failed`, and
    /// `failed_recording_uploads` keeps the attempts and the last error. Returns whether this
    /// claim still held the job (if not, nothing is written).
    pub async fn recording_failed(
        &mut self,
        call_id: CallId,
        attempt: i32,
        error: &str,
        after: AfterFailure,
    ) -> Result<bool, DbError> {
        self.note_access(subject::RECORDING, Some(call_id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let call_id = call_id.as_uuid();
        let (status, next) = match after {
            AfterFailure::RetryAt(at) => ("queued", Some(at)),
            AfterFailure::GiveUp => ("failed", None),
        };
        let updated = sqlx::query!(
            "UPDATE calls
                SET recording_status = $3, recording_next_attempt_at = $4,
                    recording_lease_until = NULL
              WHERE org_id = $1 AND id = $2 AND recording_status = 'processing'
                AND recording_attempts = $5",
            org,
            call_id,
            status,
            next,
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        if updated {
            let error: String = error.chars().take(2000).collect();
            sqlx::query!("INSERT INTO failed_recording_uploads (org_id, call_id, attempts, last_error, next_attempt_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (org_id, call_id) DO UPDATE
                    SET attempts = EXCLUDED.attempts, last_error = EXCLUDED.last_error,
                        next_attempt_at = EXCLUDED.next_attempt_at, updated_at = EXCLUDED.updated_at", org, call_id, attempt, error, next)
            .execute(self.conn())
            .await?;
        }
        Ok(updated)
    }

    /// Gives a claimed job back to the queue untouched (graceful shutdown): the attempt it
    /// used is returned too.
    pub async fn release_recording(
        &mut self,
        call_id: CallId,
        attempt: i32,
    ) -> Result<bool, DbError> {
        self.note_access(subject::RECORDING, Some(call_id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let call_id = call_id.as_uuid();
        let updated = sqlx::query!(
            "UPDATE calls
                SET recording_status = 'queued', recording_lease_until = NULL,
                    recording_attempts = greatest(recording_attempts - 1, 0)
              WHERE org_id = $1 AND id = $2 AND recording_status = 'processing'
                AND recording_attempts = $3",
            org,
            call_id,
            attempt
        )
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        Ok(updated)
    }
}

impl TenantTx {
    /// The call says its recording is stored at `path`, and storage has no such object: the
    /// recording is `failed`, with the reason kept in `failed_recording_uploads`.
    pub async fn recording_object_missing(
        &mut self,
        call_id: CallId,
        path: &str,
    ) -> Result<bool, DbError> {
        self.note_access(subject::RECORDING, Some(call_id.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let call_id = call_id.as_uuid();
        let updated = sqlx::query!("UPDATE calls SET recording_status = 'failed'
              WHERE org_id = $1 AND id = $2 AND recording_status = 'stored' AND recording_path = $3", org, call_id, path)
        .execute(self.conn())
        .await?
        .rows_affected()
            > 0;
        if updated {
            sqlx::query!("INSERT INTO failed_recording_uploads (org_id, call_id, attempts, last_error)
                 SELECT org_id, id, recording_attempts, 'the stored object is missing from storage'
                   FROM calls WHERE org_id = $1 AND id = $2
                 ON CONFLICT (org_id, call_id) DO UPDATE
                    SET last_error = EXCLUDED.last_error, next_attempt_at = NULL, updated_at = EXCLUDED.updated_at", org, call_id)
            .execute(self.conn())
            .await?;
        }
        Ok(updated)
    }

    /// Up to `limit` of the clinic's stored recordings whose objects are not known to be
    /// encrypted with the key `current`, after call `after` in id order (the encryption job).
    pub async fn recordings_to_encrypt(
        &mut self,
        current: &str,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<(CallId, String)>, DbError> {
        let rows = sqlx::query!(
            r#"SELECT id, recording_path AS "path!" FROM calls
                WHERE org_id = $1 AND recording_status = 'stored' AND recording_path IS NOT NULL
                  AND recording_key_id IS DISTINCT FROM $2 AND id > $3
                ORDER BY id LIMIT $4"#,
            self.org().as_uuid(),
            current,
            after.unwrap_or(Uuid::nil()),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (CallId::from_uuid(r.id), r.path))
            .collect())
    }

    /// Records that the call's object at `path` is now encrypted with the key `key_id`.
    /// `false` when the call no longer has that recording stored (erased or purged while the
    /// object was written again): the caller deletes what it wrote.
    pub async fn recording_encrypted(
        &mut self,
        call_id: CallId,
        path: &str,
        key_id: &str,
    ) -> Result<bool, DbError> {
        self.note_access(subject::RECORDING, Some(call_id.into()), Action::Update, []);
        let updated = sqlx::query!(
            "UPDATE calls SET recording_key_id = $4
              WHERE org_id = $1 AND id = $2 AND recording_status = 'stored' AND recording_path = $3",
            self.org().as_uuid(),
            call_id.as_uuid(),
            path,
            key_id
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(updated > 0)
    }
}
