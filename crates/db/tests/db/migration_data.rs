//! What migrations do to a clinic's data already there: the schema as it was before, with
//! rows in it, then every migration applied.
//!
//! - 0018: appointments, holds and linked calendars on free-text resources. Nothing is lost,
//!   every resource in use (and `default`) becomes a practitioner of its own clinic only, and
//!   what was booked still books the same.
//! - 0033: patient text in plain columns. Every text is kept, reads back through the clinic's
//!   transaction, and is then encrypted by the encryption step.
//! - 0034: clinics the encryption job had finished resume at their recordings.

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

/// The stored value of `field` in row `id`.
async fn stored(
    conn: &mut PgConnection,
    field: voxanne_db::encrypted::Field,
    id: Uuid,
) -> Option<Vec<u8>> {
    let sql = format!("SELECT {} FROM {} WHERE id = $1", field.column, field.table);
    sqlx::query_scalar(&sql)
        .bind(id)
        .fetch_one(conn)
        .await
        .expect("stored")
}

/// What migration 0033 does to patient text written before it: every text is kept (as the
/// older form, byte 0 then the text), reads back through the clinic's transaction, and the
/// encryption step then encrypts it with the current key.
#[tokio::test]
async fn patient_text_from_before_0033_is_kept_readable_and_then_encrypted() {
    use voxanne_db::encrypted::FIELDS;
    let (_url, admin) = voxanne_testkit::empty_database_url().await;
    let before = migrations_through(32);
    let migrator = sqlx::migrate::Migrator::new(before.path())
        .await
        .expect("migrations 1-32");
    voxanne_db::migrate::migrate_with(&admin, None, &migrator)
        .await
        .expect("migrating to 0032");

    let mut conn = PgConnection::connect_with(&admin).await.expect("admin");
    let (org, contact, call, appointment) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let sms = Uuid::new_v4();
    for (sql, what) in [
        ("INSERT INTO organizations (id, name) VALUES ($1, 'Old clinic')", "org"),
        (
            "INSERT INTO contacts (org_id, id, name, phone, notes)
             VALUES ($1, $2, 'Ann', '+14155550111', 'Ann: allergic to penicillin')",
            "contact",
        ),
        (
            "INSERT INTO calls (org_id, id, contact_id, direction, status, from_number, to_number,
                                started_at, transcript, summary)
             VALUES ($1, $3, $2, 'inbound', 'completed', '+14155550111', '+14155550100', now(),
                     'Caller: my tooth hurts — ça fait mal', 'Toothache')",
            "call",
        ),
        (
            "INSERT INTO call_transcript_lines (org_id, call_id, role, text)
             VALUES ($1, $3, 'user', 'My tooth hurts')",
            "line",
        ),
        (
            "INSERT INTO appointments (org_id, id, contact_id, starts_at, ends_at, notes)
             VALUES ($1, $4, $2, now() + interval '2 days', now() + interval '2 days 30 minutes',
                     'Bring the x-rays')",
            "appointment",
        ),
        (
            "INSERT INTO sms_confirmation_logs (org_id, id, appointment_id, to_number, body)
             VALUES ($1, $5, $4, '+14155550111', 'See you on Tuesday')",
            "sms",
        ),
        (
            "INSERT INTO inbox_messages (org_id, channel, kind, from_number, body, reply, contact_id)
             VALUES ($1, 'sms', 'message', '+14155550111', 'Can I come earlier?', 'We will call you', $2)",
            "inbox",
        ),
        (
            "INSERT INTO leads (org_id, phone, name, notes) VALUES ($1, '+14155550112', 'Lee', 'Prefers mornings')",
            "lead",
        ),
        (
            "INSERT INTO leads (org_id, phone, name) VALUES ($1, '+14155550113', 'Lou')",
            "lead without notes",
        ),
    ] {
        sqlx::query(sql)
            .bind(org)
            .bind(contact)
            .bind(call)
            .bind(appointment)
            .bind(sms)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    let mut texts_before = Vec::new();
    for f in FIELDS {
        let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as(&format!(
            "SELECT id, {} FROM {} ORDER BY id",
            f.column, f.table
        ))
        .fetch_all(&mut conn)
        .await
        .expect("texts");
        texts_before.extend(rows.into_iter().map(|(id, text)| (f, id, text)));
    }
    conn.close().await.expect("close");

    voxanne_db::migrate::migrate(&admin, None)
        .await
        .expect("applying 0033 onto the data");

    // Kept: each value is the older form of exactly its text.
    let mut conn = PgConnection::connect_with(&admin).await.expect("admin");
    let keyring = voxanne_testkit::keyring();
    for (f, id, text) in &texts_before {
        let value = stored(&mut conn, *f, *id).await;
        let expected = text.as_deref().map(voxanne_db::crypto::stored_plain);
        assert_eq!(value, expected, "{f:?} {id}");
    }

    // Read through the clinic's transaction, then encrypted by the encryption step.
    let app = admin.clone().username(voxanne_db::migrate::APP_ROLE);
    let db = voxanne_db::Db::connect(app, 2)
        .await
        .expect("app pool")
        .with_keyring(keyring.clone());
    let org_id = voxanne_domain::OrgId::from_uuid(org);
    let mut tx = db.job_tenant(org_id).await.expect("tenant");
    let read = tx
        .find::<voxanne_db::calls::Call>(call.into())
        .await
        .expect("read")
        .expect("call");
    assert_eq!(
        read.transcript.as_deref(),
        Some("Caller: my tooth hurts — ça fait mal")
    );
    for f in FIELDS {
        let step = tx.encrypt_step(f, None, 100).await.expect("encrypting");
        assert_eq!(step.after, None, "{f:?}: one step does it");
    }
    tx.commit().await.expect("commit");
    for (f, id, text) in &texts_before {
        let value = stored(&mut conn, *f, *id).await;
        match (text, value) {
            (None, None) => {}
            // A lead without notes holds the empty text, which stays as it is.
            (Some(text), Some(value)) if text.is_empty() => {
                assert_eq!(value, voxanne_db::crypto::stored_plain(""), "{f:?}")
            }
            (Some(text), Some(value)) => {
                assert_eq!(voxanne_db::crypto::stored_key_id(&value), Some("test2"));
                let opened = keyring
                    .open_stored(&value, &f.aad(org_id, *id))
                    .expect("opens");
                assert_eq!(opened.as_slice(), text.as_bytes(), "{f:?}");
            }
            other => panic!("{f:?} {id}: {other:?}"),
        }
    }
    let mut tx = db.job_tenant(org_id).await.expect("tenant");
    let read = tx
        .find::<voxanne_db::contacts::Contact>(contact.into())
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(read.notes.as_deref(), Some("Ann: allergic to penicillin"));
}

/// What migration 0034 does to clinics the encryption job had finished: their pass resumes at
/// the recordings phase, with the key it had finished with, so the job encrypts their stored
/// recordings without going over their text again; a pass under way keeps its place.
#[tokio::test]
async fn clinics_finished_before_0034_resume_at_their_recordings() {
    let (_url, admin) = voxanne_testkit::empty_database_url().await;
    let before = migrations_through(33);
    let migrator = sqlx::migrate::Migrator::new(before.path())
        .await
        .expect("migrations 1-33");
    voxanne_db::migrate::migrate_with(&admin, None, &migrator)
        .await
        .expect("migrating to 0033");
    let mut conn = PgConnection::connect_with(&admin).await.expect("admin");
    let (done, under_way, call, place) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    sqlx::query(
        "INSERT INTO organizations (id, name, encrypted_with) VALUES ($1, 'Done', 'test2')",
    )
    .bind(done)
    .execute(&mut conn)
    .await
    .expect("done clinic");
    sqlx::query(
        "INSERT INTO organizations (id, name, encrypt_key, encrypt_field, encrypt_after)
         VALUES ($1, 'Under way', 'test2', 3, $2)",
    )
    .bind(under_way)
    .bind(place)
    .execute(&mut conn)
    .await
    .expect("clinic under way");
    sqlx::query(
        "INSERT INTO calls (org_id, id, direction, status, from_number, to_number, started_at,
                            recording_status, recording_path)
         VALUES ($1, $2, 'inbound', 'completed', '+14155550111', '+14155550100', now(),
                 'stored', $1::text || '/recordings/' || $2::text || '.wav')",
    )
    .bind(done)
    .bind(call)
    .execute(&mut conn)
    .await
    .expect("call");
    conn.close().await.expect("close");

    voxanne_db::migrate::migrate(&admin, None)
        .await
        .expect("applying 0034 onto the data");
    let mut conn = PgConnection::connect_with(&admin).await.expect("admin");
    let state = |id: Uuid| {
        sqlx::query(
            "SELECT encrypted_with, encrypt_key, encrypt_field, encrypt_after
               FROM organizations WHERE id = $1",
        )
        .bind(id)
    };
    let row = state(done).fetch_one(&mut conn).await.expect("done");
    assert_eq!(row.get::<Option<String>, _>(0), None);
    assert_eq!(row.get::<Option<String>, _>(1).as_deref(), Some("test2"));
    assert_eq!(
        row.get::<Option<i32>, _>(2),
        Some(i32::try_from(voxanne_db::encrypted::RECORDINGS).expect("small"))
    );
    assert_eq!(row.get::<Option<Uuid>, _>(3), None);
    let row = state(under_way)
        .fetch_one(&mut conn)
        .await
        .expect("under way");
    assert_eq!(row.get::<Option<i32>, _>(2), Some(3));
    assert_eq!(row.get::<Option<Uuid>, _>(3), Some(place));
    let key_id: Option<String> =
        sqlx::query_scalar("SELECT recording_key_id FROM calls WHERE id = $1")
            .bind(call)
            .fetch_one(&mut conn)
            .await
            .expect("key id");
    assert_eq!(key_id, None, "not known to be encrypted");

    // The job's claim, with the same current key, goes on from there.
    let app = admin.clone().username(voxanne_db::migrate::APP_ROLE);
    let db = voxanne_db::Db::connect(app, 2)
        .await
        .expect("app pool")
        .with_keyring(voxanne_testkit::keyring());
    let mut claims =
        voxanne_db::system::claim_encryption(&db, 5, std::time::Duration::from_secs(60))
            .await
            .expect("claim");
    claims.sort_by_key(|c| c.org_id.as_uuid() != done);
    assert_eq!(claims.len(), 2);
    assert_eq!(claims[0].org_id.as_uuid(), done);
    assert_eq!(claims[0].field, voxanne_db::encrypted::RECORDINGS);
    assert_eq!(claims[0].after, None);
    assert_eq!((claims[1].field, claims[1].after), (3, Some(place)));
}
