//! One trait for every voice platform. A platform is a front end: it says which clinic
//! integration holds its signing secret, how its requests are signed, and how to read them
//! into a [`VoiceEvent`]. Everything after that (resolving the clinic from the called number,
//! refusing, recording security events, applying events, answering the agent) is the same
//! code whatever the platform, so another platform (Retell, …) is one more implementation of
//! [`VoicePlatform`], not a rewrite.

use crate::signature::{twilio_verify, SignatureError};
use crate::vapi::{self, Kind, ToolCall};
use crate::vapi_auth::ServerAuth;
use chrono::{DateTime, Duration, Utc};
use http::HeaderMap;
use voxanne_domain::{CallStatus, IntegrationProvider};

/// A webhook request as received: what a platform signs is some part of it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The URL the platform called, as it sees it (scheme, host, path and query).
    pub url: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// Unix seconds now, for timestamp tolerances.
    pub now: i64,
}

impl Request<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What one request says, in Voxanne's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// The clinic's number on the call: the called number, or the caller for an outbound call.
    pub clinic_number: Option<String>,
    /// The other party's number.
    pub other_number: Option<String>,
    /// The platform's id of the call: the key that makes events idempotent.
    pub provider_call_id: String,
    pub inbound: bool,
    pub event: VoiceEvent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VoiceEvent {
    /// A call's progress, or its final report.
    Call(CallUpdate),
    /// How should this call be answered? (The reply is the clinic's assistant.)
    AssistantRequest,
    /// Functions the agent asks to run, in order.
    ToolCalls(Vec<ToolCall>),
    /// Where should this call be transferred? (The reply is the clinic's transfer number.)
    TransferDestination,
    /// A final line of the call's live transcript: `role` is `user` (the caller) or
    /// `assistant`.
    TranscriptLine { role: String, text: String },
    /// Understood, and nothing to do (a message type Voxanne does not use).
    Ignored(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CallUpdate {
    pub status: CallStatus,
    /// The end of the call: the one event allowed to settle its final status.
    pub is_final: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    pub ended_reason: Option<String>,
    /// An outbound call's outcome as the agent's analysis reported it.
    pub reported_outcome: Option<String>,
    pub recording_url: Option<String>,
}

impl CallUpdate {
    /// A progress event that says nothing but the status.
    pub fn status(status: CallStatus) -> Self {
        Self {
            status,
            is_final: false,
            started_at: None,
            ended_at: None,
            duration_seconds: None,
            transcript: None,
            summary: None,
            ended_reason: None,
            reported_outcome: None,
            recording_url: None,
        }
    }
}

/// A request that is not what the platform sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

pub trait VoicePlatform: Send + Sync {
    /// The platform's name, as stored with its calls (`calls.provider`).
    fn name(&self) -> &'static str;
    /// The clinic integration that holds the signing secret, and the secret's name in it.
    fn secret(&self) -> (IntegrationProvider, &'static str);
    /// Reads the request. Nothing here is trusted until [`VoicePlatform::verify`] passes with
    /// the secret of the clinic that owns `clinic_number`.
    fn parse(&self, request: &Request<'_>) -> Result<Inbound, Malformed>;
    /// Checks the request with the clinic's secret, in constant time, as the clinic's
    /// integration `config` says the platform authenticates (`{}`: the platform's default).
    fn verify(
        &self,
        config: &serde_json::Value,
        secret: &[u8],
        request: &Request<'_>,
    ) -> Result<(), SignatureError>;
}

/// Vapi server messages, authenticated as the clinic's Vapi credential does it (its
/// `server_auth`, [`ServerAuth`]: X-Vapi-Secret by default, bearer, or HMAC) with the
/// clinic's `webhook_secret` of `integrations/vapi`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Vapi;

impl VoicePlatform for Vapi {
    fn name(&self) -> &'static str {
        "vapi"
    }

    fn secret(&self) -> (IntegrationProvider, &'static str) {
        (IntegrationProvider::Vapi, "webhook_secret")
    }

    fn parse(&self, request: &Request<'_>) -> Result<Inbound, Malformed> {
        let m = vapi::parse(request.body).map_err(|e| Malformed(e.to_string()))?;
        let time = |t: &Option<String>| {
            t.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let update = |status, is_final| CallUpdate {
            status,
            is_final,
            started_at: time(&m.started_at),
            ended_at: time(&m.ended_at),
            // Vapi declares no duration on its reports (some carry `durationSeconds`): the
            // call lasted from `startedAt` to `endedAt`.
            duration_seconds: m
                .duration_seconds
                .or_else(|| {
                    let (started, ended) = (time(&m.started_at)?, time(&m.ended_at)?);
                    Some((ended - started).num_milliseconds() as f64 / 1000.0)
                })
                .map(|d| d.round().clamp(0.0, f64::from(i32::MAX)) as i32),
            transcript: m.transcript.clone(),
            summary: m.summary.clone(),
            ended_reason: m.ended_reason.clone(),
            reported_outcome: m.reported_outcome.clone(),
            recording_url: m.recording_url.clone(),
        };
        let event = match &m.kind {
            Kind::StatusUpdate { status } => match status.as_str() {
                "queued" => VoiceEvent::Call(update(CallStatus::Queued, false)),
                "ringing" => VoiceEvent::Call(update(CallStatus::Ringing, false)),
                "in-progress" | "forwarding" => {
                    VoiceEvent::Call(update(CallStatus::InProgress, false))
                }
                "ended" => VoiceEvent::Call(update(CallStatus::Completed, false)),
                other => VoiceEvent::Ignored(format!("status-update {other}")),
            },
            Kind::EndOfCallReport => {
                VoiceEvent::Call(update(final_status(m.ended_reason.as_deref()), true))
            }
            Kind::AssistantRequest => VoiceEvent::AssistantRequest,
            Kind::ToolCalls(calls) => VoiceEvent::ToolCalls(calls.clone()),
            Kind::TransferDestinationRequest => VoiceEvent::TransferDestination,
            Kind::Transcript {
                role,
                is_final: true,
                text,
            } => VoiceEvent::TranscriptLine {
                role: role.clone(),
                text: text.clone(),
            },
            Kind::Transcript { .. } => VoiceEvent::Ignored("transcript partial".into()),
            Kind::Other(kind) => VoiceEvent::Ignored(kind.clone()),
        };
        Ok(Inbound {
            clinic_number: m.clinic_number.clone(),
            other_number: m.customer_number.clone(),
            provider_call_id: m.call_id.clone(),
            inbound: m.inbound,
            event,
        })
    }

    fn verify(
        &self,
        config: &serde_json::Value,
        secret: &[u8],
        request: &Request<'_>,
    ) -> Result<(), SignatureError> {
        // Settings are checked when they are saved; a stored one that no longer reads (a
        // release that dropped a setting) refuses rather than guesses.
        let auth = ServerAuth::from_config(config).map_err(|_| SignatureError::Mismatch)?;
        auth.verify(secret, request)
    }
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

/// Twilio's form-encoded call status callbacks, signed `X-Twilio-Signature` (base64
/// HMAC-SHA1 of the URL and the sorted parameters) with the clinic's `auth_token` of
/// `integrations/twilio`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TwilioVoice;

/// The form parameters of a body, in order.
pub fn form_params(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The form parameters of a body, NUL characters removed: for reading a request whose
/// signature was checked over [`form_params`] (PostgreSQL cannot store a NUL in text).
pub fn form_params_text(body: &[u8]) -> Vec<(String, String)> {
    form_params(body)
        .into_iter()
        .map(|(name, value)| (name.replace('\0', ""), value.replace('\0', "")))
        .collect()
}

/// The first value of form parameter `name`; absent and empty are both `None`.
pub fn form_value<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

impl VoicePlatform for TwilioVoice {
    fn name(&self) -> &'static str {
        "twilio"
    }

    fn secret(&self) -> (IntegrationProvider, &'static str) {
        (IntegrationProvider::Twilio, "auth_token")
    }

    fn parse(&self, request: &Request<'_>) -> Result<Inbound, Malformed> {
        let params = form_params_text(request.body);
        let get = |name: &str| form_value(&params, name);
        let call_sid = get("CallSid")
            .ok_or_else(|| Malformed("no CallSid: not a Twilio call callback".into()))?;
        let inbound = get("Direction").is_none_or(|d| d == "inbound");
        let (clinic, other) = if inbound {
            (get("To"), get("From"))
        } else {
            (get("From"), get("To"))
        };
        let duration = get("CallDuration")
            .and_then(|d| d.parse::<i32>().ok())
            .filter(|d| *d >= 0);
        let status = get("CallStatus").unwrap_or_default();
        let event = match status {
            "queued" => VoiceEvent::Call(CallUpdate::status(CallStatus::Queued)),
            "ringing" => VoiceEvent::Call(CallUpdate::status(CallStatus::Ringing)),
            "in-progress" => VoiceEvent::Call(CallUpdate::status(CallStatus::InProgress)),
            "completed" | "busy" | "no-answer" | "canceled" | "failed" => {
                let ended_at = Utc::now();
                VoiceEvent::Call(CallUpdate {
                    status: match status {
                        "completed" => CallStatus::Completed,
                        "failed" => CallStatus::Failed,
                        _ => CallStatus::Missed,
                    },
                    is_final: true,
                    started_at: duration.map(|d| ended_at - Duration::seconds(i64::from(d))),
                    ended_at: Some(ended_at),
                    duration_seconds: duration,
                    recording_url: get("RecordingUrl").map(str::to_owned),
                    ..CallUpdate::status(CallStatus::Completed)
                })
            }
            other => VoiceEvent::Ignored(format!("CallStatus {other}")),
        };
        Ok(Inbound {
            clinic_number: clinic.map(str::to_owned),
            other_number: other.map(str::to_owned),
            provider_call_id: call_sid.to_owned(),
            inbound,
            event,
        })
    }

    fn verify(
        &self,
        _config: &serde_json::Value,
        secret: &[u8],
        request: &Request<'_>,
    ) -> Result<(), SignatureError> {
        twilio_verify(
            secret,
            request.url,
            &form_params(request.body),
            request.header("x-twilio-signature"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::twilio_sign;

    fn request<'a>(url: &'a str, headers: &'a HeaderMap, body: &'a [u8]) -> Request<'a> {
        Request {
            url,
            headers,
            body,
            now: 1_900_000_000,
        }
    }

    #[test]
    fn vapi_reads_and_verifies_its_messages() {
        let body = br#"{"message":{"type":"end-of-call-report","endedReason":"voicemail",
            "call":{"id":"c1"},"phoneNumber":{"number":"+14155550100"},"customer":{"number":"+14155551234"},
            "durationSeconds":12.6}}"#;
        let mut headers = HeaderMap::new();
        headers.insert("x-vapi-secret", "s3cret".parse().expect("header"));
        let r = request("http://x/webhooks/voice/vapi", &headers, body);
        let inbound = Vapi.parse(&r).expect("parses");
        assert_eq!(inbound.clinic_number.as_deref(), Some("+14155550100"));
        assert_eq!(inbound.provider_call_id, "c1");
        let VoiceEvent::Call(update) = inbound.event else {
            panic!("not a call event")
        };
        assert_eq!(
            (update.status, update.is_final, update.duration_seconds),
            (CallStatus::Voicemail, true, Some(13))
        );
        let none = serde_json::json!({});
        assert!(Vapi.verify(&none, b"s3cret", &r).is_ok());
        assert!(Vapi.verify(&none, b"other", &r).is_err());
        let bearer = serde_json::json!({"server_auth": {"type": "bearer"}});
        assert!(
            Vapi.verify(&bearer, b"s3cret", &r).is_err(),
            "the clinic's mode decides"
        );
        let broken = serde_json::json!({"server_auth": {"type": "md5"}});
        assert!(Vapi.verify(&broken, b"s3cret", &r).is_err());
    }

    #[test]
    fn twilio_reads_and_verifies_its_callbacks() {
        let body =
            b"CallSid=CA1&From=%2B14155551234&To=%2B14155550100&Direction=inbound&CallStatus=busy";
        let url = "https://example.com/webhooks/voice/twilio";
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-twilio-signature",
            twilio_sign(b"tok", url, &form_params(body))
                .parse()
                .expect("header"),
        );
        let r = request(url, &headers, body);
        let inbound = TwilioVoice.parse(&r).expect("parses");
        assert_eq!(
            (
                inbound.clinic_number.as_deref(),
                inbound.other_number.as_deref()
            ),
            (Some("+14155550100"), Some("+14155551234"))
        );
        assert!(matches!(
            inbound.event,
            VoiceEvent::Call(CallUpdate {
                status: CallStatus::Missed,
                is_final: true,
                ..
            })
        ));
        let none = serde_json::json!({});
        assert!(TwilioVoice.verify(&none, b"tok", &r).is_ok());
        assert!(TwilioVoice
            .verify(
                &none,
                b"tok",
                &request("https://example.com/other", &headers, body)
            )
            .is_err());
        assert!(TwilioVoice
            .parse(&request(url, &headers, b"From=x"))
            .is_err());
    }
}
