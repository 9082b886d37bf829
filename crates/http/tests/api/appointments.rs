//! Appointments, holds and availability: booking, no double booking under concurrency,
//! expiry, idempotency, and references that must stay inside the clinic.

use crate::support::*;
use serde_json::{json, Value};
use std::sync::Arc;
use uuid::Uuid;
use voxanne_db::demo::DemoClinic;

/// Clinic A (America/Los_Angeles, UTC-8 in January) is open Monday to Thursday 09:00-17:00.
/// 2031-01-06 is a Monday: 09:00 there is 17:00Z. An instant of that day, in UTC.
fn at(hour_utc: u32, minute: u32) -> String {
    format!("2031-01-06T{hour_utc:02}:{minute:02}:00Z")
}

fn slot(start: &str, end: &str) -> Value {
    json!({ "starts_at": start, "ends_at": end })
}

async fn staff(app: &TestApp) -> (DemoClinic, String, DemoClinic, String) {
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.staff, Some(a.org));
    let b_token = app.token(b.staff, Some(b.org));
    (a, a_token, b, b_token)
}

fn id_of(r: &Response) -> String {
    r.body["id"].as_str().expect("an id").to_owned()
}

/// Sends `n` copies of one request at once (after a barrier); the statuses and error codes.
async fn race(
    app: &TestApp,
    n: usize,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Vec<(u16, String)> {
    race_paths(app, &vec![path; n], method, token, body).await
}

/// Sends one request to each of `paths` at once.
async fn race_paths(
    app: &TestApp,
    paths: &[&str],
    method: &str,
    token: &str,
    body: Option<Value>,
) -> Vec<(u16, String)> {
    let barrier = Arc::new(tokio::sync::Barrier::new(paths.len()));
    let mut set = tokio::task::JoinSet::new();
    for path in paths {
        let client = app.client.clone();
        let url = format!("{}{path}", app.base);
        let method: reqwest::Method = method.parse().expect("method");
        let (token, body, barrier) = (token.to_owned(), body.clone(), barrier.clone());
        set.spawn(async move {
            let mut request = client.request(method, url).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            barrier.wait().await;
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
            (status, code)
        });
    }
    let mut out = Vec::new();
    while let Some(result) = set.join_next().await {
        out.push(result.expect("task"));
    }
    out
}

fn count(results: &[(u16, String)], status: u16, code: &str) -> usize {
    results
        .iter()
        .filter(|(s, c)| *s == status && c == code)
        .count()
}

async fn appointment_count(app: &TestApp, org: &DemoClinic) -> i64 {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar("SELECT count(*) FROM appointments WHERE org_id = $1 AND status = 'booked'")
        .bind(org.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

async fn expire_hold(app: &TestApp, hold: &str) {
    let mut admin = app.t.admin().await;
    sqlx::query(
        "UPDATE appointment_holds SET expires_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(Uuid::parse_str(hold).expect("uuid"))
    .execute(&mut admin)
    .await
    .expect("expiring a hold");
}

async fn slot_starts(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let r = app
        .get_as(&format!("/api/v1/availability?{query}"), token)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["starts_at"].as_str().expect("start").to_owned())
        .collect()
}

#[tokio::test]
async fn staff_book_read_list_by_range_reschedule_and_cancel_appointments() {
    let app = TestApp::spawn().await;
    let (a, token, _, _) = staff(&app).await;
    let staff = app.api(&token);
    let mut ids = Vec::new();
    for day in [6, 7, 8] {
        let booked = staff
            .book(&json!({
                "starts_at": format!("2031-01-{day:02}T18:00:00Z"),
                "ends_at": format!("2031-01-{day:02}T18:30:00Z"),
                "notes": format!("day {day}")
            }))
            .await
            .expect("booked");
        assert_eq!(booked.status, "booked");
        assert_eq!(booked.resource, "default");
        assert_eq!(booked.org_id, a.org.as_uuid());
        ids.push(booked.id);
    }

    let got = staff.appointment(ids[1]).await.expect("read back");
    assert_eq!(got.notes.as_deref(), Some("day 7"));

    // The range covers the 7th and the 8th; one per page, in start order.
    let seen: Vec<Uuid> = staff
        .appointments("from=2031-01-07&to=2031-01-08&limit=1")
        .await
        .expect("listed")
        .iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(seen, ids[1..]);

    let moved = staff
        .reschedule(
            ids[0],
            &json!({ "starts_at": "2031-01-06T19:00:00Z", "ends_at": "2031-01-06T19:45:00Z", "notes": null }),
        )
        .await
        .expect("moved");
    assert_eq!(moved.starts_at, "2031-01-06T19:00:00Z");
    assert_eq!(moved.notes, None);
    let backwards = staff
        .reschedule(ids[0], &json!({ "ends_at": "2031-01-06T18:00:00Z" }))
        .await
        .expect_err("an end before the start");
    assert_eq!(backwards.said(), (422, "validation_failed"));

    let cancelled = staff.cancel(ids[0]).await.expect("cancelled");
    assert_eq!(cancelled.status, "cancelled");
    let again = staff
        .reschedule(
            ids[0],
            &json!({ "starts_at": "2031-01-06T20:00:00Z", "ends_at": "2031-01-06T20:30:00Z" }),
        )
        .await
        .expect_err("a cancelled appointment does not move");
    assert_eq!(again.said(), (409, "appointment_not_booked"));

    // The cancelled slot is free again.
    staff
        .book(&slot("2031-01-06T19:00:00Z", "2031-01-06T19:45:00Z"))
        .await
        .expect("the freed slot books");

    let missing = staff
        .appointment(Uuid::new_v4())
        .await
        .expect_err("no such appointment");
    assert_eq!(missing.status, 404);
}

#[tokio::test]
async fn overlapping_bookings_are_refused_back_to_back_and_other_resources_are_not() {
    let app = TestApp::spawn().await;
    let (_, token, _, _) = staff(&app).await;
    let first = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(18, 0), &at(19, 0)),
        )
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let overlap = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(18, 30), &at(19, 30)),
        )
        .await;
    assert_eq!(
        (overlap.status.as_u16(), overlap.code()),
        (409, "slot_taken")
    );
    let after = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(19, 0), &at(19, 30)),
        )
        .await;
    assert_eq!(after.status, 201, "back to back is fine: {:?}", after.body);
    let other_room = app
        .post(
            "/api/v1/appointments",
            &token,
            &json!({ "resource": "room-2", "starts_at": at(18, 30), "ends_at": at(19, 30) }),
        )
        .await;
    assert_eq!(other_room.status, 201, "{:?}", other_room.body);

    // Moving an appointment onto another is refused the same way.
    let moved = app
        .patch(
            &format!("/api/v1/appointments/{}", id_of(&after)),
            &token,
            &slot(&at(18, 45), &at(19, 15)),
        )
        .await;
    assert_eq!((moved.status.as_u16(), moved.code()), (409, "slot_taken"));

    for (body, field) in [
        (slot(&at(19, 0), &at(18, 0)), "ends_at"),
        (
            json!({ "starts_at": at(18, 0), "ends_at": at(19, 0), "org_id": Uuid::new_v4() }),
            "org_id",
        ),
        (
            json!({ "starts_at": at(18, 0), "ends_at": at(19, 0), "resource": " " }),
            "resource",
        ),
    ] {
        let r = app.post("/api/v1/appointments", &token, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (422, "validation_failed"),
            "{body}"
        );
        // (`ends_with`: the extractor may name an unknown field `org_id.org_id` for now.)
        let named = r.body["error"]["field"].as_str().unwrap_or_default();
        assert!(named.ends_with(field), "{named} for {field}");
    }
}

#[tokio::test]
async fn availability_is_opening_hours_in_the_clinics_time_zone_minus_appointments_and_live_holds()
{
    let app = TestApp::spawn().await;
    let (_, token, _, b_token) = staff(&app).await;
    // Clinic A's Monday, local midnight to midnight, in hours.
    let monday = "from=2031-01-06T08:00:00Z&to=2031-01-07T08:00:00Z&duration=60";
    let all: Vec<String> = (17..25)
        .map(|h| {
            if h < 24 {
                format!("2031-01-06T{h:02}:00:00Z")
            } else {
                "2031-01-07T00:00:00Z".to_owned()
            }
        })
        .collect();
    assert_eq!(slot_starts(&app, &token, monday).await, all);
    // Clinic B (Europe/London, UTC in January) opens at 09:00Z the same day.
    let b_slots = slot_starts(&app, &b_token, monday).await;
    assert_eq!(
        b_slots.first().map(String::as_str),
        Some("2031-01-06T09:00:00Z")
    );

    // Saturday: closed.
    assert!(
        slot_starts(&app, &token, "from=2031-01-11&to=2031-01-11&duration=30")
            .await
            .is_empty()
    );

    let booked = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(18, 0), &at(19, 0)),
        )
        .await;
    assert_eq!(booked.status, 201);
    let held = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &slot(&at(20, 30), &at(21, 0)),
        )
        .await;
    assert_eq!(held.status, 201, "{:?}", held.body);
    let free = slot_starts(&app, &token, monday).await;
    // 18:00 is booked; the hold (20:30-21:00) overlaps the 20:00 slot only.
    let expected: Vec<&String> = [0, 2, 4, 5, 6, 7].iter().map(|i| &all[*i]).collect();
    assert_eq!(free.iter().collect::<Vec<_>>(), expected);

    expire_hold(&app, &id_of(&held)).await;
    let cancelled = app
        .post(
            &format!("/api/v1/appointments/{}/cancel", id_of(&booked)),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200);
    assert_eq!(slot_starts(&app, &token, monday).await, all);

    // 90-minute slots on a grid from 09:00: 09:00, 10:30, 12:00, 13:30, 15:00 (16:30 would overrun).
    assert_eq!(
        slot_starts(
            &app,
            &token,
            "from=2031-01-06T08:00:00Z&to=2031-01-07T08:00:00Z&duration=90"
        )
        .await
        .len(),
        5
    );

    for (query, field) in [
        ("from=2031-01-06&to=2031-01-06T00:00:00Z&duration=30", "to"),
        ("from=2031-01-01&to=2031-02-15&duration=30", "to"),
        ("from=2031-01-06&to=2031-01-07&duration=4", "duration"),
        ("from=2031-01-06&to=2031-01-07&duration=481", "duration"),
        ("to=2031-01-07&duration=30", "from"),
    ] {
        let r = app
            .get_as(&format!("/api/v1/availability?{query}"), &token)
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (422, "validation_failed"),
            "{query}"
        );
        assert_eq!(r.body["error"]["field"], field, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_of_one_slot_make_exactly_one_appointment() {
    let app = TestApp::spawn().await;
    let (a, token, _, _) = staff(&app).await;
    let before = appointment_count(&app, &a).await;
    let results = race(
        &app,
        50,
        "POST",
        "/api/v1/appointments",
        &token,
        Some(slot(&at(18, 0), &at(18, 30))),
    )
    .await;
    assert_eq!(count(&results, 201, ""), 1, "{results:?}");
    assert_eq!(count(&results, 409, "slot_taken"), 49, "{results:?}");
    assert_eq!(appointment_count(&app, &a).await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_holds_and_bookings_of_one_slot_leave_exactly_one_winner() {
    let app = TestApp::spawn().await;
    let (a, token, _, _) = staff(&app).await;
    let before = appointment_count(&app, &a).await;
    let paths: Vec<&str> = (0..50)
        .map(|i| {
            if i % 2 == 0 {
                "/api/v1/appointments"
            } else {
                "/api/v1/appointment-holds"
            }
        })
        .collect();
    let results = race_paths(
        &app,
        &paths,
        "POST",
        &token,
        Some(slot(&at(18, 0), &at(18, 30))),
    )
    .await;
    assert_eq!(count(&results, 201, ""), 1, "{results:?}");
    assert_eq!(count(&results, 409, "slot_taken"), 49, "{results:?}");
    let holds = app.get_as("/api/v1/appointment-holds", &token).await.body["data"]
        .as_array()
        .map_or(0, Vec::len) as i64;
    let booked = appointment_count(&app, &a).await - before;
    assert_eq!(holds + booked, 1, "one hold or one appointment, never both");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_holds_of_one_slot_make_exactly_one_hold() {
    let app = TestApp::spawn().await;
    let (_, token, _, _) = staff(&app).await;
    let results = race(
        &app,
        50,
        "POST",
        "/api/v1/appointment-holds",
        &token,
        Some(slot(&at(18, 0), &at(18, 30))),
    )
    .await;
    assert_eq!(count(&results, 201, ""), 1, "{results:?}");
    assert_eq!(count(&results, 409, "slot_taken"), 49, "{results:?}");
    let live = app.get_as("/api/v1/appointment-holds", &token).await;
    assert_eq!(live.body["data"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_confirms_of_one_hold_make_exactly_one_appointment() {
    let app = TestApp::spawn().await;
    let (a, token, _, _) = staff(&app).await;
    let hold = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &slot(&at(18, 0), &at(18, 30)),
        )
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let before = appointment_count(&app, &a).await;
    let results = race(
        &app,
        50,
        "POST",
        &format!("/api/v1/appointment-holds/{}/confirm", id_of(&hold)),
        &token,
        None,
    )
    .await;
    assert_eq!(count(&results, 201, ""), 1, "{results:?}");
    assert_eq!(
        count(&results, 409, "hold_already_confirmed"),
        49,
        "{results:?}"
    );
    assert_eq!(appointment_count(&app, &a).await, before + 1);
    assert_eq!(
        app.get_as("/api/v1/appointment-holds", &token).await.body["data"],
        json!([])
    );
}

#[tokio::test]
async fn a_live_hold_blocks_its_slot_an_expired_one_blocks_nothing_and_cannot_be_confirmed() {
    let app = TestApp::spawn().await;
    let (_, token, _, _) = staff(&app).await;
    let hold = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &json!({ "starts_at": at(18, 0), "ends_at": at(18, 30), "ttl_seconds": 900 }),
        )
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let hold_id = id_of(&hold);

    for path in ["/api/v1/appointments", "/api/v1/appointment-holds"] {
        let r = app
            .post(path, &token, &slot(&at(18, 15), &at(18, 45)))
            .await;
        assert_eq!((r.status.as_u16(), r.code()), (409, "slot_taken"), "{path}");
    }
    // A hold cannot take a booked slot either.
    let booked = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(19, 0), &at(19, 30)),
        )
        .await;
    assert_eq!(booked.status, 201);
    let on_booked = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &slot(&at(19, 0), &at(19, 30)),
        )
        .await;
    assert_eq!(
        (on_booked.status.as_u16(), on_booked.code()),
        (409, "slot_taken")
    );

    expire_hold(&app, &hold_id).await;
    let confirm = app
        .post(
            &format!("/api/v1/appointment-holds/{hold_id}/confirm"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(
        (confirm.status.as_u16(), confirm.code()),
        (410, "hold_expired")
    );
    assert_eq!(
        app.get_as("/api/v1/appointment-holds", &token).await.body["data"],
        json!([]),
        "an expired hold is not listed"
    );
    let taken_over = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(18, 15), &at(18, 45)),
        )
        .await;
    assert_eq!(taken_over.status, 201, "{:?}", taken_over.body);

    // Released holds free their slot; releasing twice is a 404.
    let second = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &slot(&at(20, 0), &at(20, 30)),
        )
        .await;
    let path = format!("/api/v1/appointment-holds/{}", id_of(&second));
    assert_eq!(app.delete(&path, &token).await.status, 204);
    assert_eq!(app.delete(&path, &token).await.status, 404);
    let after_release = app
        .post(
            "/api/v1/appointments",
            &token,
            &slot(&at(20, 0), &at(20, 30)),
        )
        .await;
    assert_eq!(after_release.status, 201);

    let too_long = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &json!({ "starts_at": at(21, 0), "ends_at": at(21, 30), "ttl_seconds": 901 }),
        )
        .await;
    assert_eq!(too_long.body["error"]["field"], "ttl_seconds");
}

#[tokio::test]
async fn a_confirmed_hold_becomes_the_appointment_it_held() {
    let app = TestApp::spawn().await;
    let (a, token, _, _) = staff(&app).await;
    let contact = first_id(&app, "contacts", &a).await;
    let hold = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &json!({ "starts_at": at(18, 0), "ends_at": at(18, 30), "contact_id": contact, "resource": "dr-who" }),
        )
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let hold_id = id_of(&hold);
    let confirmed = app
        .post(
            &format!("/api/v1/appointment-holds/{hold_id}/confirm"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    assert_eq!(confirmed.body["hold_id"], json!(hold_id));
    assert_eq!(confirmed.body["contact_id"], json!(contact));
    assert_eq!(confirmed.body["resource"], "dr-who");
    assert_eq!(confirmed.body["starts_at"], at(18, 0));
    let again = app
        .post(
            &format!("/api/v1/appointment-holds/{hold_id}/confirm"),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "hold_already_confirmed")
    );
    let never = app
        .post(
            &format!("/api/v1/appointment-holds/{}/confirm", Uuid::new_v4()),
            &token,
            &json!({}),
        )
        .await;
    assert_eq!(never.status, 404);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response_and_refuses_another_request() {
    let app = TestApp::spawn().await;
    let (a, token, _, b_token) = staff(&app).await;
    let body = slot(&at(18, 0), &at(18, 30));
    let key = [("Idempotency-Key", "booking-1")];
    let first = app
        .send("POST", "/api/v1/appointments", &token, Some(&body), &key)
        .await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let before = appointment_count(&app, &a).await;
    let replay = app
        .send("POST", "/api/v1/appointments", &token, Some(&body), &key)
        .await;
    assert_eq!((replay.status, &replay.body), (first.status, &first.body));
    assert_eq!(
        appointment_count(&app, &a).await,
        before,
        "nothing booked again"
    );

    let other = app
        .send(
            "POST",
            "/api/v1/appointments",
            &token,
            Some(&slot(&at(19, 0), &at(19, 30))),
            &key,
        )
        .await;
    assert_eq!(
        (other.status.as_u16(), other.code()),
        (422, "idempotency_key_reused")
    );

    // Keys are per clinic: Clinic B's same key is its own.
    let b = app
        .send("POST", "/api/v1/appointments", &b_token, Some(&body), &key)
        .await;
    assert_eq!(b.status, 201, "{:?}", b.body);

    // Confirming a hold with a key replays the appointment, not a 409.
    let hold = app
        .post(
            "/api/v1/appointment-holds",
            &token,
            &slot(&at(20, 0), &at(20, 30)),
        )
        .await;
    let path = format!("/api/v1/appointment-holds/{}/confirm", id_of(&hold));
    let confirm_key = [("Idempotency-Key", "confirm-1")];
    let confirmed = app.send("POST", &path, &token, None, &confirm_key).await;
    assert_eq!(confirmed.status, 201, "{:?}", confirmed.body);
    let replayed = app.send("POST", &path, &token, None, &confirm_key).await;
    assert_eq!(
        (replayed.status, &replayed.body),
        (confirmed.status, &confirmed.body)
    );
    let reused = app
        .send(
            "POST",
            &path,
            &token,
            None,
            &[("Idempotency-Key", "booking-1")],
        )
        .await;
    assert_eq!(
        (reused.status.as_u16(), reused.code()),
        (422, "idempotency_key_reused")
    );

    // A refused request keeps nothing: its retry runs again.
    let taken_key = [("Idempotency-Key", "taken-1")];
    for _ in 0..2 {
        let r = app
            .send(
                "POST",
                "/api/v1/appointments",
                &token,
                Some(&body),
                &taken_key,
            )
            .await;
        assert_eq!((r.status.as_u16(), r.code()), (409, "slot_taken"));
    }
}

async fn first_id(app: &TestApp, table: &str, clinic: &DemoClinic) -> Uuid {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar(&format!(
        "SELECT id FROM {table} WHERE org_id = $1 ORDER BY id LIMIT 1"
    ))
    .bind(clinic.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("an id")
}

#[tokio::test]
async fn another_clinics_contact_or_call_is_an_invalid_reference_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let (a, a_token, b, _) = staff(&app).await;
    let b_contact = first_id(&app, "contacts", &b).await;
    let b_call = first_id(&app, "calls", &b).await;
    let a_before = app.snapshot(a.org).await;
    let b_before = app.snapshot(b.org).await;
    for path in ["/api/v1/appointments", "/api/v1/appointment-holds"] {
        for (field, id) in [
            ("contact_id", b_contact),
            ("call_id", b_call),
            ("contact_id", Uuid::new_v4()),
        ] {
            let mut body = slot(&at(18, 0), &at(18, 30));
            body[field] = json!(id);
            let r = app.post(path, &a_token, &body).await;
            assert_eq!(
                (r.status.as_u16(), r.code()),
                (422, "validation_failed"),
                "{path} {field}"
            );
            assert_eq!(r.body["error"]["field"], field);
        }
    }
    // The prober's clinic records nothing, for a foreign id as for a random one; the probes
    // of Clinic B's ids are recorded for Clinic B, which owns them (the random id is not).
    assert_eq!(app.snapshot(a.org).await, a_before, "Clinic A is untouched");
    assert_eq!(app.probe_events(&b).await.len(), 4);
    let b_after = app.snapshot(b.org).await;
    for ((table, before), (_, after)) in b_before.iter().zip(&b_after) {
        if table != "security_events" {
            assert_eq!(before, after, "{table} of Clinic B changed");
        }
    }

    // The clinic's own contact and call are fine.
    let mut body = slot(&at(18, 0), &at(18, 30));
    body["contact_id"] = json!(first_id(&app, "contacts", &a).await);
    body["call_id"] = json!(first_id(&app, "calls", &a).await);
    let ok = app.post("/api/v1/appointments", &a_token, &body).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
}
