//! The error policy: every error the API answers with is an [`ApiError`], and its
//! `IntoResponse` is the one place HTTP statuses are decided. Bodies are always
//! `{"error":{"code":"…","message":"…"}}` (plus `field` for validation errors); internal
//! errors are logged with the request's span and answered with a generic message.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use voxanne_db::{DbError, TenantError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing bearer token: send `Authorization: Bearer <jwt>`")]
    Unauthenticated,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("the token has expired")]
    TokenExpired,
    #[error("no active organization: send `X-Org-Id` or use a token with app_metadata.org_id")]
    OrgRequired,
    #[error("you are not a member of this organization")]
    NotAMember,
    #[error("this organization is suspended")]
    OrgSuspended,
    #[error("your role in this organization does not allow this")]
    Forbidden,
    #[error("not found")]
    NotFound,
    #[error("no route for this method and path")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("the database is not reachable")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            ApiError::OrgRequired => (StatusCode::FORBIDDEN, "org_required"),
            ApiError::NotAMember => (StatusCode::FORBIDDEN, "not_a_member"),
            ApiError::OrgSuspended => (StatusCode::FORBIDDEN, "org_suspended"),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; the request id identifies it in the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = json!({ "code": code, "message": message });
        if let ApiError::Validation { field, .. } = &self {
            error["field"] = json!(field);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => ApiError::NotFound,
            other => ApiError::internal(other),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotMember => ApiError::NotAMember,
            TenantError::Suspended => ApiError::OrgSuspended,
            TenantError::Db(e) => e.into(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        ApiError::BadRequest {
            code: "invalid_query",
            message: e.body_text(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::BadRequest {
            code: "invalid_body",
            message: e.body_text(),
        }
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        // A malformed id names nothing that exists: the same answer as a missing one.
        ApiError::NotFound
    }
}
