//! Patients' messages, end to end: reminder rules queue reminders with a booking at the
//! clinic's local times (DST, quiet hours), the worker sends them through a fake Twilio (a
//! real HTTP server on loopback) or defers them out of quiet hours; inbound texts arrive as
//! Twilio sends them (`fixtures/twilio/inbound-message.json`, the documented parameters,
//! signed as Twilio signs) and opt numbers out and in, answer HELP, confirm or ask to
//! reschedule the right clinic's appointment, or land in the inbox; Twilio's 21610 opts a
//! number out; the agent's take_message fills the inbox. A real PostgreSQL; no mocks.
use crate::support::*;

use crate::support::fake_twilio::{FakeTwilio, Reply};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use voxanne_db::demo::DemoClinic;
use voxanne_jobs::{Job, Metrics, SmsConfig, SmsOutcome, SmsWorker};
use voxanne_webhooks::signature::twilio_sign;

const A_SID: &str = "AC-clinic-a";
const A_TOKEN: &str = "auth-token-of-clinic-a";
const B_SID: &str = "AC-clinic-b";
const B_TOKEN: &str = "auth-token-of-clinic-b";
const INBOUND_PATH: &str = "/webhooks/sms/twilio";
/// A patient of both clinics.
const PAT: &str = "+14155552020";

struct World {
    app: TestApp,
    a: DemoClinic,
    b: DemoClinic,
    fake: FakeTwilio,
    worker: SmsWorker,
}

async fn world() -> World {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    for (clinic, sid, token) in [(&a, A_SID, A_TOKEN), (&b, B_SID, B_TOKEN)] {
        let r = app
            .put(
                "/api/v1/integrations/twilio",
                &app.token(clinic.owner, Some(clinic.org)),
                &json!({"config": {"account_sid": sid}, "secrets": {"auth_token": token}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let fake = FakeTwilio::spawn().await;
    let worker = SmsWorker::new(
        app.t.db.clone(),
        Arc::new(keyring()),
        SmsConfig {
            schedule: quick_schedule(),
            http_timeout: Duration::from_secs(2),
            api_url: fake.base.parse().expect("url"),
            public_url: Some(app.base.parse().expect("url")),
        },
        Arc::new(Metrics::default()),
    )
    .expect("worker");
    World {
        app,
        a,
        b,
        fake,
        worker,
    }
}

fn owner(app: &TestApp, clinic: &DemoClinic) -> String {
    app.token(clinic.owner, Some(clinic.org))
}

fn staff(app: &TestApp, clinic: &DemoClinic) -> String {
    app.token(clinic.staff, Some(clinic.org))
}

async fn contact(app: &TestApp, clinic: &DemoClinic, phone: &str) -> String {
    let r = app
        .post(
            "/api/v1/contacts",
            &staff(app, clinic),
            &json!({"name": "Pat Patient", "phone": phone}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

/// Books `starts` (RFC 3339) for 30 minutes for `contact`; the appointment's id.
async fn book_at(app: &TestApp, clinic: &DemoClinic, contact: &str, starts: &str) -> String {
    let starts_at: DateTime<Utc> = starts.parse().expect("time");
    let ends = (starts_at + chrono::Duration::minutes(30)).to_rfc3339();
    let r = app
        .post(
            "/api/v1/appointments",
            &staff(app, clinic),
            &json!({"contact_id": contact, "starts_at": starts, "ends_at": ends}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn set_messaging(app: &TestApp, clinic: &DemoClinic, body: Value) -> Value {
    let r = app
        .put("/api/v1/messaging-settings", &owner(app, clinic), &body)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// The clinic's SMS rows of one kind, oldest first, as the superuser sees them.
async fn rows(app: &TestApp, clinic: &DemoClinic, kind: &str) -> Vec<Value> {
    let mut admin = app.t.admin().await;
    let mut rows: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(s) FROM sms_confirmation_logs s WHERE org_id = $1 AND kind = $2
          ORDER BY scheduled_for NULLS FIRST, created_at, id",
    )
    .bind(clinic.org.as_uuid())
    .bind(kind)
    .fetch_all(&mut admin)
    .await
    .expect("rows");
    for row in &mut rows {
        voxanne_testkit::open_patient_text("sms_confirmation_logs", row);
    }
    rows
}

async fn admin_exec(app: &TestApp, sql: &str, bind: &str) {
    let mut admin = app.t.admin().await;
    sqlx::query(sql)
        .bind(bind)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn admin_json(app: &TestApp, sql: &str, org: &DemoClinic) -> Vec<Value> {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar(sql)
        .bind(org.org.as_uuid())
        .fetch_all(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn round(w: &SmsWorker) -> Vec<SmsOutcome> {
    w.run_once()
        .await
        .expect("round")
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

fn instant(v: &Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .expect("time")
}

/// An inbound text as Twilio sends it: the documented parameters, signed with `token` over
/// this server's URL (None: unsigned). Answers the status, content type and body text.
async fn text_in(
    app: &TestApp,
    sid: &str,
    from: &str,
    to: &str,
    body: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let fixture: Vec<(String, String)> =
        serde_json::from_slice(&fixture("twilio/inbound-message.json")).expect("fixture");
    let account = if token == Some(B_TOKEN) { B_SID } else { A_SID };
    let params: Vec<(String, String)> = fixture
        .into_iter()
        .map(|(k, v)| {
            let v = match v.as_str() {
                "__MESSAGE_SID__" => sid.to_owned(),
                "__FROM__" => from.to_owned(),
                "__TO__" => to.to_owned(),
                "__BODY__" => body.to_owned(),
                "__ACCOUNT_SID__" => account.to_owned(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    let url = format!("{}{INBOUND_PATH}", app.base);
    let mut request = app.client.post(&url).form(&params);
    if let Some(token) = token {
        request = request.header(
            "x-twilio-signature",
            twilio_sign(token.as_bytes(), &url, &params),
        );
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

const EMPTY_TWIML: &str = r#"<?xml version="1.0" encoding="UTF-8"?><Response/>"#;

/// The one `<Message>` of a TwiML answer.
fn message_of(twiml: &str) -> &str {
    twiml
        .split_once("<Message>")
        .and_then(|(_, rest)| rest.split_once("</Message>"))
        .map(|(m, _)| m)
        .unwrap_or_else(|| panic!("no <Message> in {twiml}"))
}

async fn inbox(app: &TestApp, clinic: &DemoClinic, query: &str) -> Vec<Value> {
    let r = app
        .get_as(&format!("/api/v1/inbox{query}"), &staff(app, clinic))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().expect("data").clone()
}

async fn dnc(app: &TestApp, clinic: &DemoClinic) -> Vec<Value> {
    let r = app.get_as("/api/v1/dnc", &staff(app, clinic)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().expect("data").clone()
}

async fn consents(app: &TestApp, clinic: &DemoClinic, phone: &str) -> Vec<Value> {
    let r = app
        .get_as(
            &format!(
                "/api/v1/consent-records?phone={}",
                phone.replace('+', "%2B")
            ),
            &staff(app, clinic),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().expect("data").clone()
}

/// Books for `phone` at `starts` in `clinic` and sends the confirmation; the appointment's id.
async fn confirmed_booking(w: &World, clinic: &DemoClinic, phone: &str, starts: &str) -> String {
    let c = contact(&w.app, clinic, phone).await;
    let id = book_at(&w.app, clinic, &c, starts).await;
    let outcomes = round(&w.worker).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
    id
}

async fn appointment(app: &TestApp, clinic: &DemoClinic, id: &str) -> Value {
    let r = app
        .get_as(&format!("/api/v1/appointments/{id}"), &staff(app, clinic))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

// ---------------------------------------------------------------------------------------
// Settings

#[tokio::test]
async fn messaging_settings_default_and_only_admins_change_them_with_valid_rules() {
    let w = world().await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    let r = app
        .get_as("/api/v1/messaging-settings", &staff(app, a))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        json!({"quiet_hours": {"start": "21:00", "end": "08:00"}, "help_text": null, "reminders": [],
               "max_concurrent_calls": 2})
    );
    let body = json!({"reminders": [{"minutes_before": 1440}]});
    let r = app
        .put("/api/v1/messaging-settings", &staff(app, a), &body)
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    for (bad, field) in [
        (
            json!({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
            "quiet_hours.start",
        ),
        (
            json!({"reminders": [{"minutes_before": 5}]}),
            "reminders[0].minutes_before",
        ),
        (
            json!({"reminders": [{"minutes_before": 60, "template": "{clinic} {doctor}"}]}),
            "reminders[0].template",
        ),
    ] {
        let r = app
            .put("/api/v1/messaging-settings", &owner(app, a), &bad)
            .await;
        assert_eq!(r.status, 422, "{bad}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{:?}", r.body);
    }
    // Another clinic's service is as unknown as none.
    let service = app
        .post(
            "/api/v1/services",
            &owner(app, b),
            &json!({"name": "Whitening", "duration_minutes": 60}),
        )
        .await;
    assert_eq!(service.status, 201, "{:?}", service.body);
    let r = app
        .put(
            "/api/v1/messaging-settings",
            &owner(app, a),
            &json!({"reminders": [{"minutes_before": 60, "service_id": service.body["id"]}]}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(
        r.body["error"]["field"], "reminders[0].service_id",
        "{:?}",
        r.body
    );
    assert_eq!(
        app.get_as("/api/v1/messaging-settings", &staff(app, a))
            .await
            .body["reminders"],
        json!([]),
        "a refused write changed nothing"
    );
    let set = set_messaging(
        app,
        a,
        json!({"quiet_hours": {"start": "20:00", "end": "09:30"}, "help_text": "Call us.",
               "reminders": [{"minutes_before": 120}, {"minutes_before": 1440}]}),
    )
    .await;
    assert_eq!(
        set["quiet_hours"],
        json!({"start": "20:00", "end": "09:30"})
    );
    assert_eq!(set["reminders"][0]["minutes_before"], 1440, "longest first");
    assert_eq!(
        app.get_as("/api/v1/messaging-settings", &staff(app, b))
            .await
            .body["reminders"],
        json!([]),
        "clinic B's settings are its own"
    );
}

// ---------------------------------------------------------------------------------------
// Reminders

#[tokio::test]
async fn reminders_are_queued_at_the_clinics_local_times_out_of_quiet_hours() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    set_messaging(
        app,
        a,
        json!({"reminders": [{"minutes_before": 1440}, {"minutes_before": 120},
                             {"minutes_before": 2880, "template": "{clinic}: {date} {time}"}]}),
    )
    .await;
    let c = contact(app, a, "+14155552001").await;
    // Mon 3 Mar 2031 09:00 in Los Angeles (PST, 17:00Z).
    book_at(app, a, &c, "2031-03-03T17:00:00Z").await;
    let reminders = rows(app, a, "reminder").await;
    let due: Vec<DateTime<Utc>> = reminders
        .iter()
        .map(|r| instant(&r["scheduled_for"]))
        .collect();
    assert_eq!(
        due,
        vec![
            // Two days before at 09:00.
            "2031-03-01T17:00:00Z".parse::<DateTime<Utc>>().expect("t"),
            // The day before at 09:00.
            "2031-03-02T17:00:00Z".parse().expect("t"),
            // 07:00 is in the quiet hours (21:00-08:00): at 08:00 instead.
            "2031-03-03T16:00:00Z".parse().expect("t"),
        ]
    );
    for r in &reminders {
        assert_eq!(r["status"], "queued");
        assert_eq!(r["next_attempt_at"], r["scheduled_for"], "not sent before");
        assert_eq!(r["to_number"], "+14155552001");
    }
    assert_eq!(reminders[0]["body"], "Clinic A: Mon 3 Mar 2031 09:00");
    assert!(
        reminders[1]["body"]
            .as_str()
            .expect("body")
            .starts_with("Clinic A: a reminder of your appointment on Mon 3 Mar 2031 at 09:00"),
        "{}",
        reminders[1]["body"]
    );
    assert_eq!(rows(app, a, "confirmation").await.len(), 1);
    // Nothing due yet: the worker sends the confirmation only.
    let outcomes = round(&w.worker).await;
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(w.fake.seen().len(), 1);
}

#[tokio::test]
async fn a_day_before_stays_the_same_local_time_across_the_spring_change() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    set_messaging(
        app,
        a,
        json!({"quiet_hours": {"start": "00:00", "end": "00:00"},
               "reminders": [{"minutes_before": 2880}, {"minutes_before": 1440}]}),
    )
    .await;
    let c = contact(app, a, "+14155552002").await;
    // Clocks in Los Angeles go forward on Sun 9 Mar 2031. Tue 11 Mar 09:00 PDT = 16:00Z.
    book_at(app, a, &c, "2031-03-11T16:00:00Z").await;
    let due: Vec<DateTime<Utc>> = rows(app, a, "reminder")
        .await
        .iter()
        .map(|r| instant(&r["scheduled_for"]))
        .collect();
    assert_eq!(
        due,
        vec![
            // Sun 9 Mar 09:00 PDT: after the change.
            "2031-03-09T16:00:00Z".parse::<DateTime<Utc>>().expect("t"),
            // Mon 10 Mar 09:00 PDT.
            "2031-03-10T16:00:00Z".parse().expect("t"),
        ]
    );
    // Sat 8 Mar 09:00 PST, before the change, is 17:00Z: 47 hours before, not 48.
    let c2 = contact(app, a, "+14155552003").await;
    book_at(app, a, &c2, "2031-03-10T16:00:00Z").await;
    let due: Vec<String> = rows(app, a, "reminder")
        .await
        .iter()
        .filter(|r| r["to_number"] == "+14155552003")
        .map(|r| r["scheduled_for"].as_str().expect("t").to_owned())
        .collect();
    let due: Vec<DateTime<Utc>> = due.iter().map(|t| t.parse().expect("t")).collect();
    assert_eq!(
        due,
        vec![
            "2031-03-08T17:00:00Z".parse::<DateTime<Utc>>().expect("t"),
            "2031-03-09T16:00:00Z".parse().expect("t"),
        ]
    );
}

#[tokio::test]
async fn a_reminder_that_would_fall_after_the_appointment_or_in_the_past_is_not_queued() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    set_messaging(app, a, json!({"reminders": [{"minutes_before": 60}]})).await;
    let c = contact(app, a, "+14155552004").await;
    // 08:30 local: an hour before is 07:30, quiet until 08:00... 08:00 < 08:30: it goes at 08:00.
    book_at(app, a, &c, "2031-03-03T16:30:00Z").await;
    // 07:30 local: 06:30 is quiet until 08:00, after the appointment: no reminder.
    book_at(app, a, &c, "2031-03-04T15:30:00Z").await;
    let reminders = rows(app, a, "reminder").await;
    assert_eq!(reminders.len(), 1, "{reminders:?}");
    assert_eq!(
        instant(&reminders[0]["scheduled_for"]),
        "2031-03-03T16:00:00Z".parse::<DateTime<Utc>>().expect("t")
    );
    // Booked 30 minutes ahead: an hour before has passed.
    let soon = (Utc::now() + chrono::Duration::minutes(30)).to_rfc3339();
    set_messaging(
        app,
        a,
        json!({"quiet_hours": {"start": "00:00", "end": "00:00"}, "reminders": [{"minutes_before": 60}]}),
    )
    .await;
    book_at(app, a, &c, &soon).await;
    assert_eq!(rows(app, a, "reminder").await.len(), 1);
}

#[tokio::test]
async fn rules_for_a_service_remind_only_its_appointments() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    let service = app
        .post(
            "/api/v1/services",
            &owner(app, a),
            &json!({"name": "Surgery", "duration_minutes": 60}),
        )
        .await;
    assert_eq!(service.status, 201, "{:?}", service.body);
    set_messaging(
        app,
        a,
        json!({"reminders": [{"minutes_before": 4320, "service_id": service.body["id"]}]}),
    )
    .await;
    let c = contact(app, a, "+14155552005").await;
    book_at(app, a, &c, "2031-03-05T17:00:00Z").await;
    assert!(rows(app, a, "reminder").await.is_empty());
    let r = app
        .post(
            "/api/v1/appointments",
            &staff(app, a),
            &json!({"contact_id": c, "starts_at": "2031-03-06T17:00:00Z", "service_id": service.body["id"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let reminders = rows(app, a, "reminder").await;
    assert_eq!(reminders.len(), 1);
    assert_eq!(
        instant(&reminders[0]["scheduled_for"]),
        "2031-03-03T17:00:00Z".parse::<DateTime<Utc>>().expect("t")
    );
}

#[tokio::test]
async fn a_move_supersedes_the_reminders_and_a_cancellation_stops_them() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    set_messaging(
        app,
        a,
        json!({"quiet_hours": {"start": "00:00", "end": "00:00"}, "reminders": [{"minutes_before": 1440}]}),
    )
    .await;
    let c = contact(app, a, "+14155552006").await;
    let id = book_at(app, a, &c, "2031-03-03T17:00:00Z").await;
    let r = app
        .patch(
            &format!("/api/v1/appointments/{id}"),
            &staff(app, a),
            &json!({"starts_at": "2031-03-04T18:00:00Z", "ends_at": "2031-03-04T18:30:00Z"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let reminders = rows(app, a, "reminder").await;
    assert_eq!(reminders.len(), 2, "{reminders:?}");
    assert_eq!(reminders[0]["status"], "suppressed");
    assert!(reminders[0]["last_error"]
        .as_str()
        .expect("why")
        .contains("superseded"));
    assert_eq!(reminders[1]["status"], "queued");
    assert_eq!(
        instant(&reminders[1]["scheduled_for"]),
        "2031-03-03T18:00:00Z".parse::<DateTime<Utc>>().expect("t")
    );
    assert!(reminders[1]["body"]
        .as_str()
        .expect("body")
        .contains("Tue 4 Mar 2031 at 10:00"));
    // Cancelled before it was due: when its time comes it is not sent.
    let r = app
        .post(
            &format!("/api/v1/appointments/{id}/cancel"),
            &staff(app, a),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    round(&w.worker).await; // the confirmations
    let sent_before = w.fake.seen().len();
    admin_exec(
        app,
        "UPDATE sms_confirmation_logs SET next_attempt_at = now() - interval '1 second'
          WHERE status = 'queued' AND kind = 'reminder' AND to_number = $1",
        "+14155552006",
    )
    .await;
    let outcomes = round(&w.worker).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Suppressed { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(
        w.fake.seen().len(),
        sent_before,
        "the provider never called"
    );
}

#[tokio::test]
async fn a_due_reminder_is_sent_and_one_claimed_in_quiet_hours_waits_for_their_end() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    set_messaging(
        app,
        a,
        json!({"quiet_hours": {"start": "00:00", "end": "00:00"}, "reminders": [{"minutes_before": 1440}]}),
    )
    .await;
    let c = contact(app, a, "+14155552007").await;
    book_at(app, a, &c, "2031-03-03T17:00:00Z").await;
    round(&w.worker).await; // the confirmation
    admin_exec(
        app,
        "UPDATE sms_confirmation_logs SET next_attempt_at = now() - interval '1 second'
          WHERE kind = 'reminder' AND to_number = $1",
        "+14155552007",
    )
    .await;
    let outcomes = round(&w.worker).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
    let seen = w.fake.seen();
    let last = seen.last().expect("sent");
    assert_eq!(last.form["To"], "+14155552007");
    assert!(last.form["Body"].contains("a reminder of your appointment"));
    assert_eq!(last.user, A_SID, "the clinic's own account");

    // Quiet hours around the present moment in Los Angeles: a reminder claimed now waits.
    let tz: chrono_tz::Tz = "America/Los_Angeles".parse().expect("tz");
    let local = Utc::now().with_timezone(&tz);
    let start = (local - chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    let end = (local + chrono::Duration::hours(1))
        .format("%H:%M")
        .to_string();
    set_messaging(
        app,
        a,
        json!({"quiet_hours": {"start": start, "end": end}, "reminders": [{"minutes_before": 1440}]}),
    )
    .await;
    let c = contact(app, a, "+14155552008").await;
    book_at(app, a, &c, "2031-03-05T17:00:00Z").await;
    round(&w.worker).await; // the confirmation goes whatever the hour
    admin_exec(
        app,
        "UPDATE sms_confirmation_logs SET next_attempt_at = now() - interval '1 second'
          WHERE kind = 'reminder' AND to_number = $1",
        "+14155552008",
    )
    .await;
    let before = w.fake.seen().len();
    let outcomes = round(&w.worker).await;
    let [SmsOutcome::Deferred { until }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    let wait = *until - Utc::now();
    assert!(
        wait > chrono::Duration::minutes(55) && wait <= chrono::Duration::minutes(61),
        "until the quiet hours end, about an hour from now: {until}"
    );
    assert_eq!(w.fake.seen().len(), before, "nothing sent in quiet hours");
    let row = rows(app, a, "reminder")
        .await
        .into_iter()
        .find(|r| r["to_number"] == "+14155552008")
        .expect("row");
    assert_eq!(row["status"], "queued");
    assert_eq!(row["attempts"], 0, "a deferral is not an attempt");
    assert_eq!(instant(&row["next_attempt_at"]), *until);
}

// ---------------------------------------------------------------------------------------
// Inbound texts: keywords

#[tokio::test]
async fn every_opt_out_keyword_opts_the_number_out_with_a_consent_record() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    for (i, word) in voxanne_domain::messages::OPT_OUT_KEYWORDS
        .iter()
        .enumerate()
    {
        let phone = format!("+1415555300{i}");
        let body = if i % 2 == 0 {
            word.to_string()
        } else {
            format!(" {}. ", word.to_lowercase())
        };
        let (status, content_type, twiml) = text_in(
            app,
            &format!("SMstop{i:028}"),
            &phone,
            a.number,
            &body,
            Some(A_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{word}: {twiml}");
        assert!(content_type.starts_with("text/xml"), "{content_type}");
        assert_eq!(twiml, EMPTY_TWIML, "{word}: the carrier answers STOP");
        let listed: Vec<Value> = dnc(app, a)
            .await
            .into_iter()
            .filter(|e| e["phone"] == phone.as_str())
            .collect();
        assert_eq!(listed.len(), 1, "{word}");
        assert_eq!(listed[0]["source"], "sms_opt_out");
        let records = consents(app, a, &phone).await;
        let mut channels: Vec<&str> = records
            .iter()
            .map(|r| {
                assert_eq!(r["granted"], false);
                assert_eq!(r["source"], "sms_keyword");
                r["channel"].as_str().expect("channel")
            })
            .collect();
        channels.sort_unstable();
        assert_eq!(channels, ["calls", "sms"], "{word}");
    }
    // Not a keyword: a sentence with one in it.
    let (_, _, twiml) = text_in(
        app,
        "SMsentence000000000000000000000000",
        "+14155553100",
        a.number,
        "please stop the reminders for my son",
        Some(A_TOKEN),
    )
    .await;
    assert_eq!(twiml, EMPTY_TWIML);
    assert!(!dnc(app, a)
        .await
        .iter()
        .any(|e| e["phone"] == "+14155553100"));
    let open = inbox(app, a, "?status=open").await;
    assert_eq!(
        open.len(),
        1,
        "only the sentence needs the clinic: {open:?}"
    );
    assert_eq!(open[0]["kind"], "message");
    assert_eq!(open[0]["body"], "please stop the reminders for my son");
    assert!(
        dnc(&w.app, &w.b)
            .await
            .iter()
            .all(|e| e["source"] == "staff"),
        "clinic B untouched"
    );
}

#[tokio::test]
async fn an_opted_out_number_gets_no_more_texts_until_start() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    let (_, _, twiml) = text_in(app, "SMa1", PAT, a.number, "STOP", Some(A_TOKEN)).await;
    assert_eq!(twiml, EMPTY_TWIML);
    let c = contact(app, a, PAT).await;
    book_at(app, a, &c, "2031-03-03T17:00:00Z").await;
    let outcomes = round(&w.worker).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Suppressed { .. }]),
        "{outcomes:?}"
    );
    assert!(w.fake.seen().is_empty(), "the provider never called");
    // HELP from an opted-out number is not answered either (the carrier would refuse it).
    let (_, _, twiml) = text_in(app, "SMa2", PAT, a.number, "HELP", Some(A_TOKEN)).await;
    assert_eq!(twiml, EMPTY_TWIML);
    let (_, _, twiml) = text_in(app, "SMa3", PAT, a.number, "start", Some(A_TOKEN)).await;
    assert_eq!(twiml, EMPTY_TWIML, "the carrier confirms START");
    assert!(!dnc(app, a).await.iter().any(|e| e["phone"] == PAT));
    let latest = &consents(app, a, PAT).await[0];
    assert_eq!(latest["channel"], "sms");
    assert_eq!(latest["granted"], true);
    book_at(app, a, &c, "2031-03-04T17:00:00Z").await;
    let outcomes = round(&w.worker).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn start_does_not_undo_a_number_the_clinics_staff_listed() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    let r = app
        .post(
            "/api/v1/dnc",
            &staff(app, a),
            &json!({"phone": PAT, "reason": "asked at the desk"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["source"], "staff");
    text_in(app, "SMb1", PAT, a.number, "UNSTOP", Some(A_TOKEN)).await;
    let listed = dnc(app, a).await;
    assert!(
        listed
            .iter()
            .any(|e| e["phone"] == PAT && e["source"] == "staff"),
        "{listed:?}"
    );
}

#[tokio::test]
async fn help_is_answered_with_the_clinics_own_text() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    let (status, _, twiml) = text_in(app, "SMh1", PAT, a.number, "help", Some(A_TOKEN)).await;
    assert_eq!(status, 200);
    let default = message_of(&twiml);
    assert!(default.starts_with("Clinic A: reply C"), "{default}");
    assert!(default.contains(a.number), "{default}");
    set_messaging(
        app,
        a,
        json!({"help_text": "Sunrise & Co: call <us> on +14155550100."}),
    )
    .await;
    let (_, _, twiml) = text_in(app, "SMh2", PAT, a.number, "INFO", Some(A_TOKEN)).await;
    assert_eq!(
        message_of(&twiml),
        "Sunrise &amp; Co: call &lt;us&gt; on +14155550100.",
        "escaped as XML"
    );
    let all = inbox(app, a, "").await;
    assert!(all
        .iter()
        .all(|m| m["kind"] == "help" && m["status"] == "done"));
}

#[tokio::test]
async fn twilio_advanced_opt_out_types_are_honoured_for_the_clinics_own_keywords() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    // A Messaging Service set up with "ARRET" as an opt-out keyword says so in OptOutType.
    let fixture: Vec<(String, String)> =
        serde_json::from_slice(&fixture("twilio/inbound-message.json")).expect("fixture");
    let mut params: Vec<(String, String)> = fixture
        .into_iter()
        .map(|(k, v)| {
            let v = match v.as_str() {
                "__MESSAGE_SID__" => "SMarret".to_owned(),
                "__FROM__" => PAT.to_owned(),
                "__TO__" => a.number.to_owned(),
                "__BODY__" => "ARRET".to_owned(),
                "__ACCOUNT_SID__" => A_SID.to_owned(),
                _ => v,
            };
            (k, v)
        })
        .collect();
    params.push(("OptOutType".to_owned(), "STOP".to_owned()));
    let url = format!("{}{INBOUND_PATH}", app.base);
    let r = app
        .client
        .post(&url)
        .header(
            "x-twilio-signature",
            twilio_sign(A_TOKEN.as_bytes(), &url, &params),
        )
        .form(&params)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert!(dnc(app, a).await.iter().any(|e| e["phone"] == PAT));
}

// ---------------------------------------------------------------------------------------
// Inbound texts: replies

#[tokio::test]
async fn c_confirms_and_r_asks_to_reschedule_in_the_clinic_texted_only() {
    let w = world().await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    // PAT is a patient of both clinics; B's confirmation is the later one.
    let in_a = confirmed_booking(&w, a, PAT, "2031-03-03T17:00:00Z").await;
    let in_b = confirmed_booking(&w, b, PAT, "2031-03-04T10:00:00Z").await;
    let (status, _, twiml) = text_in(app, "SMc1", PAT, a.number, " c ", Some(A_TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(
        message_of(&twiml),
        "Clinic A: thank you, your appointment on Mon 3 Mar 2031 at 09:00 is confirmed."
    );
    assert!(appointment(app, a, &in_a).await["confirmed_at"].is_string());
    assert!(
        appointment(app, b, &in_b).await["confirmed_at"].is_null(),
        "clinic B's appointment is not confirmed by a text to clinic A"
    );
    let (_, _, twiml) = text_in(app, "SMr1", PAT, b.number, "R", Some(B_TOKEN)).await;
    assert!(message_of(&twiml).contains("we will call you"), "{twiml}");
    let open_b = inbox(app, b, "?status=open").await;
    assert_eq!(open_b.len(), 1, "{open_b:?}");
    assert_eq!(open_b[0]["kind"], "reschedule_request");
    assert_eq!(open_b[0]["appointment_id"], in_b.as_str());
    assert_eq!(open_b[0]["from_number"], PAT);
    assert!(open_b[0]["reply_to_sms_id"].is_string());
    assert!(
        inbox(app, a, "?status=open").await.is_empty(),
        "nothing of B's request in A's inbox"
    );
    let all_a = inbox(app, a, "").await;
    assert_eq!(all_a.len(), 1);
    assert_eq!(all_a[0]["kind"], "confirmed");
    assert_eq!(all_a[0]["appointment_id"], in_a.as_str());
    // A's message is not B's to read, nor to mark.
    let id = all_a[0]["id"].as_str().expect("id");
    let r = app
        .get_as(&format!("/api/v1/inbox/{id}"), &staff(app, b))
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .patch(
            &format!("/api/v1/inbox/{id}"),
            &staff(app, b),
            &json!({"status": "open"}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert_eq!(inbox(app, a, "").await[0]["status"], "done");
    // B's staff deal with the request.
    let request = open_b[0]["id"].as_str().expect("id");
    let r = app
        .patch(
            &format!("/api/v1/inbox/{request}"),
            &staff(app, b),
            &json!({"status": "done"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["handled_at"].is_string());
    assert!(inbox(app, b, "?status=open").await.is_empty());
}

#[tokio::test]
async fn a_reply_with_nothing_pending_is_a_message_for_the_inbox() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    // A confirmation of an appointment already cancelled is not pending.
    let id = confirmed_booking(&w, a, PAT, "2031-03-03T17:00:00Z").await;
    let r = app
        .post(
            &format!("/api/v1/appointments/{id}/cancel"),
            &staff(app, a),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let (_, _, twiml) = text_in(app, "SMn1", PAT, a.number, "C", Some(A_TOKEN)).await;
    assert_eq!(twiml, EMPTY_TWIML);
    let open = inbox(app, a, "?status=open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["kind"], "message");
    assert!(open[0]["appointment_id"].is_null());
    assert!(open[0]["contact_id"].is_string(), "matched to the contact");
}

#[tokio::test]
async fn a_retried_webhook_changes_nothing_and_gets_the_same_answer() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    confirmed_booking(&w, a, PAT, "2031-03-03T17:00:00Z").await;
    let first = text_in(app, "SMdup", PAT, a.number, "C", Some(A_TOKEN)).await;
    let again = text_in(app, "SMdup", PAT, a.number, "C", Some(A_TOKEN)).await;
    assert_eq!(first, again);
    assert_eq!(inbox(app, a, "").await.len(), 1);
    text_in(app, "SMdup2", PAT, a.number, "STOP", Some(A_TOKEN)).await;
    text_in(app, "SMdup2", PAT, a.number, "STOP", Some(A_TOKEN)).await;
    assert_eq!(
        consents(app, a, PAT).await.len(),
        2,
        "one record per channel, once"
    );
    assert_eq!(inbox(app, a, "").await.len(), 2);
}

#[tokio::test]
async fn unsigned_foreign_or_unknown_number_texts_are_refused_and_write_nothing() {
    let w = world().await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    let cases = [
        ("unsigned", a.number, None),
        ("signed with clinic B's token", a.number, Some(B_TOKEN)),
        ("to a number no clinic owns", "+14155559999", Some(A_TOKEN)),
    ];
    for (i, (why, to, token)) in cases.into_iter().enumerate() {
        let (status, _, body) = text_in(app, &format!("SMbad{i}"), PAT, to, "STOP", token).await;
        assert_eq!(status, 401, "{why}: {body}");
        let error: Value = serde_json::from_str(&body).expect("a JSON error");
        assert_eq!(error["error"]["code"], "invalid_signature", "{why}");
    }
    for clinic in [a, b] {
        assert!(inbox(app, clinic, "").await.is_empty());
        assert!(!dnc(app, clinic).await.iter().any(|e| e["phone"] == PAT));
    }
    // Not an incoming message at all.
    let r = app
        .client
        .post(format!("{}{INBOUND_PATH}", app.base))
        .form(&[("Body", "hi")])
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
}

// ---------------------------------------------------------------------------------------
// The carrier's opt-out

#[tokio::test]
async fn twilio_21610_opts_the_number_out_of_the_clinic() {
    let w = world().await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    w.fake.script(PAT, &[Reply::Unsubscribed]);
    let c = contact(app, a, PAT).await;
    book_at(app, a, &c, "2031-03-03T17:00:00Z").await;
    let outcomes = round(&w.worker).await;
    let [SmsOutcome::Failed { error }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert!(error.contains("21610"), "{error}");
    let listed: Vec<Value> = dnc(app, a)
        .await
        .into_iter()
        .filter(|e| e["phone"] == PAT)
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["source"], "carrier_opt_out");
    assert!(consents(app, a, PAT)
        .await
        .iter()
        .all(|r| r["granted"] == false && r["source"] == "carrier"));
    assert!(
        consents(app, b, PAT).await.is_empty(),
        "clinic B's consent is its own"
    );
    // A later booking is suppressed without calling the provider.
    book_at(app, a, &c, "2031-03-04T17:00:00Z").await;
    let calls = w.fake.seen().len();
    let outcomes = round(&w.worker).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Suppressed { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(w.fake.seen().len(), calls);
}

#[tokio::test]
async fn a_status_callback_with_error_21610_opts_the_recipient_out() {
    let w = world().await;
    let (app, a) = (&w.app, &w.a);
    let url = format!("{}/webhooks/sms/twilio/status", app.base);
    let params: Vec<(String, String)> = [
        ("MessageSid", "SMunknown0000000000000000000000000"),
        ("MessageStatus", "failed"),
        ("ErrorCode", "21610"),
        ("From", a.number),
        ("To", PAT),
        ("AccountSid", A_SID),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let r = app
        .client
        .post(&url)
        .header(
            "x-twilio-signature",
            twilio_sign(A_TOKEN.as_bytes(), &url, &params),
        )
        .form(&params)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert!(dnc(app, a)
        .await
        .iter()
        .any(|e| e["phone"] == PAT && e["source"] == "carrier_opt_out"));
}

// ---------------------------------------------------------------------------------------
// The agent takes a message

#[tokio::test]
async fn the_agent_takes_a_message_or_a_callback_request_for_the_clinics_inbox() {
    let w = world().await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    app.set_vapi_secret(a, "whsec-clinic-a-0123456789").await;
    let message = json!({"message": {"type": "tool-calls",
        "call": {"id": "call-msg-1", "type": "inboundPhoneCall"},
        "phoneNumber": {"number": a.number}, "customer": {"number": PAT},
        "toolCallList": [
            {"id": "tc-msg-1", "type": "function", "function": {"name": "take_message",
             "arguments": {"message": "Please call me about my bill", "callback": true, "name": "Pat"}}},
            {"id": "tc-msg-2", "type": "function", "function": {"name": "take_message",
             "arguments": {"message": "Running late for tomorrow"}}}]}});
    let body = message.to_string().into_bytes();
    let r = app
        .post_vapi(
            &body,
            Some(("whsec-clinic-a-0123456789", Utc::now().timestamp())),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["results"][0]["result"]
        .as_str()
        .expect("result")
        .contains("call back on +14155552020"));
    // Retried by the platform: the same toolCallIds take nothing twice.
    let r = app
        .post_vapi(
            &body,
            Some(("whsec-clinic-a-0123456789", Utc::now().timestamp())),
        )
        .await;
    assert_eq!(r.status, 200);
    let open = inbox(app, a, "?status=open").await;
    assert_eq!(open.len(), 2, "{open:?}");
    let callback = open
        .iter()
        .find(|m| m["kind"] == "callback_request")
        .expect("callback");
    assert_eq!(callback["channel"], "call");
    assert_eq!(callback["from_number"], PAT);
    assert_eq!(callback["caller_name"], "Pat");
    assert_eq!(callback["body"], "Please call me about my bill");
    assert!(callback["call_id"].is_string());
    assert!(open.iter().any(|m| m["kind"] == "message"));
    assert!(inbox(app, b, "").await.is_empty());
}

#[tokio::test]
async fn inbox_rows_and_consent_records_are_the_clinics_own_in_the_database_too() {
    let w = world().await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    text_in(app, "SMiso1", PAT, a.number, "Hello", Some(A_TOKEN)).await;
    text_in(app, "SMiso2", PAT, b.number, "STOP", Some(B_TOKEN)).await;
    let a_rows = admin_json(
        app,
        "SELECT to_jsonb(m) FROM inbox_messages m WHERE org_id = $1",
        a,
    )
    .await;
    assert_eq!(a_rows.len(), 1);
    assert_eq!(a_rows[0]["to_number"], a.number);
    assert!(
        admin_json(
            app,
            "SELECT to_jsonb(c) FROM consent_records c WHERE org_id = $1",
            a
        )
        .await
        .is_empty(),
        "B's STOP is not A's"
    );
    assert_eq!(
        admin_json(
            app,
            "SELECT to_jsonb(c) FROM consent_records c WHERE org_id = $1",
            b
        )
        .await
        .len(),
        2
    );
}
