//! Extractors. [`Principal`] is a verified token plus the org it asks for; [`Tenant`] is the
//! tenant transaction of that org, handed out only after the membership check: the only way
//! a handler reaches tenant data. [`AppQuery`] answers malformed query strings in our format.

use crate::error::ApiError;
use crate::AppState;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use voxanne_db::TenantTx;
use voxanne_domain::{OrgId, UserId};

pub const ORG_HEADER: &str = "x-org-id";

/// The caller, from a verified JWT, and the org they ask to act in: the `X-Org-Id` header
/// when present, else the token's `app_metadata.org_id`. Not yet checked against membership.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    pub user: UserId,
    pub requested_org: Option<OrgId>,
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(*p);
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthenticated)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        let verified = state.auth.verify(token).await?;
        let header_org = match parts.headers.get(ORG_HEADER) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .ok()
                    .and_then(|v| v.trim().parse::<OrgId>().ok())
                    .ok_or_else(|| ApiError::BadRequest {
                        code: "invalid_org_header",
                        message: "X-Org-Id must be an organization uuid".into(),
                    })?,
            ),
        };
        let principal = Principal {
            user: verified.user,
            requested_org: header_org.or(verified.default_org),
        };
        tracing::Span::current().record("user_id", tracing::field::display(principal.user));
        parts.extensions.insert(principal);
        Ok(principal)
    }
}

/// The tenant transaction of the caller's active org, after the database confirmed, for this
/// request, that the caller is a member and the org is active.
pub struct Tenant(pub TenantTx);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let org = principal.requested_org.ok_or(ApiError::OrgRequired)?;
        let tx = state.db.tenant(org, principal.user).await?;
        tracing::Span::current().record("org_id", tracing::field::display(org));
        Ok(Tenant(tx))
    }
}

/// `Query` whose rejection is our JSON error.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(AppQuery(value))
    }
}

/// `Path` whose rejection is our JSON error (a malformed id is a 404, like a missing one).
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(AppPath(value))
    }
}
