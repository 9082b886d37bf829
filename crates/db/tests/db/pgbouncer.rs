//! The tenancy contract behind a real pgbouncer in transaction mode: the application's pool
//! (many client connections) shares two server connections per database, so consecutive
//! transactions of one client run on different server connections, and one server connection
//! serves both clinics in turn. Isolation, rollback, the booking race and the cross-org
//! operations must hold there as they do on a direct connection.

use chrono::{TimeZone, Utc};
use sqlx::{Connection, Executor, PgConnection, Row};
use std::collections::HashSet;
use std::sync::Arc;
use uuid::Uuid;
use voxanne_db::appointments::{BookingError, SlotRequest};
use voxanne_db::demo::{self, DemoClinic};
use voxanne_db::system::{self, DeniedKind, Probe};
use voxanne_db::Pooler;
use voxanne_domain::IntegrationProvider;
use voxanne_testkit::{fill_remaining_tables, tenant_tables, TestDb, SERVER_POOL_SIZE};

/// Two seeded clinics with a row in every tenant table, seeded through pgbouncer.
async fn two_clinics() -> (TestDb, [DemoClinic; 2]) {
    let t = TestDb::behind_pgbouncer().await;
    let clinics = demo::seed(&t.db).await.expect("seeding through pgbouncer");
    for c in &clinics {
        let mut tx = t.db.tenant(c.org, c.owner).await.expect("owner tenant tx");
        fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    (t, clinics)
}

/// A client connection through pgbouncer with the application's settings.
async fn pooled_conn(t: &TestDb) -> PgConnection {
    PgConnection::connect_with(&Pooler::Transaction.connect_options(t.pgbouncer_app_options()))
        .await
        .expect("connecting through pgbouncer")
}

/// Holds every server connection of the test database's pool at once (one open transaction
/// per server connection), and reports for each: its backend pid, the tenant context it
/// carries outside any transaction of ours, and its named prepared statements.
async fn server_connections(t: &TestDb) -> Vec<(i32, Option<String>, Option<String>, i64)> {
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..SERVER_POOL_SIZE {
        let mut conn = pooled_conn(t).await;
        // Simple queries (no bind parameters): nothing prepared by the inspection itself.
        conn.execute("BEGIN").await.expect("begin");
        let row = conn
            .fetch_one(
                "SELECT pg_backend_pid(), nullif(current_setting('app.org_id', true), ''),
                        nullif(current_setting('app.user_id', true), ''),
                        (SELECT count(*) FROM pg_prepared_statements)",
            )
            .await
            .expect("inspecting a server connection");
        seen.push((row.get(0), row.get(1), row.get(2), row.get(3)));
        clients.push(conn);
    }
    for mut conn in clients {
        conn.execute("ROLLBACK").await.expect("rollback");
    }
    seen
}

#[tokio::test]
async fn many_client_connections_share_the_two_server_connections_and_sqlx_defaults_are_refused() {
    let t = TestDb::behind_pgbouncer().await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(pooled_conn(&t).await);
    }
    let mut pids = HashSet::new();
    for _ in 0..3 {
        for conn in &mut clients {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .persistent(false)
                .fetch_one(&mut *conn)
                .await
                .expect("pid");
            pids.insert(pid);
        }
    }
    assert!(
        !pids.is_empty() && pids.len() <= SERVER_POOL_SIZE as usize,
        "8 clients ran on {} server connections",
        pids.len()
    );

    // A client with sqlx's defaults sends `extra_float_digits`, which pgbouncer refuses
    // (nothing tells it to ignore it): the application's settings leave it out.
    let err = PgConnection::connect_with(&t.pgbouncer_app_options())
        .await
        .expect_err("sqlx's default startup parameters through pgbouncer");
    assert!(
        err.to_string().contains("unsupported startup parameter"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clinics_alternating_on_shared_server_connections_see_only_their_own_rows_in_every_tenant_table(
) {
    let (t, clinics) = two_clinics().await;
    let mut admin = t.admin().await;
    let tables = tenant_tables(&mut admin).await;
    assert!(tables.len() >= 18, "tenant tables found: {tables:?}");
    // The truth, counted by the superuser, per clinic and table.
    let mut expected = Vec::new();
    for c in &clinics {
        let mut counts = Vec::new();
        for (table, column) in &tables {
            let n: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} = $1"))
                    .bind(c.org.as_uuid())
                    .fetch_one(&mut admin)
                    .await
                    .expect("counting");
            assert!(n > 0, "{table}: the fixture must fill it for {}", c.name);
            counts.push(n);
        }
        expected.push(counts);
    }
    let (tables, expected) = (Arc::new(tables), Arc::new(expected));

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..24usize {
        let (db, clinics) = (t.db.clone(), clinics.clone());
        let (tables, expected) = (tables.clone(), expected.clone());
        tasks.spawn(async move {
            let mut pids = HashSet::new();
            for round in 0..6usize {
                let which = (task + round) % 2;
                let me = &clinics[which];
                let mut tx = db.tenant(me.org, me.owner).await.expect("tenant tx");
                let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(tx.conn())
                    .await
                    .expect("pid");
                pids.insert(pid);
                let (org, user): (String, String) = sqlx::query_as(
                    "SELECT current_setting('app.org_id'), current_setting('app.user_id')",
                )
                .fetch_one(tx.conn())
                .await
                .expect("context");
                assert_eq!((org, user), (me.org.to_string(), me.owner.to_string()));
                for ((table, column), want) in tables.iter().zip(&expected[which]) {
                    // No WHERE clause: what a handler that forgot the filter would get.
                    let row = sqlx::query(&format!(
                        "SELECT count(*) AS total, count(*) FILTER (WHERE {column} = $1) AS mine FROM {table}"
                    ))
                    .bind(me.org.as_uuid())
                    .fetch_one(tx.conn())
                    .await
                    .expect("counting under RLS");
                    let (total, mine): (i64, i64) = (row.get("total"), row.get("mine"));
                    assert_eq!(total, mine, "{table}: {} sees another clinic's rows", me.name);
                    assert_eq!(mine, *want, "{table}: {} misses its own rows", me.name);
                }
                // Half the transactions commit, half are dropped (rolled back).
                if round % 2 == 0 {
                    tx.commit().await.expect("commit");
                }
            }
            pids
        });
    }
    let mut pids = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        pids.extend(done.expect("every transaction saw its own clinic only"));
    }
    assert!(
        pids.len() <= SERVER_POOL_SIZE as usize,
        "the transactions ran on {} server connections",
        pids.len()
    );
    for (pid, org, user, statements) in server_connections(&t).await {
        assert_eq!((org, user), (None, None), "server connection {pid}");
        assert_eq!(
            statements, 0,
            "server connection {pid} keeps named statements"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_transaction_behind_the_pooler_is_rolled_back_never_committed_by_another_client()
{
    let (t, [a, b]) = two_clinics().await;
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..20u32 {
        let (db, a, b) = (t.db.clone(), a.clone(), b.clone());
        tasks.spawn(async move {
            let mut tx = db.tenant(a.org, a.owner).await.expect("tenant tx");
            sqlx::query("INSERT INTO contacts (org_id, name) VALUES ($1, $2)")
                .bind(a.org.as_uuid())
                .bind(format!("abandoned {round}"))
                .execute(tx.conn())
                .await
                .expect("insert");
            drop(tx); // an error path: `?` before commit

            let mut tx = db.tenant(b.org, b.owner).await.expect("tenant tx");
            sqlx::query("INSERT INTO dnc_list (org_id, phone) VALUES ($1, $2)")
                .bind(b.org.as_uuid())
                .bind(format!("+1415555{:04}", 2000 + round))
                .execute(tx.conn())
                .await
                .expect("insert");
            tx.commit().await.expect("commit");
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }
    // The rollbacks of dropped transactions run in the background: wait for them.
    assert_eq!(
        t.idle_in_transaction().await,
        0,
        "a server connection is left in a transaction"
    );
    let mut admin = t.admin().await;
    let abandoned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM contacts WHERE name LIKE 'abandoned %'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    let committed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dnc_list WHERE org_id = $1 AND phone LIKE '+14155552%'",
    )
    .bind(b.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!((abandoned, committed), (0, 20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_bookings_of_one_slot_behind_the_pooler_have_exactly_one_winner_per_clinic(
) {
    let t = TestDb::behind_pgbouncer().await;
    let clinics = demo::seed(&t.db).await.expect("seeding");
    let db = t.pooled_db(24).await;
    let starts_at = Utc.with_ymd_and_hms(2031, 1, 6, 18, 0, 0).unwrap();
    let slot = SlotRequest {
        contact_id: None,
        call_id: None,
        resource: "default".into(),
        service_id: None,
        starts_at,
        ends_at: starts_at + chrono::Duration::minutes(30),
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50usize {
        let (db, me, slot, barrier) = (
            db.clone(),
            clinics[i % 2].clone(),
            slot.clone(),
            barrier.clone(),
        );
        tasks.spawn(async move {
            barrier.wait().await;
            let mut tx = db.tenant(me.org, me.staff).await.expect("tenant tx");
            match tx.insert_appointment(&slot, None).await {
                Ok(appointment) => {
                    assert_eq!(appointment.org_id, me.org);
                    tx.commit().await.expect("commit");
                    (i % 2, true)
                }
                Err(BookingError::SlotTaken) => (i % 2, false),
                Err(e) => panic!("booking: {e:?}"),
            }
        });
    }
    let mut winners = [0, 0];
    let mut losers = [0, 0];
    while let Some(done) = tasks.join_next().await {
        match done.expect("task") {
            (clinic, true) => winners[clinic] += 1,
            (clinic, false) => losers[clinic] += 1,
        }
    }
    assert_eq!((winners, losers), ([1, 1], [24, 24]));
    let mut admin = t.admin().await;
    for c in &clinics {
        let booked: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM appointments WHERE org_id = $1 AND starts_at = $2 AND status = 'booked'",
        )
        .bind(c.org.as_uuid())
        .bind(starts_at)
        .fetch_one(&mut admin)
        .await
        .expect("count");
        assert_eq!(booked, 1, "{}", c.name);
    }
}

/// A call of `org`, read by the superuser.
async fn a_call(admin: &mut PgConnection, org: &DemoClinic) -> Uuid {
    sqlx::query_scalar("SELECT id FROM calls WHERE org_id = $1 ORDER BY id LIMIT 1")
        .bind(org.org.as_uuid())
        .fetch_one(admin)
        .await
        .expect("a call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cross_org_operations_work_behind_the_pooler() {
    let (t, [a, b]) = two_clinics().await;
    let mut admin = t.admin().await;
    // Work for the queues: every call of both clinics queued for download, one stored.
    sqlx::query(
        "UPDATE calls SET recording_status = 'queued', recording_next_attempt_at = NULL,
                recording_url = 'https://media.example.invalid/' || id || '.wav'
          WHERE org_id IN ($1, $2)",
    )
    .bind(a.org.as_uuid())
    .bind(b.org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("queueing recordings");
    let stored = a_call(&mut admin, &a).await;
    let key = format!("{}/recordings/{stored}.wav", a.org);
    sqlx::query("UPDATE calls SET recording_status = 'stored', recording_path = $2 WHERE id = $1")
        .bind(stored)
        .bind(&key)
        .execute(&mut admin)
        .await
        .expect("storing a recording");
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM calls WHERE recording_status = 'queued' AND org_id IN ($1, $2)",
    )
    .bind(a.org.as_uuid())
    .bind(b.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("count");
    let sms: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sms_confirmation_logs WHERE status = 'queued'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert!(
        queued >= 2 && sms >= 2,
        "queued recordings {queued}, SMS {sms}"
    );

    let db = &t.db;
    db.ping().await.expect("ping");
    let depth = system::recording_queue_depth(db)
        .await
        .expect("recording depth");
    assert!(depth.contains(&("queued".to_owned(), queued)), "{depth:?}");
    let lease = std::time::Duration::from_secs(300);
    let claimed = system::claim_recordings(db, 100, lease)
        .await
        .expect("claim recordings");
    assert_eq!(claimed.len() as i64, queued);
    let orgs: HashSet<Uuid> = claimed.iter().map(|j| j.org_id.as_uuid()).collect();
    assert_eq!(orgs, HashSet::from([a.org.as_uuid(), b.org.as_uuid()]));
    sqlx::query("UPDATE calls SET recording_lease_until = now() - interval '1 second' WHERE recording_status = 'processing'")
        .execute(&mut admin)
        .await
        .expect("expiring the leases");
    assert_eq!(
        system::requeue_stale_recordings(db).await.expect("requeue"),
        queued
    );

    let depth = system::sms_queue_depth(db).await.expect("sms depth");
    assert!(depth.contains(&("queued".to_owned(), sms)), "{depth:?}");
    let claimed = system::claim_sms(db, 100, lease).await.expect("claim sms");
    assert_eq!(claimed.len() as i64, sms);
    sqlx::query("UPDATE sms_confirmation_logs SET lease_until = now() - interval '1 second' WHERE status = 'sending'")
        .execute(&mut admin)
        .await
        .expect("expiring the leases");
    assert_eq!(system::requeue_stale_sms(db).await.expect("requeue"), sms);

    let page = system::stored_recordings(db, None, 100)
        .await
        .expect("stored");
    assert_eq!(page, vec![(a.org.as_uuid(), stored, key.clone())]);
    let unknown = (
        b.org.as_uuid(),
        Uuid::new_v4(),
        format!("{}/recordings/x.wav", b.org),
    );
    let known =
        system::known_recording_objects(db, &[(a.org.as_uuid(), stored, key.clone()), unknown])
            .await
            .expect("known objects");
    assert_eq!(known, vec![key]);

    // B's owner looking up A's call: a probe, recorded in A's security log.
    let probe = Probe {
        org: b.org,
        user: b.owner,
        table: "calls",
        column: "id",
        id: a_call(&mut admin, &a).await,
    };
    let found = system::classify_probes(db, &[(probe, "/api/v1/calls/{id}".to_owned())])
        .await
        .expect("classify");
    assert_eq!(found, 1);
    system::record_denied(
        db,
        a.org,
        Some(b.owner),
        DeniedKind::MembershipDenied,
        "/api/v1/calls",
        serde_json::json!({}),
    )
    .await
    .expect("record denied");
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM security_events WHERE org_id = $1 AND kind IN ('cross_tenant_probe', 'membership_denied') ORDER BY kind",
    )
    .bind(a.org.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("events");
    assert_eq!(events, ["cross_tenant_probe", "membership_denied"]);

    let new = system::NewOrg {
        id: voxanne_domain::OrgId::new_random(),
        name: "Clinic C".into(),
        owner: voxanne_domain::UserId::new_random(),
    };
    system::provision_org(db, &new)
        .await
        .expect("provision")
        .commit()
        .await
        .expect("commit");
    assert!(db.tenant(new.id, new.owner).await.is_ok());

    // The read-only ones again, from many clients at once: every answer is the right one.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..32usize {
        let (db, a, b) = (db.clone(), a.clone(), b.clone());
        tasks.spawn(async move {
            for _ in 0..5 {
                let me = if i % 2 == 0 { &a } else { &b };
                let number = voxanne_domain::PhoneNumber::parse(me.number).expect("number");
                assert_eq!(
                    system::org_for_number(&db, &number)
                        .await
                        .expect("org for number"),
                    Some((me.org, true))
                );
                let credentials =
                    system::webhook_credentials(&db, me.number, IntegrationProvider::Vapi)
                        .await
                        .expect("webhook credentials");
                assert_eq!(credentials.org, Some((me.org, true)));
                let orgs: Vec<voxanne_domain::OrgId> = system::memberships(&db, me.owner)
                    .await
                    .expect("memberships")
                    .into_iter()
                    .map(|m| m.org_id)
                    .collect();
                assert_eq!(orgs, vec![me.org]);
                system::recording_queue_depth(&db).await.expect("depth");
                system::sms_queue_depth(&db).await.expect("depth");
                db.ping().await.expect("ping");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("every cross-org operation answered right");
    }
    for (pid, org, user, statements) in server_connections(&t).await {
        assert_eq!((org, user), (None, None), "server connection {pid}");
        assert_eq!(
            statements, 0,
            "server connection {pid} keeps named statements"
        );
    }
}

#[tokio::test]
async fn without_the_pooler_mode_named_statements_of_two_clients_collide_on_a_server_connection() {
    // What the mode prevents, and proof that the harness really shares server connections
    // between clients: sqlx's defaults (named, cached statements; only the startup parameter
    // fixed so that it connects), three clients, two server connections. Each client's first
    // statement is `sqlx_s_1`, so two of them prepare it on one server connection.
    let t = TestDb::behind_pgbouncer().await;
    let mut failures = Vec::new();
    for _ in 0..3 {
        let mut conn =
            PgConnection::connect_with(&t.pgbouncer_app_options().extra_float_digits(None))
                .await
                .expect("connecting");
        conn.execute("BEGIN").await.expect("begin");
        let result = sqlx::query_scalar::<_, i32>("SELECT $1::int4")
            .bind(7)
            .fetch_one(&mut conn)
            .await;
        let _ = conn.execute("ROLLBACK").await;
        if let Err(e) = result {
            failures.push(e.to_string());
        }
    }
    assert!(
        failures
            .iter()
            .any(|e| e.contains("prepared statement \"sqlx_s_1\" already exists")),
        "{failures:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_cancelled_anywhere_behind_the_pooler_leave_no_transaction_and_no_context_behind()
{
    let t = TestDb::behind_pgbouncer().await;
    let clinics = demo::seed(&t.db).await.expect("seeding");
    let db = t.pooled_db(8).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300u64 {
        let (db, me) = (db.clone(), clinics[(i % 2) as usize].clone());
        tasks.spawn(async move {
            // Timeouts from 0 to ~3 ms: cancelled anywhere from the pool queue to the commit.
            let cut = std::time::Duration::from_micros((i * 37) % 3000);
            let _ = tokio::time::timeout(cut, async {
                // A connection the loaded machine could not open in time is not what this
                // test is about (every cancelled request closes one, and the next reconnects).
                let mut tx = match db.tenant(me.org, me.owner).await {
                    Ok(tx) => tx,
                    Err(voxanne_db::TenantError::Db(voxanne_db::DbError::Unavailable(_))) => return,
                    Err(e) => panic!("tenant tx: {e:?}"),
                };
                let orgs: Vec<Uuid> =
                    sqlx::query_scalar("SELECT DISTINCT org_id FROM calls WHERE $1")
                        .bind(true)
                        .fetch_all(tx.conn())
                        .await
                        .expect("calls");
                assert_eq!(orgs, vec![me.org.as_uuid()]);
                tx.commit().await.expect("commit");
            })
            .await;
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("no request saw another clinic's rows");
    }
    assert_eq!(t.idle_in_transaction().await, 0);
    for (i, me) in clinics.iter().cycle().take(8).enumerate() {
        let mut tx = db.tenant(me.org, me.owner).await.expect("tenant tx");
        let (org, fresh): (String, bool) = sqlx::query_as(
            "SELECT current_setting('app.org_id'), now() = transaction_timestamp() AND $1",
        )
        .bind(true)
        .fetch_one(tx.conn())
        .await
        .expect("context");
        assert_eq!(
            (org, fresh),
            (me.org.to_string(), true),
            "after the load, {i}"
        );
        tx.commit().await.expect("commit");
    }
    for (pid, org, user, statements) in server_connections(&t).await {
        assert_eq!((org, user), (None, None), "server connection {pid}");
        assert_eq!(
            statements, 0,
            "server connection {pid} keeps named statements"
        );
    }
}
