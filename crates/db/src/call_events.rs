//! Call events from a voice platform, applied idempotently: keyed by the provider's call id,
//! a retried event changes nothing and a late one never moves a call backwards (an ended call
//! stays ended).

use crate::encrypted::{CALL_SUMMARY, CALL_TRANSCRIPT};
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::{CallDirection, CallStatus};

/// What one webhook says about one call.
#[derive(Debug, Clone)]
pub struct CallEvent {
    pub provider: &'static str,
    pub provider_call_id: String,
    pub direction: CallDirection,
    pub status: CallStatus,
    /// The end-of-call report: the one event allowed to settle a call's final status.
    pub is_final_report: bool,
    pub from_number: String,
    pub to_number: String,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    pub ended_reason: Option<String>,
    pub recording_url: Option<String>,
}

impl TenantTx {
    /// Creates the call on its first event and merges later ones; returns its id.
    pub async fn apply_call_event(&mut self, e: &CallEvent) -> Result<Uuid, DbError> {
        let org = self.org().as_uuid();
        // A status's place in a call's life (queued 0, ringing 1, in progress 2, ended 3):
        // statuses only move up, and only the final report may settle an ended call's status.
        // (Searched CASEs: Citus mis-deparses a simple `CASE x WHEN …` in an upsert.)
        let row = sqlx::query!(
            "INSERT INTO calls AS c (org_id, provider, provider_call_id, direction, status, from_number,
                                     to_number, started_at, ended_at, duration_seconds,
                                     ended_reason, recording_url, recording_status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, $9, now()), $9, $10, $11, $12,
                     CASE WHEN $12::text IS NULL THEN 'none' ELSE 'queued' END)
             ON CONFLICT (org_id, provider, provider_call_id) WHERE provider_call_id IS NOT NULL DO UPDATE SET
                 status = CASE
                     WHEN (CASE WHEN EXCLUDED.status = 'queued' THEN 0 WHEN EXCLUDED.status = 'ringing' THEN 1 WHEN EXCLUDED.status = 'in_progress' THEN 2 ELSE 3 END) > (CASE WHEN c.status = 'queued' THEN 0 WHEN c.status = 'ringing' THEN 1 WHEN c.status = 'in_progress' THEN 2 ELSE 3 END) THEN EXCLUDED.status
                     WHEN (CASE WHEN EXCLUDED.status = 'queued' THEN 0 WHEN EXCLUDED.status = 'ringing' THEN 1 WHEN EXCLUDED.status = 'in_progress' THEN 2 ELSE 3 END) = 3 AND (CASE WHEN c.status = 'queued' THEN 0 WHEN c.status = 'ringing' THEN 1 WHEN c.status = 'in_progress' THEN 2 ELSE 3 END) = 3 AND $13 THEN EXCLUDED.status
                     ELSE c.status END,
                 started_at = least(c.started_at, EXCLUDED.started_at),
                 ended_at = coalesce(c.ended_at, EXCLUDED.ended_at),
                 duration_seconds = coalesce(EXCLUDED.duration_seconds, c.duration_seconds),
                 ended_reason = coalesce(EXCLUDED.ended_reason, c.ended_reason),
                 recording_url = coalesce(c.recording_url, EXCLUDED.recording_url),
                 recording_status = CASE
                     WHEN c.recording_status = 'none' AND EXCLUDED.recording_url IS NOT NULL THEN 'queued'
                     ELSE c.recording_status END
             RETURNING c.id, c.transcript, c.summary",
            org,
            e.provider,
            e.provider_call_id,
            e.direction.as_str(),
            e.status.as_str(),
            e.from_number,
            e.to_number,
            e.started_at,
            e.ended_at,
            e.duration_seconds,
            e.ended_reason,
            e.recording_url,
            e.is_final_report
        )
        .fetch_one(self.conn())
        .await?;
        let id = row.id;
        // The transcript and summary are encrypted for the call's row, whose id the upsert found;
        // a text the call already has is left as it is (a retried report changes nothing).
        let changed = |new: &Option<String>, field, stored: Option<Vec<u8>>| {
            let new = new.as_deref()?;
            match self.open_opt(field, id, stored) {
                Ok(Some(current)) if current == new => None,
                _ => Some(self.seal(field, id, new)),
            }
        };
        let transcript = changed(&e.transcript, CALL_TRANSCRIPT, row.transcript).transpose()?;
        let summary = changed(&e.summary, CALL_SUMMARY, row.summary).transpose()?;
        if transcript.is_some() || summary.is_some() {
            sqlx::query!(
                "UPDATE calls SET transcript = coalesce($3, transcript), summary = coalesce($4, summary)
                  WHERE org_id = $1 AND id = $2",
                org,
                id,
                transcript,
                summary
            )
            .execute(self.conn())
            .await?;
        }
        // An upsert: the first event creates the call, the later ones change it.
        self.note_access(crate::access::subject::CALL, Some(id), Action::Update, []);
        Ok(id)
    }

    /// Links a call to the contact it turned out to be, unless it is linked already.
    pub async fn link_call_to_contact(
        &mut self,
        call: voxanne_domain::CallId,
        contact: voxanne_domain::ContactId,
    ) -> Result<(), DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "UPDATE calls SET contact_id = $3
              WHERE org_id = $1 AND id = $2 AND contact_id IS NULL",
            org,
            Uuid::from(call),
            Uuid::from(contact)
        )
        .execute(self.conn())
        .await?;
        let (call, contact) = (Uuid::from(call), Uuid::from(contact));
        self.note_access(
            crate::access::subject::CALL,
            Some(call),
            Action::Update,
            [contact],
        );
        Ok(())
    }
}
