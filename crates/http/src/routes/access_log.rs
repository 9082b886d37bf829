//! The clinic's access log, for its admins: who read or changed which patient's data, how,
//! when and from where (docs/ARCHITECTURE.md, "The access log"). A page as JSON, and the whole
//! selection as CSV. Reading the log is itself recorded.

use crate::error::ApiError;
use crate::extract::{AppQuery, Tenant};
use crate::fields::{time_range, uuid_param};
use crate::pagination::{parse_page, Cursor, Page};
use crate::AppState;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_db::access::{AccessFilter, AccessRecord as Row, Origin};
use voxanne_db::Action;
use voxanne_domain::{OrgId, UserId};

/// One access to patient data.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `user` (a member), `agent` (the voice agent), `system` (a job, a provider's webhook)
    /// or `cli` (an operator's command).
    pub actor_kind: String,
    /// The user, for a member's access.
    pub actor_id: Option<Uuid>,
    /// `contact`, `call`, `transcript`, `recording`, `appointment`, `hold`, `inbox_message`,
    /// `sms`, `consent`, `lead`, `campaign_target`, `cold_call`, `legal_hold` or `access_log`.
    pub subject_kind: String,
    /// The object; none for a list.
    pub subject_id: Option<Uuid>,
    /// `read`, `list`, `create`, `update`, `delete`, `export` or `erase`.
    pub action: String,
    /// The method and route (`GET /api/v1/calls/{id}`), or the agent's tool (`tool:<name>`).
    pub via: String,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
    /// The contacts whose data it was.
    pub patients: Vec<Uuid>,
    /// Its place in the clinic's hash chain, once sealed (every few seconds).
    pub seq: Option<i64>,
}

impl From<Row> for AccessRecord {
    fn from(r: Row) -> Self {
        Self {
            id: r.id,
            at: r.at,
            actor_kind: r.actor_kind,
            actor_id: r.actor_id,
            subject_kind: r.subject_kind,
            subject_id: r.subject_id,
            action: r.action,
            via: r.via,
            client_addr: r.client_addr,
            request_id: r.request_id,
            patients: r.patients.unwrap_or_default(),
            seq: r.seq,
        }
    }
}

/// Query parameters as text, parsed below so that each failure names its field.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// One patient's records: a contact's id (its own records, and every one that names it).
    #[param(value_type = Option<String>, format = Uuid)]
    patient: Option<String>,
    /// One user's accesses.
    #[param(value_type = Option<String>, format = Uuid)]
    user: Option<String>,
    /// Records at or after: RFC 3339, or a date (start of day, UTC).
    from: Option<String>,
    /// Records before: RFC 3339, or a date (that whole day included).
    to: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

impl ListParams {
    fn filter(&self) -> Result<AccessFilter, ApiError> {
        filter(&self.patient, &self.user, &self.from, &self.to)
    }
}

/// The export's query parameters: the list's filters, no paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// One patient's records: a contact's id (its own records, and every one that names it).
    #[param(value_type = Option<String>, format = Uuid)]
    patient: Option<String>,
    /// One user's accesses.
    #[param(value_type = Option<String>, format = Uuid)]
    user: Option<String>,
    /// Records at or after: RFC 3339, or a date (start of day, UTC).
    from: Option<String>,
    /// Records before: RFC 3339, or a date (that whole day included).
    to: Option<String>,
}

fn filter(
    patient: &Option<String>,
    user: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<AccessFilter, ApiError> {
    let (from, to) = time_range(from.as_deref(), to.as_deref())?;
    Ok(AccessFilter {
        patient: uuid_param("patient", patient.as_deref())?,
        user: uuid_param("user", user.as_deref())?,
        from,
        to,
    })
}

/// The clinic's access records, newest first, keyset-paginated (admins only).
#[utoipa::path(get, path = "/access-log", tag = "access-log", params(ListParams),
    responses((status = 200, body = Page<AccessRecord>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<ListParams>,
) -> Result<Json<Page<AccessRecord>>, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins read the access log")?;
    let filter = params.filter()?;
    let (after, limit) = parse_page(params.cursor.as_deref(), params.limit.as_deref())?;
    let mut rows = tx
        .list_access_log(
            &filter,
            after.map(|c| (c.at, c.id)),
            limit + 1,
            Action::List,
        )
        .await?;
    tx.commit().await?;
    let page = Page::from_overfetch(&mut rows, limit, |r| Cursor { at: r.at, id: r.id });
    Ok(Json(page.map(AccessRecord::from)))
}

/// Records per page of the export: what one page holds in memory.
const EXPORT_PAGE: u32 = 500;

/// Every record of the selection as CSV, newest first (admins only), streamed a page at a
/// time: each page is read in a tenant transaction of its own, so the membership is checked
/// again as the export goes, and memory stays one page whatever the size of the log.
#[utoipa::path(get, path = "/access-log/export", tag = "access-log", params(ExportParams),
    responses((status = 200, description = "text/csv: a header line, then one line per record",
        content_type = "text/csv", body = String)))]
pub async fn export(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<ExportParams>,
) -> Result<Response, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins export the access log")?;
    let filter = filter(&p.patient, &p.user, &p.from, &p.to)?;
    // The first page before the answer starts: a failure is still a JSON error.
    let first = tx
        .list_access_log(&filter, None, EXPORT_PAGE, Action::Export)
        .await?;
    let m = *tx.membership();
    let origin = tx.origin();
    tx.commit().await?;
    let export = Export {
        state,
        org: m.org,
        user: m.user,
        origin,
        filter,
        next: Some(first),
        header: true,
    };
    let body = futures_util::stream::unfold(export, |mut e| async move {
        let rows = e.next.take()?;
        let after = (rows.len() == EXPORT_PAGE as usize)
            .then(|| rows.last().map(|r| (r.at, r.id)))
            .flatten();
        let chunk = csv_lines(&rows, std::mem::take(&mut e.header));
        if let Some(after) = after {
            match e.page(after).await {
                Ok(next) => e.next = Some(next),
                Err(err) => {
                    // Mid-stream the status is sent: the export ends short, and says so.
                    tracing::warn!(error = %err, "the access log export stopped");
                    let chunk = chunk.map(|mut c| {
                        c.extend_from_slice(
                            b"# the export stopped early: the log could not be read\n",
                        );
                        c
                    });
                    return Some((chunk.map(Bytes::from), e));
                }
            }
        }
        Some((chunk.map(Bytes::from), e))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"access-log.csv\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

struct Export {
    state: AppState,
    org: OrgId,
    user: UserId,
    origin: Origin,
    filter: AccessFilter,
    next: Option<Vec<Row>>,
    header: bool,
}

impl Export {
    async fn page(&self, after: (DateTime<Utc>, Uuid)) -> Result<Vec<Row>, ApiError> {
        let mut tx = self.state.db.tenant(self.org, self.user).await?;
        tx.adopt_origin(&self.origin);
        ApiError::require_admin(tx.membership(), "only admins export the access log")?;
        let rows = tx
            .list_access_log(&self.filter, Some(after), EXPORT_PAGE, Action::Export)
            .await?;
        tx.commit().await?;
        Ok(rows)
    }
}

/// The CSV lines of `rows` (and the header line first, if `header`).
fn csv_lines(rows: &[Row], header: bool) -> Result<Vec<u8>, std::io::Error> {
    let mut out = csv::Writer::from_writer(Vec::new());
    if header {
        out.write_record([
            "id",
            "at",
            "actor_kind",
            "actor_id",
            "subject_kind",
            "subject_id",
            "action",
            "via",
            "client_addr",
            "request_id",
            "patients",
            "seq",
        ])?;
    }
    let text = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
    for r in rows {
        let patients: Vec<String> = r.patients.iter().flatten().map(Uuid::to_string).collect();
        out.write_record([
            r.id.to_string(),
            r.at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            r.actor_kind.clone(),
            text(r.actor_id),
            r.subject_kind.clone(),
            text(r.subject_id),
            r.action.clone(),
            r.via.clone(),
            r.client_addr.clone().unwrap_or_default(),
            r.request_id.clone().unwrap_or_default(),
            patients.join(" "),
            r.seq.map(|s| s.to_string()).unwrap_or_default(),
        ])?;
    }
    out.into_inner().map_err(|e| e.into_error())
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(export))
}
