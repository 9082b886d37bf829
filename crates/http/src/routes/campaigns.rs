use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::{hhmm, nullable, text, time_field};
use crate::found::{delete_found, found};
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, NaiveTime, Utc};
use serde::Deserialize;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::campaigns::{Campaign as CampaignRow, CampaignFields};
use voxanne_db::outreach::{CampaignTarget as TargetRow, ColdCall as ColdCallRow, NewTarget};
use voxanne_db::Membership;
use voxanne_domain::outreach::CallingWindow;
use voxanne_domain::outreach::{callee_zones, LeadStatus, TargetStatus};
use voxanne_domain::{
    AppointmentId, CallId, CampaignStatus, CampaignTargetId, ColdCallId, ContactId, LeadId,
    PhoneNumber,
};

/// A campaign as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Campaign {
    pub id: voxanne_domain::CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    /// What the agent says or sends.
    pub message: String,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The calling window, HH:MM in the callee's local time (within 08:00-21:00).
    pub window_start: String,
    pub window_end: String,
    /// Attempts per number; no answer and busy are tried again.
    pub max_attempts: i32,
    /// Minutes before a number is tried again.
    pub retry_minutes: i32,
    pub created_at: DateTime<Utc>,
}

impl From<CampaignRow> for Campaign {
    fn from(row: CampaignRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            status: row.status,
            message: row.message,
            scheduled_at: row.scheduled_at,
            window_start: hhmm(row.window_start),
            window_end: hhmm(row.window_end),
            max_attempts: row.max_attempts,
            retry_minutes: row.retry_minutes,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Flu shot reminders", "status": "draft", "message": "Hello {name}, this is {clinic}: flu shots are in. Would you like to book one?", "scheduled_at": "2026-12-01T09:00:00Z", "window_start": "09:00", "window_end": "19:00"}))]
pub struct NewCampaign {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// Default `draft`; `active` starts calling its targets.
    status: Option<CampaignStatus>,
    /// What the agent opens the call with (`{name}`, `{clinic}` are filled in).
    #[schema(max_length = 2000)]
    message: Option<String>,
    /// No call before this time.
    scheduled_at: Option<DateTime<Utc>>,
    /// HH:MM, the callee's local time; default 09:00, never before 08:00.
    window_start: Option<String>,
    /// HH:MM, the callee's local time; default 20:00, never after 21:00.
    window_end: Option<String>,
    /// 1 to 10, default 3.
    #[schema(minimum = 1, maximum = 10)]
    max_attempts: Option<i32>,
    /// 5 to 10080, default 120.
    #[schema(minimum = 5, maximum = 10080)]
    retry_minutes: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "paused"}))]
pub struct CampaignPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    status: Option<CampaignStatus>,
    #[schema(max_length = 2000)]
    message: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    scheduled_at: Option<Option<DateTime<Utc>>>,
    window_start: Option<String>,
    window_end: Option<String>,
    #[schema(minimum = 1, maximum = 10)]
    max_attempts: Option<i32>,
    #[schema(minimum = 5, maximum = 10080)]
    retry_minutes: Option<i32>,
}

/// What a campaign's fields are, once checked.
struct Draft<'a> {
    name: &'a str,
    status: CampaignStatus,
    message: &'a str,
    scheduled_at: Option<DateTime<Utc>>,
    window: (NaiveTime, NaiveTime),
    max_attempts: i32,
    retry_minutes: i32,
}

fn validate(d: Draft<'_>) -> Result<CampaignFields, ApiError> {
    let window = CallingWindow::new(d.window.0, d.window.1)
        .map_err(|e| ApiError::validation("window_start", e.to_string()))?;
    if !(1..=10).contains(&d.max_attempts) {
        return Err(ApiError::validation("max_attempts", "from 1 to 10"));
    }
    if !(5..=10_080).contains(&d.retry_minutes) {
        return Err(ApiError::validation(
            "retry_minutes",
            "from 5 to 10080 minutes (a week)",
        ));
    }
    Ok(CampaignFields {
        name: text("name", d.name, 1, 200)?,
        status: d.status,
        message: text("message", d.message, 0, 2_000)?,
        scheduled_at: d.scheduled_at,
        window_start: window.start(),
        window_end: window.end(),
        max_attempts: d.max_attempts,
        retry_minutes: d.retry_minutes,
    })
}

/// An optional HH:MM field, else `default`.
fn time_or(field: &str, value: Option<&str>, default: NaiveTime) -> Result<NaiveTime, ApiError> {
    value.map_or(Ok(default), |v| time_field(field, v))
}

fn missing(m: &Membership, id: voxanne_domain::CampaignId) -> ApiError {
    ApiError::missing(m, "campaigns", "id", id.as_uuid())
}

#[utoipa::path(get, path = "/campaigns", tag = "campaigns", params(PageParams), responses((status = 200, body = Page<Campaign>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Campaign>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_campaigns(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |c| Cursor {
            at: c.created_at,
            id: c.id.as_uuid(),
        })
        .map(Campaign::from),
    ))
}

/// Admins only.
#[utoipa::path(post, path = "/campaigns", tag = "campaigns", request_body = NewCampaign, responses((status = 201, body = Campaign)))]
pub async fn create(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewCampaign>,
) -> Result<(StatusCode, Json<Campaign>), ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "campaigns place calls in the clinic's name: admins manage them",
    )?;
    let hm = |h| NaiveTime::from_hms_opt(h, 0, 0).unwrap_or_default();
    let fields = validate(Draft {
        name: &body.name,
        status: body.status.unwrap_or(CampaignStatus::Draft),
        message: body.message.as_deref().unwrap_or(""),
        scheduled_at: body.scheduled_at,
        window: (
            time_or("window_start", body.window_start.as_deref(), hm(9))?,
            time_or("window_end", body.window_end.as_deref(), hm(20))?,
        ),
        max_attempts: body.max_attempts.unwrap_or(3),
        retry_minutes: body.retry_minutes.unwrap_or(120),
    })?;
    let campaign = tx.insert_campaign(&fields).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(campaign.into())))
}

#[utoipa::path(get, path = "/campaigns/{id}", tag = "campaigns", params(("id" = Uuid, Path)), responses((status = 200, body = Campaign)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CampaignId>,
) -> Result<Json<Campaign>, ApiError> {
    let campaign = found::<CampaignRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(campaign.into()))
}

/// Admins only.
#[utoipa::path(patch, path = "/campaigns/{id}", tag = "campaigns", params(("id" = Uuid, Path)), request_body = CampaignPatch, responses((status = 200, body = Campaign)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CampaignId>,
    AppJson(patch): AppJson<CampaignPatch>,
) -> Result<Json<Campaign>, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "campaigns place calls in the clinic's name: admins manage them",
    )?;
    let current = found::<CampaignRow>(&mut tx, id).await?;
    let fields = validate(Draft {
        name: patch.name.as_deref().unwrap_or(&current.name),
        status: patch.status.unwrap_or(current.status),
        message: patch.message.as_deref().unwrap_or(&current.message),
        scheduled_at: patch.scheduled_at.unwrap_or(current.scheduled_at),
        window: (
            time_or(
                "window_start",
                patch.window_start.as_deref(),
                current.window_start,
            )?,
            time_or(
                "window_end",
                patch.window_end.as_deref(),
                current.window_end,
            )?,
        ),
        max_attempts: patch.max_attempts.unwrap_or(current.max_attempts),
        retry_minutes: patch.retry_minutes.unwrap_or(current.retry_minutes),
    })?;
    let campaign = tx
        .update_campaign(id, &fields)
        .await?
        .ok_or_else(|| missing(tx.membership(), id))?;
    tx.commit().await?;
    Ok(Json(campaign.into()))
}

/// Admins only.
#[utoipa::path(delete, path = "/campaigns/{id}", tag = "campaigns", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted")))]
pub async fn delete(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CampaignId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "campaigns place calls in the clinic's name: admins manage them",
    )?;
    delete_found::<CampaignRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whom to add to a campaign's audience: leads (by id, or every lead of a status), contacts
/// by id, or both. A number already in the audience is left as it is.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"lead_status": "new"}))]
pub struct NewTargets {
    #[schema(max_items = 10000)]
    lead_ids: Option<Vec<LeadId>>,
    /// Every lead of this status (with `lead_ids`: those of them of this status).
    lead_status: Option<LeadStatus>,
    #[schema(max_items = 10000)]
    contact_ids: Option<Vec<ContactId>>,
}

/// A number left out of the audience, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct LeftOut {
    pub phone: Option<String>,
    pub reason: String,
}

/// What adding to an audience did.
#[derive(Debug, Serialize, ToSchema)]
pub struct TargetsAdded {
    /// Numbers new to the audience.
    pub added: u64,
    /// Numbers that could not be called at all (no number, no known time zone).
    pub left_out: Vec<LeftOut>,
}

/// At most this many ids in one request.
const MAX_TARGET_IDS: usize = 10_000;

/// A number of the audience with every zone its callee may be in (the given `time_zone`, else
/// its country's), or why it cannot be called at all.
fn target(
    phone: PhoneNumber,
    time_zone: Option<&str>,
    lead_id: Option<LeadId>,
    contact_id: Option<ContactId>,
    name: String,
) -> Result<NewTarget, LeftOut> {
    match callee_zones(&phone, time_zone) {
        Ok(zones) => Ok(NewTarget {
            lead_id,
            contact_id,
            time_zones: zones.iter().map(|z| z.name().to_owned()).collect(),
            phone,
            name,
        }),
        Err(e) => Err(LeftOut {
            phone: Some(phone.to_string()),
            reason: e.to_string(),
        }),
    }
}

/// Adds leads or contacts to the campaign's audience: each number with the time zones its
/// callee may be in (the lead's own, else its country's). Calls go only when the campaign
/// is `active`, in the window, under the clinic's cap, never to a number on the do-not-call
/// list or without a granted `calls` consent on record. Admins only.
#[utoipa::path(post, path = "/campaigns/{id}/targets", tag = "campaigns", params(("id" = Uuid, Path)),
    request_body = NewTargets, responses((status = 200, body = TargetsAdded)))]
pub async fn add_targets(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CampaignId>,
    AppJson(body): AppJson<NewTargets>,
) -> Result<Json<TargetsAdded>, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "campaigns place calls in the clinic's name: admins manage them",
    )?;
    found::<CampaignRow>(&mut tx, id).await?;
    let m = *tx.membership();
    let too_many =
        |field: &'static str| ApiError::validation(field, format!("at most {MAX_TARGET_IDS} ids"));
    if body
        .lead_ids
        .as_ref()
        .is_some_and(|l| l.len() > MAX_TARGET_IDS)
    {
        return Err(too_many("lead_ids"));
    }
    if body
        .contact_ids
        .as_ref()
        .is_some_and(|c| c.len() > MAX_TARGET_IDS)
    {
        return Err(too_many("contact_ids"));
    }
    if body.lead_ids.is_none() && body.lead_status.is_none() && body.contact_ids.is_none() {
        return Err(ApiError::validation(
            "lead_ids",
            "give lead_ids, lead_status or contact_ids",
        ));
    }
    let mut targets = Vec::new();
    let mut left_out = Vec::new();
    if body.lead_ids.is_some() || body.lead_status.is_some() {
        let leads = tx
            .leads_for_audience(body.lead_ids.as_deref(), body.lead_status)
            .await?;
        if let Some(ids) = &body.lead_ids {
            let known: std::collections::HashSet<LeadId> = leads.iter().map(|l| l.id).collect();
            if let Some(missing) = ids.iter().find(|i| !known.contains(i)) {
                // With a status filter, an id of another status is left out, not refused.
                if body.lead_status.is_none() {
                    return Err(ApiError::invalid_reference(
                        &m,
                        "lead_ids",
                        "leads",
                        missing.as_uuid(),
                    ));
                }
            }
        }
        for lead in leads {
            let Ok(phone) = PhoneNumber::parse(&lead.phone) else {
                continue;
            };
            match target(
                phone,
                lead.time_zone.as_deref(),
                Some(lead.id),
                lead.contact_id,
                lead.name,
            ) {
                Ok(t) => targets.push(t),
                Err(out) => left_out.push(out),
            }
        }
    }
    for contact_id in body.contact_ids.iter().flatten() {
        let contact = tx
            .find::<voxanne_db::contacts::Contact>(*contact_id)
            .await?
            .ok_or_else(|| {
                ApiError::invalid_reference(&m, "contact_ids", "contacts", contact_id.as_uuid())
            })?;
        let Some(phone) = contact
            .phone
            .as_deref()
            .and_then(|p| PhoneNumber::parse(p).ok())
        else {
            left_out.push(LeftOut {
                phone: None,
                reason: format!("contact {contact_id} has no phone number"),
            });
            continue;
        };
        match target(phone, None, None, Some(contact.id), contact.name) {
            Ok(t) => targets.push(t),
            Err(out) => left_out.push(out),
        }
    }
    let added = tx.add_campaign_targets(id, &targets).await?;
    tx.commit().await?;
    Ok(Json(TargetsAdded { added, left_out }))
}

/// One number of a campaign's audience.
#[derive(Debug, Serialize, ToSchema)]
pub struct Target {
    pub id: CampaignTargetId,
    pub lead_id: Option<LeadId>,
    pub contact_id: Option<ContactId>,
    pub phone: String,
    pub name: String,
    /// Every zone the callee may be in: the window must be open in all of them.
    pub time_zones: Vec<String>,
    pub status: TargetStatus,
    /// The last attempt's outcome.
    pub outcome: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why it was skipped or failed.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<TargetRow> for Target {
    fn from(t: TargetRow) -> Self {
        Self {
            id: t.id,
            lead_id: t.lead_id,
            contact_id: t.contact_id,
            phone: t.phone,
            name: t.name,
            time_zones: t.time_zones,
            status: t.status,
            outcome: t.outcome,
            attempts: t.attempts,
            next_attempt_at: t.next_attempt_at,
            last_error: t.last_error,
            created_at: t.created_at,
        }
    }
}

#[utoipa::path(get, path = "/campaigns/{id}/targets", tag = "campaigns",
    params(("id" = Uuid, Path), PageParams), responses((status = 200, body = Page<Target>)))]
pub async fn campaign_targets(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CampaignId>,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Target>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    found::<CampaignRow>(&mut tx, id).await?;
    let mut rows = tx
        .list_campaign_targets(id, cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |t| Cursor {
            at: t.created_at,
            id: t.id.as_uuid(),
        })
        .map(Target::from),
    ))
}

/// One outbound attempt (a `cold_call_logs` row).
#[derive(Debug, Serialize, ToSchema)]
pub struct ColdCall {
    pub id: ColdCallId,
    pub target_id: CampaignTargetId,
    pub lead_id: Option<LeadId>,
    pub attempt: i32,
    pub to_number: String,
    pub from_number: String,
    /// The voice platform's id of the call.
    pub provider_call_id: Option<String>,
    /// The call row, once the platform reported on it.
    pub call_id: Option<CallId>,
    /// `calling` (waiting for the end-of-call report), `ended`, `failed`.
    pub status: String,
    /// `booked`, `not_interested`, `callback`, `voicemail`, `wrong_number`, `no_answer`,
    /// `busy`, `answered`, `failed`.
    pub outcome: Option<String>,
    /// The platform's `endedReason`.
    pub ended_reason: Option<String>,
    /// The appointment booked on the call.
    pub appointment_id: Option<AppointmentId>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<ColdCallRow> for ColdCall {
    fn from(c: ColdCallRow) -> Self {
        Self {
            id: c.id,
            target_id: c.target_id,
            lead_id: c.lead_id,
            attempt: c.attempt,
            to_number: c.to_number,
            from_number: c.from_number,
            provider_call_id: c.provider_call_id,
            call_id: c.call_id,
            status: c.status,
            outcome: c.outcome,
            ended_reason: c.ended_reason,
            appointment_id: c.appointment_id,
            error: c.error,
            created_at: c.created_at,
            ended_at: c.ended_at,
        }
    }
}

#[utoipa::path(get, path = "/campaigns/{id}/calls", tag = "campaigns",
    params(("id" = Uuid, Path), PageParams), responses((status = 200, body = Page<ColdCall>)))]
pub async fn campaign_calls(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CampaignId>,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<ColdCall>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    found::<CampaignRow>(&mut tx, id).await?;
    let mut rows = tx
        .list_cold_calls(id, cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |c| Cursor {
            at: c.created_at,
            id: c.id.as_uuid(),
        })
        .map(ColdCall::from),
    ))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(add_targets, campaign_targets))
        .routes(routes!(campaign_calls))
}
