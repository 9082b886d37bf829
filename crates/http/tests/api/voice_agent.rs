//! The voice agent during a call: `assistant-request` answers with the proved clinic's own
//! assistant, and `tool-calls` run through the same booking code as the REST API, in that
//! clinic only. Requests are signed and sent over real HTTP as the platform sends them.

use crate::support::fake_twilio::FakeTwilio;
use crate::support::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use voxanne_db::demo::DemoClinic;

const A_SECRET: &str = "whsec-clinic-a-0123456789";
const B_SECRET: &str = "whsec-clinic-b-9876543210";
/// Ada Lovelace, a demo contact of clinic A.
const ADA: &str = "+14155551001";
/// A Monday; the demo clinics open 09:00-17:00 local time on Mondays.
const MONDAY: &str = "2031-03-03";
/// 10:00 on that Monday in Los Angeles (clinic A's zone).
const TEN_AM: &str = "2031-03-03T10:00:00-08:00";

async fn world() -> (TestApp, DemoClinic, DemoClinic) {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    app.set_vapi_secret(&a, A_SECRET).await;
    app.set_vapi_secret(&b, B_SECRET).await;
    (app, a, b)
}

/// POSTs a Vapi server message signed with `secret` now (None: unsigned).
async fn vapi(app: &TestApp, message: Value, secret: Option<&str>) -> Response {
    let body = json!({ "message": message }).to_string().into_bytes();
    let now = chrono::Utc::now().timestamp();
    app.post_vapi(&body, secret.map(|s| (s, now))).await
}

fn envelope(kind: &str, call: &str, to: &str, from: &str) -> Value {
    json!({"type": kind, "call": {"id": call, "type": "inboundPhoneCall"},
           "phoneNumber": {"number": to}, "customer": {"number": from}})
}

/// A `tool-calls` message with one call per `(toolCallId, name, arguments)`.
fn tool_calls(call: &str, to: &str, from: &str, calls: &[(&str, &str, Value)]) -> Value {
    let mut m = envelope("tool-calls", call, to, from);
    m["toolCallList"] = calls
        .iter()
        .map(|(id, name, args)| {
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}})
        })
        .collect();
    m
}

/// Runs one tool over the webhook as clinic A's platform; returns its spoken result.
async fn tool(app: &TestApp, call: &str, from: &str, id: &str, name: &str, args: Value) -> String {
    let r = vapi(
        app,
        tool_calls(call, "+14155550100", from, &[(id, name, args)]),
        Some(A_SECRET),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["results"][0]["toolCallId"], id, "{:?}", r.body);
    r.body["results"][0]["result"]
        .as_str()
        .expect("a result string")
        .to_owned()
}

/// The text after `marker` up to the next space, `)`, `;`, `,` or `.`-at-end.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {text:?}"))
        + marker.len();
    let rest = &text[start..];
    let end = rest.find([' ', ')', ';', ',']).unwrap_or(rest.len());
    rest[..end].trim_end_matches('.')
}

async fn list(app: &TestApp, clinic: &DemoClinic, path: &str) -> Vec<Value> {
    let r = app
        .get_as(path, &app.token(clinic.owner, Some(clinic.org)))
        .await;
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn assistant_request_answers_with_the_called_clinics_own_assistant() {
    let (app, a, b) = world().await;
    let config = json!({"greeting": "Sunrise Dental, this is Ava.", "voice": "11labs:rachel",
        "opening_hours": {"mon": [["08:00", "12:00"]]}, "time_zone": "America/New_York",
        "transfer_number": "+14155550199"});
    let r = app
        .put(
            "/api/v1/agent-configuration",
            &app.token(a.owner, Some(a.org)),
            &config,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let r = vapi(
        &app,
        envelope("assistant-request", "call-ar-1", a.number, ADA),
        Some(A_SECRET),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let assistant = &r.body["assistant"];
    assert_eq!(assistant["firstMessage"], "Sunrise Dental, this is Ava.");
    assert_eq!(assistant["voice"]["voiceId"], "rachel");
    assert_eq!(assistant["metadata"]["timeZone"], "America/New_York");
    let prompt = assistant["model"]["messages"][0]["content"]
        .as_str()
        .expect("prompt");
    assert!(prompt.contains("Monday 08:00-12:00"), "{prompt}");
    assert!(prompt.contains("Clinic A"), "{prompt}");
    let tools = assistant["model"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    for name in [
        "find_contact",
        "check_availability",
        "hold_slot",
        "confirm_booking",
        "cancel_appointment",
        "reschedule_appointment",
        "search_knowledge_base",
        "check_dnc",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(tools
        .iter()
        .any(|t| t["type"] == "transferCall" && t["destinations"][0]["number"] == "+14155550199"));
    let text = r.body.to_string();
    assert!(!text.contains("Clinic B") && !text.contains(&b.org.to_string()));

    // Clinic B's number gets clinic B's assistant, signed with B's secret only.
    let r = vapi(
        &app,
        envelope("assistant-request", "call-ar-2", b.number, ADA),
        Some(B_SECRET),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["assistant"]["firstMessage"],
        "Thank you for calling Clinic B. How can I help?"
    );
    assert!(!r.body.to_string().contains("Sunrise"));
    for (secret, number) in [
        (None, a.number),
        (Some(B_SECRET), a.number),
        (Some(A_SECRET), b.number),
    ] {
        let r = vapi(
            &app,
            envelope("assistant-request", "call-ar-3", number, ADA),
            secret,
        )
        .await;
        assert_eq!((r.status.as_u16(), r.code()), (401, "invalid_signature"));
        assert!(r.body.get("assistant").is_none());
    }
}

#[tokio::test]
async fn a_whole_call_books_through_the_agent_in_clinic_a_only() {
    let (app, a, b) = world().await;
    // Clinic A sends its confirmations through its own Twilio account (a fake one here).
    let twilio = FakeTwilio::spawn().await;
    let r = app
        .put(
            "/api/v1/integrations/twilio",
            &app.token(a.owner, Some(a.org)),
            &json!({"config": {"account_sid": "AC-clinic-a"}, "secrets": {"auth_token": "token-a"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let sms = voxanne_jobs::SmsWorker::new(
        app.t.db.clone(),
        Arc::new(keyring()),
        voxanne_jobs::SmsConfig {
            schedule: crate::support::quick_schedule(),
            http_timeout: Duration::from_secs(5),
            api_url: twilio.base.parse().expect("url"),
            public_url: None,
        },
        Arc::default(),
    )
    .expect("sms worker");
    let before_b = app.snapshot(b.org).await;
    let call = "vapi-call-full-1";
    let caller = "+14155557777"; // not a contact yet

    let r = vapi(
        &app,
        envelope("assistant-request", call, a.number, caller),
        Some(A_SECRET),
    )
    .await;
    assert_eq!(
        r.body["assistant"]["firstMessage"],
        "Thank you for calling Clinic A. How can I help?"
    );

    let found = tool(&app, call, caller, "t-1", "find_contact", json!({})).await;
    assert_eq!(found, "No contact on file for +14155557777.");
    let free = tool(
        &app,
        call,
        caller,
        "t-2",
        "check_availability",
        json!({"date": MONDAY}),
    )
    .await;
    assert!(free.contains("Monday 3 March at 09:00"), "{free}");
    assert!(free.contains(&format!("starts_at {TEN_AM}")), "{free}");

    let held = tool(
        &app,
        call,
        caller,
        "t-3",
        "hold_slot",
        json!({"starts_at": TEN_AM, "patient_name": "Jane Roe"}),
    )
    .await;
    assert!(
        held.starts_with("I've held Monday 3 March at 10:00"),
        "{held}"
    );
    let hold_id = after(&held, "hold_id ").to_owned();
    // The held time is no longer offered.
    let free = tool(
        &app,
        call,
        caller,
        "t-4",
        "check_availability",
        json!({"date": MONDAY}),
    )
    .await;
    assert!(!free.contains(TEN_AM), "{free}");

    let booked = tool(
        &app,
        call,
        caller,
        "t-5",
        "confirm_booking",
        json!({"hold_id": hold_id, "notes": "Cleaning"}),
    )
    .await;
    assert!(
        booked.starts_with("Booked for Monday 3 March at 10:00."),
        "{booked}"
    );
    // The platform retries the same tool call: the same answer, no second booking.
    let again = tool(
        &app,
        call,
        caller,
        "t-5",
        "confirm_booking",
        json!({"hold_id": hold_id, "notes": "Cleaning"}),
    )
    .await;
    assert_eq!(again, booked);

    let report = json!({"type": "end-of-call-report", "endedReason": "customer-ended-call",
        "call": {"id": call, "type": "inboundPhoneCall"},
        "phoneNumber": {"number": a.number}, "customer": {"number": caller},
        "durationSeconds": 95,
        "artifact": {"transcript": "I'd like a cleaning on Monday.", "recordingUrl": "https://recordings.example/full-1.wav"},
        "analysis": {"summary": "Booked a cleaning."}});
    let r = vapi(&app, report, Some(A_SECRET)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let call_id = r.body["call_id"].as_str().expect("call id").to_owned();

    // The access log names the agent by its tools (with the platform's call id as the
    // request) and the platform's webhook as the system; nothing of it is in B's log.
    let mut admin = app.t.admin().await;
    let seen: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT actor_kind, via, action, request_id FROM access_log
          WHERE org_id = $1 AND actor_kind IN ('agent', 'system') ORDER BY at, via",
    )
    .bind(a.org.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("access records");
    for (via, action) in [
        ("tool:hold_slot", "create"),
        ("tool:confirm_booking", "create"),
        ("POST /webhooks/voice/vapi", "update"),
    ] {
        let kind = if via.starts_with("tool:") {
            "agent"
        } else {
            "system"
        };
        assert!(
            seen.iter().any(|(k, v, a, r)| k == kind
                && v == via
                && a == action
                && (kind == "system" || r.as_deref() == Some(call))),
            "no {kind} record {action} by {via}: {seen:?}"
        );
    }
    let in_b: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_log WHERE org_id = $1 AND actor_kind IN ('agent', 'system')",
    )
    .bind(b.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("B's records");
    assert_eq!(in_b, 0, "the call to A left records in B's log");

    // Clinic A's API shows the call, its transcript, the contact and the appointment.
    let calls = list(&app, &a, "/api/v1/calls?limit=100").await;
    let matching: Vec<_> = calls
        .iter()
        .filter(|c| c["from_number"] == caller)
        .collect();
    assert_eq!(matching.len(), 1, "one call for the whole conversation");
    assert_eq!(matching[0]["id"], call_id.as_str());
    let detail = app
        .get_as(
            &format!("/api/v1/calls/{call_id}"),
            &app.token(a.owner, Some(a.org)),
        )
        .await;
    assert_eq!(detail.body["transcript"], "I'd like a cleaning on Monday.");
    assert_eq!(detail.body["status"], "completed");
    assert_eq!(detail.body["recording_status"], "queued");
    let contacts = list(&app, &a, "/api/v1/contacts?q=Jane").await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["phone"], caller);
    let appointments = list(
        &app,
        &a,
        &format!("/api/v1/appointments?from={MONDAY}&to={MONDAY}"),
    )
    .await;
    assert_eq!(appointments.len(), 1, "{appointments:?}");
    let appointment = &appointments[0];
    assert_eq!(appointment["starts_at"], "2031-03-03T18:00:00Z");
    assert_eq!(appointment["call_id"], call_id.as_str());
    assert_eq!(appointment["contact_id"], contacts[0]["id"]);
    assert_eq!(
        detail.body["contact_id"], contacts[0]["id"],
        "the call knows its caller"
    );
    assert_eq!(appointment["notes"], "Cleaning");

    // Nothing was sent inside a webhook; the worker sends one confirmation, once, from clinic
    // A's account and number, to the caller.
    assert!(twilio.seen().is_empty());
    for _ in 0..2 {
        voxanne_jobs::Job::run_once(&sms).await.expect("sms round");
    }
    let sent = twilio.seen();
    let sms_records: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_log
          WHERE org_id = $1 AND actor_kind = 'system' AND via = 'job:sms'
            AND subject_kind = 'sms' AND action = 'update'",
    )
    .bind(a.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("the SMS job's records");
    assert!(sms_records >= 1, "the SMS job left no access record");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].user, "AC-clinic-a");
    assert_eq!(sent[0].form["To"], caller);
    assert_eq!(sent[0].form["From"], a.number);
    assert!(
        sent[0].form["Body"].contains("Clinic A"),
        "{:?}",
        sent[0].form
    );
    let confirmations = list(&app, &a, "/api/v1/sms-confirmations").await;
    assert_eq!(confirmations.len(), 1);
    assert_eq!(confirmations[0]["appointment_id"], appointment["id"]);
    assert_eq!(confirmations[0]["status"], "sent");

    // Clinic B saw none of it.
    assert!(list(&app, &b, "/api/v1/sms-confirmations").await.is_empty());
    assert_eq!(app.snapshot(b.org).await, before_b);
    let b_appointments = list(
        &app,
        &b,
        &format!("/api/v1/appointments?from={MONDAY}&to={MONDAY}"),
    )
    .await;
    assert!(b_appointments.is_empty());
}

#[tokio::test]
async fn the_agent_and_a_staff_member_racing_for_one_slot_book_it_once() {
    let (app, a, _) = world().await;
    let staff = app.token(a.staff, Some(a.org));
    for round in 0..3 {
        let start = format!("2031-03-03T{:02}:00:00-08:00", 11 + round);
        let agent = (0..8).map(|i| {
            let app = &app;
            let start = start.clone();
            async move {
                let call = format!("race-{round}-{i}");
                let caller = format!("+1415555{:04}", 8000 + round * 10 + i);
                let held = tool(
                    app,
                    &call,
                    &caller,
                    &format!("h-{round}-{i}"),
                    "hold_slot",
                    json!({"starts_at": start}),
                )
                .await;
                if !held.starts_with("I've held") {
                    return (false, held);
                }
                let hold_id = after(&held, "hold_id ").to_owned();
                let booked = tool(
                    app,
                    &call,
                    &caller,
                    &format!("c-{round}-{i}"),
                    "confirm_booking",
                    json!({"hold_id": hold_id}),
                )
                .await;
                (booked.starts_with("Booked"), booked)
            }
        });
        let desk = (0..8).map(|_| {
            let app = &app;
            let staff = staff.clone();
            let start = start.clone();
            async move {
                let starts: chrono::DateTime<chrono::FixedOffset> =
                    chrono::DateTime::parse_from_rfc3339(&start).expect("time");
                let r = app
                    .post(
                        "/api/v1/appointments",
                        &staff,
                        &json!({
                        "starts_at": starts.to_rfc3339(),
                        "ends_at": (starts + chrono::Duration::minutes(30)).to_rfc3339()}),
                    )
                    .await;
                assert!(matches!(r.status.as_u16(), 201 | 409), "{:?}", r.body);
                if r.status == 409 {
                    assert_eq!(r.code(), "slot_taken");
                }
                r.status == 201
            }
        });
        let (agent, desk) = tokio::join!(
            futures_util::future::join_all(agent),
            futures_util::future::join_all(desk)
        );
        let agent_wins = agent.iter().filter(|(won, _)| *won).count();
        let desk_wins = desk.iter().filter(|won| **won).count();
        assert!(agent_wins <= 1 && desk_wins <= 1, "{agent:?} {desk:?}");
        for (won, answer) in &agent {
            if !won {
                assert!(
                    answer.contains("just been taken")
                        || answer.contains("couldn't find that hold"),
                    "a clean refusal, not {answer:?}"
                );
            }
        }
        let booked = list(
            &app,
            &a,
            &format!("/api/v1/appointments?from={MONDAY}&to={MONDAY}"),
        )
        .await;
        let at_start: Vec<_> = booked
            .iter()
            .filter(|x| {
                chrono::DateTime::parse_from_rfc3339(x["starts_at"].as_str().unwrap_or_default())
                    .ok()
                    == chrono::DateTime::parse_from_rfc3339(&start).ok()
            })
            .collect();
        // The agent confirms only holds of its own call, so the slot has exactly one winner:
        // an appointment, booked by the agent or by the desk, and every other attempt refused.
        assert_eq!(agent_wins + desk_wins, 1, "{agent:?} {desk:?}");
        assert_eq!(at_start.len(), 1, "{booked:?}");
    }
}

#[tokio::test]
async fn callers_change_only_their_own_appointments() {
    let (app, a, _) = world().await;
    let owner = app.token(a.owner, Some(a.org));
    let contacts = list(&app, &a, "/api/v1/contacts?q=Ada").await;
    let ada = contacts[0]["id"].as_str().expect("ada").to_owned();
    let r = app
        .post(
            "/api/v1/appointments",
            &owner,
            &json!({"contact_id": ada,
            "starts_at": "2031-03-04T17:00:00Z", "ends_at": "2031-03-04T17:30:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let appointment = r.body["id"].as_str().expect("id").to_owned();

    // Alan calls and names Ada's appointment (and her number): refused, unchanged, and
    // find_contact answers about the caller only.
    let alan = "+14155551002";
    let before = app.snapshot(a.org).await;
    for (name, args) in [
        ("cancel_appointment", json!({"appointment_id": appointment})),
        (
            "reschedule_appointment",
            json!({"appointment_id": appointment, "starts_at": "2031-03-04T11:00"}),
        ),
    ] {
        let answer = tool(&app, "call-alan", alan, &format!("x-{name}"), name, args).await;
        assert_eq!(
            answer,
            "I couldn't find an upcoming appointment under your number."
        );
    }
    let found = tool(
        &app,
        "call-alan",
        alan,
        "x-find",
        "find_contact",
        json!({"phone": ADA}),
    )
    .await;
    assert!(
        found.starts_with("This is Alan Turing") && !found.contains(&appointment),
        "{found}"
    );
    let snapshot = app.snapshot(a.org).await;
    let appointments_of = |s: &Vec<(String, Vec<Value>)>| {
        s.iter()
            .find(|(t, _)| t == "appointments")
            .map(|(_, r)| r.clone())
    };
    assert_eq!(appointments_of(&snapshot), appointments_of(&before));
    // Ada's appointment is this clinic's own: not a cross-tenant probe, no security event.
    let events_of = |s: &Vec<(String, Vec<Value>)>| {
        s.iter()
            .find(|(t, _)| t == "security_events")
            .map(|(_, r)| r.len())
    };
    assert_eq!(events_of(&snapshot), events_of(&before));

    // Ada can: find it, move it, cancel it.
    let found = tool(&app, "call-ada", ADA, "y-find", "find_contact", json!({})).await;
    assert!(found.contains(&appointment), "{found}");
    let moved = tool(
        &app,
        "call-ada",
        ADA,
        "y-move",
        "reschedule_appointment",
        json!({"appointment_id": appointment, "starts_at": "2031-03-04T11:00"}),
    )
    .await;
    assert_eq!(
        moved,
        "Moved the appointment from Tuesday 4 March at 09:00 to Tuesday 4 March at 11:00."
    );
    let r = app
        .get_as(&format!("/api/v1/appointments/{appointment}"), &owner)
        .await;
    assert_eq!(r.body["starts_at"], "2031-03-04T19:00:00Z", "{:?}", r.body);
    let closed = tool(
        &app,
        "call-ada",
        ADA,
        "y-late",
        "reschedule_appointment",
        json!({"appointment_id": appointment, "starts_at": "2031-03-04T20:00"}),
    )
    .await;
    assert_eq!(closed, "The clinic isn't open at that time.");
    let cancelled = tool(
        &app,
        "call-ada",
        ADA,
        "y-cancel",
        "cancel_appointment",
        json!({"appointment_id": appointment}),
    )
    .await;
    assert_eq!(
        cancelled,
        "Cancelled the appointment on Tuesday 4 March at 11:00."
    );
    let r = app
        .get_as(&format!("/api/v1/appointments/{appointment}"), &owner)
        .await;
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["starts_at"], "2031-03-04T19:00:00Z");

    // Without an id: the caller's next appointment, the first find_contact lists.
    let found = tool(&app, "call-ada", ADA, "z-find", "find_contact", json!({})).await;
    let next = after(&found, "appointment_id ").to_owned();
    let cancelled = tool(
        &app,
        "call-ada",
        ADA,
        "z-cancel",
        "cancel_appointment",
        json!({}),
    )
    .await;
    assert!(
        cancelled.starts_with("Cancelled the appointment on"),
        "{cancelled}"
    );
    let r = app
        .get_as(&format!("/api/v1/appointments/{next}"), &owner)
        .await;
    assert_eq!(
        (r.body["status"].as_str(), r.body["contact_id"].as_str()),
        (Some("cancelled"), Some(ada.as_str()))
    );
}

#[tokio::test]
async fn a_hold_is_confirmed_only_on_the_call_that_made_it() {
    let (app, a, _) = world().await;
    let held = tool(
        &app,
        "call-1",
        ADA,
        "h1",
        "hold_slot",
        json!({"starts_at": TEN_AM}),
    )
    .await;
    let hold_id = after(&held, "hold_id ").to_owned();
    let other = tool(
        &app,
        "call-2",
        "+14155551003",
        "c2",
        "confirm_booking",
        json!({"hold_id": hold_id}),
    )
    .await;
    assert!(
        other.starts_with("I couldn't find that hold on this call"),
        "{other}"
    );
    assert!(list(
        &app,
        &a,
        &format!("/api/v1/appointments?from={MONDAY}&to={MONDAY}")
    )
    .await
    .is_empty());
    let mine = tool(
        &app,
        "call-1",
        ADA,
        "c1",
        "confirm_booking",
        json!({"hold_id": hold_id}),
    )
    .await;
    assert!(mine.starts_with("Booked"), "{mine}");
}

#[tokio::test]
async fn the_knowledge_base_dnc_and_bad_arguments_answer_in_words() {
    let (app, a, b) = world().await;
    let owner = app.token(a.owner, Some(a.org));
    let r = app
        .post(
            "/api/v1/knowledge-base/documents",
            &owner,
            &json!({"title": "Parking", "body": "Free parking behind the building on Elm Street."}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .post(
            "/api/v1/knowledge-base/documents",
            &app.token(b.owner, Some(b.org)),
            &json!({"title": "Parking", "body": "Clinic B secret garage code 4321."}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = app
        .post(
            "/api/v1/dnc",
            &app.token(b.owner, Some(b.org)),
            &json!({"phone": ADA}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    let answer = tool(
        &app,
        "c",
        ADA,
        "k1",
        "search_knowledge_base",
        json!({"query": "parking"}),
    )
    .await;
    assert!(
        answer.contains("Elm Street") && !answer.contains("4321"),
        "{answer}"
    );
    // On clinic B's list only: not on clinic A's.
    let answer = tool(&app, "c", ADA, "d1", "check_dnc", json!({})).await;
    assert_eq!(answer, "+14155551001 is not on the do-not-call list.");
    let r = app
        .post("/api/v1/dnc", &owner, &json!({"phone": ADA}))
        .await;
    assert_eq!(r.status, 201);
    let answer = tool(&app, "c", ADA, "d2", "check_dnc", json!({})).await;
    assert_eq!(answer, "+14155551001 is on the clinic's do-not-call list.");

    let before = app.snapshot(a.org).await;
    for (name, args, expected) in [
        ("hold_slot", json!({}), "Which time?"),
        (
            "hold_slot",
            json!({"starts_at": "next tuesday"}),
            "I couldn't read the time",
        ),
        (
            "hold_slot",
            json!({"starts_at": "2020-01-06T10:00"}),
            "That time has already passed.",
        ),
        (
            "hold_slot",
            json!({"starts_at": "2031-03-08T10:00"}),
            "The clinic isn't open at that time.",
        ),
        (
            "hold_slot",
            json!({"starts_at": TEN_AM, "duration_minutes": 9999}),
            "The length must be",
        ),
        (
            "confirm_booking",
            json!({"hold_id": "not-a-uuid"}),
            "hold_id must be",
        ),
        (
            "check_availability",
            json!({"date": "March 3rd"}),
            "The date must look like",
        ),
        (
            "no_such_tool",
            json!({}),
            "There is no tool called no_such_tool.",
        ),
    ] {
        let answer = tool(
            &app,
            "c-bad",
            ADA,
            &format!("bad-{name}-{expected}"),
            name,
            args,
        )
        .await;
        assert!(answer.starts_with(expected), "{name}: {answer}");
    }
    assert_eq!(
        app.snapshot(a.org).await,
        before,
        "refused tools keep nothing"
    );
}

#[tokio::test]
async fn a_suspended_clinics_number_gets_an_apology_and_no_tool_touches_its_data() {
    let (app, a, _) = world().await;
    let mut admin = app.t.admin().await;
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    let before = app.snapshot(a.org).await;

    let r = vapi(
        &app,
        envelope("assistant-request", "call-s", a.number, ADA),
        Some(A_SECRET),
    )
    .await;
    assert_eq!(r.status, 200);
    let text = r.body.to_string();
    assert!(text.contains("can't take calls right now"), "{text}");
    assert!(!text.contains("Clinic A"), "{text}");
    assert_eq!(
        r.body["assistant"]["model"]["tools"],
        json!([{"type": "endCall"}]),
        "it can only hang up"
    );

    let calls: Vec<(&str, &str, Value)> = vec![
        ("s1", "find_contact", json!({})),
        ("s2", "check_availability", json!({"date": MONDAY})),
        ("s3", "hold_slot", json!({"starts_at": TEN_AM})),
        ("s4", "cancel_appointment", json!({})),
        ("s5", "search_knowledge_base", json!({"query": "parking"})),
        ("s6", "check_dnc", json!({})),
    ];
    let r = vapi(
        &app,
        tool_calls("call-s", a.number, ADA, &calls),
        Some(A_SECRET),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let results = r.body["results"].as_array().expect("results");
    assert_eq!(results.len(), calls.len());
    for (result, (id, _, _)) in results.iter().zip(&calls) {
        assert_eq!(result["toolCallId"], *id);
        assert_eq!(
            result["result"],
            "Sorry, this clinic can't take bookings right now."
        );
    }
    assert!(!r.body.to_string().contains("Ada"));
    assert_eq!(app.snapshot(a.org).await, before);
}

#[tokio::test]
async fn tool_calls_signed_by_another_clinic_run_nothing() {
    let (app, a, b) = world().await;
    let (before_a, before_b) = (app.snapshot(a.org).await, app.snapshot(b.org).await);
    let calls = vec![("t", "hold_slot", json!({"starts_at": TEN_AM}))];
    for secret in [None, Some(B_SECRET), Some("whsec-wrong")] {
        let r = vapi(&app, tool_calls("call-x", a.number, ADA, &calls), secret).await;
        assert_eq!((r.status.as_u16(), r.code()), (401, "invalid_signature"));
        assert!(r.body.get("results").is_none());
    }
    let after_a = app.snapshot(a.org).await;
    assert_eq!(app.snapshot(b.org).await, before_b);
    // Clinic A gained three security events and nothing else.
    for ((table, rows), (_, before)) in after_a.iter().zip(&before_a) {
        if table == "security_events" {
            assert_eq!(rows.len(), before.len() + 3);
        } else {
            assert_eq!(rows, before, "{table}");
        }
    }
}

#[tokio::test]
async fn an_assistant_that_cannot_be_made_in_time_is_the_apology_not_silence() {
    let (app, a, _) = world().await;
    // Another transaction holds the table the clinic's assistant is read from.
    let mut admin = app.t.admin().await;
    sqlx::query("BEGIN")
        .execute(&mut admin)
        .await
        .expect("begin");
    sqlx::query("LOCK TABLE agent_configurations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut admin)
        .await
        .expect("lock");
    let r = vapi(
        &app,
        envelope("assistant-request", "call-slow", a.number, ADA),
        Some(A_SECRET),
    )
    .await;
    sqlx::query("ROLLBACK")
        .execute(&mut admin)
        .await
        .expect("rollback");
    assert_eq!(r.status, 200, "{:?}", r.body);
    let text = r.body.to_string();
    assert!(text.contains("can't take calls right now"), "{text}");
    assert!(!text.contains("Clinic A"), "{text}");
}

#[tokio::test]
async fn another_clinics_hold_or_appointment_named_by_the_agent_is_refused_and_recorded() {
    let (app, a, b) = world().await;
    let b_owner = app.token(b.owner, Some(b.org));
    let r = app
        .post(
            "/api/v1/appointment-holds",
            &b_owner,
            &json!({"starts_at": "2031-03-05T10:00:00Z", "ends_at": "2031-03-05T10:30:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b_hold = r.body["id"].as_str().expect("hold").to_owned();
    let r = app
        .post(
            "/api/v1/appointments",
            &b_owner,
            &json!({"starts_at": "2031-03-05T11:00:00Z", "ends_at": "2031-03-05T11:30:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let b_appointment = r.body["id"].as_str().expect("appointment").to_owned();
    let before_b = app.data_snapshot(b.org).await;
    let before_a = app.snapshot(a.org).await;

    let answer = tool(
        &app,
        "call-p",
        ADA,
        "p1",
        "confirm_booking",
        json!({"hold_id": b_hold}),
    )
    .await;
    assert!(answer.starts_with("I couldn't find that hold"), "{answer}");
    for (id, name) in [
        ("p2", "cancel_appointment"),
        ("p3", "reschedule_appointment"),
    ] {
        let answer = tool(
            &app,
            "call-p",
            ADA,
            id,
            name,
            json!({"appointment_id": b_appointment, "starts_at": "2031-03-05T09:00"}),
        )
        .await;
        assert_eq!(
            answer,
            "I couldn't find an upcoming appointment under your number."
        );
    }

    assert_eq!(
        app.data_snapshot(b.org).await,
        before_b,
        "clinic B is untouched"
    );
    // Recorded for clinic B, whose hold and appointment they are; clinic A, whose agent
    // asked, records nothing, as for an id nobody has.
    let probes = app.probe_events(&b).await;
    assert_eq!(probes.len(), 3, "{probes:?}");
    let targets: Vec<&str> = probes.iter().filter_map(|e| e["target"].as_str()).collect();
    assert!(targets.contains(&b_hold.as_str()) && targets.contains(&b_appointment.as_str()));
    app.security.flush().await;
    assert_eq!(
        app.snapshot(a.org).await,
        before_a,
        "clinic A's log shows nothing"
    );
}

#[tokio::test]
async fn tool_arguments_with_nul_characters_get_an_answer_not_a_500() {
    let (app, _, _) = world().await;
    for (i, (name, args)) in [
        (
            "search_knowledge_base",
            json!("{\"query\": \"park\\u0000ing\"}"),
        ),
        ("search_knowledge_base", json!({"query": "park\u{0}ing"})),
        ("check_dnc", json!({"phone": "+1415555\u{0}1001"})),
        ("hold_slot", json!({"starts_at": "-200000-03-03T10:00:00Z"})),
        ("find_contact", json!({"ph\u{0}one": "x"})),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("tc-nul-{i}");
        let result = tool(&app, "vapi-nul-tools", ADA, &id, name, args.clone()).await;
        assert!(!result.is_empty(), "{name} {args}");
    }
}

/// Clinic `c`'s practitioners and services: Dr Lee does cleanings (30 minutes) and is off on
/// `MONDAY`; Dr Patel does none. Clinic hours (Monday to Friday, 09:00-17:00 local) apply.
async fn practitioners(app: &TestApp, c: &DemoClinic, lee: &str) {
    let mut admin = app.t.admin().await;
    let org = c.org.as_uuid();
    for sql in [
        "INSERT INTO practitioners (org_id, name, resource) VALUES ($1, $2, 'dr-lee')",
        "INSERT INTO practitioners (org_id, name, resource) VALUES ($1, 'Dr Patel', 'dr-patel')",
        "INSERT INTO services (org_id, name, duration_minutes) VALUES ($1, 'Cleaning', 30)",
        "INSERT INTO practitioner_services (org_id, practitioner_id, service_id)
         SELECT $1, p.id, s.id FROM practitioners p, services s
          WHERE p.org_id = $1 AND s.org_id = $1 AND p.resource = 'dr-lee'",
        "INSERT INTO closures (org_id, practitioner_id, starts_on, ends_on)
         SELECT $1, id, '2031-03-03', '2031-03-03' FROM practitioners
          WHERE org_id = $1 AND resource = 'dr-lee'",
    ] {
        let mut q = sqlx::query(sql).bind(org);
        if sql.contains("$2") {
            q = q.bind(lee);
        }
        q.execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[tokio::test]
async fn the_agent_offers_a_services_practitioners_and_books_the_one_chosen() {
    let (app, a, b) = world().await;
    practitioners(&app, &a, "Dr Lee").await;
    practitioners(&app, &b, "Dr Bea Lee").await;
    let call = "call-svc-1";
    // The assistant knows the services and who gives them.
    let r = vapi(
        &app,
        envelope("assistant-request", call, a.number, ADA),
        Some(A_SECRET),
    )
    .await;
    let prompt = r.body["assistant"]["model"]["messages"][0]["content"]
        .as_str()
        .expect("prompt")
        .to_owned();
    assert!(
        prompt.contains("Cleaning (30 minutes; with Dr Lee)"),
        "{prompt}"
    );
    assert!(!prompt.contains("Bea"), "{prompt}");

    // Dr Lee is off on Monday: no cleaning then; on Tuesday, Dr Lee's times.
    let said = tool(
        &app,
        call,
        ADA,
        "t1",
        "check_availability",
        json!({"service": "cleaning", "date": MONDAY}),
    )
    .await;
    assert!(
        said.starts_with("No free Cleaning (30 minutes) times"),
        "{said}"
    );
    let said = tool(
        &app,
        call,
        ADA,
        "t2",
        "check_availability",
        json!({"service": "Cleaning", "date": "2031-03-04"}),
    )
    .await;
    assert!(
        said.contains("9:00") && said.contains("with Dr Lee"),
        "{said}"
    );
    assert_eq!(after(&said, "practitioner "), "dr-lee", "{said}");
    let starts_at = after(&said, "starts_at ").to_owned();
    // What the clinic does not offer, or someone it does not have, is said as such.
    let said = tool(
        &app,
        call,
        ADA,
        "t3",
        "check_availability",
        json!({"service": "Root canal"}),
    )
    .await;
    assert!(
        said.contains("does not offer Root canal. It offers: Cleaning"),
        "{said}"
    );
    let said = tool(
        &app,
        call,
        ADA,
        "t4",
        "check_availability",
        json!({"service": "Cleaning", "practitioner": "Dr Patel"}),
    )
    .await;
    assert_eq!(said, "Dr Patel does not do Cleaning.");
    let said = tool(
        &app,
        call,
        ADA,
        "t5",
        "check_availability",
        json!({"practitioner": "Dr Bea Lee"}),
    )
    .await;
    assert!(
        said.starts_with("There is no practitioner called Dr Bea Lee here."),
        "{said}"
    );

    // Held with Dr Lee, on Dr Lee's diary; not on the Monday off.
    let said = tool(
        &app,
        call,
        ADA,
        "t6",
        "hold_slot",
        json!({"starts_at": TEN_AM, "service": "Cleaning", "practitioner": "dr-lee"}),
    )
    .await;
    assert!(said.contains("just been taken"), "{said}");
    let said = tool(
        &app,
        call,
        ADA,
        "t7",
        "hold_slot",
        json!({"starts_at": starts_at, "service": "Cleaning", "practitioner": "dr-lee"}),
    )
    .await;
    assert!(said.contains("with Dr Lee"), "{said}");
    let holds = list(&app, &a, "/api/v1/appointment-holds").await;
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0]["resource"], "dr-lee");
    let minutes =
        (chrono::DateTime::parse_from_rfc3339(holds[0]["ends_at"].as_str().expect("end"))
            .expect("end")
            - chrono::DateTime::parse_from_rfc3339(holds[0]["starts_at"].as_str().expect("start"))
                .expect("start"))
        .num_minutes();
    assert_eq!(minutes, 30, "the service's length");
    // Held as the service, and booked as it.
    let services = list(&app, &a, "/api/v1/services").await;
    assert_eq!(holds[0]["service_id"], services[0]["id"], "{holds:?}");
    let hold_id = holds[0]["id"].as_str().expect("hold id").to_owned();
    let said = tool(
        &app,
        call,
        ADA,
        "t8",
        "confirm_booking",
        json!({"hold_id": hold_id}),
    )
    .await;
    assert!(said.starts_with("Booked"), "{said}");
    let booked = list(&app, &a, "/api/v1/appointments").await;
    let booked: Vec<&Value> = booked
        .iter()
        .filter(|b| b["resource"] == "dr-lee")
        .collect();
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(booked[0]["service_id"], services[0]["id"]);
}
