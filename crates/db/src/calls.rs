//! Calls: the voice agent's inbound and outbound phone calls.

use crate::access::subject;
use crate::encrypted::{CALL_SUMMARY, CALL_TRANSCRIPT};
use crate::rows::{query_row, tenant_row, After, FromStored};
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::{
    CallDirection, CallId, CallStatus, ContactId, OrgId, PhoneNumber, RecordingStatus,
};

/// A row of `calls` (the API's view of a call is the HTTP layer's), its transcript and
/// summary opened; `Call<Vec<u8>>` as stored, encrypted (encrypted.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct Call<Text = String> {
    pub id: CallId,
    pub org_id: OrgId,
    pub contact_id: Option<ContactId>,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub from_number: String,
    pub to_number: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub recording_status: RecordingStatus,
    pub recording_path: Option<String>,
    pub transcript: Option<Text>,
    pub summary: Option<Text>,
    pub created_at: DateTime<Utc>,
}

type StoredCall = Call<Vec<u8>>;

impl FromStored<StoredCall> for Call {
    fn from_stored(tx: &TenantTx, c: StoredCall) -> Result<Self, DbError> {
        let id = c.id.as_uuid();
        Ok(Call {
            transcript: tx.open_opt(CALL_TRANSCRIPT, id, c.transcript)?,
            summary: tx.open_opt(CALL_SUMMARY, id, c.summary)?,
            id: c.id,
            org_id: c.org_id,
            contact_id: c.contact_id,
            direction: c.direction,
            status: c.status,
            from_number: c.from_number,
            to_number: c.to_number,
            started_at: c.started_at,
            ended_at: c.ended_at,
            duration_seconds: c.duration_seconds,
            recording_status: c.recording_status,
            recording_path: c.recording_path,
            created_at: c.created_at,
        })
    }
}

/// `query_as!` for [`Call`]: the column list goes between the first two SQL pieces.
macro_rules! call_query {
    ($($query:tt)*) => {
        query_row!(
            StoredCall,
            r#"id, org_id, contact_id AS "contact_id: ContactId",
               direction AS "direction: CallDirection", status AS "status: CallStatus",
               from_number, to_number, started_at, ended_at, duration_seconds,
               recording_status AS "recording_status: RecordingStatus", recording_path,
               transcript, summary, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    Call,
    CallId,
    "calls",
    call_query,
    subject = "call",
    patient = |c| c.contact_id.map(Into::into),
);

/// [`call_query!`] for lists: a list carries what a list shows, no transcript (a page of them
/// is tens of KB to read, send and escape); one call (`get_call`) has it.
macro_rules! call_list_query {
    ($($query:tt)*) => {
        query_row!(
            StoredCall,
            r#"id, org_id, contact_id AS "contact_id: ContactId",
               direction AS "direction: CallDirection", status AS "status: CallStatus",
               from_number, to_number, started_at, ended_at, duration_seconds,
               recording_status AS "recording_status: RecordingStatus", recording_path,
               NULL::bytea AS transcript, summary, created_at"#,
            $($query)*
        )
    };
}

#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    pub direction: Option<CallDirection>,
    pub status: Option<CallStatus>,
    /// Inclusive lower bound on `started_at`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `started_at`.
    pub to: Option<DateTime<Utc>>,
    /// The contact's calls only.
    pub contact: Option<voxanne_domain::ContactId>,
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
    /// Up to `limit` calls matching `filter`, newest first by `(started_at, id)`, after the
    /// keyset position `after` (a `started_at` and an id), without their transcripts.
    pub async fn list_calls(
        &mut self,
        filter: &CallFilter,
        after: After,
        limit: u32,
    ) -> Result<Vec<Call>, DbError> {
        let org = self.org().as_uuid();
        let limit = i64::from(limit);
        // The common page, unfiltered, is a statement of its own (the first page and the
        // next ones): with no optional clause to fold away, PostgreSQL settles on a generic
        // plan for it and stops planning it on every request. Filters take the general one.
        let unfiltered = filter.direction.is_none()
            && filter.status.is_none()
            && filter.from.is_none()
            && filter.to.is_none()
            && filter.contact.is_none();
        let rows = match (unfiltered, after) {
            (true, None) => {
                call_list_query!(
                    [
                        "SELECT ",
                        " FROM calls WHERE org_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
                    ],
                    org,
                    limit
                )
                .fetch_all(self.conn())
                .await?
            }
            (true, Some((at, id))) => {
                call_list_query!(
                    [
                        "SELECT ",
                        " FROM calls WHERE org_id = $1 AND (started_at, id) < ($2, $3)
                          ORDER BY started_at DESC, id DESC LIMIT $4"
                    ],
                    org,
                    at,
                    id,
                    limit
                )
                .fetch_all(self.conn())
                .await?
            }
            (false, _) => {
                call_list_query!(
                    [
                        "SELECT ",
                        " FROM calls
                          WHERE org_id = $1
                            AND ($2::text IS NULL OR direction = $2)
                            AND ($3::text IS NULL OR status = $3)
                            AND ($4::timestamptz IS NULL OR started_at >= $4)
                            AND ($5::timestamptz IS NULL OR started_at < $5)
                            AND ($6::timestamptz IS NULL OR (started_at, id) < ($6, $7))
                            AND ($9::uuid IS NULL OR contact_id = $9)
                          ORDER BY started_at DESC, id DESC
                          LIMIT $8"
                    ],
                    org,
                    filter.direction.map(|d| d.as_str()),
                    filter.status.map(|s| s.as_str()),
                    filter.from,
                    filter.to,
                    after.map(|k| k.0),
                    after.map(|k| k.1),
                    limit,
                    filter.contact.map(uuid::Uuid::from)
                )
                .fetch_all(self.conn())
                .await?
            }
        };
        let rows: Vec<Call> = self.opened(rows)?;
        let patients = rows.iter().filter_map(|c| c.contact_id.map(Uuid::from));
        self.note_access(subject::CALL, None, Action::List, patients);
        Ok(rows)
    }

    pub async fn get_call(&mut self, id: CallId) -> Result<Option<Call>, DbError> {
        self.find::<Call>(id).await
    }

    pub async fn insert_call(&mut self, call: &NewCall) -> Result<CallId, DbError> {
        let org = self.org().as_uuid();
        let duration = call
            .ended_at
            .map(|end| (end - call.started_at).num_seconds().max(0) as i32);
        let id = Uuid::new_v4();
        let transcript = self.seal_opt(CALL_TRANSCRIPT, id, call.transcript.as_deref())?;
        let summary = self.seal_opt(CALL_SUMMARY, id, call.summary.as_deref())?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO calls (org_id, id, contact_id, direction, status, from_number, to_number,
                                  started_at, ended_at, duration_seconds, recording_status,
                                  recording_url, transcript, summary)
               VALUES ($1, $14, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               RETURNING id AS "id: CallId""#,
            org,
            call.contact_id.map(Uuid::from),
            call.direction.as_str(),
            call.status.as_str(),
            call.from_number.as_str(),
            call.to_number.as_str(),
            call.started_at,
            call.ended_at,
            duration,
            call.recording_status.as_str(),
            call.recording_url.as_deref(),
            transcript,
            summary,
            id
        )
        .fetch_one(self.conn())
        .await?;
        let patient = call.contact_id.map(Uuid::from);
        self.note_access(subject::CALL, Some(id.into()), Action::Create, patient);
        Ok(id)
    }
}
