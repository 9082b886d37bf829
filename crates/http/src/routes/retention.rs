//! Retention (docs/RETENTION.md): how long the clinic keeps each kind of patient data, the
//! record of what the purge removed, and legal holds, which suspend the purge for a patient or
//! a call. Members read the settings; admins change them, read the purges and manage holds.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::text;
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_db::retention::{self, HoldTarget, LegalHold as HoldRow, RetentionPolicy};
use voxanne_db::DbError;
use voxanne_domain::{CallId, ContactId};

/// Days each kind of data is kept, counted from the call or the message.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"recordings_days": 90, "transcripts_days": 365, "sms_days": 90,
    "calls_days": 2190, "access_log_days": 2190}))]
pub struct Retention {
    /// Recordings in storage. At least 30.
    #[schema(minimum = 30, maximum = 36500)]
    pub recordings_days: i32,
    /// Transcripts, summaries and live transcript lines. At least 30, at most `calls_days`.
    #[schema(minimum = 30, maximum = 36500)]
    pub transcripts_days: i32,
    /// The text of SMS confirmations, reminders and patients' messages. At least 30.
    #[schema(minimum = 30, maximum = 36500)]
    pub sms_days: i32,
    /// The calls themselves (who called, when, the outcome). At least 365; recordings and
    /// transcripts may not outlive them.
    #[schema(minimum = 365, maximum = 36500)]
    pub calls_days: i32,
    /// The access log. At least 2190 (six years).
    #[schema(minimum = 2190, maximum = 36500)]
    pub access_log_days: i32,
}

impl From<RetentionPolicy> for Retention {
    fn from(p: RetentionPolicy) -> Self {
        Self {
            recordings_days: p.recordings_days,
            transcripts_days: p.transcripts_days,
            sms_days: p.sms_days,
            calls_days: p.calls_days,
            access_log_days: p.access_log_days,
        }
    }
}

impl From<Retention> for RetentionPolicy {
    fn from(r: Retention) -> Self {
        Self {
            recordings_days: r.recordings_days,
            transcripts_days: r.transcripts_days,
            sms_days: r.sms_days,
            calls_days: r.calls_days,
            access_log_days: r.access_log_days,
        }
    }
}

/// The clinic's settings, with the least each may be.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetentionSettings {
    #[serde(flatten)]
    pub retention: Retention,
    pub floors: Retention,
}

fn settings(policy: RetentionPolicy) -> RetentionSettings {
    RetentionSettings {
        retention: policy.into(),
        floors: retention::FLOORS.into(),
    }
}

#[utoipa::path(get, path = "/retention", tag = "retention",
    responses((status = 200, body = RetentionSettings)))]
pub async fn get(Tenant(mut tx): Tenant) -> Result<Json<RetentionSettings>, ApiError> {
    let policy = tx.retention_policy().await?;
    tx.commit().await?;
    Ok(Json(settings(policy)))
}

/// Admins only. Every setting is given; the next purge (within the hour) applies them.
/// Shortening a setting purges what is then past it.
#[utoipa::path(put, path = "/retention", tag = "retention", request_body = Retention,
    responses((status = 200, body = RetentionSettings)))]
pub async fn put(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<Retention>,
) -> Result<Json<RetentionSettings>, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins change the retention")?;
    let policy = RetentionPolicy::from(body);
    if let Some((field, message)) = policy.problems().into_iter().next() {
        return Err(ApiError::validation(field, message));
    }
    tx.set_retention_policy(&policy).await?;
    tx.commit().await?;
    Ok(Json(settings(policy)))
}

/// One step of the purge: what of one kind it removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Purge {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    /// `recording` (removed from storage), `transcript` (transcript, summary and live lines),
    /// `sms_body` (the text of an SMS or a patient's message), `call` (the call, with all
    /// that was left of it) or `access_log`.
    pub kind: String,
    /// Everything of this kind from before this time was due.
    pub cutoff: DateTime<Utc>,
    pub items: i32,
    /// The calls, SMS or messages it purged.
    pub subject_ids: Vec<Uuid>,
}

impl From<retention::Purge> for Purge {
    fn from(p: retention::Purge) -> Self {
        Self {
            id: p.id,
            at: p.at,
            kind: p.kind,
            cutoff: p.cutoff,
            items: p.items,
            subject_ids: p.subject_ids,
        }
    }
}

/// What the purge removed, newest first (admins only).
#[utoipa::path(get, path = "/retention/purges", tag = "retention", params(PageParams),
    responses((status = 200, body = Page<Purge>)))]
pub async fn purges(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Purge>>, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins read what was purged")?;
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_purges(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |p| Cursor { at: p.at, id: p.id }).map(Purge::from),
    ))
}

/// A legal hold: nothing of the patient (or of the call) is purged while it stands, and the
/// contact cannot be deleted.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegalHold {
    pub id: Uuid,
    /// The patient held, for a hold on a patient.
    pub contact_id: Option<ContactId>,
    /// The call held, for a hold on one call.
    pub call_id: Option<CallId>,
    pub reason: String,
    /// The member who placed it.
    pub placed_by: Option<Uuid>,
    pub placed_at: DateTime<Utc>,
}

impl From<HoldRow> for LegalHold {
    fn from(h: HoldRow) -> Self {
        Self {
            id: h.id,
            contact_id: h.contact_id,
            call_id: h.call_id,
            reason: h.reason,
            placed_by: h.placed_by,
            placed_at: h.placed_at,
        }
    }
}

/// Exactly one of `contact_id` and `call_id`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"call_id": "0b000000-0000-4000-8000-000000000001",
    "reason": "Insurance claim 2291: keep the call and its recording"}))]
pub struct NewLegalHold {
    /// Hold everything of this patient.
    #[schema(value_type = Option<String>, format = Uuid)]
    contact_id: Option<ContactId>,
    /// Hold this one call.
    #[schema(value_type = Option<String>, format = Uuid)]
    call_id: Option<CallId>,
    /// One line, 1 to 500 characters.
    #[schema(min_length = 1, max_length = 500)]
    reason: String,
}

#[utoipa::path(get, path = "/legal-holds", tag = "retention", params(PageParams),
    responses((status = 200, body = Page<LegalHold>)))]
pub async fn list_holds(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<LegalHold>>, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins read the legal holds")?;
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .legal_holds(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |h| Cursor {
            at: h.placed_at,
            id: h.id,
        })
        .map(LegalHold::from),
    ))
}

/// Admins only. The hold takes effect at once: a purge step running now finishes first, and
/// nothing of the target is purged after.
#[utoipa::path(post, path = "/legal-holds", tag = "retention", request_body = NewLegalHold,
    responses((status = 201, body = LegalHold),
        (status = 409, description = "`already_held`", body = crate::openapi::ErrorBody)))]
pub async fn place_hold(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewLegalHold>,
) -> Result<(StatusCode, Json<LegalHold>), ApiError> {
    ApiError::require_admin(tx.membership(), "only admins place legal holds")?;
    let reason = text("reason", &body.reason, 1, 500)?;
    if reason.chars().any(char::is_control) {
        return Err(ApiError::validation("reason", "must be one line of text"));
    }
    if let (Some(contact), Some(call)) = (body.contact_id, body.call_id) {
        // Each reference is checked before the shape, so that naming another clinic's object
        // is always answered (and logged) as such.
        let m = *tx.membership();
        match tx.unknown_hold_targets(Some(contact), Some(call)).await? {
            (true, _) => {
                return Err(ApiError::invalid_reference(
                    &m,
                    "contact_id",
                    "contacts",
                    contact.as_uuid(),
                ))
            }
            (_, true) => {
                return Err(ApiError::invalid_reference(
                    &m,
                    "call_id",
                    "calls",
                    call.as_uuid(),
                ))
            }
            _ => {}
        }
    }
    let (target, field, table, id) = match (body.contact_id, body.call_id) {
        (Some(c), None) => (
            HoldTarget::Contact(c),
            "contact_id",
            "contacts",
            c.as_uuid(),
        ),
        (None, Some(c)) => (HoldTarget::Call(c), "call_id", "calls", c.as_uuid()),
        _ => {
            return Err(ApiError::validation(
                "contact_id",
                "give exactly one of contact_id and call_id",
            ))
        }
    };
    let hold = tx
        .place_legal_hold(target, &reason)
        .await
        .map_err(|e| match e {
            DbError::Constraint { constraint }
                if constraint == "legal_holds_contact_key"
                    || constraint == "legal_holds_call_key" =>
            {
                ApiError::Conflict {
                    code: "already_held",
                    message: format!(
                        "this {} is already under a legal hold",
                        &field[..field.len() - 3]
                    ),
                }
            }
            e => e.into(),
        })?;
    let Some(hold) = hold else {
        return Err(ApiError::invalid_reference(
            tx.membership(),
            field,
            table,
            id,
        ));
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(hold.into())))
}

/// Admins only: the purge resumes for what the hold covered (what is past its retention goes
/// at the next purge).
#[utoipa::path(delete, path = "/legal-holds/{id}", tag = "retention",
    params(("id" = Uuid, Path)), responses((status = 204, description = "released")))]
pub async fn release_hold(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins release legal holds")?;
    if !tx.release_legal_hold(id).await? {
        return Err(ApiError::missing(tx.membership(), "legal_holds", "id", id));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(get, put))
        .routes(routes!(purges))
        .routes(routes!(list_holds, place_hold))
        .routes(routes!(release_hold))
}
