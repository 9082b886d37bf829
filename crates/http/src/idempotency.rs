//! `Idempotency-Key` on the routes that create: the same key (per org) with the same request
//! replays the first response instead of doing the work again; with another request it is a
//! 422 `idempotency_key_reused`. Only successful responses are kept: a refused request
//! changed nothing, so its retry runs again.

use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use voxanne_db::idempotency::Claim;
use voxanne_db::TenantTx;

pub const HEADER: &str = "idempotency-key";
/// Set on a replayed response.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request's `Idempotency-Key`, if any: 1 to 200 visible ASCII characters.
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()))
            .map(|k| Self(Some(k.to_owned())))
            .ok_or_else(|| ApiError::BadRequest {
                code: "invalid_idempotency_key",
                message: "Idempotency-Key must be 1 to 200 visible ASCII characters".into(),
            })
    }
}

impl IdempotencyKey {
    /// Claims the key for `request` in `tx`. `Some(response)`: answer it and do nothing else.
    pub async fn claim(
        &self,
        tx: &mut TenantTx,
        request: &serde_json::Value,
    ) -> Result<Option<Response>, ApiError> {
        let Some(key) = &self.0 else {
            return Ok(None);
        };
        match tx.claim_idempotency_key(key, request).await? {
            Claim::New => Ok(None),
            Claim::Replay { status, body } => {
                let status = StatusCode::from_u16(status).map_err(ApiError::internal)?;
                let mut response = (status, Json(body)).into_response();
                response
                    .headers_mut()
                    .insert(REPLAYED, HeaderValue::from_static("true"));
                Ok(Some(response))
            }
            Claim::Reused => Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                message: "this Idempotency-Key was used with a different request".into(),
            }),
        }
    }

    /// Keeps the response for replays (before the transaction commits), and makes it.
    pub async fn respond(
        &self,
        tx: &mut TenantTx,
        status: StatusCode,
        body: &impl serde::Serialize,
    ) -> Result<Response, ApiError> {
        let body = serde_json::to_value(body).map_err(ApiError::internal)?;
        if let Some(key) = &self.0 {
            tx.record_response(key, status.as_u16(), &body).await?;
        }
        Ok((status, Json(body)).into_response())
    }
}
