//! Webhooks from the voice platform. They carry no JWT: the clinic is the owner of the called
//! number, and the request must be signed with that clinic's own secret (TENANCY.md section 5).
//! Anything else is refused before a row is written; a bad signature on a known number is a
//! security event for that clinic.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Serialize;
use voxanne_db::call_events::CallEvent;
use voxanne_db::system::{org_for_number, record_denied, DeniedKind};
use voxanne_db::TenantError;
use voxanne_domain::{CallDirection, CallStatus, IntegrationProvider, OrgId, PhoneNumber};
use voxanne_webhooks::signature::timestamped_verify;
use voxanne_webhooks::vapi::{self, Kind};

/// Signed requests older (or newer) than this are refused as replays.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// The secret's name in the clinic's `integrations/vapi` secrets.
pub const WEBHOOK_SECRET: &str = "webhook_secret";
const ROUTE: &str = "POST /webhooks/voice/vapi";

/// A Vapi server message (the fields Voxanne reads; others are ignored).
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = json!({"message": {"type": "end-of-call-report", "endedReason": "customer-ended-call",
    "call": {"id": "vapi-call-1", "type": "inboundPhoneCall"},
    "phoneNumber": {"number": "+14155550100"}, "customer": {"number": "+14155559876"},
    "startedAt": "2026-11-23T10:00:00Z", "endedAt": "2026-11-23T10:03:00Z", "durationSeconds": 180,
    "artifact": {"transcript": "I'd like a cleaning.", "recordingUrl": "https://recordings.example/1.wav"},
    "analysis": {"summary": "Booked a cleaning."}}}))]
pub struct VapiServerMessage {
    #[schema(value_type = Object)]
    pub message: serde_json::Value,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAck {
    pub ok: bool,
    /// The call the event was applied to; absent for message types that are not call events.
    pub call_id: Option<uuid::Uuid>,
}

/// Vapi server messages (`status-update`, `end-of-call-report`) for a clinic's number, signed
/// with the clinic's `webhook_secret` (set through `PUT /api/v1/integrations/vapi`):
/// `X-Vapi-Timestamp` (Unix seconds) and `X-Vapi-Signature` (hex HMAC-SHA256 of
/// `"{timestamp}.{raw body}"`), within five minutes.
#[utoipa::path(post, path = "/webhooks/voice/vapi", tag = "webhooks",
    params(
        ("X-Vapi-Timestamp" = String, Header, description = "Unix seconds, signed"),
        ("X-Vapi-Signature" = String, Header, description = "hex HMAC-SHA256 of \"{timestamp}.{body}\" with the clinic's webhook secret"),
    ),
    request_body = VapiServerMessage,
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "`invalid_webhook`: not a server message", body = crate::openapi::ErrorBody),
        (status = 401, description = "`invalid_signature`: missing, wrong, another clinic's, or replayed", body = crate::openapi::ErrorBody),
        (status = 403, description = "`org_suspended`", body = crate::openapi::ErrorBody),
        (status = 404, description = "`unknown_number`: no clinic owns the called number", body = crate::openapi::ErrorBody),
    ))]
pub async fn vapi(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookAck>, ApiError> {
    let message = vapi::parse(&body).map_err(|e| ApiError::BadRequest {
        code: "invalid_webhook",
        message: e.to_string(),
    })?;
    let number = message
        .clinic_number
        .as_deref()
        .and_then(|n| PhoneNumber::parse(n).ok())
        .ok_or(ApiError::UnknownNumber)?;
    let (org, active) = org_for_number(&state.db, &number)
        .await?
        .ok_or(ApiError::UnknownNumber)?;
    if !active {
        return Err(ApiError::OrgSuspended);
    }
    let mut tx = state.db.job_tenant(org).await.map_err(|e| match e {
        TenantError::Suspended | TenantError::NotMember => ApiError::OrgSuspended,
        TenantError::Db(e) => e.into(),
    })?;
    let secret = tx
        .get_integration(IntegrationProvider::Vapi)
        .await?
        .map(|i| i.open_secrets(&state.keyring, org))
        .transpose()
        .map_err(ApiError::internal)?
        .and_then(|mut secrets| secrets.remove(WEBHOOK_SECRET));
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let verified = match &secret {
        None => Err("this clinic has no vapi webhook secret".to_owned()),
        Some(secret) => timestamped_verify(
            secret.expose_secret().as_bytes(),
            header("x-vapi-timestamp"),
            header("x-vapi-signature"),
            &body,
            Utc::now().timestamp(),
            SIGNATURE_TOLERANCE_SECONDS,
        )
        .map_err(|e| e.to_string()),
    };
    if let Err(reason) = verified {
        drop(tx);
        refuse(&state, org, &reason).await;
        return Err(ApiError::InvalidSignature(reason));
    }

    let status = match &message.kind {
        Kind::StatusUpdate { status } => match status.as_str() {
            "queued" => Some(CallStatus::Queued),
            "ringing" => Some(CallStatus::Ringing),
            "in-progress" | "forwarding" => Some(CallStatus::InProgress),
            "ended" => Some(CallStatus::Completed),
            _ => None,
        },
        Kind::EndOfCallReport => Some(final_status(message.ended_reason.as_deref())),
        Kind::Other(_) => None,
    };
    let Some(status) = status else {
        tx.commit().await?;
        return Ok(Json(WebhookAck {
            ok: true,
            call_id: None,
        }));
    };
    let customer = message
        .customer_number
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    let (direction, from, to) = if message.inbound {
        (CallDirection::Inbound, customer, number.to_string())
    } else {
        (CallDirection::Outbound, number.to_string(), customer)
    };
    let time = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let call_id = tx
        .apply_call_event(&CallEvent {
            provider: "vapi",
            provider_call_id: message.call_id.chars().take(200).collect(),
            direction,
            status,
            is_final_report: matches!(message.kind, Kind::EndOfCallReport),
            from_number: from,
            to_number: to,
            started_at: time(&message.started_at),
            ended_at: time(&message.ended_at),
            duration_seconds: message
                .duration_seconds
                .map(|d| d.round().clamp(0.0, i32::MAX as f64) as i32),
            transcript: message.transcript,
            summary: message.summary,
            ended_reason: message.ended_reason,
            recording_url: message.recording_url,
        })
        .await?;
    tx.commit().await?;
    Ok(Json(WebhookAck {
        ok: true,
        call_id: Some(call_id),
    }))
}

/// A finished call's status, from the platform's ended reason.
fn final_status(ended_reason: Option<&str>) -> CallStatus {
    match ended_reason.unwrap_or_default() {
        r if r.contains("voicemail") => CallStatus::Voicemail,
        r if r.contains("did-not-answer") || r.contains("no-answer") || r.contains("busy") => {
            CallStatus::Missed
        }
        r if r.contains("error") || r.contains("failed") => CallStatus::Failed,
        _ => CallStatus::Completed,
    }
}

async fn refuse(state: &AppState, org: OrgId, reason: &str) {
    let detail = serde_json::json!({ "provider": "vapi", "reason": reason });
    if let Err(e) = record_denied(
        &state.db,
        org,
        None,
        DeniedKind::InvalidWebhookSignature,
        ROUTE,
        detail,
    )
    .await
    {
        tracing::warn!(error = %e, "recording a security event failed");
    }
}
