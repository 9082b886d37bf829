//! Webhooks from the voice platforms. They carry no JWT: the clinic is the owner of the called
//! number, and the request must be signed with that clinic's own secret (docs/TENANCY.md section 5).
//! Anything else is refused before a row is written; a bad signature on a known number is a
//! security event for that clinic. Each platform is a `VoicePlatform` (crates/webhooks): it
//! reads and verifies its requests; `voice` below does the rest, the same for all of them.

use crate::error::ApiError;
use crate::security_log::Finding;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Serialize;
use voxanne_agent as agent;
use voxanne_db::call_events::CallEvent;
use voxanne_db::integrations::open_sealed;
use voxanne_db::messages::{InboundText, OptOutSource};
use voxanne_db::system::{webhook_credentials, DeniedKind};
use voxanne_db::{TenantError, TenantTx};
use voxanne_domain::messages::Intent;
use voxanne_domain::{CallDirection, IntegrationProvider, PhoneNumber};
use voxanne_webhooks::signature::SignatureError;
use voxanne_webhooks::voice::{
    form_params_text, form_value, Request, TwilioVoice, Vapi, VoiceEvent, VoicePlatform,
};

const VAPI_ROUTE: &str = "POST /webhooks/voice/vapi";
const TWILIO_ROUTE: &str = "POST /webhooks/voice/twilio";

/// A Vapi server message (the fields Voxanne reads; others are ignored): its schema is
/// `vapi_message_schema.rs`'s.
#[derive(Debug)]
pub struct VapiServerMessage;

impl utoipa::PartialSchema for VapiServerMessage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let mut schema = super::vapi_message_schema::server_message();
        if let utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Object(object)) =
            &mut schema
        {
            object.example = Some(serde_json::json!({"message": {"type": "end-of-call-report",
                "endedReason": "customer-ended-call",
                "call": {"id": "vapi-call-1", "type": "inboundPhoneCall"},
                "phoneNumber": {"number": "+14155550100"}, "customer": {"number": "+14155559876"},
                "startedAt": "2026-11-23T10:00:00Z", "endedAt": "2026-11-23T10:03:00Z",
                "durationSeconds": 180,
                "artifact": {"transcript": "I'd like a cleaning.",
                             "recordingUrl": "https://recordings.example/1.wav"},
                "analysis": {"summary": "Booked a cleaning."}}}));
        }
        schema
    }
}

impl utoipa::ToSchema for VapiServerMessage {}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookAck {
    pub ok: bool,
    /// The call the event was applied to; absent for message types that are not call events.
    pub call_id: Option<uuid::Uuid>,
}

/// Vapi server messages for a clinic's number, authenticated the way the clinic's Vapi
/// credential does it, with the clinic's `webhook_secret` (both set through
/// `PUT /api/v1/integrations/vapi`; `config.server_auth` chooses):
///
/// - `x-vapi-secret` (the default): `X-Vapi-Secret: <secret>`;
/// - `bearer`: `Authorization: Bearer <secret>`, or the header the clinic chose, with or
///   without the prefix;
/// - `hmac`: Vapi's HMAC credential: by default `x-timestamp` (Unix seconds) and
///   `x-signature`, the hex HMAC-SHA256 of `"{timestamp}.{raw body}"`, within five minutes;
///   algorithm, headers, payload format, encoding, prefix and window as configured.
///
/// - `status-update`, `end-of-call-report`: applied to the call (`WebhookAck`).
/// - `assistant-request`: answered with the clinic's assistant, `{"assistant": {…}}`
///   (greeting, voice, time zone, opening hours, transfer number, tools); a suspended
///   clinic's number gets an assistant that apologises and knows nothing of the clinic.
/// - `tool-calls`: each call run in the clinic, `{"results": [{"toolCallId", "result"}]}`.
#[utoipa::path(post, path = "/webhooks/voice/vapi", tag = "webhooks",
    params(
        ("X-Vapi-Secret" = Option<String>, Header, description = "the clinic's webhook secret (mode `x-vapi-secret`, the default)"),
        ("Authorization" = Option<String>, Header, description = "`Bearer <secret>` (mode `bearer`; the clinic may choose another header)"),
        ("x-signature" = Option<String>, Header, description = "mode `hmac`: the HMAC of the payload format (default hex HMAC-SHA256 of \"{timestamp}.{body}\"); the header name is the clinic's choice"),
        ("x-timestamp" = Option<String>, Header, description = "mode `hmac`: Unix seconds, signed; the header name is the clinic's choice"),
    ),
    request_body = VapiServerMessage,
    responses(
        (status = 200, description = "`WebhookAck` for call events; `{\"assistant\": …}` for assistant-request; `{\"results\": […]}` for tool-calls", body = WebhookAck),
        (status = 400, description = "`invalid_webhook`: not a server message", body = crate::openapi::ErrorBody),
        (status = 401, description = "`invalid_signature`: missing, wrong, another clinic's, replayed, or to a number no clinic owns", body = crate::openapi::ErrorBody),
        (status = 403, description = "`org_suspended`", body = crate::openapi::ErrorBody),
    ))]
pub async fn vapi(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    voice(&state, &Vapi, VAPI_ROUTE, &headers, &uri, &body).await
}

/// Twilio's call status callback (form-encoded; the fields Voxanne reads).
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = json!({"CallSid": "CA0123456789abcdef0123456789abcdef", "From": "+14155559876",
    "To": "+14155550100", "Direction": "inbound", "CallStatus": "completed", "CallDuration": "95"}))]
#[allow(non_snake_case, dead_code)]
pub struct TwilioStatusCallback {
    CallSid: String,
    From: String,
    To: String,
    /// `inbound`, `outbound-api` or `outbound-dial`.
    Direction: String,
    /// `queued`, `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, `canceled`, `failed`.
    CallStatus: String,
    CallDuration: Option<String>,
    RecordingUrl: Option<String>,
}

/// Twilio call status callbacks for a clinic's number, signed (`X-Twilio-Signature`) with the
/// clinic's own Twilio auth token (the `auth_token` secret of `integrations/twilio`). The
/// signed URL is this request's: behind a proxy, pass `Host` and `X-Forwarded-Proto` through.
#[utoipa::path(post, path = "/webhooks/voice/twilio", tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, with the clinic's auth token")),
    request_body(content = TwilioStatusCallback, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = WebhookAck),
        (status = 400, description = "`invalid_webhook`: no CallSid", body = crate::openapi::ErrorBody),
        (status = 401, description = "`invalid_signature`", body = crate::openapi::ErrorBody),
        (status = 403, description = "`org_suspended`", body = crate::openapi::ErrorBody),
    ))]
pub async fn twilio(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    voice(&state, &TwilioVoice, TWILIO_ROUTE, &headers, &uri, &body).await
}

/// The URL the platform called, as it signed it: this request's, with `Host` and
/// `X-Forwarded-Proto` as a proxy passes them through.
fn request_url(headers: &HeaderMap, uri: &Uri) -> String {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    format!(
        "{}://{}{}",
        header("x-forwarded-proto").unwrap_or("http"),
        header("host").unwrap_or_default(),
        uri.path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_else(|| uri.path())
    )
}

/// Every voice platform's webhook, once the platform has read the request: the clinic that
/// owns the number, proved by its own secret, then the event applied or answered in that
/// clinic only.
async fn voice(
    state: &AppState,
    platform: &dyn VoicePlatform,
    route: &str,
    headers: &HeaderMap,
    uri: &Uri,
    body: &[u8],
) -> Result<Response, ApiError> {
    let url = request_url(headers, uri);
    let request = Request {
        url: &url,
        headers,
        body,
        now: Utc::now().timestamp(),
    };
    let inbound = platform.parse(&request).map_err(|e| ApiError::BadRequest {
        code: "invalid_webhook",
        message: e.to_string(),
    })?;
    // A number that is not one names no clinic: it is verified like an unknown one.
    let number = inbound
        .clinic_number
        .as_deref()
        .and_then(|n| PhoneNumber::parse(n).ok());
    let (provider, secret_name) = platform.secret();
    let named = number.as_ref().map_or("", |n| n.as_str());
    let open = || {
        open_clinic(
            state,
            named,
            provider,
            secret_name,
            route,
            |config, secret| platform.verify(config, secret, &request),
        )
    };
    let ack = |call_id| Json(WebhookAck { ok: true, call_id }).into_response();
    match inbound.event {
        VoiceEvent::AssistantRequest => {
            let answer = async {
                match open().await {
                    // Nothing of a suspended clinic is read: the caller hears an apology.
                    Err(ApiError::OrgSuspended) => Ok(agent::unavailable_assistant()),
                    Err(e) => Err(e),
                    Ok(tx) => Ok(voice_agent(state)
                        .answer_assistant_request(tx, provider, Utc::now())
                        .await?),
                }
            };
            let reply = match tokio::time::timeout(agent::ASSISTANT_DEADLINE, answer).await {
                Ok(reply) => reply?,
                Err(_) => {
                    tracing::warn!(
                        number = named,
                        "assistant-request ran out of time; answering unavailable"
                    );
                    agent::unavailable_assistant()
                }
            };
            Ok(Json(reply).into_response())
        }
        VoiceEvent::ToolCalls(calls) => {
            let tx = match open().await {
                Err(ApiError::OrgSuspended) => {
                    return Ok(Json(agent::unavailable_results(&calls)).into_response())
                }
                other => other?,
            };
            let call = agent::CallContext {
                org: tx.org(),
                provider: platform.name(),
                provider_call_id: inbound.provider_call_id,
                clinic_number: verified_number(number)?,
                caller: inbound
                    .other_number
                    .as_deref()
                    .and_then(|n| PhoneNumber::parse(n).ok()),
                direction: if inbound.inbound {
                    CallDirection::Inbound
                } else {
                    CallDirection::Outbound
                },
            };
            // Verified: each tool runs in a transaction of its own.
            tx.commit().await?;
            let results = voice_agent(state).run_tool_calls(&call, &calls).await;
            for found in results.probes {
                let route = format!("POST /webhooks/voice/{} tool {}", call.provider, found.tool);
                state.security.report(Finding::Probe {
                    probe: found.probe,
                    route,
                });
            }
            Ok(Json(results.reply).into_response())
        }
        VoiceEvent::TransferDestination => {
            let reply = match open().await {
                Err(ApiError::OrgSuspended) => agent::no_transfer(),
                Err(e) => return Err(e),
                Ok(tx) => voice_agent(state).answer_transfer_request(tx).await?,
            };
            Ok(Json(reply).into_response())
        }
        VoiceEvent::TranscriptLine { role, text } => {
            let mut tx = open().await?;
            let org = tx.org();
            let call = tx
                .add_transcript_line(platform.name(), &inbound.provider_call_id, &role, &text)
                .await?;
            tx.commit().await?;
            if call.is_some() {
                state.live.changed(org);
            }
            Ok(ack(call.map(|c| c.as_uuid())))
        }
        VoiceEvent::Ignored(kind) => {
            open().await?.commit().await?;
            note_ignored(platform.name(), &kind);
            Ok(ack(None))
        }
        VoiceEvent::Call(update) => {
            let mut tx = open().await?;
            let number = verified_number(number)?;
            let other = inbound.other_number.unwrap_or_else(|| "unknown".to_owned());
            let (direction, from, to) = if inbound.inbound {
                (CallDirection::Inbound, other, number.to_string())
            } else {
                (CallDirection::Outbound, number.to_string(), other)
            };
            let provider_call_id: String = inbound.provider_call_id.chars().take(200).collect();
            let campaign_report = (update.is_final && !inbound.inbound)
                .then(|| (update.ended_reason.clone(), update.reported_outcome.clone()));
            let call_id = tx
                .apply_call_event(&CallEvent {
                    provider: platform.name(),
                    provider_call_id: provider_call_id.clone(),
                    direction,
                    status: update.status,
                    is_final_report: update.is_final,
                    from_number: from,
                    to_number: to,
                    started_at: update.started_at,
                    ended_at: update.ended_at,
                    duration_seconds: update.duration_seconds,
                    transcript: update.transcript,
                    summary: update.summary,
                    ended_reason: update.ended_reason,
                    recording_url: update.recording_url,
                })
                .await?;
            // An outbound call of a campaign: its attempt, its target and its lead learn
            // how it ended (nothing, for another outbound call).
            if let Some((ended_reason, reported)) = campaign_report {
                tx.campaign_call_ended(
                    &provider_call_id,
                    call_id.into(),
                    ended_reason.as_deref(),
                    reported.as_deref(),
                )
                .await?;
            }
            let org = tx.org();
            tx.commit().await?;
            state.live.changed(org);
            Ok(ack(Some(call_id)))
        }
    }
}

/// The voice agent, with what it needs of this server: the database and where the platform
/// reaches this server.
fn voice_agent(state: &AppState) -> agent::Agent {
    agent::Agent::new(state.db.clone(), state.vapi.webhook_url())
}

/// Logs, once per process, each kind of message that is acknowledged and not used, so that a
/// platform's new message type shows up in the log without a line per message. Returns
/// whether it logged.
fn note_ignored(platform: &str, kind: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let key = format!("{platform}:{kind}");
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let seen = seen.get_or_insert_with(HashSet::new);
    // Bounded: a platform cannot grow this with made-up types.
    let first = seen.len() < 200 && seen.insert(key);
    if first {
        tracing::info!(
            platform,
            kind,
            "acknowledged and not used (logged once per kind)"
        );
    }
    first
}

/// The one path every provider takes before anything is written: the request is verified
/// with the secret of the clinic that owns the called number (`secret_name` among its
/// `provider` integration's secrets), and only then is anything decided. An unknown number,
/// a clinic without that secret, a suspended clinic and a wrong signature do the same work
/// (one statement, one signature check) and, unsigned, get the same 401: an unsigned request
/// learns nothing of which numbers are a clinic's or how the clinic is set up. A refusal on a
/// clinic's number is recorded for that clinic, off the request path. Returns the clinic's
/// tenant transaction.
async fn open_clinic(
    state: &AppState,
    number: &str,
    provider: IntegrationProvider,
    secret_name: &str,
    route: &str,
    verify: impl FnOnce(&serde_json::Value, &[u8]) -> Result<(), SignatureError>,
) -> Result<TenantTx, ApiError> {
    if let Some(retry_after) = state.limits.webhooks.hit(&number.to_owned()) {
        return Err(ApiError::RateLimited {
            code: "too_many_webhooks",
            message: "too many webhook requests for this number; retry after the Retry-After \
                      seconds"
                .into(),
            retry_after,
        });
    }
    let found = webhook_credentials(&state.db, number, provider).await?;
    let secret = match (&found.org, &found.secrets) {
        (Some((org, _)), Some(sealed)) => open_sealed(sealed, &state.keyring, *org, provider)
            .map_err(|e| tracing::error!(error = %e, "a clinic's webhook secret cannot be opened"))
            .ok()
            .and_then(|mut secrets| secrets.remove(secret_name)),
        _ => None,
    };
    // Without a secret of the clinic's, the check runs against one no request can know, and
    // fails even if it matched.
    let checked = verify(
        &found.config,
        secret
            .as_ref()
            .map_or(unknowable_secret(), |s| s.expose_secret().as_bytes()),
    );
    let refusal = match (&checked, &secret) {
        (Ok(()), Some(_)) => None,
        (Err(e), _) => Some(e.to_string()),
        (Ok(()), None) => Some(SignatureError::Mismatch.to_string()),
    };
    let Some((org, active)) = found.org else {
        return Err(ApiError::InvalidSignature);
    };
    if let Some(reason) = refusal {
        let why = if secret.is_none() {
            format!("this clinic has no {provider} {secret_name}")
        } else {
            reason.clone()
        };
        state.security.report(Finding::Denied {
            org,
            user: None,
            kind: DeniedKind::InvalidWebhookSignature,
            route: route.to_owned(),
            detail: serde_json::json!({ "provider": provider.as_str(), "reason": why }),
        });
        return Err(ApiError::InvalidSignature);
    }
    if !active {
        return Err(ApiError::OrgSuspended);
    }
    let mut tx = state.db.job_tenant(org).await.map_err(|e| match e {
        TenantError::Suspended | TenantError::NotMember => ApiError::OrgSuspended,
        other => other.into(),
    })?;
    // The access log: the provider's webhook, by its route.
    tx.set_origin(route, None, None);
    Ok(tx)
}

/// The called number of a request that `open_clinic` verified (which a clinic owns, so it is
/// one).
fn verified_number(number: Option<PhoneNumber>) -> Result<PhoneNumber, ApiError> {
    number.ok_or(ApiError::InvalidSignature)
}

/// A secret of this process that no clinic has and no request can know.
fn unknowable_secret() -> &'static [u8] {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    SECRET.get_or_init(rand::random)
}

/// Twilio's message status callback (form-encoded; the fields Voxanne reads).
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = json!({"MessageSid": "SM0123456789abcdef0123456789abcdef", "MessageStatus": "delivered",
    "From": "+14155550100", "To": "+14155551001", "AccountSid": "AC0123456789abcdef0123456789abcdef"}))]
#[allow(non_snake_case, dead_code)]
pub struct TwilioMessageStatusCallback {
    MessageSid: String,
    /// `queued`, `sending`, `sent`, `delivered`, `undelivered`, `failed` (others are ignored).
    MessageStatus: String,
    /// The clinic's sending number: decides the clinic.
    From: String,
    To: String,
    AccountSid: String,
    /// Twilio's error code, for `undelivered` and `failed`.
    ErrorCode: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SmsStatusAck {
    pub ok: bool,
    /// Whether a message of the clinic moved: `false` for an unknown message id, a status that
    /// would move it backwards (a late `sent` after `delivered`; the first outcome wins), or a
    /// suppressed message.
    pub applied: bool,
}

/// Twilio's delivery-status callbacks for the SMS confirmations a clinic sent. The clinic is
/// the owner of `From` (its sending number), and `X-Twilio-Signature` must verify with its
/// own Twilio auth token over this request's URL (behind a proxy, pass `Host` and
/// `X-Forwarded-Proto` through). Statuses only move forward: queued < sending < sent <
/// delivered | undelivered | failed.
#[utoipa::path(post, path = "/webhooks/sms/twilio/status", tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, with the clinic's auth token")),
    request_body(content = TwilioMessageStatusCallback, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "verified; `applied` says whether a message moved (an unknown message id is not an error)", body = SmsStatusAck),
        (status = 400, description = "`invalid_webhook`: no MessageSid or MessageStatus", body = crate::openapi::ErrorBody),
        (status = 401, description = "`invalid_signature`: missing, wrong, or another clinic's", body = crate::openapi::ErrorBody),
        (status = 403, description = "`org_suspended`", body = crate::openapi::ErrorBody),
    ))]
pub async fn sms_twilio_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Json<SmsStatusAck>, ApiError> {
    let params = form_params_text(&body);
    let get = |name: &str| form_value(&params, name);
    let invalid = |message: &str| ApiError::BadRequest {
        code: "invalid_webhook",
        message: message.to_owned(),
    };
    let sid = get("MessageSid")
        .ok_or_else(|| invalid("no MessageSid: not a Twilio message status callback"))?
        .to_owned();
    let reported = get("MessageStatus")
        .ok_or_else(|| invalid("no MessageStatus"))?
        .to_owned();
    let number = get("From").and_then(|n| PhoneNumber::parse(n).ok());
    let url = request_url(&headers, &uri);
    let request = Request {
        url: &url,
        headers: &headers,
        body: &body,
        now: Utc::now().timestamp(),
    };
    // Signed exactly like Twilio's call callbacks, with the same clinic secret.
    let (provider, secret_name) = TwilioVoice.secret();
    let mut tx = open_clinic(
        &state,
        number.as_ref().map_or("", |n| n.as_str()),
        provider,
        secret_name,
        "POST /webhooks/sms/twilio/status",
        |config, token| TwilioVoice.verify(config, token, &request),
    )
    .await?;
    // The carrier says the recipient unsubscribed: the patient opts out with the clinic too.
    if get("ErrorCode") == Some(UNSUBSCRIBED_ERROR) {
        if let Some(patient) = get("To").and_then(|n| PhoneNumber::parse(n).ok()) {
            tx.opt_out(
                patient.as_str(),
                OptOutSource::Carrier,
                "Twilio error 21610: the recipient unsubscribed",
            )
            .await?;
        }
    }
    let applied = match voxanne_domain::SmsStatus::from_twilio(&reported) {
        Some(status) => {
            use voxanne_domain::SmsStatus::{Failed, Undelivered};
            let error = get("ErrorCode")
                .filter(|_| matches!(status, Failed | Undelivered))
                .map(|code| format!("the provider reported error {code}"));
            tx.apply_sms_status(&sid, status, error.as_deref()).await?
        }
        None => false,
    };
    tx.commit().await?;
    Ok(Json(SmsStatusAck { ok: true, applied }))
}

/// Twilio's error code for a recipient who unsubscribed (texted STOP to the sender).
const UNSUBSCRIBED_ERROR: &str = "21610";

/// Twilio's request for a text that reached a clinic's number (form-encoded; the fields
/// Voxanne reads, of those Twilio documents:
/// <https://www.twilio.com/docs/messaging/guides/webhook-request>).
#[derive(Debug, utoipa::ToSchema)]
#[schema(example = json!({"MessageSid": "SM0123456789abcdef0123456789abcdef",
    "SmsSid": "SM0123456789abcdef0123456789abcdef", "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "From": "+14155551001", "To": "+14155550100", "Body": "C", "NumMedia": "0", "NumSegments": "1",
    "SmsStatus": "received", "ApiVersion": "2010-04-01"}))]
#[allow(non_snake_case, dead_code)]
pub struct TwilioInboundMessage {
    /// One row per MessageSid: a retried request changes nothing and gets the same answer.
    MessageSid: String,
    /// The patient.
    From: String,
    /// The clinic's number: decides the clinic.
    To: String,
    Body: String,
    NumMedia: Option<String>,
    /// `STOP`, `START` or `HELP` when the clinic's Messaging Service has Advanced Opt-Out and
    /// the text matched one of its keywords.
    OptOutType: Option<String>,
}

/// Answers a text with TwiML: `<Response/>`, or one `<Message>` with `reply`.
fn twiml(reply: Option<&str>) -> Response {
    let body = match reply {
        None => r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#.to_owned(),
        Some(text) => format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Message>{}</Message></Response>"#,
            xml_escape(text)
        ),
    };
    (
        [(axum::http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and line breaks are not XML.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// Texts to a clinic's number (set it as the number's "A message comes in" webhook). The
/// clinic is the owner of `To`, and `X-Twilio-Signature` must verify with its own Twilio auth
/// token over this request's URL. Idempotent by `MessageSid`.
///
/// - `STOP`, `STOPALL`, `UNSUBSCRIBE`, `CANCEL`, `END`, `QUIT`, `REVOKE`, `OPTOUT`: the number
///   goes on the clinic's do-not-call list, with a consent record; nothing is answered (the
///   carrier confirms the opt-out and refuses anything more).
/// - `START`, `UNSTOP` (and `YES` from an opted-out number): back in, if the clinic's staff did
///   not list the number themselves.
/// - `HELP`, `INFO`: the clinic's help text.
/// - `C` / `R` (`CONFIRM`, `YES` / `RESCHEDULE`): confirms, or asks to reschedule, the
///   appointment of the patient's latest confirmation or reminder from this clinic; answered.
/// - Anything else: open in the clinic's inbox.
#[utoipa::path(post, path = "/webhooks/sms/twilio", tag = "webhooks",
    params(("X-Twilio-Signature" = String, Header, description = "base64 HMAC-SHA1 of the URL and the sorted parameters, with the clinic's auth token")),
    request_body(content = TwilioInboundMessage, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "TwiML (`text/xml`): `<Response/>`, or a `<Message>` answering the patient", content_type = "text/xml", body = String),
        (status = 400, description = "`invalid_webhook`: no MessageSid or From", body = crate::openapi::ErrorBody),
        (status = 401, description = "`invalid_signature`: missing, wrong, another clinic's, or to a number no clinic owns", body = crate::openapi::ErrorBody),
        (status = 403, description = "`org_suspended`", body = crate::openapi::ErrorBody),
    ))]
pub async fn sms_twilio_inbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = form_params_text(&body);
    let get = |name: &str| form_value(&params, name);
    let invalid = |message: &str| ApiError::BadRequest {
        code: "invalid_webhook",
        message: message.to_owned(),
    };
    let sid = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .ok_or_else(|| invalid("no MessageSid: not a Twilio incoming message"))?
        .to_owned();
    let from = get("From")
        .and_then(|n| PhoneNumber::parse(n).ok())
        .ok_or_else(|| invalid("From is not a phone number"))?;
    let number = get("To").and_then(|n| PhoneNumber::parse(n).ok());
    let url = request_url(&headers, &uri);
    let request = Request {
        url: &url,
        headers: &headers,
        body: &body,
        now: Utc::now().timestamp(),
    };
    let (provider, secret_name) = TwilioVoice.secret();
    let mut tx = open_clinic(
        &state,
        number.as_ref().map_or("", |n| n.as_str()),
        provider,
        secret_name,
        "POST /webhooks/sms/twilio",
        |config, token| TwilioVoice.verify(config, token, &request),
    )
    .await?;
    let to = verified_number(number)?;
    let mut text = get("Body").unwrap_or_default().to_owned();
    let media: u32 = get("NumMedia").and_then(|n| n.parse().ok()).unwrap_or(0);
    if media > 0 {
        text = format!("{text} [{media} attachment(s) not kept]")
            .trim()
            .to_owned();
    }
    let provider_intent = match get("OptOutType").map(str::to_ascii_uppercase).as_deref() {
        Some("STOP") => Some(Intent::OptOut),
        Some("START") => Some(Intent::OptIn),
        Some("HELP") => Some(Intent::Help),
        _ => None,
    };
    let outcome = tx
        .receive_text(&InboundText {
            provider_message_id: &sid,
            from: from.as_str(),
            to: to.as_str(),
            body: &text,
            provider_intent,
        })
        .await?;
    tx.commit().await?;
    if !outcome.repeated {
        tracing::info!(kind = outcome.kind.as_str(), "inbound text");
    }
    Ok(twiml(outcome.reply.as_deref()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn twiml_escapes_what_xml_needs() {
        assert_eq!(
            super::xml_escape("Dr <Lee> & \"Sons\" 'n'\u{7}"),
            "Dr &lt;Lee&gt; &amp; &quot;Sons&quot; &apos;n&apos;"
        );
    }

    #[test]
    fn each_ignored_kind_is_logged_once_and_the_set_stays_bounded() {
        assert!(super::note_ignored("test", "speech-update"));
        assert!(!super::note_ignored("test", "speech-update"));
        assert!(super::note_ignored("test", "hang"));
        for i in 0..500 {
            super::note_ignored("flood", &format!("made-up-{i}"));
        }
        assert!(!super::note_ignored("test", "after-the-flood"), "bounded");
    }
}
