//! What migration 0018 does to a clinic's data: the schema as it was before (0001-0017)
//! with appointments, holds and linked calendars on free-text resources, then every
//! migration applied. Nothing is lost, every resource in use (and `default`) becomes a
//! practitioner of its own clinic only, and what was booked still books the same.

use sqlx::{Connection, PgConnection, Row};
use std::path::Path;
use uuid::Uuid;

/// A directory holding the migrations numbered up to `last`.
fn migrations_through(last: u32) -> tempfile::TempDir {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&all).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let number: u32 = name[..4].parse().expect("numbered");
        if number <= last {
            std::fs::copy(&path, dir.path().join(&name)).expect("copy");
        }
    }
    dir
}

/// Every appointment, as text, in a stable order.
async fn appointments(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query(
        "SELECT org_id, resource, starts_at, ends_at, status FROM appointments
          ORDER BY org_id, resource, starts_at",
    )
    .fetch_all(conn)
    .await
    .expect("appointments")
    .iter()
    .map(|r| {
        format!(
            "{} {:?} {} {} {}",
            r.get::<Uuid, _>(0),
            r.get::<String, _>(1),
            r.get::<chrono::DateTime<chrono::Utc>, _>(2),
            r.get::<chrono::DateTime<chrono::Utc>, _>(3),
            r.get::<String, _>(4)
        )
    })
    .collect()
}

#[tokio::test]
async fn every_resource_in_use_becomes_a_practitioner_of_its_own_clinic_and_nothing_is_lost() {
    let (_url, admin) = voxanne_testkit::empty_database_url().await;
    let before = migrations_through(17);
    let migrator = sqlx::migrate::Migrator::new(before.path())
        .await
        .expect("migrations 1-17");
    voxanne_db::migrate::migrate_with(&admin, None, &migrator)
        .await
        .expect("migrating to 0017");

    let mut conn = PgConnection::connect_with(&admin).await.expect("admin");
    let (a, b, empty) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for (org, name) in [(a, "A"), (b, "B"), (empty, "Empty")] {
        sqlx::query("INSERT INTO organizations (id, name) VALUES ($1, $2)")
            .bind(org)
            .bind(name)
            .execute(&mut conn)
            .await
            .expect("org");
    }
    // A books Dr Lee and "default", holds room 2, links Dr Patel's calendar and has a
    // resource of blanks; B books its own "dr-lee".
    let booked = [
        (a, "dr-lee", 9),
        (a, "default", 9),
        (a, "  ", 10),
        (b, "dr-lee", 9),
    ];
    for (org, resource, hour) in booked {
        sqlx::query(
            "INSERT INTO appointments (org_id, resource, starts_at, ends_at)
             VALUES ($1, $2, $3, $3 + interval '30 minutes')",
        )
        .bind(org)
        .bind(resource)
        .bind(
            chrono::DateTime::parse_from_rfc3339(&format!("2031-03-03T{hour:02}:00:00Z"))
                .expect("time"),
        )
        .execute(&mut conn)
        .await
        .expect("appointment");
    }
    sqlx::query(
        "INSERT INTO appointment_holds (org_id, resource, starts_at, ends_at, expires_at)
         VALUES ($1, 'room-2', now() + interval '1 day', now() + interval '1 day 30 minutes',
                 now() + interval '5 minutes')",
    )
    .bind(a)
    .execute(&mut conn)
    .await
    .expect("hold");
    sqlx::query(
        "INSERT INTO calendar_connections (org_id, provider, account_email, resource)
         VALUES ($1, 'google', 'patel@clinic.example', 'dr-patel')",
    )
    .bind(a)
    .execute(&mut conn)
    .await
    .expect("calendar");
    let appointments_before = appointments(&mut conn).await;
    conn.close().await.expect("close");

    voxanne_db::migrate::migrate(&admin, None)
        .await
        .expect("applying 0018 onto the data");

    let mut conn = PgConnection::connect_with(&admin).await.expect("admin");
    assert_eq!(
        appointments(&mut conn).await,
        appointments_before,
        "appointments untouched"
    );
    let holds: i64 =
        sqlx::query_scalar("SELECT count(*) FROM appointment_holds WHERE resource = 'room-2'")
            .fetch_one(&mut conn)
            .await
            .expect("holds");
    assert_eq!(holds, 1);
    let mut practitioners: Vec<(Uuid, String, String, bool)> = sqlx::query_as(
        "SELECT org_id, resource, name, active FROM practitioners ORDER BY org_id, resource",
    )
    .fetch_all(&mut conn)
    .await
    .expect("practitioners");
    let mut want = vec![
        (a, "  ".to_owned(), "Unnamed".to_owned(), true),
        (a, "default".into(), "default".into(), true),
        (a, "dr-lee".into(), "dr-lee".into(), true),
        (a, "dr-patel".into(), "dr-patel".into(), true),
        (a, "room-2".into(), "room-2".into(), true),
        (b, "default".into(), "default".into(), true),
        (b, "dr-lee".into(), "dr-lee".into(), true),
        (empty, "default".into(), "default".into(), true),
    ];
    want.sort();
    practitioners.sort();
    assert_eq!(practitioners, want);
    // Without hours of their own, each keeps the clinic's: nothing about availability moved.
    let own_hours: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM practitioners WHERE opening_hours IS NOT NULL OR location_id IS NOT NULL",
    )
    .fetch_one(&mut conn)
    .await
    .expect("hours");
    assert_eq!(own_hours, 0);
    // The data insert ran as the system role for that statement only: it holds no grant on
    // the table afterwards.
    let granted: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('voxanne_system', 'practitioners', 'INSERT')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("grant");
    assert!(!granted, "voxanne_system kept INSERT on practitioners");
}
