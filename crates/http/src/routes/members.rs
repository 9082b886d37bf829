//! The members of the active org. Admins manage members, only owners grant or revoke
//! `owner`, anyone may leave, and an org always keeps an owner (`voxanne_domain::members`).
//! Every change decides on the memberships as locked in its own transaction
//! (`TenantTx::lock_members`), so concurrent changes cannot together remove the last owner.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::members::Member as MemberRow;
use voxanne_db::TenantTx;
use voxanne_domain::{check_member_change, MemberChange, Role, UserId};

/// A member of the clinic as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Member {
    pub user_id: UserId,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// The member's built-in account, if they have one (in lists).
    pub email: Option<String>,
    pub display_name: Option<String>,
}

impl From<MemberRow> for Member {
    fn from(row: MemberRow) -> Self {
        Self {
            user_id: row.user_id,
            role: row.role,
            created_at: row.created_at,
            email: row.email,
            display_name: row.display_name,
        }
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "user_id": "5f0c2a7e-3b4d-4c8e-9a61-2d7f1e0b9c34", "role": "staff" }))]
pub struct NewMember {
    /// The user's id at the identity provider (the `sub` of their tokens).
    pub user_id: UserId,
    pub role: Role,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "role": "admin" }))]
pub struct MemberChanges {
    pub role: Role,
}

/// The org's members, oldest first.
#[utoipa::path(get, path = "/members", tag = "members", params(PageParams), responses((status = 200, body = Page<Member>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<Page<Member>>, ApiError> {
    let (after, limit) = params.parse()?;
    let mut members = tx
        .list_members(after.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut members, limit, |m| Cursor {
            at: m.created_at,
            id: m.user_id.as_uuid(),
        })
        .map(Member::from),
    ))
}

/// Adds a member (admins; only owners add owners).
#[utoipa::path(post, path = "/members", tag = "members", request_body = NewMember, responses((status = 201, body = Member), (status = 409, description = "the user is a member already: `already_a_member`", body = crate::openapi::ErrorBody)))]
pub async fn add(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    let locks = tx.lock_members(Some(body.user_id)).await?;
    let actor = locks.actor.ok_or(ApiError::NotAMember)?;
    let on_self = body.user_id == tx.membership().user;
    check_member_change(actor, on_self, MemberChange::Add(body.role), 0)?;
    if locks.target.is_some() {
        return Err(already_a_member());
    }
    let member = tx
        .add_member(body.user_id, body.role)
        .await?
        .ok_or_else(already_a_member)?;
    audit(&tx, "member added", &member);
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(member.into())))
}

/// Changes a member's role (admins; only owners grant or revoke `owner`; never the last owner's).
#[utoipa::path(patch, path = "/members/{user_id}", tag = "members", params(("user_id" = Uuid, Path, description = "the member's user id")), request_body = MemberChanges, responses((status = 200, body = Member), (status = 409, description = "the clinic would be left without an owner: `last_owner`", body = crate::openapi::ErrorBody)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppPath(user): AppPath<UserId>,
    AppJson(body): AppJson<MemberChanges>,
) -> Result<Json<Member>, ApiError> {
    let locks = tx.lock_members(Some(user)).await?;
    let actor = locks.actor.ok_or(ApiError::NotAMember)?;
    if !actor.is_admin() {
        return Err(ApiError::Forbidden);
    }
    let from = locks
        .target
        .ok_or_else(|| not_a_member_of_this_org(&tx, user))?;
    let on_self = user == tx.membership().user;
    let change = MemberChange::SetRole {
        from,
        to: body.role,
    };
    check_member_change(actor, on_self, change, locks.owners_other_than(user))?;
    let member = tx
        .set_member_role(user, body.role)
        .await?
        .ok_or_else(|| not_a_member_of_this_org(&tx, user))?;
    audit(&tx, "member role changed", &member);
    tx.commit().await?;
    Ok(Json(member.into()))
}

/// Removes a member (admins; only owners remove owners; anyone may remove themselves; never
/// the last owner). It takes effect on their next request.
#[utoipa::path(delete, path = "/members/{user_id}", tag = "members", params(("user_id" = Uuid, Path, description = "the member's user id")), responses((status = 204, description = "removed"), (status = 409, description = "the clinic would be left without an owner: `last_owner`", body = crate::openapi::ErrorBody)))]
pub async fn remove(
    Tenant(mut tx): Tenant,
    AppPath(user): AppPath<UserId>,
) -> Result<StatusCode, ApiError> {
    let locks = tx.lock_members(Some(user)).await?;
    let actor = locks.actor.ok_or(ApiError::NotAMember)?;
    let on_self = user == tx.membership().user;
    if !actor.is_admin() && !on_self {
        return Err(ApiError::Forbidden);
    }
    let role = locks
        .target
        .ok_or_else(|| not_a_member_of_this_org(&tx, user))?;
    let change = MemberChange::Remove { role };
    check_member_change(actor, on_self, change, locks.owners_other_than(user))?;
    if !tx.remove_member(user).await? {
        return Err(not_a_member_of_this_org(&tx, user));
    }
    tracing::info!(org_id = %tx.org(), actor = %tx.membership().user, user_id = %user, %role, "member removed");
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

fn already_a_member() -> ApiError {
    ApiError::Conflict {
        code: "already_a_member",
        message: "this user is a member of the organization already".into(),
    }
}

/// 404, recorded as a security event when the user is a member of another org only.
fn not_a_member_of_this_org(tx: &TenantTx, user: UserId) -> ApiError {
    ApiError::missing(
        tx.membership(),
        "organization_members",
        "user_id",
        user.as_uuid(),
    )
}

fn audit(tx: &TenantTx, what: &str, member: &MemberRow) {
    tracing::info!(org_id = %tx.org(), actor = %tx.membership().user, user_id = %member.user_id, role = %member.role, "{what}");
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(update, remove))
}
