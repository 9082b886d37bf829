//! The Vapi server-message envelope: `{"message": {"type": …, "call": {…}, …}}`. Only what
//! Voxanne uses is read; everything else is ignored, so new fields never break a webhook.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `status-update`: `queued`, `ringing`, `in-progress`, `forwarding`, `ended`.
    StatusUpdate { status: String },
    /// `end-of-call-report`: the call is over and post-processing is done.
    EndOfCallReport,
    /// `assistant-request`: how should this call be answered?
    AssistantRequest,
    /// `tool-calls`: the agent asks for these functions to be run, in order.
    ToolCalls(Vec<ToolCall>),
    /// `transfer-destination-request`: a `transferCall` without a destination; where to?
    TransferDestinationRequest,
    /// `transcript` (also typed `transcript[transcriptType="final"]`): a line the transcriber
    /// heard, `partial` while it is being said, then `final`.
    Transcript {
        /// `user` (the caller) or `assistant`.
        role: String,
        is_final: bool,
        text: String,
    },
    /// Anything else (`conversation-update`, `speech-update`, …).
    Other(String),
}

/// One function call of a `tool-calls` message.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// The platform's id for this call: the reply names it, and a retry repeats it.
    pub id: String,
    pub name: String,
    /// The arguments object (`{}` when none were given). Arguments sent as a JSON string are
    /// parsed; anything that is not an object becomes `{}`.
    pub arguments: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub kind: Kind,
    /// The platform's call id.
    pub call_id: String,
    /// `true` for `inboundPhoneCall` (and when the type is missing).
    pub inbound: bool,
    /// The clinic's number (the platform's phone number on the call).
    pub clinic_number: Option<String>,
    /// The other party.
    pub customer_number: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_seconds: Option<f64>,
    pub ended_reason: Option<String>,
    pub transcript: Option<String>,
    pub summary: Option<String>,
    /// What the agent's call analysis says an outbound call came to
    /// (`analysis.structuredData.outcome`, asked for by a campaign call's `analysisPlan`).
    pub reported_outcome: Option<String>,
    pub recording_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Vapi server message: {0}")]
pub struct ParseError(pub &'static str);

/// The first string found at any of `paths` (each a list of keys from `root`).
fn text(root: &Value, paths: &[&[&str]]) -> Option<String> {
    paths.iter().find_map(|path| {
        path.iter()
            .try_fold(root, |v, key| v.get(*key))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
    })
}

/// The calls of a `tool-calls` message: `toolCallList` (`[{"id", "function": {"name",
/// "arguments"}}]`), or the older `toolWithToolCallList` (`[{"toolCall": {…}}]`).
fn tool_calls(m: &Value) -> Result<Vec<ToolCall>, ParseError> {
    let list: Vec<&Value> = match m.get("toolCallList").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => m
            .get("toolWithToolCallList")
            .and_then(Value::as_array)
            .ok_or(ParseError("a tool-calls message without `toolCallList`"))?
            .iter()
            .filter_map(|t| t.get("toolCall"))
            .collect(),
    };
    list.into_iter()
        .map(|call| {
            let id = text(call, &[&["id"]]).ok_or(ParseError("a tool call without `id`"))?;
            let name = text(call, &[&["function", "name"], &["name"]])
                .ok_or(ParseError("a tool call without `function.name`"))?;
            let arguments = match call
                .get("function")
                .and_then(|f| f.get("arguments"))
                .or_else(|| call.get("arguments"))
            {
                Some(Value::String(s)) => {
                    let mut parsed = serde_json::from_str(s).unwrap_or(Value::Null);
                    crate::strip_nul(&mut parsed);
                    parsed
                }
                Some(v) => v.clone(),
                None => Value::Null,
            };
            let arguments = if arguments.is_object() {
                arguments
            } else {
                Value::Object(Default::default())
            };
            Ok(ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

pub fn parse(body: &[u8]) -> Result<Message, ParseError> {
    let mut root: Value =
        serde_json::from_slice(body).map_err(|_| ParseError("the body is not JSON"))?;
    crate::strip_nul(&mut root);
    let m = root
        .get("message")
        .filter(|m| m.is_object())
        .ok_or(ParseError("no `message` object"))?;
    let kind = match m
        .get("type")
        .and_then(Value::as_str)
        .ok_or(ParseError("no `message.type`"))?
    {
        "status-update" => Kind::StatusUpdate {
            status: text(m, &[&["status"]])
                .ok_or(ParseError("a status-update without `status`"))?,
        },
        "end-of-call-report" => Kind::EndOfCallReport,
        "assistant-request" => Kind::AssistantRequest,
        "tool-calls" => Kind::ToolCalls(tool_calls(m)?),
        "transfer-destination-request" => Kind::TransferDestinationRequest,
        t if t == "transcript" || t.starts_with("transcript[") => {
            let role = text(m, &[&["role"]]).filter(|r| r == "user" || r == "assistant");
            let line = m
                .get("transcript")
                .and_then(Value::as_str)
                .map(str::to_owned);
            match (role, line) {
                (Some(role), Some(line)) => Kind::Transcript {
                    role,
                    is_final: text(m, &[&["transcriptType"]]).as_deref() == Some("final"),
                    text: line,
                },
                _ => Kind::Other("transcript".into()),
            }
        }
        other => Kind::Other(other.chars().take(100).collect()),
    };
    // Every message of a phone call names it; one Voxanne only acknowledges may not.
    let call_id = match (&kind, text(m, &[&["call", "id"]])) {
        (_, Some(id)) => id,
        (Kind::Other(_), None) => String::new(),
        (Kind::Transcript { .. }, None) => return Err(ParseError("no `message.call.id`")),
        (_, None) => return Err(ParseError("no `message.call.id`")),
    };
    let inbound = text(m, &[&["call", "type"]]).is_none_or(|t| t != "outboundPhoneCall");
    Ok(Message {
        kind,
        call_id,
        inbound,
        clinic_number: text(
            m,
            &[
                &["phoneNumber", "number"],
                &["call", "phoneNumber", "number"],
            ],
        ),
        customer_number: text(
            m,
            &[&["customer", "number"], &["call", "customer", "number"]],
        ),
        started_at: text(m, &[&["startedAt"], &["call", "startedAt"]]),
        ended_at: text(m, &[&["endedAt"], &["call", "endedAt"]]),
        duration_seconds: m.get("durationSeconds").and_then(Value::as_f64),
        ended_reason: text(m, &[&["endedReason"], &["call", "endedReason"]]),
        transcript: text(m, &[&["artifact", "transcript"], &["transcript"]]),
        summary: text(m, &[&["analysis", "summary"], &["summary"]]),
        reported_outcome: text(
            m,
            &[
                &["analysis", "structuredData", "outcome"],
                &["call", "analysis", "structuredData", "outcome"],
            ],
        ),
        recording_url: recording_url(m),
    })
}

/// The recording to download. A report may carry several (mono, stereo, Vapi's storage or the
/// clinic's own bucket): the first presigned one, which needs no credentials (Vapi's
/// `artifact.presignedMonoUrl` and `presignedStereoUrl` are), else the first, mono before
/// stereo.
fn recording_url(m: &Value) -> Option<String> {
    if let Some(url) = text(
        m,
        &[
            &["artifact", "presignedMonoUrl"],
            &["artifact", "presignedStereoUrl"],
        ],
    )
    .filter(|u| u.starts_with("https://"))
    {
        return Some(url);
    }
    const PATHS: [&[&str]; 6] = [
        &["artifact", "recordingUrl"],
        &["artifact", "recording", "mono", "combinedUrl"],
        &["recordingUrl"],
        &["artifact", "stereoRecordingUrl"],
        &["artifact", "recording", "stereoUrl"],
        &["stereoRecordingUrl"],
    ];
    let urls: Vec<String> = PATHS.iter().filter_map(|p| text(m, &[p])).collect();
    urls.iter()
        .find(|u| is_presigned(u))
        .or(urls.first())
        .cloned()
}

/// Whether `url` carries its own signature in its query: S3 (SigV4 and SigV2), Google Cloud
/// Storage, Azure SAS.
fn is_presigned(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let signed = url.query_pairs().any(|(k, _)| {
        ["x-amz-signature", "x-goog-signature"]
            .iter()
            .any(|name| k.eq_ignore_ascii_case(name))
            || k == "Signature"
            || k == "sig"
    });
    signed && url.scheme() == "https"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_end_of_call_report_in_either_layout() {
        let body = br#"{"message":{"type":"end-of-call-report","endedReason":"customer-ended-call",
            "call":{"id":"call-1","type":"inboundPhoneCall"},"phoneNumber":{"number":"+14155550100"},
            "customer":{"number":"+14155551234"},"startedAt":"2026-11-23T10:00:00Z","endedAt":"2026-11-23T10:02:00Z",
            "durationSeconds":120.4,"artifact":{"transcript":"Hi","recordingUrl":"https://rec.example/1.wav"},
            "analysis":{"summary":"Booked"},"unknownField":{"x":1}}}"#;
        let m = parse(body).expect("parses");
        assert_eq!(m.kind, Kind::EndOfCallReport);
        assert_eq!((m.call_id.as_str(), m.inbound), ("call-1", true));
        assert_eq!(m.clinic_number.as_deref(), Some("+14155550100"));
        assert_eq!(m.customer_number.as_deref(), Some("+14155551234"));
        assert_eq!(
            m.recording_url.as_deref(),
            Some("https://rec.example/1.wav")
        );
        assert_eq!(
            (m.transcript.as_deref(), m.summary.as_deref()),
            (Some("Hi"), Some("Booked"))
        );
        let flat = br#"{"message":{"type":"end-of-call-report","call":{"id":"c","type":"outboundPhoneCall",
            "phoneNumber":{"number":"+1"}},"transcript":"T","summary":"S","recordingUrl":"u"}}"#;
        let m = parse(flat).expect("parses");
        assert!(!m.inbound);
        assert_eq!(
            (
                m.transcript.as_deref(),
                m.recording_url.as_deref(),
                m.clinic_number.as_deref()
            ),
            (Some("T"), Some("u"), Some("+1"))
        );
    }

    #[test]
    fn a_presigned_recording_url_is_preferred_over_one_that_needs_credentials() {
        let presigned = "https://clinic-bucket.s3.amazonaws.com/call-1-mono.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=abc123";
        let body = format!(
            r#"{{"message":{{"type":"end-of-call-report","call":{{"id":"c"}},
            "artifact":{{"recordingUrl":"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            "recording":{{"mono":{{"combinedUrl":"https://storage.vapi.ai/c-mono.wav"}},"stereoUrl":"{presigned}"}}}}}}}}"#
        );
        let m = parse(body.as_bytes()).expect("parses");
        assert_eq!(m.recording_url.as_deref(), Some(presigned));
        // None presigned: the first, mono before stereo.
        let body = br#"{"message":{"type":"end-of-call-report","call":{"id":"c"},
            "artifact":{"stereoRecordingUrl":"https://storage.vapi.ai/c-stereo.wav",
            "recording":{"mono":{"combinedUrl":"https://storage.vapi.ai/c-mono.wav"}}}}}"#;
        let m = parse(body).expect("parses");
        assert_eq!(
            m.recording_url.as_deref(),
            Some("https://storage.vapi.ai/c-mono.wav")
        );
        for (url, signed) in [
            (presigned, true),
            (
                "https://b.storage.googleapis.com/o?X-Goog-Signature=1",
                true,
            ),
            (
                "https://a.blob.core.windows.net/c/o.wav?sv=2024&sig=x",
                true,
            ),
            ("http://bucket.s3.amazonaws.com/o?X-Amz-Signature=1", false),
            ("https://storage.vapi.ai/c.wav", false),
            ("https://x.example/o.wav?signature=x", false),
            ("not a url", false),
        ] {
            assert_eq!(is_presigned(url), signed, "{url}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_server_message() {
        for bad in [
            &b"nope"[..],
            br#"{}"#,
            br#"{"message":{}}"#,
            br#"{"message":{"type":"status-update","call":{"id":"c"}}}"#,
            br#"{"message":{"type":"end-of-call-report"}}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse(br#"{"message":{"type":"tool-calls","call":{"id":"c"}}}"#).is_err());
        let no_call = parse(br#"{"message":{"type":"hang"}}"#).expect("parses");
        assert_eq!(no_call.kind, Kind::Other("hang".into()));
        let other =
            parse(br#"{"message":{"type":"speech-update","call":{"id":"c"}}}"#).expect("parses");
        assert_eq!(other.kind, Kind::Other("speech-update".into()));
    }

    #[test]
    fn reads_tool_calls_in_either_layout() {
        let body = br#"{"message":{"type":"tool-calls","call":{"id":"c"},"toolCallList":[
            {"id":"t1","type":"function","function":{"name":"check_availability","arguments":{"date":"2031-03-03"}}},
            {"id":"t2","type":"function","function":{"name":"find_contact","arguments":"{\"phone\":\"+14155550123\"}"}},
            {"id":"t3","type":"function","function":{"name":"check_dnc"}}]}}"#;
        let m = parse(body).expect("parses");
        let Kind::ToolCalls(calls) = m.kind else {
            panic!("not tool calls: {:?}", m.kind)
        };
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[0].arguments["date"], "2031-03-03");
        assert_eq!(calls[1].arguments["phone"], "+14155550123");
        assert_eq!(
            (calls[2].id.as_str(), calls[2].name.as_str()),
            ("t3", "check_dnc")
        );
        assert!(calls[2].arguments.as_object().is_some_and(|o| o.is_empty()));
        let older = br#"{"message":{"type":"tool-calls","call":{"id":"c"},"toolWithToolCallList":[
            {"type":"function","function":{"name":"hold_slot"},"toolCall":{"id":"t9","function":{"name":"hold_slot","arguments":{"starts_at":"x"}}}}]}}"#;
        let Kind::ToolCalls(calls) = parse(older).expect("parses").kind else {
            panic!("not tool calls")
        };
        assert_eq!(
            (calls[0].id.as_str(), calls[0].name.as_str()),
            ("t9", "hold_slot")
        );
        assert_eq!(calls[0].arguments["starts_at"], "x");
        let m = parse(br#"{"message":{"type":"assistant-request","call":{"id":"c"}}}"#)
            .expect("parses");
        assert_eq!(m.kind, Kind::AssistantRequest);
    }
}
