//! Calendar sync's rows: the cached busy times of a clinic's linked calendars make its slots
//! unbookable (and only its own), every booking path queues its diary write, and the sync
//! claim is fair and names its holder.

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use std::collections::HashSet;
use voxanne_db::appointments::{BookingError, SlotRequest};
use voxanne_db::calendar_connections::NewCalendarConnection;
use voxanne_db::crypto::Keyring;
use voxanne_db::system::claim_calendar_syncs;
use voxanne_db::{demo, TenantTx};
use voxanne_domain::availability::Span;
use voxanne_domain::{CalendarConnectionId, CalendarProvider, OrgId, UserId};
use voxanne_testkit::TestDb;

fn keyring() -> Keyring {
    Keyring::from_config(
        &SecretString::from("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="),
        None,
    )
    .expect("keyring")
}

async fn tenant(t: &TestDb, org: OrgId, user: UserId) -> TenantTx {
    t.db.tenant(org, user).await.expect("tenant")
}

async fn link(tx: &mut TenantTx, email: &str) -> CalendarConnectionId {
    tx.insert_calendar_connection(
        &keyring(),
        &NewCalendarConnection {
            provider: CalendarProvider::Google,
            account_email: email.to_owned(),
            access_token: SecretString::from("ya29.access"),
            refresh_token: Some(SecretString::from("1//refresh")),
            token_expires_at: None,
        },
    )
    .await
    .expect("link")
    .id
}

/// A sync's answer: `busy` cached for the connection.
async fn sync(tx: &mut TenantTx, id: CalendarConnectionId, busy: &[Span]) {
    let (claim, due): (i32, DateTime<Utc>) = sqlx::query_as(
        "UPDATE calendar_connections SET sync_claims = sync_claims + 1 WHERE id = $1
         RETURNING sync_claims, sync_due_at",
    )
    .bind(id.as_uuid())
    .fetch_one(tx.conn())
    .await
    .expect("claim");
    let now = Utc::now();
    assert!(tx
        .calendar_busy_synced(
            id,
            claim,
            due,
            now - Duration::days(1),
            now + Duration::days(60),
            busy,
            now + Duration::minutes(2)
        )
        .await
        .expect("synced"));
}

fn at(hours: i64) -> DateTime<Utc> {
    // Five days ahead: the demo clinics' appointments are 1 and 2 days ahead, on the hour.
    let day = (Utc::now() + Duration::days(5))
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    day + Duration::hours(hours)
}

fn slot(resource: &str, from: i64, to: i64) -> SlotRequest {
    SlotRequest {
        contact_id: None,
        call_id: None,
        resource: resource.to_owned(),
        service_id: None,
        starts_at: at(from),
        ends_at: at(to),
    }
}

#[tokio::test]
async fn a_slot_busy_in_a_clinics_calendar_is_not_bookable_there_and_only_there() {
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seed");
    // Clinic B's calendar is busy 10:00-11:00; clinic A's is busy 14:00-15:00.
    let mut tx = tenant(&t, b.org, b.owner).await;
    let b_cal = link(&mut tx, "desk@b.example").await;
    sync(
        &mut tx,
        b_cal,
        &[Span {
            start: at(10),
            end: at(11),
        }],
    )
    .await;
    tx.commit().await.expect("commit");
    let mut tx = tenant(&t, a.org, a.owner).await;
    let a_cal = link(&mut tx, "desk@a.example").await;
    sync(
        &mut tx,
        a_cal,
        &[Span {
            start: at(14),
            end: at(15),
        }],
    )
    .await;

    // A's own busy time refuses every booking path; B's means nothing to A.
    let direct = tx.insert_appointment(&slot("default", 14, 15), None).await;
    assert!(
        matches!(direct, Err(BookingError::CalendarBusy)),
        "{direct:?}"
    );
    let partly = tx.insert_hold(&slot("default", 13, 15), 60).await;
    assert!(
        matches!(partly, Err(BookingError::CalendarBusy)),
        "{partly:?}"
    );
    let booked = tx
        .insert_appointment(&slot("default", 10, 11), None)
        .await
        .expect("B's busy time is B's alone");
    // Another resource's diary is not this calendar.
    tx.insert_appointment(&slot("room-2", 13, 15), None)
        .await
        .expect("another resource");
    let moved = tx
        .reschedule_appointment(booked.id, Some(at(14)), Some(at(15)), None)
        .await;
    assert!(
        matches!(moved, Err(BookingError::CalendarBusy)),
        "{moved:?}"
    );

    // Availability subtracts the busy time, and says nothing is stale after a sync.
    let schedule = tx
        .schedule(
            "default",
            Span {
                start: at(0),
                end: at(24),
            },
        )
        .await
        .expect("schedule");
    assert!(schedule.busy.contains(&Span {
        start: at(14),
        end: at(15)
    }));
    // A's own appointment at 10:00 is busy on its own account.
    assert!(schedule.busy.contains(&Span {
        start: at(10),
        end: at(11)
    }));
    assert!(
        schedule.stale_calendars.is_empty(),
        "{:?}",
        schedule.stale_calendars
    );
    let other = tx
        .schedule(
            "room-2",
            Span {
                start: at(0),
                end: at(24),
            },
        )
        .await
        .expect("schedule");
    assert!(!other.busy.contains(&Span {
        start: at(14),
        end: at(15)
    }));
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn a_calendar_never_synced_or_synced_long_ago_is_reported_stale() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let mut tx = tenant(&t, a.org, a.owner).await;
    let cal = link(&mut tx, "desk@a.example").await;
    let window = Span {
        start: at(0),
        end: at(24),
    };
    let schedule = tx.schedule("default", window).await.expect("schedule");
    assert_eq!(schedule.stale_calendars, vec![cal], "never synced");
    sync(&mut tx, cal, &[]).await;
    assert!(tx
        .schedule("default", window)
        .await
        .expect("schedule")
        .stale_calendars
        .is_empty());
    sqlx::query("UPDATE calendar_connections SET busy_synced_at = now() - interval '1 hour'")
        .execute(tx.conn())
        .await
        .expect("age");
    assert_eq!(
        tx.schedule("default", window)
            .await
            .expect("schedule")
            .stale_calendars,
        vec![cal],
        "an hour old"
    );
    // Beyond what the sync read is not covered either.
    sync(&mut tx, cal, &[]).await;
    let far = Span {
        start: Utc::now() + Duration::days(90),
        end: Utc::now() + Duration::days(91),
    };
    assert_eq!(
        tx.schedule("default", far)
            .await
            .expect("schedule")
            .stale_calendars,
        vec![cal]
    );
}

#[tokio::test]
async fn voxannes_own_event_does_not_block_moving_its_appointment() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let mut tx = tenant(&t, a.org, a.owner).await;
    let cal = link(&mut tx, "desk@a.example").await;
    let booked = tx
        .insert_appointment(&slot("default", 9, 10), None)
        .await
        .expect("book");
    // The writer put its event at 09:00-10:00, and the next sync reads it back as busy.
    sqlx::query(
        "UPDATE calendar_event_writes
            SET status = 'synced', event_id = 'ev1', written_starts_at = $2, written_ends_at = $3
          WHERE appointment_id = $1",
    )
    .bind(booked.id.as_uuid())
    .bind(at(9))
    .bind(at(10))
    .execute(tx.conn())
    .await
    .expect("written");
    sync(
        &mut tx,
        cal,
        &[Span {
            start: at(9),
            end: at(10),
        }],
    )
    .await;
    let moved = tx
        .reschedule_appointment(
            booked.id,
            Some(at(9) + Duration::minutes(30)),
            Some(at(10) + Duration::minutes(30)),
            None,
        )
        .await
        .expect("its own old event does not block the move");
    assert_eq!(moved.starts_at, at(9) + Duration::minutes(30));
    // Someone else's 09:00-10:00 would have.
    sqlx::query(
        "UPDATE calendar_event_writes SET written_starts_at = NULL, written_ends_at = NULL",
    )
    .execute(tx.conn())
    .await
    .expect("forget");
    let again = tx
        .reschedule_appointment(booked.id, Some(at(9)), Some(at(10)), None)
        .await;
    assert!(
        matches!(again, Err(BookingError::CalendarBusy)),
        "{again:?}"
    );
}

/// (connection, status, wanted, attempts) of each diary write of an appointment.
async fn writes(
    tx: &mut TenantTx,
    id: voxanne_domain::AppointmentId,
) -> Vec<(uuid::Uuid, String, i32, i32)> {
    sqlx::query_as(
        "SELECT connection_id, status, wanted, attempts FROM calendar_event_writes
          WHERE appointment_id = $1 ORDER BY connection_id",
    )
    .bind(id.as_uuid())
    .fetch_all(tx.conn())
    .await
    .expect("writes")
}

#[tokio::test]
async fn booking_moving_and_cancelling_each_queue_a_diary_write_in_the_same_transaction() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let mut tx = tenant(&t, a.org, a.owner).await;
    let cal = link(&mut tx, "desk@a.example").await;
    let other = link(&mut tx, "room2@a.example").await;
    assert!(tx
        .map_calendar_connection(other, Some("room-2"), None)
        .await
        .expect("map"));
    let booked = tx
        .insert_appointment(&slot("default", 9, 10), None)
        .await
        .expect("book");
    assert_eq!(
        writes(&mut tx, booked.id).await,
        vec![(cal.as_uuid(), "pending".to_owned(), 1, 0)],
        "one write, to the default resource's calendar only"
    );
    tx.reschedule_appointment(booked.id, Some(at(11)), Some(at(12)), None)
        .await
        .expect("move");
    assert_eq!(writes(&mut tx, booked.id).await[0].2, 2);
    // A notes-only change does not touch the diary.
    tx.reschedule_appointment(booked.id, None, None, Some(Some("bring x-rays")))
        .await
        .expect("notes");
    assert_eq!(writes(&mut tx, booked.id).await[0].2, 2);
    // A write in flight keeps its claim; the newer version waits for it.
    sqlx::query("UPDATE calendar_event_writes SET status = 'writing', attempts = 1")
        .execute(tx.conn())
        .await
        .expect("claimed");
    tx.cancel_appointment(booked.id).await.expect("cancel");
    assert_eq!(
        writes(&mut tx, booked.id).await,
        vec![(cal.as_uuid(), "writing".to_owned(), 3, 1)]
    );
    // A rolled-back booking queues nothing.
    drop(tx);
    let mut tx = tenant(&t, a.org, a.owner).await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM calendar_event_writes")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn the_sync_claim_is_fair_across_clinics_and_a_claim_taken_over_writes_nothing() {
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seed");
    let mut tx = tenant(&t, a.org, a.owner).await;
    for i in 0..30 {
        link(&mut tx, &format!("desk{i}@a.example")).await;
    }
    tx.commit().await.expect("commit");
    let mut tx = tenant(&t, b.org, b.owner).await;
    let single = link(&mut tx, "desk@b.example").await;
    tx.commit().await.expect("commit");

    let batch = claim_calendar_syncs(&t.db, 5, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(batch.len(), 5);
    assert!(
        batch.iter().any(|c| c.connection_id == single),
        "B's single calendar waits behind A's thirty"
    );
    let claimed: HashSet<_> = batch.iter().map(|c| c.connection_id).collect();
    // Held: not claimed again while the lease runs.
    let next = claim_calendar_syncs(&t.db, 100, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(next.len(), 26);
    assert!(next.iter().all(|c| !claimed.contains(&c.connection_id)));

    // The lease of B's runs out; another worker takes it over; the first one's writes fail.
    let first = batch
        .iter()
        .find(|c| c.connection_id == single)
        .expect("claimed")
        .clone();
    let mut admin = t.admin().await;
    sqlx::query("UPDATE calendar_connections SET sync_lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(single.as_uuid())
        .execute(&mut admin)
        .await
        .expect("expire");
    let taken = claim_calendar_syncs(&t.db, 100, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].claim, first.claim + 1);
    let mut tx = tenant(&t, b.org, b.owner).await;
    let now = Utc::now();
    assert!(!tx
        .calendar_busy_synced(
            single,
            first.claim,
            first.due_at,
            now,
            now + Duration::days(1),
            &[],
            now
        )
        .await
        .expect("stale write"));
    assert!(!tx
        .calendar_broken(single, first.claim, "stale")
        .await
        .expect("stale write"));
    assert!(tx
        .calendar_busy_synced(
            single,
            taken[0].claim,
            taken[0].due_at,
            now,
            now + Duration::days(1),
            &[],
            now + Duration::minutes(2)
        )
        .await
        .expect("current write"));
    tx.commit().await.expect("commit");

    // A suspended clinic's calendars are not synced.
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    sqlx::query("UPDATE calendar_connections SET sync_lease_until = NULL, sync_due_at = now() - interval '1 minute'")
        .execute(&mut admin)
        .await
        .expect("all due");
    let left = claim_calendar_syncs(&t.db, 100, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(
        left.iter().map(|c| c.org_id).collect::<Vec<_>>(),
        vec![b.org]
    );
}

#[tokio::test]
async fn a_sync_asked_for_while_one_runs_is_not_lost_and_breaking_is_logged() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let mut tx = tenant(&t, a.org, a.owner).await;
    let cal = link(&mut tx, "desk@a.example").await;
    tx.commit().await.expect("commit");
    let claim = claim_calendar_syncs(&t.db, 1, std::time::Duration::from_secs(60))
        .await
        .expect("claim")
        .remove(0);
    // A push notification arrives while the provider is being read.
    let mut tx = tenant(&t, a.org, a.owner).await;
    assert!(tx.calendar_sync_now(cal).await.expect("notified"));
    let now = Utc::now();
    assert!(tx
        .calendar_busy_synced(
            cal,
            claim.claim,
            claim.due_at,
            now,
            now + Duration::days(1),
            &[],
            now + Duration::hours(1)
        )
        .await
        .expect("synced"));
    tx.commit().await.expect("commit");
    let again = claim_calendar_syncs(&t.db, 1, std::time::Duration::from_secs(60))
        .await
        .expect("claim");
    assert_eq!(again.len(), 1, "the notification's sync is still due");

    let mut tx = tenant(&t, a.org, a.owner).await;
    assert!(tx
        .calendar_broken(
            cal,
            again[0].claim,
            "google refused the refresh token (invalid_grant)"
        )
        .await
        .expect("broken"));
    let (status, reason): (String, Option<String>) =
        sqlx::query_as("SELECT status, broken_reason FROM calendar_connections WHERE id = $1")
            .bind(cal.as_uuid())
            .fetch_one(tx.conn())
            .await
            .expect("row");
    assert_eq!(status, "broken");
    assert!(reason.is_some_and(|r| r.contains("invalid_grant")));
    let events: Vec<(String, String)> = sqlx::query_as(
        "SELECT kind, target FROM security_events WHERE kind = 'calendar_connection_broken'",
    )
    .fetch_all(tx.conn())
    .await
    .expect("events");
    assert_eq!(
        events,
        vec![(
            "calendar_connection_broken".to_owned(),
            format!("calendar_connections/{cal}")
        )]
    );
    tx.commit().await.expect("commit");
    // A broken connection is not claimed.
    sqlx::query("UPDATE calendar_connections SET sync_lease_until = NULL, sync_due_at = now() - interval '1 minute'")
        .execute(&mut t.admin().await)
        .await
        .expect("due");
    assert!(
        claim_calendar_syncs(&t.db, 10, std::time::Duration::from_secs(60))
            .await
            .expect("claim")
            .is_empty()
    );
}
