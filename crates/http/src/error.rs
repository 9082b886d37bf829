//! The error policy: every error the API answers with is an [`ApiError`], and its
//! `IntoResponse` is the one place HTTP statuses are decided. Bodies are always
//! `{"error":{"code":"…","message":"…"}}` (plus `field` for validation errors); internal
//! errors are logged with the request's span and answered with a generic message.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use voxanne_db::appointments::BookingError;
use voxanne_db::system::Probe;
use voxanne_db::{DbError, Membership, TenantError};

/// `Retry-After` of a 503 `unavailable`: the pool or the database needs a moment.
pub const UNAVAILABLE_RETRY_AFTER: u64 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing bearer token: send `Authorization: Bearer <jwt>`")]
    Unauthenticated,
    #[error("invalid token: {0}")]
    InvalidToken(String),
    #[error("the token has expired")]
    TokenExpired,
    /// A session cookie of no live session (signed out, expired, or never issued).
    #[error("the session has ended: sign in again")]
    InvalidSession,
    /// A wrong email address or password: one answer for both.
    #[error("the email address or the password is wrong")]
    InvalidCredentials,
    /// A write with a session cookie but without its CSRF token (`X-CSRF-Token`).
    #[error("this write needs the session's CSRF token in X-CSRF-Token")]
    CsrfFailed,
    #[error("no active organization: send `X-Org-Id` or use a token with app_metadata.org_id")]
    OrgRequired,
    #[error("you are not a member of this organization")]
    NotAMember,
    #[error("this organization is suspended")]
    OrgSuspended,
    #[error("your role in this organization does not allow this")]
    Forbidden,
    /// Like `Forbidden`, saying which action the role does not allow.
    #[error("{0}")]
    RoleTooLow(&'static str),
    #[error("not found")]
    NotFound,
    /// Answers exactly like `NotFound`; the middleware records the probe if the id belongs to
    /// another org.
    #[error("not found")]
    Missing(Box<Probe>),
    /// A reference (`field`) to an object the active org does not have: 422, like any
    /// invalid field, and recorded like a probe.
    #[error("{field}: no such object in this organization")]
    InvalidReference { field: String, probe: Box<Probe> },
    #[error("this call has no stored recording")]
    NoRecording,
    /// A webhook not authenticated (or not recently) with the called number's clinic's own
    /// credential. One answer whatever the reason: why is the clinic's to know (its security
    /// log), not the sender's, and it would tell how the clinic is set up.
    #[error("the request is not authenticated with the credential of the called number's clinic")]
    InvalidSignature,
    #[error("no route for this method and path")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{message}")]
    Gone { code: &'static str, message: String },
    /// Well-formed, but not acceptable as it stands (e.g. a reused idempotency key).
    #[error("{message}")]
    Unprocessable { code: &'static str, message: String },
    /// A provider this server called on the clinic's behalf failed.
    #[error("{message}")]
    Upstream { code: &'static str, message: String },
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the service is unavailable for a moment; retry after the Retry-After seconds")]
    Unavailable,
    #[error("the request took too long to answer; retry after the Retry-After seconds")]
    Timeout,
    #[error("the request was not received in time")]
    RequestTimeout,
    #[error("the request's header fields are too large")]
    HeadersTooLarge,
    #[error("the request target (URI) is too long")]
    UriTooLong,
    #[error("the server has too many connections; retry after the Retry-After seconds")]
    TooManyConnections,
    #[error(
        "this organization has too many requests in progress; retry after the Retry-After seconds"
    )]
    OrgBusy,
    /// Too many attempts of one kind from one source (`code` says which).
    #[error("{message}")]
    RateLimited {
        code: &'static str,
        message: String,
        retry_after: u64,
    },
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

    /// `id` was looked up in `table.column` for `m`'s org and is not there.
    pub fn missing(
        m: &Membership,
        table: &'static str,
        column: &'static str,
        id: uuid::Uuid,
    ) -> Self {
        ApiError::Missing(Box::new(Probe {
            org: m.org,
            user: m.user,
            table,
            column,
            id,
        }))
    }

    /// `field` of the body names `id`, which `m`'s org does not have in `table`.
    pub fn invalid_reference(
        m: &Membership,
        field: &str,
        table: &'static str,
        id: uuid::Uuid,
    ) -> Self {
        ApiError::InvalidReference {
            field: field.to_owned(),
            probe: Box::new(Probe {
                org: m.org,
                user: m.user,
                table,
                column: "id",
                id,
            }),
        }
    }

    /// A refused booking write. `subject` is the table and id the request was about, for a
    /// `NotFound`.
    pub fn booking(m: &Membership, subject: (&'static str, uuid::Uuid), e: BookingError) -> Self {
        match e {
            BookingError::SlotTaken => ApiError::Conflict {
                code: "slot_taken",
                message: e.to_string(),
            },
            BookingError::CalendarBusy => ApiError::Conflict {
                code: "slot_busy_in_calendar",
                message: e.to_string(),
            },
            BookingError::HoldAlreadyConfirmed => ApiError::Conflict {
                code: "hold_already_confirmed",
                message: e.to_string(),
            },
            BookingError::NotBooked(_) => ApiError::Conflict {
                code: "appointment_not_booked",
                message: e.to_string(),
            },
            BookingError::HoldExpired => ApiError::Gone {
                code: "hold_expired",
                message: e.to_string(),
            },
            BookingError::EmptyRange => ApiError::validation("ends_at", e.to_string()),
            BookingError::InvalidReference { field, table, id } => {
                ApiError::invalid_reference(m, field, table, id)
            }
            BookingError::NotFound => ApiError::missing(m, subject.0, "id", subject.1),
            BookingError::Db(e) => e.into(),
        }
    }

    /// Admin actions: `Ok` for admins and owners, else 403 saying what staff cannot do.
    pub fn require_admin(m: &Membership, refused: &'static str) -> Result<(), ApiError> {
        if m.role.is_admin() {
            Ok(())
        } else {
            Err(ApiError::RoleTooLow(refused))
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    /// Seconds for `Retry-After`, on the answers that mean "not now, later".
    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable | ApiError::Timeout => Some(UNAVAILABLE_RETRY_AFTER),
            ApiError::TooManyConnections | ApiError::OrgBusy => Some(1),
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::InvalidToken(_) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            ApiError::TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            ApiError::InvalidSession => (StatusCode::UNAUTHORIZED, "invalid_session"),
            ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            ApiError::CsrfFailed => (StatusCode::FORBIDDEN, "csrf_failed"),
            ApiError::OrgRequired => (StatusCode::FORBIDDEN, "org_required"),
            ApiError::NotAMember => (StatusCode::FORBIDDEN, "not_a_member"),
            ApiError::OrgSuspended => (StatusCode::FORBIDDEN, "org_suspended"),
            ApiError::Forbidden | ApiError::RoleTooLow(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound | ApiError::Missing(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::InvalidReference { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed")
            }
            ApiError::Conflict { code, .. } => (StatusCode::CONFLICT, code),
            ApiError::Gone { code, .. } => (StatusCode::GONE, code),
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Upstream { code, .. } => (StatusCode::BAD_GATEWAY, code),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::NoRoute => (StatusCode::NOT_FOUND, "no_route"),
            ApiError::NoRecording => (StatusCode::NOT_FOUND, "no_recording"),
            ApiError::InvalidSignature => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Validation { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "timeout"),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ApiError::UriTooLong => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::TooManyConnections => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections")
            }
            ApiError::OrgBusy => (StatusCode::TOO_MANY_REQUESTS, "org_busy"),
            ApiError::RateLimited { code, .. } => (StatusCode::TOO_MANY_REQUESTS, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl ApiError {
    /// The JSON body of this error: `{"error":{"code","message"[,"field"]}}`. Internal
    /// details are logged here and never put in the body.
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.status_and_code();
        let message = match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "internal error; the request id identifies it in the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut error = json!({ "code": code, "message": message });
        if let ApiError::Validation { field, .. } | ApiError::InvalidReference { field, .. } = self
        {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        let retry_after = self.retry_after();
        let body = self.body();
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        let probe = match self {
            ApiError::InvalidReference { probe, .. } | ApiError::Missing(probe) => Some(probe),
            _ => None,
        };
        if let Some(probe) = probe {
            response.extensions_mut().insert(*probe);
        }
        response
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => ApiError::NotFound,
            // Logged once per episode where it is noticed (voxanne_db), not per request.
            DbError::Unavailable(_) => ApiError::Unavailable,
            // Logged by the access writer; the read it would have recorded is not shown.
            DbError::AccessLog(_) => ApiError::Unavailable,
            DbError::InvalidValue(detail) => {
                tracing::warn!(%detail, "the database refused a value the edge let through");
                ApiError::Unprocessable {
                    code: "invalid_value",
                    message: "a value in the request cannot be stored (too long, out of range, \
                              or not valid text)"
                        .into(),
                }
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> Self {
        match e {
            TenantError::NotMember => ApiError::NotAMember,
            TenantError::Suspended => ApiError::OrgSuspended,
            TenantError::Busy => ApiError::OrgBusy,
            TenantError::Db(e) => e.into(),
        }
    }
}

/// The booking rule's refusals, in the API's words: the field at fault and what it must be.
impl From<voxanne_domain::booking::SlotRefusal> for ApiError {
    fn from(e: voxanne_domain::booking::SlotRefusal) -> Self {
        use voxanne_domain::booking::SlotRefusal;
        let (field, message) = match e {
            SlotRefusal::ResourceName => ("resource", "must be 1 to 100 characters"),
            SlotRefusal::EndsBeforeStart => ("ends_at", "must be after starts_at"),
            SlotRefusal::TooLong => ("ends_at", "at most 24 hours after starts_at"),
            SlotRefusal::NotesTooLong => ("notes", "at most 2000 characters"),
            SlotRefusal::Length => ("duration", "minutes, an integer from 5 to 480"),
            SlotRefusal::HoldTime => ("ttl_seconds", "must be 1 to 900"),
            SlotRefusal::InThePast => ("starts_at", "must not be in the past"),
            SlotRefusal::Closed => ("starts_at", "the clinic is not open for the whole slot"),
        };
        ApiError::validation(field, message)
    }
}

impl From<voxanne_domain::MemberRefusal> for ApiError {
    fn from(e: voxanne_domain::MemberRefusal) -> Self {
        match e {
            voxanne_domain::MemberRefusal::RoleTooLow => ApiError::Forbidden,
            voxanne_domain::MemberRefusal::LastOwner => ApiError::Conflict {
                code: "last_owner",
                message: e.to_string(),
            },
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

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        // A malformed id names nothing that exists: the same answer as a missing one.
        ApiError::NotFound
    }
}
