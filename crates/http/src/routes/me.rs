use crate::error::ApiError;
use crate::extract::Principal;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::system::memberships;
use voxanne_domain::{OrgId, OrgStatus, Role, UserId};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Me {
    pub user: UserRef,
    /// The org this request acts in (from `X-Org-Id` or the token), if any.
    pub active_org: Option<ActiveOrg>,
    pub role: Option<Role>,
    /// Every org the user belongs to.
    pub orgs: Vec<OrgMembership>,
}

/// One org the user belongs to, and their role in it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OrgMembership {
    pub org_id: OrgId,
    pub name: String,
    pub status: OrgStatus,
    pub role: Role,
}

impl From<voxanne_db::system::OrgMembership> for OrgMembership {
    fn from(m: voxanne_db::system::OrgMembership) -> Self {
        Self {
            org_id: m.org_id,
            name: m.name,
            status: m.status,
            role: m.role,
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserRef {
    pub id: UserId,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ActiveOrg {
    pub id: OrgId,
    pub name: String,
    pub status: OrgStatus,
}

/// The caller: user, active org and role (when one is selected), and every org they belong to.
///
/// Needs a verified token but no active org; an org that is selected goes through the same
/// membership check as every tenant request.
#[utoipa::path(get, path = "/me", tag = "me", responses((status = 200, body = Me)))]
/// `GET /api/v1/me`. The active org, when one is asked for, goes through the same membership
/// check as every tenant request; an org the user does not belong to is a 403 here too.
pub async fn me(
    State(state): State<AppState>,
    principal: Principal,
    parts: axum::http::request::Parts,
) -> Result<Json<Me>, ApiError> {
    let role = match principal.requested_org {
        None => None,
        Some(org) => {
            let tx = crate::extract::open_tenant(&state, principal.user, org, &parts).await?;
            let role = tx.membership().role;
            tx.commit().await?;
            Some(role)
        }
    };
    let orgs: Vec<OrgMembership> = memberships(&state.db, principal.user)
        .await?
        .into_iter()
        .map(OrgMembership::from)
        .collect();
    let active_org = principal.requested_org.and_then(|org| {
        orgs.iter().find(|m| m.org_id == org).map(|m| ActiveOrg {
            id: org,
            name: m.name.clone(),
            status: m.status,
        })
    });
    Ok(Json(Me {
        user: UserRef { id: principal.user },
        active_org,
        role,
        orgs,
    }))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new().routes(routes!(me))
}
