//! Invitations into the active clinic: an admin invites an email address with a role (only
//! owners invite owners); the link, mailed to the address and shown once to the admin, is
//! single use, expires (`VOXANNE_INVITATION_TTL`, default 7 days) and is bound to this clinic.
//! Taking it is `POST /auth/invitation/accept`.

use crate::accounts::{new_secret, secret_hash, Mail};
use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::found::delete_found;
use crate::pagination::{Cursor, Page, PageParams};
use crate::routes::auth::invitation_link_token;
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::invitations::Invitation as InvitationRow;
use voxanne_domain::{InvitationId, Role, UserId};

const ADMINS: &str = "admins invite people into the clinic";

/// An invitation as the API shows it (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub invited_by: UserId,
    pub expires_at: DateTime<Utc>,
    /// When it was taken, and by which account.
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    /// The link to send (only in the answer that made it: it is not stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl From<InvitationRow> for Invitation {
    fn from(row: InvitationRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            role: row.role,
            invited_by: row.invited_by,
            expires_at: row.expires_at,
            accepted_at: row.accepted_at,
            accepted_by: row.accepted_by,
            created_at: row.created_at,
            link: None,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "sam@clinic.example", "role": "staff"}))]
pub struct NewInvitation {
    #[schema(max_length = 320)]
    email: String,
    role: Role,
}

#[utoipa::path(get, path = "/invitations", tag = "members", params(PageParams), responses((status = 200, body = Page<Invitation>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Invitation>>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_invitations(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |r| Cursor {
            at: r.created_at,
            id: r.id.as_uuid(),
        })
        .map(Invitation::from),
    ))
}

/// Admins only (owners for `owner`). Mails the link to the address; the answer carries it too.
#[utoipa::path(post, path = "/invitations", tag = "members", request_body = NewInvitation, responses((status = 201, body = Invitation)))]
pub async fn create(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewInvitation>,
) -> Result<(StatusCode, Json<Invitation>), ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    if body.role == Role::Owner && tx.membership().role != Role::Owner {
        return Err(ApiError::RoleTooLow("only owners invite owners"));
    }
    let email = crate::fields::email("email", Some(&body.email))?
        .ok_or_else(|| ApiError::validation("email", "required"))?
        .to_lowercase();
    let secret = new_secret();
    let ttl =
        chrono::Duration::from_std(state.accounts.invitation_ttl).map_err(ApiError::internal)?;
    let row = tx
        .insert_invitation(&email, body.role, &secret_hash(&secret), Utc::now() + ttl)
        .await?;
    let org = tx.org();
    let clinic = tx.get_organization().await?.name;
    tx.commit().await?;
    let link = state.accounts.link(
        "/invitation",
        &invitation_link_token(org, row.id.as_uuid(), &secret),
    );
    let mail = Mail {
        to: email,
        subject: format!("You are invited to {clinic} on Voxanne"),
        body: format!(
            "You are invited to join {clinic} on Voxanne as {}.\n\n\
             Accept within {} days (the link works once):\n{link}\n",
            row.role,
            state.accounts.invitation_ttl.as_secs() / 86_400
        ),
    };
    if let Err(e) = state.accounts.mailer.send(mail).await {
        tracing::warn!(error = %e, "an invitation mail could not be sent; the admin has the link");
    }
    let mut view = Invitation::from(row);
    view.link = Some(link);
    Ok((StatusCode::CREATED, Json(view)))
}

/// Admins only: withdraws an invitation (its link stops working).
#[utoipa::path(delete, path = "/invitations/{id}", tag = "members", params(("id" = Uuid, Path)), responses((status = 204, description = "withdrawn")))]
pub async fn delete(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<InvitationId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS)?;
    delete_found::<InvitationRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(delete))
}
