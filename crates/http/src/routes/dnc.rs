use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::optional_text;
use crate::found::{delete_found, found};
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::dnc::DncEntry as DncEntryRow;
use voxanne_db::DbError;
use voxanne_domain::PhoneNumber;

/// A do-not-call entry as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct DncEntry {
    pub id: voxanne_domain::DncEntryId,
    /// E.164.
    pub phone: String,
    pub reason: Option<String>,
    /// `staff`, `sms_opt_out` (the patient texted STOP; START takes it back) or
    /// `carrier_opt_out` (the provider reported the recipient unsubscribed).
    pub source: String,
    pub created_at: DateTime<Utc>,
}

impl From<DncEntryRow> for DncEntry {
    fn from(row: DncEntryRow) -> Self {
        Self {
            id: row.id,
            phone: row.phone,
            reason: row.reason,
            source: row.source,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+1 (415) 555-0142", "reason": "Asked not to be called"}))]
pub struct NewDncEntry {
    /// Normalised to E.164.
    #[schema(value_type = String)]
    phone: PhoneNumber,
    /// Text; blank counts as absent.
    #[schema(max_length = 500)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CheckParams {
    /// The number to check, in any common notation.
    phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DncCheck {
    /// The number, normalised to E.164.
    pub phone: String,
    pub listed: bool,
}

#[utoipa::path(get, path = "/dnc", tag = "dnc", params(PageParams), responses((status = 200, body = Page<DncEntry>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<DncEntry>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx.list_dnc(cursor.map(|c| (c.at, c.id)), limit + 1).await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |e| Cursor {
            at: e.created_at,
            id: e.id.as_uuid(),
        })
        .map(DncEntry::from),
    ))
}

/// Anyone at the clinic may add a number (a patient asked not to be called).
#[utoipa::path(post, path = "/dnc", tag = "dnc", request_body = NewDncEntry, responses((status = 201, body = DncEntry), (status = 409, description = "`already_listed`", body = crate::openapi::ErrorBody)))]
pub async fn add(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewDncEntry>,
) -> Result<(StatusCode, Json<DncEntry>), ApiError> {
    let reason = optional_text("reason", body.reason.as_deref(), 500)?;
    let entry = tx
        .insert_dnc(&body.phone, reason.as_deref())
        .await
        .map_err(|e| match e {
            DbError::Constraint { constraint } if constraint == "dnc_list_org_id_phone_key" => {
                ApiError::Conflict {
                    code: "already_listed",
                    message: "this number is already on the do-not-call list".into(),
                }
            }
            e => e.into(),
        })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(entry.into())))
}

#[utoipa::path(get, path = "/dnc/{id}", tag = "dnc", params(("id" = Uuid, Path)), responses((status = 200, body = DncEntry)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::DncEntryId>,
) -> Result<Json<DncEntry>, ApiError> {
    let entry = found::<DncEntryRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(entry.into()))
}

/// Admins only: taking a number off the list lets the agent call it again.
#[utoipa::path(delete, path = "/dnc/{id}", tag = "dnc", params(("id" = Uuid, Path)), responses((status = 204, description = "removed")))]
pub async fn remove(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::DncEntryId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "staff cannot take numbers off the do-not-call list",
    )?;
    delete_found::<DncEntryRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether a number may be called.
#[utoipa::path(get, path = "/dnc/check", tag = "dnc", params(CheckParams), responses((status = 200, body = DncCheck)))]
pub async fn check(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<CheckParams>,
) -> Result<Json<DncCheck>, ApiError> {
    let phone =
        PhoneNumber::parse(&p.phone).map_err(|e| ApiError::validation("phone", e.to_string()))?;
    let listed = tx.is_on_dnc(&phone).await?;
    tx.commit().await?;
    Ok(Json(DncCheck {
        phone: phone.to_string(),
        listed,
    }))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(check))
        .routes(routes!(get, remove))
}
