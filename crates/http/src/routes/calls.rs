use crate::error::ApiError;
use crate::extract::{AppPath, AppQuery, Tenant};
use crate::fields::time_range;
use crate::found::found;
use crate::pagination::{parse_page, Cursor, Page};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::access::subject;
use voxanne_db::calls::{Call as CallRow, CallFilter};
use voxanne_db::Action;
use voxanne_domain::{CallDirection, CallId, CallStatus, ContactId, OrgId, RecordingStatus};

/// A call as the API shows it (the row is the database's: a column renamed there is a
/// compile error here, not a silent change of the API).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Call {
    pub id: CallId,
    pub org_id: OrgId,
    pub contact_id: Option<ContactId>,
    pub direction: CallDirection,
    pub status: CallStatus,
    /// E.164.
    pub from_number: String,
    /// E.164.
    pub to_number: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub recording_status: RecordingStatus,
    /// Where the recording is stored, once it is (`GET /calls/{id}/recording` streams it).
    pub recording_path: Option<String>,
    /// The whole conversation. Not in lists (`GET /calls`): read the call for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcript: Option<String>,
    pub summary: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<CallRow> for Call {
    fn from(row: CallRow) -> Self {
        Self {
            id: row.id,
            org_id: row.org_id,
            contact_id: row.contact_id,
            direction: row.direction,
            status: row.status,
            from_number: row.from_number,
            to_number: row.to_number,
            started_at: row.started_at,
            ended_at: row.ended_at,
            duration_seconds: row.duration_seconds,
            recording_status: row.recording_status,
            recording_path: row.recording_path,
            transcript: row.transcript,
            summary: row.summary,
            created_at: row.created_at,
        }
    }
}

/// Query parameters as text, parsed below so that each failure names its field. Unknown
/// parameters (an `org_id`, say) are ignored: they select nothing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `inbound` or `outbound`.
    #[param(value_type = Option<CallDirection>)]
    direction: Option<String>,
    /// One of the call statuses.
    #[param(value_type = Option<CallStatus>)]
    status: Option<String>,
    /// Calls that started at or after: RFC 3339, or a date (start of day, UTC).
    from: Option<String>,
    /// Calls that started before: RFC 3339, or a date (that whole day included).
    to: Option<String>,
    /// One contact's calls.
    #[param(value_type = Option<String>, format = Uuid)]
    contact_id: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

impl ListParams {
    fn parse(&self) -> Result<(CallFilter, Option<Cursor>, u32), ApiError> {
        let direction = self
            .direction
            .as_deref()
            .map(|d| {
                d.parse::<CallDirection>()
                    .map_err(|e| ApiError::validation("direction", e.to_string()))
            })
            .transpose()?;
        let status = self
            .status
            .as_deref()
            .map(|s| {
                s.parse::<CallStatus>()
                    .map_err(|e| ApiError::validation("status", e.to_string()))
            })
            .transpose()?;
        let (from, to) = time_range(self.from.as_deref(), self.to.as_deref())?;
        let (after, limit) = parse_page(self.cursor.as_deref(), self.limit.as_deref())?;
        let contact = crate::fields::uuid_param("contact_id", self.contact_id.as_deref())?;
        Ok((
            CallFilter {
                direction,
                status,
                from,
                to,
                contact: contact.map(voxanne_domain::ContactId::from_uuid),
            },
            after,
            limit,
        ))
    }
}

/// The clinic's calls, newest first, keyset-paginated.
#[utoipa::path(get, path = "/calls", tag = "calls", params(ListParams), responses((status = 200, body = Page<Call>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<Page<Call>>, ApiError> {
    let (filter, after, limit) = params.parse()?;
    let mut rows = tx
        .list_calls(&filter, after.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    let page = Page::from_overfetch(&mut rows, limit, |c| Cursor {
        at: c.started_at,
        id: c.id.as_uuid(),
    });
    Ok(Json(page.map(Call::from)))
}

/// One call. Another clinic's call is exactly as absent as a missing one.
#[utoipa::path(get, path = "/calls/{id}", tag = "calls", params(("id" = Uuid, Path, description = "the call's id")), responses((status = 200, body = Call)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<CallId>,
) -> Result<Json<Call>, ApiError> {
    let call = found::<CallRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(call.into()))
}

/// The call's recording, streamed from storage. 404 `no_recording` when the call has none
/// stored (yet).
#[utoipa::path(get, path = "/calls/{id}/recording", tag = "calls", params(("id" = Uuid, Path, description = "the call's id")), responses(
    (status = 200, description = "the recording's bytes", content_type = "application/octet-stream", body = Vec<u8>),
))]
pub async fn recording(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<CallId>,
) -> Result<axum::response::Response, ApiError> {
    let call = found::<CallRow>(&mut tx, id).await?;
    let key = match (call.recording_status, call.recording_path) {
        (voxanne_domain::RecordingStatus::Stored, Some(key)) => key,
        _ => return Err(ApiError::NoRecording),
    };
    let patient = call.contact_id.map(Into::into);
    tx.note_access(subject::RECORDING, Some(id.into()), Action::Read, patient);
    // The recording opens for the transaction's clinic only.
    let org = tx.org();
    tx.commit().await?;
    // Keys are `{org_id}/recordings/...`: a key outside the org's prefix is a bug, not data.
    if !key.starts_with(&format!("{}/", call.org_id)) {
        return Err(ApiError::internal(format!(
            "recording key {key} is outside its org's prefix"
        )));
    }
    crate::storage::stream(state.recordings.as_ref(), state.keyring.clone(), org, &key).await
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get))
        .routes(routes!(recording))
}
