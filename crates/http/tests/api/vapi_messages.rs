//! Every server message Vapi sends, in the shape Vapi documents it (tests/fixtures/vapi,
//! transcribed from Vapi's OpenAPI `ServerMessage*` schemas and its server-events guide), gets
//! the answer Vapi expects: the assistant in `CreateAssistantDTO`'s shape, tool results with
//! `name` and `toolCallId`, a transfer destination, and 200 for everything Voxanne only
//! acknowledges, including a type no schema has yet.

use crate::support::*;
use serde_json::{json, Value};
use voxanne_db::demo::DemoClinic;

const A_SECRET: &str = "vapi-credential-clinic-a-0123456789";
const B_SECRET: &str = "vapi-credential-clinic-b-9876543210";
const CALLER: &str = "+14155557777";

async fn world() -> (TestApp, DemoClinic, DemoClinic) {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    app.set_vapi_secret(&a, A_SECRET).await;
    app.set_vapi_secret(&b, B_SECRET).await;
    (app, a, b)
}

fn message(name: &str, call: &str, to: &str, more: &[(&str, Value)]) -> Vec<u8> {
    let mut fill = vec![
        ("__CALL_ID__", json!(call)),
        ("__CLINIC_NUMBER__", json!(to)),
        ("__CALLER__", json!(CALLER)),
    ];
    fill.extend(more.iter().cloned());
    vapi_fixture(name, &fill)
}

async fn send(app: &TestApp, body: &[u8]) -> Response {
    app.post_vapi(body, Some((A_SECRET, chrono::Utc::now().timestamp())))
        .await
}

fn without_security_events(s: Vec<(String, Vec<Value>)>) -> Vec<(String, Vec<Value>)> {
    s.into_iter()
        .filter(|(t, _)| t != "security_events")
        .collect()
}

#[tokio::test]
async fn messages_voxanne_only_acknowledges_get_200_and_write_nothing() {
    let (app, a, _) = world().await;
    let before = without_security_events(app.snapshot(a.org).await);
    for name in [
        "conversation-update",
        "hang",
        "speech-update",
        "transcript",
        "transcript-final",
        "user-interrupted",
        "unknown-type",
    ] {
        let r = send(&app, &message(name, "vapi-info-1", a.number, &[])).await;
        assert_eq!(
            (r.status.as_u16(), &r.body),
            (200, &json!({"ok": true, "call_id": null})),
            "{name}"
        );
    }
    assert_eq!(without_security_events(app.snapshot(a.org).await), before);
    // Still verified first: unsigned, the same message is refused.
    let r = app
        .post_vapi(&message("hang", "vapi-info-1", a.number, &[]), None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn status_updates_and_the_report_settle_the_call_with_its_duration_and_presigned_recording() {
    let (app, a, _) = world().await;
    let call = "vapi-call-presigned";
    for name in ["status-update", "status-update-ended"] {
        let r = send(&app, &message(name, call, a.number, &[])).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
    let presigned = "https://clinic-bucket.s3.amazonaws.com/recordings/7d2e9f30.wav?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=0a1b2c";
    let r = send(
        &app,
        &message(
            "end-of-call-report-presigned",
            call,
            a.number,
            &[("__PRESIGNED_URL__", json!(presigned))],
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id: uuid::Uuid = r.body["call_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let shown = app
        .get_as(
            &format!("/api/v1/calls/{id}"),
            &app.token(a.owner, Some(a.org)),
        )
        .await;
    assert_eq!(shown.body["duration_seconds"], 42, "endedAt - startedAt");
    assert_eq!(shown.body["status"], "completed");
    assert_eq!(shown.body["summary"], "The caller did not speak.");
    let mut admin = app.t.admin().await;
    let url: Option<String> = sqlx::query_scalar("SELECT recording_url FROM calls WHERE id = $1")
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .expect("call");
    assert_eq!(
        url.as_deref(),
        Some(presigned),
        "the presigned URL is fetched"
    );
}

#[tokio::test]
async fn tool_calls_are_read_from_either_list_with_arguments_as_object_or_string() {
    let (app, a, _) = world().await;
    let args = json!({"date": "2031-03-03"});
    for (variant, arguments, keep) in [
        ("object, toolCallList", args.clone(), "both"),
        ("string, toolCallList", json!(args.to_string()), "both"),
        ("object, toolWithToolCallList only", args.clone(), "older"),
        (
            "string, toolWithToolCallList only",
            json!(args.to_string()),
            "older",
        ),
    ] {
        let body = message(
            "tool-calls",
            "vapi-tools",
            a.number,
            &[
                ("__TOOL_CALL_ID__", json!(format!("call_{variant}"))),
                ("__TOOL__", json!("check_availability")),
                ("__ARGUMENTS_OBJECT__", arguments),
            ],
        );
        let body = if keep == "older" {
            let mut m: Value = serde_json::from_slice(&body).expect("json");
            m["message"]
                .as_object_mut()
                .expect("message")
                .remove("toolCallList");
            m.to_string().into_bytes()
        } else {
            body
        };
        let r = send(&app, &body).await;
        assert_eq!(r.status, 200, "{variant}: {:?}", r.body);
        let result = &r.body["results"][0];
        assert_eq!(result["toolCallId"], format!("call_{variant}"), "{variant}");
        assert_eq!(
            result["name"], "check_availability",
            "Vapi requires the name"
        );
        let text = result["result"].as_str().expect("a string result");
        assert!(text.contains("Monday 3 March"), "{variant}: {text}");
        assert!(!text.contains('\n'), "one line, as Vapi requires: {text}");
    }
}

#[tokio::test]
async fn a_transfer_destination_request_gets_the_clinics_transfer_number_or_vapis_error() {
    let (app, a, _) = world().await;
    let owner = app.token(a.owner, Some(a.org));
    let config = |transfer: Value| {
        json!({"greeting": "Hello", "voice": "vapi:Savannah", "opening_hours": {}, "time_zone": "UTC",
               "transfer_number": transfer})
    };
    let r = app
        .put(
            "/api/v1/agent-configuration",
            &owner,
            &config(json!("+14155550199")),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ask = message(
        "transfer-destination-request",
        "vapi-transfer",
        a.number,
        &[],
    );
    let r = send(&app, &ask).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["destination"]["type"], "number");
    assert_eq!(r.body["destination"]["number"], "+14155550199");
    let r = app
        .put("/api/v1/agent-configuration", &owner, &config(Value::Null))
        .await;
    assert_eq!(r.status, 200);
    let r = send(&app, &ask).await;
    assert!(r.body["error"].is_string(), "{:?}", r.body);
    assert!(r.body.get("destination").is_none());
}

#[tokio::test]
async fn the_assistant_is_a_valid_vapi_assistant_pointing_back_here_with_the_clinics_credential() {
    let (app, a, _) = world().await;
    let owner = app.token(a.owner, Some(a.org));
    let r = app
        .put(
            "/api/v1/agent-configuration",
            &owner,
            &json!({"greeting": "Clinic A, Savannah speaking.", "voice": "savannah",
                    "opening_hours": {"mon": [["09:00", "17:00"]]}, "time_zone": "America/Los_Angeles",
                    "transfer_number": "+14155550199", "hipaa_enabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["voice"], "vapi:Savannah", "stored as Vapi spells it");

    // Before the clinic's Vapi credential is known, the number's server settings apply.
    let ask = message("assistant-request", "vapi-assistant", a.number, &[]);
    let r = send(&app, &ask).await;
    assert!(r.body["assistant"].get("server").is_none(), "{:?}", r.body);

    let r = app
        .put(
            "/api/v1/integrations/vapi",
            &owner,
            &json!({"config": {"server_auth": {"type": "hmac"}, "credential_id": "5f0e3a1c-2d4b-4c6e-8a9f-7b6c5d4e3f2a"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = send(&app, &ask).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let assistant = &r.body["assistant"];
    let server = json!({"url": format!("{}/webhooks/voice/vapi", app.base),
                        "credentialId": "5f0e3a1c-2d4b-4c6e-8a9f-7b6c5d4e3f2a"});
    assert_eq!(assistant["server"], server);
    assert_eq!(assistant["firstMessage"], "Clinic A, Savannah speaking.");
    assert_eq!(
        assistant["voice"],
        json!({"provider": "vapi", "voiceId": "Savannah"})
    );
    assert_eq!(assistant["compliancePlan"], json!({"hipaaEnabled": true}));
    assert_eq!(assistant["model"]["provider"], "openai");
    assert_eq!(assistant["model"]["messages"][0]["role"], "system");
    let tools = assistant["model"]["tools"].as_array().expect("tools");
    assert!(tools.contains(&json!({"type": "endCall"})));
    let transfer = tools
        .iter()
        .find(|t| t["type"] == "transferCall")
        .expect("transferCall");
    assert_eq!(
        (
            transfer["destinations"][0]["type"].as_str(),
            transfer["destinations"][0]["number"].as_str()
        ),
        (Some("number"), Some("+14155550199"))
    );
    for tool in tools.iter().filter(|t| t["type"] == "function") {
        let name = tool["function"]["name"].as_str().expect("name");
        // Vapi: a-z, A-Z, 0-9, `_` and `-`, at most 64.
        assert!(
            name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)),
            "{name}"
        );
        assert_eq!(tool["function"]["parameters"]["type"], "object", "{name}");
        assert!(
            tool["function"]["parameters"]["properties"].is_object(),
            "{name}"
        );
        assert_eq!(
            tool["server"], server,
            "{name} comes back here, authenticated"
        );
    }
    assert!(assistant.get("endCallFunctionEnabled").is_none());
}
