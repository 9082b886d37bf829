use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::{nullable, text};
use crate::found::{delete_found, found};
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::campaigns::{Campaign as CampaignRow, CampaignFields};
use voxanne_db::Membership;
use voxanne_domain::CampaignStatus;

/// A campaign as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Campaign {
    pub id: voxanne_domain::CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    /// What the agent says or sends.
    pub message: String,
    pub scheduled_at: Option<DateTime<Utc>>,
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
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Flu shot reminders", "status": "draft", "message": "Flu shots are in: reply or call to book.", "scheduled_at": "2026-12-01T09:00:00Z"}))]
pub struct NewCampaign {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// Default `draft`.
    status: Option<CampaignStatus>,
    #[schema(max_length = 2000)]
    message: Option<String>,
    scheduled_at: Option<DateTime<Utc>>,
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
}

fn validate(
    name: &str,
    status: CampaignStatus,
    message: &str,
    scheduled_at: Option<DateTime<Utc>>,
) -> Result<CampaignFields, ApiError> {
    Ok(CampaignFields {
        name: text("name", name, 1, 200)?,
        status,
        message: text("message", message, 0, 2_000)?,
        scheduled_at,
    })
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
    let fields = validate(
        &body.name,
        body.status.unwrap_or(CampaignStatus::Draft),
        body.message.as_deref().unwrap_or(""),
        body.scheduled_at,
    )?;
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
    let fields = validate(
        patch.name.as_deref().unwrap_or(&current.name),
        patch.status.unwrap_or(current.status),
        patch.message.as_deref().unwrap_or(&current.message),
        patch.scheduled_at.unwrap_or(current.scheduled_at),
    )?;
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

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
}
