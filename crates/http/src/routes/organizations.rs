//! Organizations: onboarding (`POST /organizations`, for any signed-in user) and the active
//! org itself (`/organization`): read, rename (admins), erase (owners).

use crate::error::ApiError;
use crate::extract::{AppJson, Principal, Tenant};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::organizations::{ErasedOrg, Organization as OrganizationRow};
use voxanne_db::system::{provision_org, NewOrg};
use voxanne_domain::OrgStatus;
use voxanne_domain::{OrgId, OrgName, Role};

/// An organization (a clinic) as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: voxanne_domain::OrgId,
    pub name: String,
    pub status: OrgStatus,
    pub created_at: DateTime<Utc>,
}

impl From<OrganizationRow> for Organization {
    fn from(row: OrganizationRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            status: row.status,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "name": "Riverside Dental" }))]
pub struct NewOrganization {
    /// 1 to 200 characters; surrounding spaces are trimmed.
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub name: OrgName,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "name": "Riverside Dental & Implants" }))]
pub struct OrganizationChanges {
    /// 1 to 200 characters; surrounding spaces are trimmed.
    #[schema(value_type = String, min_length = 1, max_length = 200)]
    pub name: OrgName,
}

/// Creates a clinic whose owner is the caller (onboarding). Needs a signed-in user, not an
/// active org; act in the new org by sending its id as `X-Org-Id`.
#[utoipa::path(post, path = "/organizations", tag = "organizations", request_body = NewOrganization, responses((status = 201, body = Organization)))]
pub async fn create(
    State(state): State<AppState>,
    principal: Principal,
    AppJson(body): AppJson<NewOrganization>,
) -> Result<(StatusCode, Json<Organization>), ApiError> {
    let mut tx = provision_org(
        &state.db,
        &NewOrg {
            id: OrgId::new_random(),
            name: body.name.as_str().to_owned(),
            owner: principal.user,
        },
    )
    .await?;
    let org = tx.get_organization().await?;
    tx.commit().await?;
    tracing::info!(org_id = %org.id, user_id = %principal.user, "organization created");
    Ok((StatusCode::CREATED, Json(org.into())))
}

/// The active org.
#[utoipa::path(get, path = "/organization", tag = "organizations", responses((status = 200, body = Organization)))]
pub async fn get(Tenant(mut tx): Tenant) -> Result<Json<Organization>, ApiError> {
    let org = tx.get_organization().await?;
    tx.commit().await?;
    Ok(Json(org.into()))
}

/// Renames the active org (admins).
#[utoipa::path(patch, path = "/organization", tag = "organizations", request_body = OrganizationChanges, responses((status = 200, body = Organization)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<OrganizationChanges>,
) -> Result<Json<Organization>, ApiError> {
    ApiError::require_admin(tx.membership(), "staff cannot change the organization")?;
    let org = tx.rename_organization(&body.name).await?;
    tx.commit().await?;
    Ok(Json(org.into()))
}

/// Erases the active org (owners): every row of the clinic, in every table, goes with it.
/// Its members' tokens stop working for it on their next request.
#[utoipa::path(delete, path = "/organization", tag = "organizations", responses((status = 204, description = "erased")))]
pub async fn delete(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
) -> Result<StatusCode, ApiError> {
    // The role as it is now, under lock, not as it was when the request began.
    let locks = tx.lock_members(None).await?;
    if locks.actor != Some(Role::Owner) {
        return Err(ApiError::Forbidden);
    }
    let membership = *tx.membership();
    let erased = tx.erase_organization().await?;
    tx.commit().await?;
    tracing::info!(
        org_id = %membership.org,
        user_id = %membership.user,
        rows = erased.total_rows(),
        per_table = ?erased.rows,
        recordings = erased.recording_paths.len(),
        "organization erased"
    );
    remove_stored_objects(&state, membership.org, &erased).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the erased org's stored objects: runs after the rows are gone (so nothing can
/// reference an object any more). Deletes everything under the org's prefix, which covers
/// the paths its calls held and any object a job stored without a row. A failure is logged,
/// not returned: the erase itself has committed; the orphan sweep removes what is left.
async fn remove_stored_objects(state: &AppState, org: OrgId, erased: &ErasedOrg) {
    match voxanne_jobs::remove_org_objects(state.recordings.as_ref(), org).await {
        Ok(removed) => tracing::info!(
            org_id = %org,
            objects = removed,
            recordings = erased.recording_paths.len(),
            "erased organization's stored objects removed"
        ),
        Err(e) => {
            tracing::error!(org_id = %org, error = %e, "removing an erased organization's objects failed")
        }
    }
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(get, update, delete))
}
