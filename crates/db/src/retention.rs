//! Retention (migrations/0031): how long a clinic keeps each kind of patient data, the legal
//! holds that suspend it, and the purge's steps, each inside the clinic's tenant transaction.
//! The purge job (voxanne_jobs::RetentionJob) claims a clinic (`system::claim_retention`),
//! then runs these steps, a bounded number of rows at a time, until nothing is due.
//!
//! A step and the placing of a hold take the clinic's purge lock first ([`TenantTx::lock_purge`]),
//! so the two never interleave: a hold that committed first is seen by the step; a hold placed
//! while a step runs waits for it and covers everything the step left.

use crate::access::subject;
use crate::rows::After;
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::{CallId, ContactId};

/// Days each kind of data is kept, counted from the call (or the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Recordings in storage.
    pub recordings_days: i32,
    /// Transcripts, summaries and live transcript lines.
    pub transcripts_days: i32,
    /// The text of SMS confirmations, reminders and inbound messages.
    pub sms_days: i32,
    /// The calls themselves (who called when), with everything left of them.
    pub calls_days: i32,
    /// The access log.
    pub access_log_days: i32,
}

/// The least each may be (the schema refuses less; docs/RETENTION.md says why).
pub const FLOORS: RetentionPolicy = RetentionPolicy {
    recordings_days: 30,
    transcripts_days: 30,
    sms_days: 30,
    calls_days: 365,
    access_log_days: 2190,
};

/// A new clinic's settings.
pub const DEFAULTS: RetentionPolicy = RetentionPolicy {
    recordings_days: 365,
    transcripts_days: 2190,
    sms_days: 365,
    calls_days: 2190,
    access_log_days: 2190,
};

/// The most any may be: a hundred years.
pub const CEILING_DAYS: i32 = 36_500;

impl RetentionPolicy {
    /// The settings by name, for validation and messages.
    pub fn fields(&self) -> [(&'static str, i32, i32); 5] {
        [
            (
                "recordings_days",
                self.recordings_days,
                FLOORS.recordings_days,
            ),
            (
                "transcripts_days",
                self.transcripts_days,
                FLOORS.transcripts_days,
            ),
            ("sms_days", self.sms_days, FLOORS.sms_days),
            ("calls_days", self.calls_days, FLOORS.calls_days),
            (
                "access_log_days",
                self.access_log_days,
                FLOORS.access_log_days,
            ),
        ]
    }

    /// What is wrong with these settings, field by field; empty when the schema will take them.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems: Vec<(&'static str, String)> = self
            .fields()
            .into_iter()
            .filter(|(_, days, floor)| !(*floor..=CEILING_DAYS).contains(days))
            .map(|(name, _, floor)| {
                (
                    name,
                    format!("must be between {floor} and {CEILING_DAYS} days"),
                )
            })
            .collect();
        for (name, days) in [
            ("recordings_days", self.recordings_days),
            ("transcripts_days", self.transcripts_days),
        ] {
            if days > self.calls_days && !problems.iter().any(|(n, _)| *n == name) {
                problems.push((name, "may not be longer than calls_days".to_owned()));
            }
        }
        problems
    }
}

/// What a legal hold covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldTarget {
    /// Everything of one patient.
    Contact(ContactId),
    /// One call.
    Call(CallId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegalHold {
    pub id: Uuid,
    pub contact_id: Option<ContactId>,
    pub call_id: Option<CallId>,
    pub reason: String,
    pub placed_by: Option<Uuid>,
    pub placed_at: DateTime<Utc>,
}

/// One step of the purge, as it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `recording`, `transcript`, `sms_body`, `call` or `access_log`.
    pub kind: String,
    pub cutoff: DateTime<Utc>,
    pub items: i32,
    pub subject_ids: Vec<Uuid>,
}

/// A recording due for removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueRecording {
    pub call: CallId,
    /// Its object's key in storage.
    pub path: String,
    pub contact: Option<ContactId>,
}

/// The rows of one purge step, with the contacts they were about.
type Purged = Vec<(Uuid, Option<Uuid>)>;

impl TenantTx {
    pub async fn retention_policy(&mut self) -> Result<RetentionPolicy, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as!(
            RetentionPolicy,
            "SELECT retain_recordings_days AS recordings_days,
                    retain_transcripts_days AS transcripts_days, retain_sms_days AS sms_days,
                    retain_calls_days AS calls_days, retain_access_log_days AS access_log_days
               FROM organizations WHERE id = $1",
            org
        )
        .fetch_optional(self.conn())
        .await?;
        row.ok_or(DbError::NotFound)
    }

    /// Sets the clinic's retention; the next purge uses it. Settings below a floor are refused
    /// by the schema ([`DbError::Constraint`]); check [`RetentionPolicy::problems`] first.
    pub async fn set_retention_policy(&mut self, policy: &RetentionPolicy) -> Result<(), DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "UPDATE organizations
                SET retain_recordings_days = $2, retain_transcripts_days = $3,
                    retain_sms_days = $4, retain_calls_days = $5, retain_access_log_days = $6,
                    purge_due_at = least(purge_due_at, now())
              WHERE id = $1",
            org,
            policy.recordings_days,
            policy.transcripts_days,
            policy.sms_days,
            policy.calls_days,
            policy.access_log_days
        )
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// The clinic's purge lock, until the transaction ends (module docs).
    pub async fn lock_purge(&mut self) -> Result<(), DbError> {
        let org = self.org().to_string();
        sqlx::query!(
            "SELECT pg_advisory_xact_lock(hashtext('voxanne.retention'), hashtext($1)) AS locked",
            org
        )
        .fetch_one(self.conn())
        .await?;
        Ok(())
    }

    /// The clinic's holds, newest first by `(placed_at, id)`, after `after`.
    pub async fn legal_holds(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<LegalHold>, DbError> {
        let org = self.org().as_uuid();
        let holds = sqlx::query_as!(
            LegalHold,
            r#"SELECT id, contact_id AS "contact_id: ContactId", call_id AS "call_id: CallId",
                      reason, placed_by, placed_at
                 FROM legal_holds
                WHERE org_id = $1 AND ($2::timestamptz IS NULL OR (placed_at, id) < ($2, $3))
                ORDER BY placed_at DESC, id DESC LIMIT $4"#,
            org,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        for hold in &holds {
            self.note_hold(hold, Action::Read);
        }
        Ok(holds)
    }

    /// Places a hold on `target`, once the purge step in flight (if any) has finished. `None`
    /// when the clinic has no such contact or call. A second hold on the same target is
    /// refused by the schema ([`DbError::Constraint`]).
    pub async fn place_legal_hold(
        &mut self,
        target: HoldTarget,
        reason: &str,
    ) -> Result<Option<LegalHold>, DbError> {
        self.lock_purge().await?;
        let org = self.org().as_uuid();
        let user = self.placed_by();
        let (contact, call) = match target {
            HoldTarget::Contact(c) => (Some(c.as_uuid()), None),
            HoldTarget::Call(c) => (None, Some(c.as_uuid())),
        };
        let hold = sqlx::query_as!(
            LegalHold,
            r#"INSERT INTO legal_holds (org_id, contact_id, call_id, reason, placed_by)
               SELECT $1, $2, $3, $4, $5
                WHERE EXISTS (SELECT 1 FROM contacts WHERE org_id = $1 AND id = $2)
                   OR EXISTS (SELECT 1 FROM calls WHERE org_id = $1 AND id = $3)
               RETURNING id, contact_id AS "contact_id: ContactId", call_id AS "call_id: CallId",
                         reason, placed_by, placed_at"#,
            org,
            contact,
            call,
            reason.trim(),
            user
        )
        .fetch_optional(self.conn())
        .await?;
        if let Some(hold) = &hold {
            self.note_hold(hold, Action::Create);
        }
        Ok(hold)
    }

    /// Whether the clinic lacks the contact and the call (each `false` when not given).
    pub async fn unknown_hold_targets(
        &mut self,
        contact: Option<ContactId>,
        call: Option<CallId>,
    ) -> Result<(bool, bool), DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"SELECT ($2::uuid IS NOT NULL AND NOT EXISTS (
                         SELECT 1 FROM contacts WHERE org_id = $1 AND id = $2)) AS "contact!",
                      ($3::uuid IS NOT NULL AND NOT EXISTS (
                         SELECT 1 FROM calls WHERE org_id = $1 AND id = $3)) AS "call!""#,
            org,
            contact.map(|c| c.as_uuid()),
            call.map(|c| c.as_uuid())
        )
        .fetch_one(self.conn())
        .await?;
        Ok((row.contact, row.call))
    }

    /// Releases (removes) a hold; whether there was one.
    pub async fn release_legal_hold(&mut self, id: Uuid) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let hold = sqlx::query_as!(
            LegalHold,
            r#"DELETE FROM legal_holds WHERE org_id = $1 AND id = $2
               RETURNING id, contact_id AS "contact_id: ContactId", call_id AS "call_id: CallId",
                         reason, placed_by, placed_at"#,
            org,
            id
        )
        .fetch_optional(self.conn())
        .await?;
        if let Some(hold) = &hold {
            self.note_hold(hold, Action::Delete);
        }
        Ok(hold.is_some())
    }

    fn placed_by(&self) -> Option<Uuid> {
        let user = self.membership().user;
        (user != crate::SYSTEM_ACTOR).then(|| user.as_uuid())
    }

    fn note_hold(&mut self, hold: &LegalHold, action: Action) {
        let patients = hold.contact_id.map(Uuid::from);
        self.note_access(subject::LEGAL_HOLD, Some(hold.id), action, patients);
    }

    /// What the purge removed, newest first by `(at, id)`, after `after`.
    pub async fn list_purges(&mut self, after: After, limit: u32) -> Result<Vec<Purge>, DbError> {
        let org = self.org().as_uuid();
        let rows = sqlx::query_as!(
            Purge,
            "SELECT id, at, kind, cutoff, items, subject_ids FROM retention_purges
              WHERE org_id = $1 AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
              ORDER BY at DESC, id DESC LIMIT $4",
            org,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        Ok(rows)
    }

    /// Up to `limit` stored recordings of calls before `cutoff` that no hold covers, oldest
    /// first, their rows locked until the step commits (so that the orphan sweep, finding an
    /// object gone, waits and then sees the recording purged, not missing). (The caller holds
    /// the purge lock.)
    pub async fn due_recordings(
        &mut self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueRecording>, DbError> {
        let org = self.org().as_uuid();
        let rows = sqlx::query!(
            r#"SELECT c.id, c.recording_path AS "path!", c.contact_id
                 FROM calls c
                WHERE c.org_id = $1 AND c.recording_status = 'stored'
                  AND c.recording_path IS NOT NULL AND c.started_at < $2
                  AND NOT EXISTS (SELECT 1 FROM legal_holds h
                                   WHERE h.org_id = $1
                                     AND (h.call_id = c.id OR h.contact_id = c.contact_id))
                ORDER BY c.started_at, c.id
                LIMIT $3
                  FOR UPDATE OF c"#,
            org,
            cutoff,
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| DueRecording {
                call: CallId::from_uuid(r.id),
                path: r.path,
                contact: r.contact_id.map(ContactId::from_uuid),
            })
            .collect())
    }

    /// Marks `removed` (recordings whose objects are gone from storage) purged and records
    /// the step. Returns how many were still stored.
    pub async fn recordings_purged(
        &mut self,
        cutoff: DateTime<Utc>,
        removed: &[DueRecording],
    ) -> Result<usize, DbError> {
        let org = self.org().as_uuid();
        let ids: Vec<Uuid> = removed.iter().map(|r| r.call.as_uuid()).collect();
        let purged = sqlx::query!(
            "UPDATE calls SET recording_status = 'purged', recording_path = NULL,
                    recording_url = NULL
              WHERE org_id = $1 AND id = ANY($2) AND recording_status = 'stored'
              RETURNING id, contact_id",
            org,
            &ids
        )
        .fetch_all(self.conn())
        .await?;
        let purged: Purged = purged.into_iter().map(|r| (r.id, r.contact_id)).collect();
        self.record_purge(
            "recording",
            subject::RECORDING,
            Action::Delete,
            cutoff,
            &purged,
        )
        .await
    }

    /// Removes the transcripts, summaries and live transcript lines of up to `limit` calls
    /// before `cutoff` that no hold covers; how many calls.
    pub async fn purge_transcripts(
        &mut self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, DbError> {
        let org = self.org().as_uuid();
        let due = sqlx::query!(
            "SELECT c.id FROM calls c
              WHERE c.org_id = $1 AND c.started_at < $2
                AND (c.transcript IS NOT NULL OR c.summary IS NOT NULL
                     OR EXISTS (SELECT 1 FROM call_transcript_lines l
                                 WHERE l.org_id = $1 AND l.call_id = c.id))
                AND NOT EXISTS (SELECT 1 FROM legal_holds h
                                 WHERE h.org_id = $1
                                   AND (h.call_id = c.id OR h.contact_id = c.contact_id))
              ORDER BY c.started_at, c.id
              LIMIT $3",
            org,
            cutoff,
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let ids: Vec<Uuid> = due.into_iter().map(|r| r.id).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        sqlx::query!(
            "DELETE FROM call_transcript_lines WHERE org_id = $1 AND call_id = ANY($2)",
            org,
            &ids
        )
        .execute(self.conn())
        .await?;
        let purged = sqlx::query!(
            "UPDATE calls SET transcript = NULL, summary = NULL
              WHERE org_id = $1 AND id = ANY($2) RETURNING id, contact_id",
            org,
            &ids
        )
        .fetch_all(self.conn())
        .await?;
        let purged: Purged = purged.into_iter().map(|r| (r.id, r.contact_id)).collect();
        self.record_purge(
            "transcript",
            subject::TRANSCRIPT,
            Action::Update,
            cutoff,
            &purged,
        )
        .await
    }

    /// Blanks the text of up to `limit` SMS confirmations and reminders (sent or given up)
    /// and `limit` inbound messages from before `cutoff` that no hold covers; how many.
    pub async fn purge_sms_bodies(
        &mut self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, DbError> {
        let org = self.org().as_uuid();
        let due = sqlx::query!(
            "SELECT d.id, a.contact_id AS \"contact_id?\"
               FROM sms_confirmation_logs d
               LEFT JOIN appointments a ON a.org_id = d.org_id AND a.id = d.appointment_id
              WHERE d.org_id = $1 AND d.body <> '\\x00' AND d.created_at < $2
                AND d.status NOT IN ('queued', 'sending')
                AND NOT EXISTS (SELECT 1 FROM legal_holds h
                                 WHERE h.org_id = $1 AND h.contact_id = a.contact_id)
              ORDER BY d.created_at, d.id
              LIMIT $3",
            org,
            cutoff,
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let sent: Purged = due.into_iter().map(|r| (r.id, r.contact_id)).collect();
        let ids: Vec<Uuid> = sent.iter().map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            sqlx::query!(
                "UPDATE sms_confirmation_logs SET body = '\\x00' WHERE org_id = $1 AND id = ANY($2)",
                org,
                &ids
            )
            .execute(self.conn())
            .await?;
        }
        let due = sqlx::query!(
            "SELECT d.id, d.contact_id FROM inbox_messages d
              WHERE d.org_id = $1 AND d.created_at < $2
                AND (d.body <> '\\x00' OR d.reply IS NOT NULL OR d.caller_name IS NOT NULL)
                AND NOT EXISTS (SELECT 1 FROM legal_holds h
                                 WHERE h.org_id = $1
                                   AND (h.contact_id = d.contact_id OR h.call_id = d.call_id))
              ORDER BY d.created_at, d.id
              LIMIT $3",
            org,
            cutoff,
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let received: Purged = due.into_iter().map(|r| (r.id, r.contact_id)).collect();
        let ids: Vec<Uuid> = received.iter().map(|(id, _)| *id).collect();
        if !ids.is_empty() {
            sqlx::query!(
                "UPDATE inbox_messages SET body = '\\x00', reply = NULL, caller_name = NULL
                  WHERE org_id = $1 AND id = ANY($2)",
                org,
                &ids
            )
            .execute(self.conn())
            .await?;
        }
        let n = self
            .record_purge("sms_body", subject::SMS, Action::Update, cutoff, &sent)
            .await?;
        Ok(n + self
            .record_purge(
                "sms_body",
                subject::INBOX_MESSAGE,
                Action::Update,
                cutoff,
                &received,
            )
            .await?)
    }

    /// Deletes up to `limit` calls from before `cutoff` that no hold covers, with everything
    /// that goes with them; how many. A call whose recording is still in storage or in the
    /// pipeline waits (the recording's own purge comes first).
    pub async fn purge_calls(
        &mut self,
        cutoff: DateTime<Utc>,
        limit: u32,
    ) -> Result<usize, DbError> {
        let org = self.org().as_uuid();
        let due = sqlx::query!(
            "SELECT c.id FROM calls c
              WHERE c.org_id = $1 AND c.started_at < $2
                AND c.recording_status NOT IN ('stored', 'queued', 'processing')
                AND NOT EXISTS (SELECT 1 FROM legal_holds h
                                 WHERE h.org_id = $1
                                   AND (h.call_id = c.id OR h.contact_id = c.contact_id))
              ORDER BY c.started_at, c.id
              LIMIT $3",
            org,
            cutoff,
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let ids: Vec<Uuid> = due.into_iter().map(|r| r.id).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        // What keeps its history without the call (explicitly: on Citus these foreign keys
        // cannot null themselves, migrations/0025).
        for detach in [
            "UPDATE appointments SET call_id = NULL WHERE org_id = $1 AND call_id = ANY($2)",
            "UPDATE inbox_messages SET call_id = NULL WHERE org_id = $1 AND call_id = ANY($2)",
            "UPDATE credit_transactions SET call_id = NULL WHERE org_id = $1 AND call_id = ANY($2)",
            "UPDATE cold_call_logs SET call_id = NULL WHERE org_id = $1 AND call_id = ANY($2)",
        ] {
            // Dynamic: the statements above, each with the clinic and the calls.
            sqlx::query(detach)
                .bind(org)
                .bind(&ids)
                .execute(self.conn())
                .await?;
        }
        let purged = sqlx::query!(
            "DELETE FROM calls WHERE org_id = $1 AND id = ANY($2) RETURNING id, contact_id",
            org,
            &ids
        )
        .fetch_all(self.conn())
        .await?;
        let purged: Purged = purged.into_iter().map(|r| (r.id, r.contact_id)).collect();
        self.record_purge("call", subject::CALL, Action::Delete, cutoff, &purged)
            .await
    }

    /// Removes up to `limit` of the clinic's oldest access records past its retention, from
    /// the front of its chain, which is checkpointed where they stop, and records the purge
    /// (`app.purge_access_log`, migrations/0032: the cutoff is the clinic's own setting, and
    /// the chain's newest record always stays). How many.
    pub async fn purge_access_log(&mut self, limit: u32) -> Result<usize, DbError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let via = self.origin().via;
        let n = sqlx::query_scalar!(r#"SELECT app.purge_access_log($1, $2) AS "n!""#, limit, via)
            .fetch_one(self.conn())
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// The purge of this claim is over; the clinic is due again at `next`. Whether the claim
    /// still held (if not, another worker has the clinic now and nothing is written).
    pub async fn purge_finished(
        &mut self,
        claim: i32,
        next: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let done = sqlx::query!(
            "UPDATE organizations SET purge_due_at = $3, purge_lease_until = NULL
              WHERE id = $1 AND purge_claims = $2",
            org,
            claim,
            next
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(done > 0)
    }

    /// The purge record of one step, and an access record per row.
    async fn record_purge(
        &mut self,
        kind: &str,
        subject: &'static str,
        action: Action,
        cutoff: DateTime<Utc>,
        purged: &Purged,
    ) -> Result<usize, DbError> {
        if purged.is_empty() {
            return Ok(0);
        }
        let org = self.org().as_uuid();
        let ids: Vec<Uuid> = purged.iter().map(|(id, _)| *id).collect();
        let items = i32::try_from(ids.len()).map_err(|_| DbError::InvalidValue("items".into()))?;
        sqlx::query!(
            "INSERT INTO retention_purges (org_id, kind, cutoff, items, subject_ids)
             VALUES ($1, $2, $3, $4, $5)",
            org,
            kind,
            cutoff,
            items,
            &ids
        )
        .execute(self.conn())
        .await?;
        for (id, contact) in purged {
            self.note_access(subject, Some(*id), action, *contact);
        }
        Ok(purged.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_below_a_floor_or_beyond_the_calls_are_named() {
        assert!(DEFAULTS.problems().is_empty());
        assert!(FLOORS.problems().is_empty());
        let policy = RetentionPolicy {
            recordings_days: 7,
            transcripts_days: 400,
            access_log_days: 365,
            ..FLOORS
        };
        let named: Vec<&str> = policy.problems().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            named,
            ["recordings_days", "access_log_days", "transcripts_days"]
        );
    }
}
