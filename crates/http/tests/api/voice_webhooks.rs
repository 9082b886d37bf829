//! Voice-platform webhooks: the clinic is whoever owns the called number and signed with its
//! own secret; everything else is refused before a row is written.

use crate::support::*;
use serde_json::{json, Value};
use voxanne_db::demo::DemoClinic;

const A_SECRET: &str = "whsec-clinic-a-0123456789";
const B_SECRET: &str = "whsec-clinic-b-9876543210";

async fn world() -> (TestApp, DemoClinic, DemoClinic) {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    app.set_vapi_secret(&a, A_SECRET).await;
    app.set_vapi_secret(&b, B_SECRET).await;
    (app, a, b)
}

/// POSTs `body` signed with `secret` at `timestamp` (None: unsigned).
async fn post(app: &TestApp, body: &[u8], signed: Option<(&str, i64)>) -> Response {
    app.post_vapi(body, signed).await
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn status_update(call: &str, to: &str, status: &str) -> Vec<u8> {
    json!({"message": {"type": "status-update", "status": status,
        "call": {"id": call, "type": "inboundPhoneCall"},
        "phoneNumber": {"number": to}, "customer": {"number": "+14155559876"}}})
    .to_string()
    .into_bytes()
}

fn end_of_call(call: &str, to: &str) -> Vec<u8> {
    json!({"message": {"type": "end-of-call-report", "endedReason": "customer-ended-call",
        "call": {"id": call, "type": "inboundPhoneCall"},
        "phoneNumber": {"number": to}, "customer": {"number": "+14155559876"},
        "startedAt": "2026-11-23T10:00:00Z", "endedAt": "2026-11-23T10:03:00Z", "durationSeconds": 180.2,
        "artifact": {"transcript": "I'd like a cleaning next week.", "recordingUrl": "https://recordings.vapi.example/abc.wav"},
        "analysis": {"summary": "Caller booked a cleaning."}}})
    .to_string()
    .into_bytes()
}

async fn calls_of(app: &TestApp, clinic: &DemoClinic) -> Vec<Value> {
    let r = app
        .get_as(
            "/api/v1/calls?limit=100",
            &app.token(clinic.owner, Some(clinic.org)),
        )
        .await;
    r.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_signed_call_to_clinic_as_number_lands_in_clinic_a_only() {
    let (app, a, b) = world().await;
    let before_b = calls_of(&app, &b).await.len();

    let r = post(
        &app,
        &status_update("vapi-call-1", a.number, "in-progress"),
        Some((A_SECRET, now())),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = post(
        &app,
        &end_of_call("vapi-call-1", a.number),
        Some((A_SECRET, now())),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["call_id"].as_str().expect("call id").to_owned();

    let call = app
        .get_as(
            &format!("/api/v1/calls/{id}"),
            &app.token(a.staff, Some(a.org)),
        )
        .await;
    assert_eq!(call.status, 200);
    assert_eq!(call.body["status"], "completed");
    assert_eq!(call.body["direction"], "inbound");
    assert_eq!(
        (
            call.body["from_number"].as_str(),
            call.body["to_number"].as_str()
        ),
        (Some("+14155559876"), Some(a.number))
    );
    assert_eq!(call.body["transcript"], "I'd like a cleaning next week.");
    assert_eq!(call.body["summary"], "Caller booked a cleaning.");
    assert_eq!(call.body["duration_seconds"], 180);
    assert_eq!(
        call.body["recording_status"], "queued",
        "the recording goes to the pipeline"
    );
    assert_eq!(
        calls_of(&app, &b).await.len(),
        before_b,
        "Clinic B sees none of it"
    );
    assert_eq!(
        app.get_as(
            &format!("/api/v1/calls/{id}"),
            &app.token(b.owner, Some(b.org))
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn unsigned_wrongly_signed_replayed_tampered_or_unknown_webhooks_write_nothing() {
    let (app, a, b) = world().await;
    let before_a = app.snapshot(a.org).await;
    let before_b = app.snapshot(b.org).await;
    let body = end_of_call("vapi-attack", a.number);

    let mut tampered = body.clone();
    let at = tampered
        .iter()
        .position(|c| *c == b'3')
        .expect("a digit to change");
    tampered[at] = b'4';

    let cases: Vec<(&str, Response)> = vec![
        ("unsigned", post(&app, &body, None).await),
        (
            "wrong secret",
            post(&app, &body, Some(("not-the-secret", now()))).await,
        ),
        (
            "clinic B's secret on clinic A's number",
            post(&app, &body, Some((B_SECRET, now()))).await,
        ),
        (
            "replayed",
            post(&app, &body, Some((A_SECRET, now() - 3600))).await,
        ),
        (
            "tampered",
            app.post_vapi_with(&tampered, &vapi_hmac_headers(A_SECRET, now(), &body))
                .await,
        ),
    ];
    for (what, r) in &cases {
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (401, "invalid_signature"),
            "{what}: {:?}",
            r.body
        );
    }
    let unknown = post(
        &app,
        &end_of_call("vapi-attack", "+15005550006"),
        Some((A_SECRET, now())),
    )
    .await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.code()),
        (401, "invalid_signature")
    );
    let garbage = post(&app, b"{\"not\": \"vapi\"}", Some((A_SECRET, now()))).await;
    assert_eq!(
        (garbage.status.as_u16(), garbage.code()),
        (400, "invalid_webhook")
    );

    // No call, no anything, in either clinic; only the security events of clinic A.
    let without_events = |s: Vec<(String, Vec<Value>)>| {
        s.into_iter()
            .filter(|(t, _)| t != "security_events")
            .collect::<Vec<_>>()
    };
    assert_eq!(
        without_events(app.snapshot(a.org).await),
        without_events(before_a)
    );
    assert_eq!(app.snapshot(b.org).await, before_b);
    let events = app.security_events(&a).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["invalid_webhook_signature"; 5],
        "one per refused request to clinic A's number"
    );
}

#[tokio::test]
async fn retried_and_reordered_events_keep_one_call_and_its_final_state() {
    let (app, a, _) = world().await;
    let before = calls_of(&app, &a).await.len();
    let report = end_of_call("vapi-call-2", a.number);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = post(&app, &report, Some((A_SECRET, now()))).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        ids.push(r.body["call_id"].clone());
    }
    // A late status-update must not move the ended call back to in progress.
    let late = post(
        &app,
        &status_update("vapi-call-2", a.number, "in-progress"),
        Some((A_SECRET, now())),
    )
    .await;
    assert_eq!(late.status, 200);
    ids.push(late.body["call_id"].clone());
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "one call: {ids:?}");

    let calls = calls_of(&app, &a).await;
    assert_eq!(calls.len(), before + 1);
    let call = calls.iter().find(|c| c["id"] == ids[0]).expect("the call");
    assert_eq!(call["status"], "completed");
    assert_eq!(call["recording_status"], "queued");
}

#[tokio::test]
async fn a_suspended_clinics_number_writes_nothing() {
    let (app, a, _) = world().await;
    let mut admin = app.t.admin().await;
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    let before = app.snapshot(a.org).await;
    let r = post(
        &app,
        &end_of_call("vapi-call-3", a.number),
        Some((A_SECRET, now())),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "org_suspended"));
    assert_eq!(app.snapshot(a.org).await, before);
}

async fn set_twilio_token(app: &TestApp, clinic: &DemoClinic, token: &str) {
    let r = app
        .put(
            "/api/v1/integrations/twilio",
            &app.token(clinic.owner, Some(clinic.org)),
            &json!({"config": {"account_sid": "AC0123"}, "secrets": {"auth_token": token}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// POSTs a form-encoded Twilio callback signed with `token` over this server's URL.
async fn twilio_post(app: &TestApp, params: &[(&str, &str)], token: Option<&str>) -> Response {
    let url = format!("{}/webhooks/voice/twilio", app.base);
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut request = app.client.post(&url).form(&owned);
    if let Some(token) = token {
        request = request.header(
            "x-twilio-signature",
            voxanne_webhooks::signature::twilio_sign(token.as_bytes(), &url, &owned),
        );
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    Response {
        status,
        body: response.json().await.unwrap_or(Value::Null),
    }
}

#[tokio::test]
async fn twilio_status_callbacks_signed_with_the_clinics_auth_token_are_applied_once() {
    let (app, a, b) = world().await;
    set_twilio_token(&app, &a, "twilio-token-a").await;
    set_twilio_token(&app, &b, "twilio-token-b").await;
    let completed = [
        ("CallSid", "CAabc123"),
        ("From", "+14155559876"),
        ("To", a.number),
        ("Direction", "inbound"),
        ("CallStatus", "completed"),
        ("CallDuration", "95"),
    ];
    let ringing = [
        ("CallSid", "CAabc123"),
        ("From", "+14155559876"),
        ("To", a.number),
        ("Direction", "inbound"),
        ("CallStatus", "ringing"),
    ];

    let first = twilio_post(&app, &completed, Some("twilio-token-a")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = twilio_post(&app, &completed, Some("twilio-token-a")).await;
    let late = twilio_post(&app, &ringing, Some("twilio-token-a")).await;
    assert_eq!(
        (again.body["call_id"].clone(), late.body["call_id"].clone()),
        (first.body["call_id"].clone(), first.body["call_id"].clone())
    );
    let id = first.body["call_id"].as_str().expect("id");
    let call = app
        .get_as(
            &format!("/api/v1/calls/{id}"),
            &app.token(a.owner, Some(a.org)),
        )
        .await;
    assert_eq!(
        (
            call.body["status"].as_str(),
            call.body["duration_seconds"].as_i64()
        ),
        (Some("completed"), Some(95))
    );

    let before = app.snapshot(a.org).await;
    let without_events = |s: Vec<(String, Vec<Value>)>| {
        s.into_iter()
            .filter(|(t, _)| t != "security_events")
            .collect::<Vec<_>>()
    };
    let mut forged = completed;
    forged[0] = ("CallSid", "CAforged");
    for (what, token) in [
        ("unsigned", None),
        ("clinic B's token", Some("twilio-token-b")),
        ("wrong token", Some("nope")),
    ] {
        let r = twilio_post(&app, &forged, token).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (401, "invalid_signature"),
            "{what}"
        );
    }
    assert_eq!(
        without_events(app.snapshot(a.org).await),
        without_events(before)
    );
    let unknown = twilio_post(
        &app,
        &[
            ("CallSid", "CAx"),
            ("To", "+15005550006"),
            ("From", "+1415"),
            ("CallStatus", "completed"),
        ],
        Some("twilio-token-a"),
    )
    .await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.code()),
        (401, "invalid_signature")
    );
}

#[tokio::test]
async fn an_unsigned_webhook_learns_nothing_of_which_numbers_are_a_clinics_or_how_it_is_set_up() {
    let (app, a, b) = world().await;
    // A clinic with a number but no Vapi secret, and a suspended one.
    let c_number = "+14155550177";
    let r = app
        .post(
            "/api/v1/phone-numbers",
            &app.token(b.owner, Some(b.org)),
            &json!({"number": c_number}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let mut admin = app.t.admin().await;
    sqlx::query("DELETE FROM integration_settings WHERE org_id = $1 AND provider = 'vapi'")
        .bind(b.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("no vapi secret for B");
    let suspended = "+14155550178";
    let r = app
        .post(
            "/api/v1/phone-numbers",
            &app.token(a.owner, Some(a.org)),
            &json!({"number": suspended}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let answers = |to: &'static str| {
        let app = &app;
        async move {
            let mut seen = Vec::new();
            for message in [
                status_update("vapi-probe", to, "in-progress"),
                end_of_call("vapi-probe", to),
                json!({"message": {"type": "assistant-request", "call": {"id": "vapi-probe"},
                    "phoneNumber": {"number": to}, "customer": {"number": "+14155559876"}}})
                .to_string()
                .into_bytes(),
            ] {
                for signed in [None, Some(("guessed-secret", now()))] {
                    let r = post(app, &message, signed).await;
                    seen.push((r.status.as_u16(), r.body));
                }
            }
            seen
        }
    };
    let unknown = answers("+15005550006").await;
    assert!(
        unknown.iter().all(|(status, _)| *status == 401),
        "{unknown:?}"
    );
    assert_eq!(answers(a.number).await, unknown, "a clinic's number");
    assert_eq!(
        answers(c_number).await,
        unknown,
        "a clinic without the secret"
    );
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend A");
    assert_eq!(answers(suspended).await, unknown, "a suspended clinic");
    assert_eq!(answers("not a number").await, unknown, "not a number");
}

#[tokio::test]
async fn a_signed_report_with_nul_characters_is_stored_without_them() {
    let (app, a, _) = world().await;
    let mut report: Value =
        serde_json::from_slice(&end_of_call("vapi-nul-1", a.number)).expect("json");
    report["message"]["artifact"]["transcript"] = json!("I'd like\u{0} a cleaning\u{0}.");
    report["message"]["analysis"]["summary"] = json!("\u{0}Booked.");
    report["message"]["endedReason"] = json!("customer\u{0}-ended-call");
    let body = report.to_string().into_bytes();
    let r = post(&app, &body, Some((A_SECRET, now()))).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let id = r.body["call_id"].as_str().expect("call id").to_owned();
    let call = app
        .get_as(
            &format!("/api/v1/calls/{id}"),
            &app.token(a.owner, Some(a.org)),
        )
        .await;
    assert_eq!(call.body["transcript"], "I'd like a cleaning.");
    assert_eq!(call.body["summary"], "Booked.");
}

#[tokio::test]
async fn a_signed_twilio_callback_with_nul_characters_is_not_a_500() {
    let (app, a, _) = world().await;
    set_twilio_token(&app, &a, "twilio-token-a").await;
    let r = twilio_post(
        &app,
        &[
            ("CallSid", "CA\u{0}nul"),
            ("CallStatus", "completed"),
            ("Direction", "inbound"),
            ("To", a.number),
            ("From", "+1415555\u{0}9876"),
            ("CallDuration", "12"),
        ],
        Some("twilio-token-a"),
    )
    .await;
    assert!(r.status.as_u16() < 500, "{} {:?}", r.status, r.body);
    let r = app
        .client
        .post(format!("{}/webhooks/sms/twilio/status", app.base))
        .form(&[
            ("MessageSid", "SM\u{0}x"),
            ("MessageStatus", "delivered"),
            ("From", a.number),
        ])
        .send()
        .await
        .expect("send");
    assert!(r.status().as_u16() < 500, "{}", r.status());
}
