//! Extractors. [`Principal`] is a verified token plus the org it asks for; [`Tenant`] is the
//! tenant transaction of that org, handed out only after the membership check: the only way
//! a handler reaches tenant data. [`AppQuery`] answers malformed query strings in our format.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use voxanne_db::system::DeniedKind;
use voxanne_db::{TenantError, TenantTx};
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
        // A header that chooses who or which org must say it once: with two, "the first
        // wins" would let whatever sits in front of us disagree with us about the tenant.
        for (name, shown) in [
            (axum::http::header::AUTHORIZATION.as_str(), "Authorization"),
            (ORG_HEADER, "X-Org-Id"),
        ] {
            if parts.headers.get_all(name).iter().nth(1).is_some() {
                return Err(ApiError::BadRequest {
                    code: "duplicate_header",
                    message: format!("{shown} must be sent once"),
                });
            }
        }
        let header_org = org_header(parts)?;
        let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            // No bearer token: a dashboard session's cookie, if there is one.
            let Some(session) = crate::accounts::session_token(&parts.headers) else {
                return Err(ApiError::Unauthenticated);
            };
            let principal = session_principal(parts, state, &session, header_org).await?;
            tracing::Span::current().record("user_id", tracing::field::display(principal.user));
            parts.extensions.insert(principal);
            return Ok(principal);
        };
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
        let client = state.limits.client_ip(parts);
        if let Some(retry_after) = client.and_then(|ip| state.limits.auth_failures.over(&ip)) {
            return Err(too_many_failures(retry_after));
        }
        let verified = match state.auth.verify(token).await {
            Ok(verified) => verified,
            Err(e) => {
                if let Some(ip) = client {
                    state.limits.auth_failures.hit(&ip);
                }
                // A bad token that names an org is that org's business.
                if let Some(org) = header_org {
                    let detail = serde_json::json!({ "reason": e.to_string() });
                    record(state, org, None, DeniedKind::InvalidToken, parts, detail).await;
                }
                return Err(e);
            }
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

/// The org `X-Org-Id` names, if it is sent.
fn org_header(parts: &Parts) -> Result<Option<OrgId>, ApiError> {
    match parts.headers.get(ORG_HEADER) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<OrgId>().ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest {
                code: "invalid_org_header",
                message: "X-Org-Id must be an organization uuid".into(),
            }),
    }
}

/// The signed-in account of a dashboard session: a live session of this cookie's token, and
/// for anything but a read, the session's CSRF token in `X-CSRF-Token`. Which clinic: the
/// `X-Org-Id` sent, else the session's (the switcher's), checked against the memberships like
/// a token's.
async fn session_principal(
    parts: &mut Parts,
    state: &AppState,
    session: &str,
    header_org: Option<OrgId>,
) -> Result<Principal, ApiError> {
    let client = state.limits.client_ip(parts);
    if let Some(retry_after) = client.and_then(|ip| state.limits.auth_failures.over(&ip)) {
        return Err(too_many_failures(retry_after));
    }
    let hash = crate::accounts::secret_hash(session);
    let Some(account) = voxanne_db::system::account_of_session(&state.db, &hash).await? else {
        if let Some(ip) = client {
            state.limits.auth_failures.hit(&ip);
        }
        return Err(ApiError::InvalidSession);
    };
    if !parts.method.is_safe() {
        let given = parts
            .headers
            .get(crate::accounts::CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !crate::accounts::csrf_matches(session, given) {
            return Err(ApiError::CsrfFailed);
        }
    }
    let principal = Principal {
        user: account.id,
        requested_org: header_org.or(account.active_org),
    };
    parts.extensions.insert(SignedIn {
        account,
        session: session.to_owned(),
    });
    Ok(principal)
}

/// The dashboard session a request was authenticated with; a request with a bearer token
/// instead has none (401 `unauthenticated`).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub account: voxanne_db::system::SessionAccount,
    /// The cookie's token.
    pub session: String,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Authenticating the request leaves its session, if it was one, in the extensions.
        Principal::from_request_parts(parts, state).await?;
        parts
            .extensions
            .get::<SignedIn>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)
    }
}

fn too_many_failures(retry_after: u64) -> ApiError {
    ApiError::RateLimited {
        code: "too_many_auth_failures",
        message: "too many failed authentications from this address; retry after the \
                  Retry-After seconds"
            .into(),
        retry_after,
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
        open_tenant(state, principal.user, org, parts)
            .await
            .map(Tenant)
    }
}

/// The tenant transaction of `org` for `user`; a denied membership is recorded for the org.
pub async fn open_tenant(
    state: &AppState,
    user: UserId,
    org: OrgId,
    parts: &Parts,
) -> Result<TenantTx, ApiError> {
    match state.db.tenant(org, user).await {
        Ok(mut tx) => {
            tracing::Span::current().record("org_id", tracing::field::display(org));
            set_origin(&mut tx, state, parts);
            Ok(tx)
        }
        Err(TenantError::NotMember) => {
            record(
                state,
                org,
                Some(user),
                DeniedKind::MembershipDenied,
                parts,
                serde_json::json!({}),
            )
            .await;
            Err(ApiError::NotAMember)
        }
        Err(e) => Err(e.into()),
    }
}

/// The access log's how and from where for a request's transaction: the method and the
/// route's template (`GET /api/v1/calls/{id}`), the client's address (as the rate limits
/// see it), the request id.
pub fn set_origin(tx: &mut TenantTx, state: &AppState, parts: &Parts) {
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = parts
        .headers
        .get(crate::REQUEST_ID)
        .and_then(|v| v.to_str().ok());
    tx.set_origin(
        &format!("{} {route}", parts.method),
        state.limits.client_ip(parts),
        request_id,
    );
}

/// Reports a refusal at `org`'s door to the security log (written off the request path).
async fn record(
    state: &AppState,
    org: OrgId,
    user: Option<UserId>,
    kind: DeniedKind,
    parts: &Parts,
    detail: serde_json::Value,
) {
    state.security.report(crate::security_log::Finding::Denied {
        org,
        user,
        kind,
        route: format!("{} {}", parts.method, parts.uri.path()),
        detail,
    });
}

/// `Query` whose rejection is our JSON error.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        crate::storable::check_query(parts.uri.query().unwrap_or(""))?;
        let Query(value) = Query::<T>::from_request_parts(parts, state).await?;
        Ok(AppQuery(value))
    }
}

/// `Path` whose rejection is our JSON error (a malformed id is a 404, like a missing one).
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // A NUL names nothing that exists.
        if parts.uri.path().contains("%00") {
            return Err(ApiError::NotFound);
        }
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(AppPath(value))
    }
}

/// A JSON request body, answered in our format when it is not one: 415 without
/// `Content-Type: application/json`, 413 over the body limit, 400 for malformed JSON, and
/// 422 naming the field for a wrong type, a missing field or an unknown one (request types
/// deny unknown fields, so an `org_id` in a body is refused, never used).
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest {
                    code: "invalid_body",
                    message: e.body_text(),
                }
            }
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// Request bodies are JSON objects.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return Err(ApiError::validation("body", "must be a JSON object"));
        }
        _ => {
            return Err(ApiError::BadRequest {
                code: "invalid_json",
                message: "the body is not JSON".into(),
            });
        }
    }
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadRequest {
            code: "invalid_json",
            message: format!("malformed JSON: {e}"),
        })?;
    crate::storable::check_value("", &value)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // The path names the failing field (an unknown one included); at the top level the
        // path is "." and only the message names it.
        let field = if path == "." {
            message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("body")
                .to_owned()
        } else {
            path
        };
        ApiError::validation(field, message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u8,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        inner: Option<Inner>,
    }

    fn field(json: &str) -> String {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::Validation { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        }
    }

    #[test]
    fn an_unknown_field_is_named_once_with_its_path() {
        assert_eq!(field(r#"{"name":"a","org_id":"x"}"#), "org_id");
        assert_eq!(
            field(r#"{"name":"a","inner":{"x":1,"org_id":"x"}}"#),
            "inner.org_id"
        );
        assert_eq!(field(r#"{"name":7}"#), "name");
        assert_eq!(field(r#"{}"#), "body");
    }
}
