//! Calls in progress and their live transcripts (migrations/0020), for the dashboard's Live
//! screen: the final lines the voice platform streams, kept in order with their call.

use crate::access::subject;
use crate::encrypted::TRANSCRIPT_LINE;
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{CallDirection, CallId, CallStatus};

/// A line of a live transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    /// Increasing within the clinic: lines are in this order.
    pub id: i64,
    /// `user` (the caller) or `assistant` (the agent).
    pub role: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// A call in progress (queued, ringing or talking), with the last lines of its transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCall {
    pub id: CallId,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub from_number: String,
    pub to_number: String,
    pub started_at: DateTime<Utc>,
    pub lines: Vec<TranscriptLine>,
}

/// Calls shown at most, and lines per call.
pub const LIVE_CALLS: i64 = 20;
pub const LIVE_LINES: i64 = 200;

impl TenantTx {
    /// Adds a final line to the live transcript of the clinic's call `(provider,
    /// provider_call_id)`; the call, or `None` when the clinic has no such call (yet).
    pub async fn add_transcript_line(
        &mut self,
        provider: &str,
        provider_call_id: &str,
        role: &str,
        text: &str,
    ) -> Result<Option<CallId>, DbError> {
        let org = self.org().as_uuid();
        let text: String = text.trim().chars().take(4000).collect();
        if text.is_empty() {
            return Ok(None);
        }
        let id = uuid::Uuid::new_v4();
        let sealed = self.seal(TRANSCRIPT_LINE, id, &text)?;
        let call = sqlx::query_scalar!(
            r#"INSERT INTO call_transcript_lines (org_id, id, call_id, role, text)
               SELECT c.org_id, $6, c.id, $4, $5 FROM calls c
                WHERE c.org_id = $1 AND c.provider = $2 AND c.provider_call_id = $3
               RETURNING call_id AS "call_id: CallId""#,
            org,
            provider,
            provider_call_id,
            role,
            sealed,
            id
        )
        .fetch_optional(self.conn())
        .await?;
        if let Some(call) = call {
            let call = Some(call.as_uuid());
            self.note_access(subject::TRANSCRIPT, call, Action::Update, []);
        }
        Ok(call)
    }

    /// The clinic's calls in progress that started in the last six hours (newest first, at most
    /// [`LIVE_CALLS`]), each with the last [`LIVE_LINES`] lines of its transcript in order.
    pub async fn live_calls(&mut self) -> Result<Vec<LiveCall>, DbError> {
        let org = self.org().as_uuid();
        let calls = sqlx::query!(
            r#"SELECT id AS "id: CallId", direction AS "direction: CallDirection",
                      status AS "status: CallStatus", from_number, to_number, started_at
                 FROM calls
                WHERE org_id = $1 AND status IN ('queued', 'ringing', 'in_progress')
                  AND started_at > now() - interval '6 hours'
                ORDER BY started_at DESC, id DESC LIMIT $2"#,
            org,
            LIVE_CALLS
        )
        .fetch_all(self.conn())
        .await?;
        let ids: Vec<uuid::Uuid> = calls.iter().map(|c| c.id.as_uuid()).collect();
        if !ids.is_empty() {
            self.note_access(subject::TRANSCRIPT, None, Action::List, []);
        }
        let lines = sqlx::query!(
            r#"SELECT id AS "id!", call_id AS "call_id!: CallId", seq AS "seq!", role AS "role!",
                      text AS "text!", created_at AS "created_at!" FROM (
                 SELECT l.*, row_number() OVER (PARTITION BY l.call_id ORDER BY l.seq DESC) AS n
                   FROM call_transcript_lines l
                  WHERE l.org_id = $1 AND l.call_id = ANY ($2)) t
                WHERE n <= $3 ORDER BY seq"#,
            org,
            &ids,
            LIVE_LINES
        )
        .fetch_all(self.conn())
        .await?;
        let mut opened = Vec::with_capacity(lines.len());
        for l in lines {
            let line = TranscriptLine {
                id: l.seq,
                text: self.open(TRANSCRIPT_LINE, l.id, &l.text)?,
                role: l.role,
                created_at: l.created_at,
            };
            opened.push((l.call_id, line));
        }
        Ok(calls
            .into_iter()
            .map(|c| LiveCall {
                lines: opened
                    .iter()
                    .filter(|(call, _)| *call == c.id)
                    .map(|(_, line)| line.clone())
                    .collect(),
                id: c.id,
                direction: c.direction,
                status: c.status,
                from_number: c.from_number,
                to_number: c.to_number,
                started_at: c.started_at,
            })
            .collect())
    }
}
