//! SMS confirmations, end to end: booked through the API, sent by the worker through a fake
//! Twilio (a real HTTP server on loopback that records every request and answers from a
//! script: 500, too slow, 201 with a sid, 400 with a Twilio error), moved on by signed status
//! callbacks. A real PostgreSQL; no mocks.
use crate::support::*;

use crate::support::fake_twilio::{FakeTwilio, Reply};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use voxanne_db::demo::DemoClinic;
use voxanne_jobs::{Job, Metrics, Schedule, SmsConfig, SmsOutcome, SmsWorker};
use voxanne_webhooks::signature::twilio_sign;

const A_SID: &str = "AC-clinic-a";
const A_TOKEN: &str = "auth-token-of-clinic-a";
const B_SID: &str = "AC-clinic-b";
const B_TOKEN: &str = "auth-token-of-clinic-b";
const CALLBACK_PATH: &str = "/webhooks/sms/twilio/status";

fn config(app: &TestApp, fake: &FakeTwilio) -> SmsConfig {
    SmsConfig {
        schedule: quick_schedule(),
        http_timeout: Duration::from_secs(2),
        api_url: fake.base.parse().expect("url"),
        public_url: Some(app.base.parse().expect("url")),
    }
}

fn worker(app: &TestApp, config: SmsConfig) -> SmsWorker {
    SmsWorker::new(
        app.t.db.clone(),
        Arc::new(keyring()),
        config,
        Arc::new(Metrics::default()),
    )
    .expect("worker")
}

/// Runs one round; the outcomes.
async fn round(w: &SmsWorker) -> Vec<SmsOutcome> {
    w.run_once()
        .await
        .expect("round")
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

async fn set_twilio(app: &TestApp, clinic: &DemoClinic, config: Value, token: &str) {
    let r = app
        .put(
            "/api/v1/integrations/twilio",
            &app.token(clinic.owner, Some(clinic.org)),
            &json!({"config": config, "secrets": {"auth_token": token}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// Both demo clinics, each with its own Twilio account; a fake provider.
async fn world() -> (TestApp, DemoClinic, DemoClinic, FakeTwilio) {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    set_twilio(&app, &a, json!({"account_sid": A_SID}), A_TOKEN).await;
    set_twilio(&app, &b, json!({"account_sid": B_SID}), B_TOKEN).await;
    (app, a, b, FakeTwilio::spawn().await)
}

fn staff(app: &TestApp, clinic: &DemoClinic) -> String {
    app.token(clinic.staff, Some(clinic.org))
}

/// A new contact of `clinic` (with `phone`, if any); its id.
async fn contact(app: &TestApp, clinic: &DemoClinic, phone: Option<&str>) -> String {
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

/// Books `day` (of March 2031) at 17:00Z for `contact`; the appointment's id.
async fn book(app: &TestApp, clinic: &DemoClinic, contact: Option<&str>, day: u32) -> String {
    let starts = format!("2031-03-{day:02}T17:00:00Z");
    let ends = format!("2031-03-{day:02}T17:30:00Z");
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

/// A clinic's SMS rows, oldest first, as the superuser sees them.
async fn rows(app: &TestApp, clinic: &DemoClinic) -> Vec<Value> {
    let mut admin = app.t.admin().await;
    let mut rows: Vec<Value> = sqlx::query_scalar(
        "SELECT to_jsonb(s) FROM sms_confirmation_logs s WHERE org_id = $1 ORDER BY created_at, id",
    )
    .bind(clinic.org.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("rows");
    for row in &mut rows {
        voxanne_testkit::open_patient_text("sms_confirmation_logs", row);
    }
    rows
}

async fn only_row(app: &TestApp, clinic: &DemoClinic) -> Value {
    let mut all = rows(app, clinic).await;
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

async fn admin_sql(app: &TestApp, sql: &str, org: &DemoClinic) {
    let mut admin = app.t.admin().await;
    sqlx::query(sql)
        .bind(org.org.as_uuid())
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// POSTs a status callback with `params`, signed with `token` over the exact URL (None:
/// unsigned).
async fn callback(app: &TestApp, params: &[(&str, &str)], token: Option<&str>) -> Response {
    let url = format!("{}{CALLBACK_PATH}", app.base);
    let owned: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let mut request = app.client.post(&url).form(&owned);
    if let Some(token) = token {
        request = request.header(
            "x-twilio-signature",
            twilio_sign(token.as_bytes(), &url, &owned),
        );
    }
    let response = request.send().await.expect("send");
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Response { status, body }
}

async fn status_of(app: &TestApp, sid: &str, clinic: &DemoClinic, status: &str) -> Response {
    callback(
        app,
        &[
            ("MessageSid", sid),
            ("MessageStatus", status),
            ("From", clinic.number),
            ("To", "+14155557777"),
            ("AccountSid", A_SID),
        ],
        Some(A_TOKEN),
    )
    .await
}

/// Books for a new contact of `clinic` at `phone` on `day` and sends it; the message's sid.
async fn sent_message(
    app: &TestApp,
    clinic: &DemoClinic,
    w: &SmsWorker,
    phone: &str,
    day: u32,
) -> String {
    let c = contact(app, clinic, Some(phone)).await;
    book(app, clinic, Some(&c), day).await;
    let outcomes = round(w).await;
    match outcomes.as_slice() {
        [SmsOutcome::Sent { sid: Some(sid), .. }] => sid.clone(),
        other => panic!("expected one sent message: {other:?}"),
    }
}

#[tokio::test]
async fn a_booking_queues_one_confirmation_that_the_worker_sends_once_with_the_clinics_own_account()
{
    let (app, a, b, fake) = world().await;
    let before_b = app.snapshot(b.org).await;
    let c = contact(&app, &a, Some("+14155552001")).await;
    let appointment = book(&app, &a, Some(&c), 3).await;

    let queued = only_row(&app, &a).await;
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["appointment_id"], appointment.as_str());
    assert_eq!(queued["to_number"], "+14155552001");
    assert_eq!(queued["attempts"], 0);
    // Clinic A is in America/Los_Angeles: 17:00Z is 09:00 there.
    assert_eq!(
        queued["body"],
        "Clinic A: your appointment on Mon 3 Mar 2031 at 09:00 is confirmed."
    );
    assert!(
        fake.seen().is_empty(),
        "nothing is sent inside the booking request"
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("voxanne_sms{status=\"queued\"} 1\n"),
        "{metrics}"
    );

    let w = worker(&app, config(&app, &fake));
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { sid: Some(_), .. }]),
        "{outcomes:?}"
    );
    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{A_SID}/Messages.json")
    );
    assert_eq!(
        (request.user.as_str(), request.password.as_str()),
        (A_SID, A_TOKEN)
    );
    assert_eq!(request.form["To"], "+14155552001");
    assert_eq!(request.form["From"], a.number);
    assert_eq!(request.form["Body"], queued["body"].as_str().expect("body"));
    assert_eq!(
        request.form["StatusCallback"],
        format!("{}{CALLBACK_PATH}", app.base)
    );

    let sent = only_row(&app, &a).await;
    assert_eq!(sent["status"], "sent", "accepted: no longer queued");
    assert_eq!(sent["provider_message_id"], format!("SM{:032x}", 1));
    assert_eq!(sent["from_number"], a.number);
    assert_eq!(sent["attempts"], 1);

    assert!(round(&w).await.is_empty(), "a second round sends nothing");
    assert_eq!(fake.seen().len(), 1);

    let listed = app
        .get_as("/api/v1/sms-confirmations", &staff(&app, &a))
        .await;
    let items = listed.body["data"].as_array().expect("data");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["status"], "sent");
    assert_eq!(items[0]["attempts"], 1);
    assert_eq!(items[0]["last_error"], Value::Null);
    assert_eq!(items[0]["from_number"], a.number);
    assert!(items[0]["updated_at"].is_string());
    assert_eq!(app.snapshot(b.org).await, before_b, "clinic B is untouched");
    let theirs = app
        .get_as("/api/v1/sms-confirmations", &staff(&app, &b))
        .await;
    assert_eq!(theirs.body["data"], json!([]));
}

#[tokio::test]
async fn a_confirmed_hold_queues_one_confirmation_and_idempotent_replays_queue_no_second() {
    let (app, a, _, _) = world().await;
    let token = staff(&app, &a);
    let c = contact(&app, &a, Some("+14155552002")).await;
    let hold = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &json!({"contact_id": c, "starts_at": "2031-03-04T17:00:00Z",
                    "ends_at": "2031-03-04T17:30:00Z", "ttl_seconds": 120}),
        )
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    assert!(rows(&app, &a).await.is_empty(), "a hold is not a booking");
    let path = format!(
        "/api/v1/appointment-holds/{}/confirm",
        hold.body["id"].as_str().expect("id")
    );
    let key = [("Idempotency-Key", "confirm-sms-1")];
    let first = app.send("POST", &path, &token, None, &key).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let replay = app.send("POST", &path, &token, None, &key).await;
    assert_eq!((replay.status.as_u16(), &replay.body), (201, &first.body));
    let row = only_row(&app, &a).await;
    assert_eq!(row["appointment_id"], first.body["id"]);

    let booking = json!({"contact_id": c, "starts_at": "2031-03-05T17:00:00Z", "ends_at": "2031-03-05T17:30:00Z"});
    let key = [("Idempotency-Key", "booking-sms-1")];
    let first = app
        .send("POST", "/api/v1/appointments", &token, Some(&booking), &key)
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let replay = app
        .send("POST", "/api/v1/appointments", &token, Some(&booking), &key)
        .await;
    assert_eq!((replay.status.as_u16(), &replay.body), (201, &first.body));
    assert_eq!(
        rows(&app, &a).await.len(),
        2,
        "one per booking, none per replay"
    );
}

#[tokio::test]
async fn a_booking_without_a_contact_or_a_phone_queues_nothing() {
    let (app, a, _, _) = world().await;
    book(&app, &a, None, 3).await;
    let c = contact(&app, &a, None).await;
    book(&app, &a, Some(&c), 4).await;
    assert!(rows(&app, &a).await.is_empty());
}

#[tokio::test]
async fn a_number_on_the_clinics_dnc_list_is_suppressed_and_the_provider_never_called() {
    let (app, a, b, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    let r = app
        .post(
            "/api/v1/dnc",
            &staff(&app, &a),
            &json!({"phone": "+14155552003"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c = contact(&app, &a, Some("+14155552003")).await;
    book(&app, &a, Some(&c), 3).await;
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Suppressed { .. }]),
        "{outcomes:?}"
    );
    let row = only_row(&app, &a).await;
    assert_eq!(row["status"], "suppressed");
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("do-not-call")),
        "{row}"
    );
    assert!(fake.seen().is_empty(), "the provider was called");
    assert!(round(&w).await.is_empty(), "a suppressed message stays so");

    // Clinic B's list is B's: it does not silence clinic A.
    let r = app
        .post(
            "/api/v1/dnc",
            &staff(&app, &b),
            &json!({"phone": "+14155552004"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c = contact(&app, &a, Some("+14155552004")).await;
    book(&app, &a, Some(&c), 4).await;
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
    assert_eq!(fake.seen().len(), 1);
    assert_eq!(fake.seen()[0].form["To"], "+14155552004");
}

#[tokio::test]
async fn a_provider_500_is_retried_after_a_backoff_and_sent_on_the_second_attempt() {
    let (app, a, _, fake) = world().await;
    // A long backoff, so the wait is visible; the test moves the clock of the row instead
    // of sleeping.
    let w = worker(&app, {
        let base = config(&app, &fake);
        SmsConfig {
            schedule: Schedule {
                backoff_base: Duration::from_secs(3600),
                backoff_max: Duration::from_secs(7200),
                ..base.schedule.clone()
            },
            ..base
        }
    });
    fake.script("+14155552005", &[Reply::Fail(500)]);
    let c = contact(&app, &a, Some("+14155552005")).await;
    book(&app, &a, Some(&c), 3).await;
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Retry { .. }]),
        "{outcomes:?}"
    );
    let row = only_row(&app, &a).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("queued"), Some(1))
    );
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 500")),
        "{row}"
    );
    // First backoff: the base with jitter, in [base/2, base] after the failure.
    let mut admin = app.t.admin().await;
    let wait_minutes: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM next_attempt_at - updated_at)::float8 / 60 FROM sms_confirmation_logs WHERE org_id = $1",
    )
    .bind(a.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("wait");
    assert!((29.0..=61.0).contains(&wait_minutes), "{wait_minutes}");
    assert!(
        round(&w).await.is_empty(),
        "nothing is claimed during the backoff"
    );
    assert_eq!(fake.seen().len(), 1);

    admin_sql(
        &app,
        "UPDATE sms_confirmation_logs SET next_attempt_at = now() WHERE org_id = $1",
        &a,
    )
    .await;
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
    let row = only_row(&app, &a).await;
    assert_eq!(
        (
            row["status"].as_str(),
            row["attempts"].as_i64(),
            row["next_attempt_at"].is_null()
        ),
        (Some("sent"), Some(2), true)
    );
    assert_eq!(fake.seen().len(), 2);
}

/// Rounds until `clinic` has nothing queued or sending (backoffs here are milliseconds).
async fn drain(app: &TestApp, clinic: &DemoClinic, w: &SmsWorker) {
    for _ in 0..200 {
        round(w).await;
        let busy = rows(app, clinic)
            .await
            .iter()
            .any(|r| r["status"] == "queued" || r["status"] == "sending");
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the queue did not drain");
}

#[tokio::test]
async fn a_provider_that_does_not_answer_in_time_is_retried() {
    let (app, a, _, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    fake.script("+14155552006", &[Reply::Slow]);
    let c = contact(&app, &a, Some("+14155552006")).await;
    book(&app, &a, Some(&c), 3).await;
    let outcomes = round(&w).await;
    match outcomes.as_slice() {
        [SmsOutcome::Retry { error }] => assert!(error.contains("did not answer"), "{error}"),
        other => panic!("{other:?}"),
    }
    drain(&app, &a, &w).await;
    let row = only_row(&app, &a).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("sent"), Some(2))
    );
}

#[tokio::test]
async fn a_provider_refusal_fails_at_once_with_the_providers_message() {
    let (app, a, _, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    fake.script("+14155552007", &[Reply::Fail(400)]);
    let c = contact(&app, &a, Some("+14155552007")).await;
    book(&app, &a, Some(&c), 3).await;
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Failed { .. }]),
        "{outcomes:?}"
    );
    let row = only_row(&app, &a).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    let error = row["last_error"].as_str().expect("last_error");
    assert!(
        error.contains("HTTP 400")
            && error.contains("21211")
            && error.contains("not a valid phone number"),
        "{error}"
    );
    assert!(round(&w).await.is_empty());
    assert_eq!(fake.seen().len(), 1, "no retry");
}

#[tokio::test]
async fn the_attempt_that_reaches_the_maximum_ends_failed() {
    let (app, a, _, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    fake.script(
        "+14155552008",
        &[
            Reply::Fail(503),
            Reply::Fail(500),
            Reply::Fail(429),
            Reply::Accept,
        ],
    );
    let c = contact(&app, &a, Some("+14155552008")).await;
    book(&app, &a, Some(&c), 3).await;
    drain(&app, &a, &w).await;
    let row = only_row(&app, &a).await;
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("failed"), Some(3)),
        "{row}"
    );
    assert!(row["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("HTTP 429")));
    assert_eq!(fake.seen().len(), 3, "max_attempts is 3");
}

#[tokio::test]
async fn missing_credentials_or_no_number_to_send_from_fail_without_a_retry() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let fake = FakeTwilio::spawn().await;
    let w = worker(&app, config(&app, &fake));
    let c = contact(&app, &a, Some("+14155552009")).await;

    book(&app, &a, Some(&c), 3).await;
    round(&w).await;
    let row = rows(&app, &a).await.remove(0);
    assert_eq!(
        (row["status"].as_str(), row["attempts"].as_i64()),
        (Some("failed"), Some(1))
    );
    assert!(row["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("no twilio integration")));

    set_twilio(&app, &a, json!({"from_number": a.number}), A_TOKEN).await;
    book(&app, &a, Some(&c), 4).await;
    round(&w).await;
    let row = rows(&app, &a).await.remove(1);
    assert!(
        row["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("no account_sid")),
        "{row}"
    );

    set_twilio(&app, &a, json!({"account_sid": A_SID}), A_TOKEN).await;
    admin_sql(&app, "DELETE FROM phone_numbers WHERE org_id = $1", &a).await;
    book(&app, &a, Some(&c), 5).await;
    round(&w).await;
    let row = rows(&app, &a).await.remove(2);
    assert_eq!(row["status"], "failed");
    assert!(row["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("owns no phone number")));

    assert!(round(&w).await.is_empty(), "none of them is retried");
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn messages_go_from_the_configured_number_only_if_the_clinic_owns_it() {
    let (app, a, b, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    let second = "+14155550199";
    let r = app
        .post(
            "/api/v1/phone-numbers",
            &app.token(a.owner, Some(a.org)),
            &json!({"number": second}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    set_twilio(
        &app,
        &a,
        json!({"account_sid": A_SID, "from_number": second}),
        A_TOKEN,
    )
    .await;
    sent_message(&app, &a, &w, "+14155552010", 3).await;
    // Clinic B's number is not clinic A's to send from: A's first number is used.
    set_twilio(
        &app,
        &a,
        json!({"account_sid": A_SID, "from_number": b.number}),
        A_TOKEN,
    )
    .await;
    sent_message(&app, &a, &w, "+14155552011", 4).await;
    let from: Vec<String> = fake.seen().iter().map(|s| s.form["From"].clone()).collect();
    assert_eq!(from, [second, a.number]);
}

#[tokio::test]
async fn status_callbacks_move_a_message_forward_only_in_order_or_out_of_order() {
    let (app, a, _, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    let in_order = sent_message(&app, &a, &w, "+14155552012", 3).await;
    let out_of_order = sent_message(&app, &a, &w, "+14155552013", 4).await;
    let status = |sid: String| {
        let app = &app;
        async move {
            let mut admin = app.t.admin().await;
            sqlx::query_scalar::<_, String>(
                "SELECT status FROM sms_confirmation_logs WHERE provider_message_id = $1",
            )
            .bind(sid)
            .fetch_one(&mut admin)
            .await
            .expect("status")
        }
    };

    for (word, applied) in [("sending", false), ("sent", false), ("delivered", true)] {
        let r = status_of(&app, &in_order, &a, word).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        assert_eq!(r.body, json!({"ok": true, "applied": applied}), "{word}");
    }
    assert_eq!(status(in_order.clone()).await, "delivered");

    for (word, applied) in [("delivered", true), ("sent", false), ("failed", false)] {
        let r = status_of(&app, &out_of_order, &a, word).await;
        assert_eq!(r.body, json!({"ok": true, "applied": applied}), "{word}");
    }
    assert_eq!(
        status(out_of_order.clone()).await,
        "delivered",
        "a late sent never overwrites delivered; the first outcome wins"
    );

    let failing = sent_message(&app, &a, &w, "+14155552014", 5).await;
    let r = callback(
        &app,
        &[
            ("MessageSid", &failing),
            ("MessageStatus", "undelivered"),
            ("ErrorCode", "30003"),
            ("From", a.number),
            ("To", "+14155552014"),
            ("AccountSid", A_SID),
        ],
        Some(A_TOKEN),
    )
    .await;
    assert_eq!(r.body["applied"], true);
    let row = rows(&app, &a).await.remove(2);
    assert_eq!(row["status"], "undelivered");
    assert!(row["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("30003")));

    let unknown = status_of(&app, "SMunknown", &a, "delivered").await;
    assert_eq!(
        (unknown.status.as_u16(), unknown.body.clone()),
        (200, json!({"ok": true, "applied": false}))
    );
}

#[tokio::test]
async fn badly_signed_or_foreign_status_callbacks_change_nothing() {
    let (app, a, b, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    let a_sid = sent_message(&app, &a, &w, "+14155552015", 3).await;
    let b_sid = sent_message(&app, &b, &w, "+442079462016", 4).await;
    let before_a = app.snapshot(a.org).await;
    let before_b = app.snapshot(b.org).await;
    let on_a = |sid: &str| {
        vec![
            ("MessageSid", sid.to_owned()),
            ("MessageStatus", "failed".to_owned()),
            ("From", a.number.to_owned()),
            ("To", "+14155552015".to_owned()),
            ("AccountSid", A_SID.to_owned()),
        ]
    };
    let send = |params: Vec<(&'static str, String)>, token: Option<&'static str>| {
        let app = &app;
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            callback(app, &params, token).await
        }
    };

    for (what, token) in [
        ("unsigned", None),
        ("a wrong token", Some("not-the-token")),
        ("clinic B's token on clinic A's number", Some(B_TOKEN)),
    ] {
        let r = send(on_a(&a_sid), token).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (401, "invalid_signature"),
            "{what}: {:?}",
            r.body
        );
    }
    // A tampered callback: signed for "delivered", sent as "failed".
    let url = format!("{}{CALLBACK_PATH}", app.base);
    let mut signed: Vec<(String, String)> = on_a(&a_sid)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    signed[1].1 = "delivered".to_owned();
    let signature = twilio_sign(A_TOKEN.as_bytes(), &url, &signed);
    let tampered: Vec<(String, String)> = on_a(&a_sid)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    let r = app
        .client
        .post(&url)
        .header("x-twilio-signature", signature)
        .form(&tampered)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401, "tampered");

    // Correctly signed by clinic A, but naming clinic B's message: not A's to move.
    let r = send(on_a(&b_sid), Some(A_TOKEN)).await;
    assert_eq!(
        (r.status.as_u16(), r.body.clone()),
        (200, json!({"ok": true, "applied": false}))
    );
    let mut unknown = on_a(&a_sid);
    unknown[2].1 = "+15005550006".to_owned();
    let r = send(unknown, Some(A_TOKEN)).await;
    assert_eq!((r.status.as_u16(), r.code()), (401, "invalid_signature"));
    let mut no_sid = on_a(&a_sid);
    no_sid.remove(0);
    let r = send(no_sid, Some(A_TOKEN)).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, "invalid_webhook"));

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
        vec!["invalid_webhook_signature"; 4],
        "one per refused callback to clinic A's number"
    );
}

#[tokio::test]
async fn a_suspended_clinics_queued_confirmation_is_not_sent_until_it_is_active_again() {
    let (app, a, _, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    let c = contact(&app, &a, Some("+14155552017")).await;
    book(&app, &a, Some(&c), 3).await;
    admin_sql(
        &app,
        "UPDATE organizations SET status = 'suspended' WHERE id = $1",
        &a,
    )
    .await;
    assert!(round(&w).await.is_empty());
    assert!(fake.seen().is_empty());
    assert_eq!(only_row(&app, &a).await["status"], "queued");
    let r = status_of(&app, "SManything", &a, "delivered").await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "org_suspended"));

    admin_sql(
        &app,
        "UPDATE organizations SET status = 'active' WHERE id = $1",
        &a,
    )
    .await;
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Sent { .. }]),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_confirmation_of_an_appointment_cancelled_before_it_went_is_not_sent() {
    let (app, a, _, fake) = world().await;
    let w = worker(&app, config(&app, &fake));
    let c = contact(&app, &a, Some("+14155552018")).await;
    let appointment = book(&app, &a, Some(&c), 3).await;
    let r = app
        .post(
            &format!("/api/v1/appointments/{appointment}/cancel"),
            &staff(&app, &a),
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let outcomes = round(&w).await;
    assert!(
        matches!(outcomes.as_slice(), [SmsOutcome::Suppressed { .. }]),
        "{outcomes:?}"
    );
    assert!(fake.seen().is_empty());
    assert!(only_row(&app, &a).await["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("cancelled")));
}

/// Moves `appointment` to `day` (of March 2031) at 19:00Z, or changes only its notes.
async fn move_to(app: &TestApp, clinic: &DemoClinic, appointment: &str, day: Option<u32>) {
    let body = match day {
        Some(day) => json!({"starts_at": format!("2031-03-{day:02}T19:00:00Z"),
                            "ends_at": format!("2031-03-{day:02}T19:30:00Z")}),
        None => json!({"notes": "Bring the X-rays"}),
    };
    let r = app
        .patch(
            &format!("/api/v1/appointments/{appointment}"),
            &staff(app, clinic),
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_moved_appointment_is_confirmed_again_at_its_new_time() {
    let (app, a, _, fake) = world().await;
    let c = contact(&app, &a, Some("+14155552101")).await;
    let appointment = book(&app, &a, Some(&c), 3).await;
    let w = worker(&app, config(&app, &fake));
    round(&w).await;
    assert_eq!(fake.seen().len(), 1);

    // Notes only: the time did not change, nothing more to say.
    move_to(&app, &a, &appointment, None).await;
    assert_eq!(rows(&app, &a).await.len(), 1);

    move_to(&app, &a, &appointment, Some(4)).await;
    let all = rows(&app, &a).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0]["status"], "sent", "the first one stays as it was");
    assert_eq!(all[1]["status"], "queued");
    assert_eq!(
        all[1]["body"],
        "Clinic A: your appointment has moved to Tue 4 Mar 2031 at 11:00."
    );
    round(&w).await;
    let seen = fake.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].form["Body"],
        "Clinic A: your appointment has moved to Tue 4 Mar 2031 at 11:00."
    );
}

#[tokio::test]
async fn a_move_before_the_confirmation_went_sends_only_the_new_time() {
    let (app, a, _, fake) = world().await;
    let c = contact(&app, &a, Some("+14155552102")).await;
    let w = worker(&app, config(&app, &fake));

    // Moved while still queued: the first is superseded at once.
    let first = book(&app, &a, Some(&c), 3).await;
    move_to(&app, &a, &first, Some(5)).await;
    // Moved while a worker holds it (claimed, not yet sent): the worker supersedes it.
    let second = book(&app, &a, Some(&c), 6).await;
    let claimed = w.claim().await.expect("claim");
    let held = claimed
        .iter()
        .find(|j| j.appointment_id.map(|id| id.to_string()) == Some(second.clone()))
        .expect("the second booking's confirmation")
        .clone();
    move_to(&app, &a, &second, Some(7)).await;
    let outcome = w.process(&held).await.expect("process");
    assert!(
        matches!(&outcome, SmsOutcome::Suppressed { reason } if reason.starts_with("superseded")),
        "{outcome:?}"
    );
    // Release the other claims of that batch so the next round sends them.
    admin_sql(
        &app,
        "UPDATE sms_confirmation_logs SET status = 'queued', lease_until = NULL
          WHERE org_id = $1 AND status = 'sending'",
        &a,
    )
    .await;
    round(&w).await;

    let bodies: Vec<String> = fake.seen().iter().map(|s| s.form["Body"].clone()).collect();
    assert_eq!(
        bodies.iter().filter(|b| b.contains("moved to")).count(),
        2,
        "{bodies:?}"
    );
    assert!(
        bodies.iter().all(|b| !b.contains("is confirmed")),
        "no message names an old time: {bodies:?}"
    );
    let superseded = rows(&app, &a)
        .await
        .into_iter()
        .filter(|r| r["status"] == "suppressed")
        .count();
    assert_eq!(superseded, 2);
}
