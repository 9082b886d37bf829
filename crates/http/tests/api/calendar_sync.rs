//! The clinic's real calendar, end to end: linked Google and Microsoft calendars (a loopback
//! fake of Google Calendar v3 and Microsoft Graph that speaks their documented wire format,
//! `voxanne_testkit::fake_calendar`), the sync job reading their busy times and refreshing
//! tokens, the writer putting every booking in the diary, staff's moves and deletions in the
//! provider's own app coming back, and push notifications. A real PostgreSQL and real HTTP.

use crate::support::*;
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use std::sync::Arc;
use voxanne_db::demo::DemoClinic;
use voxanne_domain::CalendarProvider;
use voxanne_jobs::{
    CalendarSync, CalendarSyncConfig, CalendarWriter, Job, Metrics, SyncOutcome, WriteOutcome,
};
use voxanne_testkit::fake_calendar::{Account, FakeCalendar};

struct World {
    app: TestApp,
    fake: FakeCalendar,
    a: DemoClinic,
    b: DemoClinic,
    sync: CalendarSync,
    writer: CalendarWriter,
}

/// `h`:`m` UTC on day `day` of the test's fortnight, within the busy times the sync reads:
/// day 3 is the Monday at least a week from now, day 4 the Tuesday after it, and so on.
fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    use chrono::Datelike;
    let today = Utc::now().date_naive();
    let to_monday = (7 - i64::from(today.weekday().num_days_from_monday())) % 7;
    let monday = today + Duration::days(7 + to_monday);
    (monday + Duration::days(i64::from(day) - 3))
        .and_hms_opt(h, m, 0)
        .expect("time")
        .and_utc()
}

fn text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

async fn world() -> World {
    let fake = FakeCalendar::start().await;
    let f = fake.clone();
    let app = TestApp::spawn_with_calendar(move |public| f.settings(public, true, true)).await;
    let [a, b] = app.clinics().await;
    // Both clinics open 09:00-17:00 UTC on weekdays.
    let mut admin = app.t.admin().await;
    sqlx::query(
        r#"UPDATE agent_configurations SET time_zone = 'UTC',
               opening_hours = '{"mon": [["09:00","17:00"]], "tue": [["09:00","17:00"]],
                                 "wed": [["09:00","17:00"]], "thu": [["09:00","17:00"]],
                                 "fri": [["09:00","17:00"]]}'"#,
    )
    .execute(&mut admin)
    .await
    .expect("hours");
    let providers = Arc::new(fake.settings(app.base.parse().expect("url"), true, true));
    let metrics = Arc::new(Metrics::default());
    let sync = CalendarSync::new(
        app.t.db.clone(),
        Arc::new(keyring()),
        providers.clone(),
        CalendarSyncConfig {
            schedule: quick_schedule(),
            public_url: Some(app.base.parse().expect("url")),
            ..CalendarSyncConfig::default()
        },
        metrics.clone(),
    );
    let writer = CalendarWriter::new(
        app.t.db.clone(),
        Arc::new(keyring()),
        providers,
        quick_schedule(),
        metrics,
    );
    World {
        app,
        fake,
        a,
        b,
        sync,
        writer,
    }
}

fn owner(w: &World, clinic: &DemoClinic) -> String {
    w.app.token(clinic.owner, Some(clinic.org))
}

/// Links `account` to `clinic` with its tokens (expiring in `expires_in`); the connection id.
async fn link(w: &World, clinic: &DemoClinic, account: &Account, expires_in: Duration) -> String {
    let r = w
        .app
        .post(
            "/api/v1/calendar-connections",
            &owner(w, clinic),
            &json!({
                "provider": account.provider.as_str(),
                "account_email": account.email,
                "access_token": account.access_token,
                "refresh_token": account.refresh_token,
                "token_expires_at": text(Utc::now() + expires_in),
            }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body["id"].as_str().expect("id").to_owned()
}

async fn sync_round(w: &World) -> Vec<SyncOutcome> {
    w.sync
        .run_once()
        .await
        .expect("sync round")
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

async fn write_round(w: &World) -> Vec<WriteOutcome> {
    w.writer
        .run_once()
        .await
        .expect("write round")
        .into_iter()
        .map(|(_, o)| o)
        .collect()
}

/// Makes every connection's sync due now (as the next interval would).
async fn all_due(w: &World) {
    let mut admin = w.app.t.admin().await;
    sqlx::query("UPDATE calendar_connections SET sync_due_at = now() - interval '1 second'")
        .execute(&mut admin)
        .await
        .expect("due");
}

async fn slots(w: &World, clinic: &DemoClinic, day: u32) -> Vec<String> {
    let query = format!(
        "from={}&to={}&duration=30",
        text(at(day, 0, 0)),
        text(at(day, 0, 0) + Duration::days(1))
    );
    let r = w
        .app
        .get_as(&format!("/api/v1/availability?{query}"), &owner(w, clinic))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["starts_at"].as_str().expect("start").to_owned())
        .collect()
}

async fn book(w: &World, clinic: &DemoClinic, start: DateTime<Utc>, minutes: i64) -> Response {
    w.app
        .post(
            "/api/v1/appointments",
            &owner(w, clinic),
            &json!({"starts_at": text(start), "ends_at": text(start + Duration::minutes(minutes))}),
        )
        .await
}

async fn appointment(w: &World, clinic: &DemoClinic, id: &str) -> Value {
    let r = w
        .app
        .get_as(&format!("/api/v1/appointments/{id}"), &owner(w, clinic))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

fn starts(slots: &[String], t: DateTime<Utc>) -> bool {
    slots.iter().any(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|s| s.with_timezone(&Utc) == t)
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn a_time_busy_in_a_clinics_calendar_is_never_offered_nor_bookable_and_only_for_that_clinic()
{
    let w = world().await;
    let a_google = w.fake.account(CalendarProvider::Google, "desk@a.example");
    let b_ms = w
        .fake
        .account(CalendarProvider::Microsoft, "desk@b.example");
    // Staff of A booked 10:00-11:00 in Google; B's Outlook is tentatively busy 13:00-13:30
    // (tentative counts as busy) and has a `free` reminder at 14:00 (it does not).
    w.fake.seed_busy(&a_google, at(3, 10, 0), at(3, 11, 0));
    w.fake
        .seed_event(&b_ms, "primary", at(3, 13, 0), at(3, 13, 30), "tentative");
    w.fake
        .seed_event(&b_ms, "primary", at(3, 14, 0), at(3, 15, 0), "free");
    link(&w, &w.a, &a_google, Duration::hours(1)).await;
    link(&w, &w.b, &b_ms, Duration::hours(1)).await;
    let outcomes = sync_round(&w).await;
    assert_eq!(outcomes.len(), 2, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, SyncOutcome::Synced { .. })),
        "{outcomes:?}"
    );

    let a_slots = slots(&w, &w.a, 3).await;
    assert!(!starts(&a_slots, at(3, 10, 0)) && !starts(&a_slots, at(3, 10, 30)));
    assert!(starts(&a_slots, at(3, 9, 30)) && starts(&a_slots, at(3, 11, 0)));
    assert!(
        starts(&a_slots, at(3, 13, 0)),
        "B's calendar means nothing to A"
    );
    let b_slots = slots(&w, &w.b, 3).await;
    assert!(
        starts(&b_slots, at(3, 10, 0)),
        "A's calendar means nothing to B"
    );
    assert!(!starts(&b_slots, at(3, 13, 0)), "tentative is busy");
    assert!(starts(&b_slots, at(3, 14, 0)), "free is free");

    // Not bookable either, through an appointment or a hold.
    let r = book(&w, &w.a, at(3, 10, 15), 30).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (409, "slot_busy_in_calendar"),
        "{:?}",
        r.body
    );
    let r = w
        .app
        .post(
            "/api/v1/appointment-holds",
            &owner(&w, &w.a),
            &json!({"starts_at": text(at(3, 10, 45)), "ends_at": text(at(3, 11, 15))}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (409, "slot_busy_in_calendar"),
        "{:?}",
        r.body
    );
    let r = book(&w, &w.b, at(3, 10, 15), 30).await;
    assert_eq!(
        r.status, 201,
        "B books what is busy only in A's calendar: {:?}",
        r.body
    );

    // Each clinic's calendar was asked with its own account's token only.
    for logged in w.fake.requests() {
        if logged.path.contains("freeBusy") || logged.path.contains("getSchedule") {
            let expected = if logged.path.contains("freeBusy") {
                "desk@a.example"
            } else {
                "desk@b.example"
            };
            assert_eq!(logged.account.as_deref(), Some(expected), "{logged:?}");
        }
    }
}

#[tokio::test]
async fn every_booking_lands_in_the_diary_once_and_follows_moves_and_cancellation() {
    let w = world().await;
    for (clinic, account) in [
        (
            &w.a,
            w.fake.account(CalendarProvider::Google, "desk@a.example"),
        ),
        (
            &w.b,
            w.fake
                .account(CalendarProvider::Microsoft, "desk@b.example"),
        ),
    ] {
        let connection = link(&w, clinic, &account, Duration::hours(1)).await;
        let r = book(&w, clinic, at(4, 9, 0), 30).await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        let id = r.body["id"].as_str().expect("id").to_owned();
        let pending = appointment(&w, clinic, &id).await;
        assert_eq!(pending["calendar_events"][0]["status"], "pending");
        assert_eq!(
            pending["calendar_events"][0]["connection_id"],
            connection.as_str()
        );

        // The first write is lost on the way back (a 503): the retry makes no second event.
        w.fake.fail_next(1, 503, None);
        let first = write_round(&w).await;
        assert!(
            matches!(first[..], [WriteOutcome::Retry { .. }]),
            "{first:?}"
        );
        let written = write_round(&w).await;
        assert!(
            matches!(written[..], [WriteOutcome::Written { .. }]),
            "{written:?}"
        );
        let events = w.fake.events(&account);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].start, events[0].end),
            (at(4, 9, 0), at(4, 9, 30))
        );
        let synced = appointment(&w, clinic, &id).await;
        assert_eq!(synced["calendar_events"][0]["status"], "synced");
        assert_eq!(
            synced["calendar_events"][0]["event_id"],
            events[0].id.as_str()
        );
        assert!(write_round(&w).await.is_empty(), "nothing more to write");

        // Moved through the API: the same event moves.
        let r = w
            .app
            .patch(
                &format!("/api/v1/appointments/{id}"),
                &owner(&w, clinic),
                &json!({"starts_at": text(at(4, 11, 0)), "ends_at": text(at(4, 11, 30))}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let moved = write_round(&w).await;
        assert!(
            matches!(moved[..], [WriteOutcome::Written { .. }]),
            "{moved:?}"
        );
        let events = w.fake.events(&account);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].start, events[0].end),
            (at(4, 11, 0), at(4, 11, 30))
        );

        // Cancelled: the event goes (Google keeps it as cancelled; Graph deletes it).
        let r = w
            .app
            .post(
                &format!("/api/v1/appointments/{id}/cancel"),
                &owner(&w, clinic),
                &json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let removed = write_round(&w).await;
        assert!(
            matches!(removed[..], [WriteOutcome::Removed]),
            "{removed:?}"
        );
        assert!(
            w.fake
                .events(&account)
                .iter()
                .all(|e| e.status == "cancelled"),
            "{:?}",
            w.fake.events(&account)
        );
    }
}

#[tokio::test]
async fn a_refused_write_is_visible_on_the_appointment() {
    let w = world().await;
    let account = w.fake.account(CalendarProvider::Google, "desk@a.example");
    link(&w, &w.a, &account, Duration::hours(1)).await;
    let r = book(&w, &w.a, at(5, 9, 0), 30).await;
    let id = r.body["id"].as_str().expect("id").to_owned();
    // Google refuses the event (a 400 is not retried).
    w.fake.fail_next(1, 400, None);
    let failed = write_round(&w).await;
    assert!(
        matches!(failed[..], [WriteOutcome::Failed { .. }]),
        "{failed:?}"
    );
    let shown = appointment(&w, &w.a, &id).await;
    assert_eq!(shown["calendar_events"][0]["status"], "failed");
    assert!(shown["calendar_events"][0]["error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    assert!(write_round(&w).await.is_empty(), "given up");
}

#[tokio::test]
async fn the_sync_refreshes_tokens_before_they_expire_and_invalid_grant_breaks_the_link() {
    let w = world().await;
    let account = w
        .fake
        .account(CalendarProvider::Microsoft, "desk@a.example");
    let id = link(&w, &w.a, &account, Duration::minutes(3)).await;
    let outcomes = sync_round(&w).await;
    assert!(
        matches!(
            outcomes[..],
            [SyncOutcome::Synced {
                refreshed: true,
                ..
            }]
        ),
        "{outcomes:?}"
    );
    let refreshes: Vec<_> = w
        .fake
        .token_requests()
        .into_iter()
        .filter(|f| f.get("grant_type").map(String::as_str) == Some("refresh_token"))
        .collect();
    assert_eq!(refreshes.len(), 1, "{refreshes:?}");
    assert_eq!(refreshes[0]["refresh_token"], account.refresh_token);
    let r = w
        .app
        .get_as(
            &format!("/api/v1/calendar-connections/{id}"),
            &owner(&w, &w.a),
        )
        .await;
    let expires: DateTime<Utc> = r.body["token_expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("time");
    assert!(expires > Utc::now() + Duration::minutes(30), "{expires}");
    assert_eq!(r.body["status"], "active");
    assert!(r.body["busy_synced_at"].is_string());

    // The rotated refresh token is the one used next (the old one is refused by Graph).
    all_due(&w).await;
    w.fake.expire_access_tokens(&account);
    let outcomes = sync_round(&w).await;
    assert!(
        matches!(
            outcomes[..],
            [SyncOutcome::Synced {
                refreshed: true,
                ..
            }]
        ),
        "a 401 is answered by one refresh: {outcomes:?}"
    );
    let used: Vec<String> = w
        .fake
        .token_requests()
        .into_iter()
        .filter_map(|f| f.get("refresh_token").cloned())
        .collect();
    assert_eq!(used.len(), 2);
    assert_ne!(used[0], used[1], "Microsoft rotates the refresh token");

    // The clinic withdraws consent: the next refresh is invalid_grant, the link is broken.
    w.fake.revoke_grant(&account);
    all_due(&w).await;
    let outcomes = sync_round(&w).await;
    assert!(
        matches!(outcomes[..], [SyncOutcome::Broken { .. }]),
        "{outcomes:?}"
    );
    let r = w
        .app
        .get_as(
            &format!("/api/v1/calendar-connections/{id}"),
            &owner(&w, &w.a),
        )
        .await;
    assert_eq!(r.body["status"], "broken");
    assert!(
        r.body["broken_reason"]
            .as_str()
            .is_some_and(|s| s.contains("invalid_grant")),
        "{:?}",
        r.body
    );
    let events = w.app.security_events(&w.a).await;
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "calendar_connection_broken"),
        "{events:?}"
    );
    assert!(w
        .app
        .security_events(&w.b)
        .await
        .iter()
        .all(|e| e["kind"] != "calendar_connection_broken"));
    // Nothing calls the provider with it any more.
    let before = w.fake.requests().len();
    all_due(&w).await;
    assert!(sync_round(&w).await.is_empty());
    let r = book(&w, &w.a, at(6, 9, 0), 30).await;
    let appointment_id = r.body["id"].as_str().expect("id").to_owned();
    assert!(
        write_round(&w).await.is_empty(),
        "no write queued for a broken calendar"
    );
    assert_eq!(w.fake.requests().len(), before);
    assert_eq!(
        appointment(&w, &w.a, &appointment_id).await["calendar_events"],
        json!([])
    );
}

#[tokio::test]
async fn a_provider_down_or_rate_limiting_leaves_the_cached_busy_times_in_force() {
    let w = world().await;
    let account = w.fake.account(CalendarProvider::Google, "desk@a.example");
    w.fake.seed_busy(&account, at(3, 10, 0), at(3, 11, 0));
    let id = link(&w, &w.a, &account, Duration::hours(1)).await;
    assert!(matches!(
        sync_round(&w).await[..],
        [SyncOutcome::Synced { .. }]
    ));

    // Google answers 429 with Retry-After: 120; the next sync waits at least that long.
    all_due(&w).await;
    w.fake.fail_next(1, 429, Some("120"));
    let outcomes = sync_round(&w).await;
    assert!(
        matches!(outcomes[..], [SyncOutcome::Retry { .. }]),
        "{outcomes:?}"
    );
    let mut admin = w.app.t.admin().await;
    let wait: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM sync_due_at - now())::float8 FROM calendar_connections",
    )
    .fetch_one(&mut admin)
    .await
    .expect("due");
    assert!(wait > 110.0, "{wait}");

    // Down altogether: availability still answers, from the cache, in time.
    w.fake.set_down(true);
    all_due(&w).await;
    assert!(matches!(
        sync_round(&w).await[..],
        [SyncOutcome::Retry { .. }]
    ));
    let started = std::time::Instant::now();
    let a_slots = slots(&w, &w.a, 3).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(!starts(&a_slots, at(3, 10, 0)) && starts(&a_slots, at(3, 11, 0)));
    let r = book(&w, &w.a, at(3, 10, 0), 30).await;
    assert_eq!(r.code(), "slot_busy_in_calendar");
    let r = w
        .app
        .get_as(
            &format!("/api/v1/calendar-connections/{id}"),
            &owner(&w, &w.a),
        )
        .await;
    assert!(r.body["last_sync_error"].is_string(), "{:?}", r.body);
    assert_eq!(
        r.body["status"], "active",
        "a provider down never breaks the link"
    );
}

#[tokio::test]
async fn staff_moving_or_deleting_an_event_moves_or_cancels_its_appointment() {
    let w = world().await;
    for (clinic, account) in [
        (
            &w.a,
            w.fake.account(CalendarProvider::Google, "desk@a.example"),
        ),
        (
            &w.b,
            w.fake
                .account(CalendarProvider::Microsoft, "desk@b.example"),
        ),
    ] {
        link(&w, clinic, &account, Duration::hours(1)).await;
        let first = book(&w, clinic, at(10, 9, 0), 30).await.body["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let second = book(&w, clinic, at(10, 10, 0), 30).await.body["id"]
            .as_str()
            .expect("id")
            .to_owned();
        write_round(&w).await;
        all_due(&w).await;
        sync_round(&w).await;
        let event = |id: &str| {
            let w = &w;
            let id = id.to_owned();
            async move {
                appointment(w, clinic, &id).await["calendar_events"][0]["event_id"]
                    .as_str()
                    .expect("event id")
                    .to_owned()
            }
        };
        let (first_event, second_event) = (event(&first).await, event(&second).await);
        w.fake
            .staff_move(&account, &first_event, at(10, 14, 0), at(10, 14, 45));
        w.fake.staff_delete(&account, &second_event);
        all_due(&w).await;
        let outcomes = sync_round(&w).await;
        assert!(
            outcomes
                .iter()
                .any(|o| matches!(o, SyncOutcome::Synced { reflected: 2, .. })),
            "{outcomes:?}"
        );
        let moved = appointment(&w, clinic, &first).await;
        assert_eq!(moved["starts_at"], text(at(10, 14, 0)), "{moved:?}");
        assert_eq!(moved["ends_at"], text(at(10, 14, 45)));
        assert_eq!(moved["status"], "booked");
        assert_eq!(
            appointment(&w, clinic, &second).await["status"],
            "cancelled"
        );
        // The move is the staff's: the slot it left is free again, the one it took is not.
        let day = slots(&w, clinic, 10).await;
        assert!(starts(&day, at(10, 9, 0)) && !starts(&day, at(10, 14, 0)));
        // And a second sync changes nothing more.
        all_due(&w).await;
        write_round(&w).await;
        let again = sync_round(&w).await;
        assert!(
            again
                .iter()
                .all(|o| matches!(o, SyncOutcome::Synced { reflected: 0, .. })),
            "{again:?}"
        );
    }
}

#[tokio::test]
async fn push_notifications_bring_a_sync_forward_and_forged_ones_change_nothing() {
    let w = world().await;
    let google = w.fake.account(CalendarProvider::Google, "desk@a.example");
    let graph = w
        .fake
        .account(CalendarProvider::Microsoft, "desk@b.example");
    let a_connection = link(&w, &w.a, &google, Duration::hours(1)).await;
    link(&w, &w.b, &graph, Duration::hours(1)).await;
    assert_eq!(sync_round(&w).await.len(), 2);
    // A channel and a subscription (Graph's validation handshake answered by this server).
    let watches = w.fake.watches();
    assert_eq!(watches.len(), 2, "{watches:?}");
    for watch in &watches {
        assert!(
            watch.address.starts_with(&w.app.base)
                && watch
                    .address
                    .ends_with(&format!("/webhooks/calendar/{}", watch.provider.as_str())),
            "{watch:?}"
        );
    }
    assert!(
        sync_round(&w).await.is_empty(),
        "nothing due until the next interval"
    );

    // Forged notifications: an unknown channel, the right channel with another secret.
    let google_watch = watches
        .iter()
        .find(|x| x.provider == CalendarProvider::Google)
        .expect("channel");
    for (channel, token) in [
        (
            "3f1b9a52-6c0e-4e0c-9a3a-000000000000",
            google_watch.token.as_str(),
        ),
        (google_watch.id.as_str(), "not-the-secret"),
    ] {
        let r = w
            .app
            .client
            .post(format!("{}/webhooks/calendar/google", w.app.base))
            .header("X-Goog-Channel-ID", channel)
            .header("X-Goog-Channel-Token", token)
            .header("X-Goog-Resource-State", "exists")
            .header("X-Goog-Resource-ID", &google_watch.resource_id)
            .header("X-Goog-Message-Number", "2")
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 401);
    }
    let r = w
        .app
        .client
        .post(format!("{}/webhooks/calendar/microsoft", w.app.base))
        .json(
            &json!({"value": [{"subscriptionId": "not-a-subscription", "clientState": "x",
                                 "changeType": "updated", "resource": "Users/x/Events/y"}]}),
        )
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 401);
    assert!(
        sync_round(&w).await.is_empty(),
        "a forged notification changes nothing"
    );

    // Staff change an event in each calendar: the providers notify, the syncs are due.
    w.fake.seed_busy(&google, at(12, 9, 0), at(12, 10, 0));
    let graph_event = w.fake.seed_busy(&graph, at(12, 9, 0), at(12, 10, 0));
    let google_event = w.fake.seed_busy(&google, at(12, 11, 0), at(12, 12, 0));
    w.fake
        .staff_move(&google, &google_event, at(12, 12, 0), at(12, 13, 0));
    w.fake
        .staff_move(&graph, &graph_event, at(12, 12, 0), at(12, 13, 0));
    let mut due = Vec::new();
    for _ in 0..100 {
        due.extend(sync_round(&w).await);
        if due.len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(due.len(), 2, "both notifications were taken: {due:?}");
    assert!(!starts(&slots(&w, &w.a, 12).await, at(12, 12, 0)));
    assert!(!starts(&slots(&w, &w.b, 12).await, at(12, 12, 0)));

    // Unlinking stops the calendar's channel at the provider; B's subscription stands.
    let r = w
        .app
        .delete(
            &format!("/api/v1/calendar-connections/{a_connection}"),
            &owner(&w, &w.a),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let left = w.fake.watches();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].provider, CalendarProvider::Microsoft);
}
