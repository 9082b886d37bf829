//! Calls: the voice agent's inbound and outbound phone calls.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;
use voxanne_domain::{
    CallDirection, CallId, CallStatus, ContactId, OrgId, PhoneNumber, RecordingStatus,
};

/// A row of `calls` (the API's view of a call is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct Call {
    pub id: CallId,
    pub org_id: OrgId,
    pub contact_id: Option<ContactId>,
    #[sqlx(try_from = "String")]
    pub direction: CallDirection,
    #[sqlx(try_from = "String")]
    pub status: CallStatus,
    pub from_number: String,
    pub to_number: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    #[sqlx(try_from = "String")]
    pub recording_status: RecordingStatus,
    pub recording_path: Option<String>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    pub created_at: DateTime<Utc>,
}

const CALL_COLUMNS: &str = "id, org_id, contact_id, direction, status, from_number, to_number, \
     started_at, ended_at, duration_seconds, recording_status, recording_path, transcript, \
     summary, created_at";

/// A keyset position: the last call of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallKey {
    pub started_at: DateTime<Utc>,
    pub id: Uuid,
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub direction: Option<CallDirection>,
    pub status: Option<CallStatus>,
    /// Inclusive lower bound on `started_at`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `started_at`.
    pub to: Option<DateTime<Utc>>,
}

/// One page of calls, newest first, and the key to continue from when there is more.
#[derive(Debug, Clone)]
pub struct CallPage {
    pub calls: Vec<Call>,
    pub next: Option<CallKey>,
}

#[derive(Debug, Clone)]
pub struct NewCall {
    pub contact_id: Option<ContactId>,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub from_number: PhoneNumber,
    pub to_number: PhoneNumber,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub recording_status: RecordingStatus,
    pub recording_url: Option<String>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
}

impl TenantTx {
    pub async fn list_calls(
        &mut self,
        filter: &CallFilter,
        after: Option<CallKey>,
        limit: u32,
    ) -> Result<CallPage, DbError> {
        let org = self.org().as_uuid();
        let mut calls = sqlx::query_as::<_, Call>(&format!(
            "SELECT {CALL_COLUMNS} FROM calls
              WHERE org_id = $1
                AND ($2::text IS NULL OR direction = $2)
                AND ($3::text IS NULL OR status = $3)
                AND ($4::timestamptz IS NULL OR started_at >= $4)
                AND ($5::timestamptz IS NULL OR started_at < $5)
                AND ($6::timestamptz IS NULL OR (started_at, id) < ($6, $7))
              ORDER BY started_at DESC, id DESC
              LIMIT $8"
        ))
        .bind(org)
        .bind(filter.direction.map(|d| d.as_str()))
        .bind(filter.status.map(|s| s.as_str()))
        .bind(filter.from)
        .bind(filter.to)
        .bind(after.map(|k| k.started_at))
        .bind(after.map(|k| k.id))
        .bind(i64::from(limit) + 1)
        .fetch_all(self.conn())
        .await?;
        let next = if calls.len() > limit as usize {
            calls.truncate(limit as usize);
            calls.last().map(|c| CallKey {
                started_at: c.started_at,
                id: c.id.as_uuid(),
            })
        } else {
            None
        };
        Ok(CallPage { calls, next })
    }

    pub async fn get_call(&mut self, id: CallId) -> Result<Option<Call>, DbError> {
        let org = self.org().as_uuid();
        let call = sqlx::query_as::<_, Call>(&format!(
            "SELECT {CALL_COLUMNS} FROM calls WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        Ok(call)
    }

    pub async fn insert_call(&mut self, call: &NewCall) -> Result<CallId, DbError> {
        let org = self.org().as_uuid();
        let duration = call
            .ended_at
            .map(|end| (end - call.started_at).num_seconds().max(0) as i32);
        let id = sqlx::query_scalar(
            "INSERT INTO calls (org_id, contact_id, direction, status, from_number, to_number,
                                started_at, ended_at, duration_seconds, recording_status,
                                recording_url, transcript, summary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             RETURNING id",
        )
        .bind(org)
        .bind(call.contact_id)
        .bind(call.direction.as_str())
        .bind(call.status.as_str())
        .bind(call.from_number.as_str())
        .bind(call.to_number.as_str())
        .bind(call.started_at)
        .bind(call.ended_at)
        .bind(duration)
        .bind(call.recording_status.as_str())
        .bind(call.recording_url.as_deref())
        .bind(call.transcript.as_deref())
        .bind(call.summary.as_deref())
        .fetch_one(self.conn())
        .await?;
        Ok(id)
    }
}
