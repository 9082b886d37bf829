//! The access log (migrations/0028): append-only for the application, each clinic's records
//! sealed into a hash chain of its own, and any later change, by a superuser too, found.

use sqlx::PgConnection;
use uuid::Uuid;
use voxanne_db::access::{AccessFilter, AccessRecord};
use voxanne_db::demo::{self, DemoClinic};
use voxanne_db::system::seal_access_log;
use voxanne_db::Action;
use voxanne_db::Db;
use voxanne_testkit::TestDb;

/// Adds `n` records to `clinic`'s log in its owner's tenant transaction.
async fn log(t: &TestDb, clinic: &DemoClinic, n: usize) {
    let mut tx = t.db.tenant(clinic.org, clinic.owner).await.expect("tx");
    for i in 0..n {
        sqlx::query(
            "INSERT INTO access_log (org_id, actor_kind, actor_id, subject_kind, subject_id, action, via, client_addr, request_id)
             VALUES ($1, 'user', $2, 'calls', $3, 'read', 'GET /api/v1/calls/{id}', '203.0.113.7', $4)",
        )
        .bind(clinic.org.as_uuid())
        .bind(clinic.owner.as_uuid())
        .bind(Uuid::new_v4())
        .bind(format!("req-{i}"))
        .execute(tx.conn())
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
}

/// The demo clinics, with the records their seeding wrote removed (by the superuser, before
/// anything is sealed), so that each test counts its own.
async fn seeded(t: &TestDb) -> [DemoClinic; 2] {
    let clinics = demo::seed(&t.db).await.expect("seed");
    let mut admin = t.admin().await;
    let seeding = sqlx::query("DELETE FROM access_log WHERE via = 'voxanne demo'")
        .execute(&mut admin)
        .await
        .expect("the seeding's records")
        .rows_affected();
    assert!(seeding > 0, "seeding the demo left no access record");
    clinics
}

async fn broken(admin: &mut PgConnection) -> Vec<(Uuid, i64, String)> {
    sqlx::query_as("SELECT org_id, seq, problem FROM app.broken_access_chains() ORDER BY org_id")
        .fetch_all(admin)
        .await
        .expect("chains")
}

fn code(result: &Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> Option<String> {
    match result {
        Err(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn the_application_adds_and_reads_records_and_changes_or_removes_none() {
    let t = TestDb::new().await;
    let [a, b] = seeded(&t).await;
    log(&t, &a, 2).await;
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tx");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(seen, 2);
    for sql in [
        "UPDATE access_log SET via = 'nothing happened'",
        "DELETE FROM access_log",
    ] {
        let r = sqlx::query(sql).execute(tx.conn()).await;
        assert_eq!(code(&r).as_deref(), Some("42501"), "{sql}: {r:?}");
        drop(tx);
        tx = t.db.tenant(a.org, a.owner).await.expect("tx");
    }
    // No sealed-looking record...
    let r = sqlx::query(
        "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via, seq, prev_hash, hash)
         VALUES ($1, 'user', 'calls', 'read', 'x', 1, sha256(''), sha256(''))",
    )
    .bind(a.org.as_uuid())
    .execute(tx.conn())
    .await;
    assert_eq!(code(&r).as_deref(), Some("42501"), "{r:?}");
    drop(tx);
    // ...and no back-dated one: a record is stamped with its transaction's time.
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tx");
    sqlx::query(
        "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via, at)
         VALUES ($1, 'user', 'calls', 'read', 'back-dated', now() - interval '1 year')",
    )
    .bind(a.org.as_uuid())
    .execute(tx.conn())
    .await
    .expect("insert");
    let stamped: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_log WHERE via = 'back-dated' AND at = now()",
    )
    .fetch_one(tx.conn())
    .await
    .expect("count");
    assert_eq!(stamped, 1, "the record kept the time its writer gave");
    drop(tx);
    // The other clinic sees none of them.
    let mut tx = t.db.tenant(b.org, b.owner).await.expect("tx");
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log")
        .fetch_one(tx.conn())
        .await
        .expect("count");
    assert_eq!(seen, 0);
}

#[tokio::test]
async fn each_clinics_records_are_sealed_into_its_own_chain_and_a_later_change_is_found() {
    let t = TestDb::new().await;
    let [a, b] = seeded(&t).await;
    log(&t, &a, 5).await;
    log(&t, &b, 3).await;
    // Two small batches, then the rest: the chain goes on where it stopped.
    assert_eq!(seal_access_log(&t.db, 10, 2).await.expect("seal"), 4);
    assert_eq!(seal_access_log(&t.db, 10, 100).await.expect("seal"), 4);
    assert_eq!(seal_access_log(&t.db, 10, 100).await.expect("seal"), 0);
    let mut admin = t.admin().await;
    let chains: Vec<(Uuid, Vec<i64>)> = sqlx::query_as(
        "SELECT org_id, array_agg(seq ORDER BY seq) FROM access_log GROUP BY org_id",
    )
    .fetch_all(&mut admin)
    .await
    .expect("chains");
    for (org, seqs) in &chains {
        let n = if *org == a.org.as_uuid() { 5 } else { 3 };
        assert_eq!(*seqs, (1..=n).collect::<Vec<i64>>(), "{org}");
    }
    assert!(broken(&mut admin).await.is_empty());

    // A sealed record cannot be changed, not even by a superuser through the table...
    let r = sqlx::query("UPDATE access_log SET via = 'edited' WHERE org_id = $1 AND seq = 3")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await;
    assert_eq!(code(&r).as_deref(), Some("42501"), "{r:?}");
    // ...and one who goes around the trigger breaks the chain where the change is.
    // (Citus changes a distributed table's triggers only when told to; elsewhere the setting
    // is an unused placeholder.)
    for sql in [
        "SET citus.enable_unsafe_triggers = on",
        "ALTER TABLE access_log DISABLE TRIGGER access_log_sealed_once",
    ] {
        sqlx::raw_sql(sql)
            .execute(&mut admin)
            .await
            .expect("disabling the trigger");
    }
    sqlx::query("UPDATE access_log SET via = 'edited' WHERE org_id = $1 AND seq = 3")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("edit");
    assert_eq!(
        broken(&mut admin).await,
        [(
            a.org.as_uuid(),
            3,
            "its hash does not match its contents".to_owned()
        )]
    );
    // A removed record of B is found too, and A's finding stays A's.
    sqlx::query("DELETE FROM access_log WHERE org_id = $1 AND seq = 2")
        .bind(b.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("delete");
    let mut found = broken(&mut admin).await;
    found.sort();
    let mut expected = vec![
        (
            a.org.as_uuid(),
            3,
            "its hash does not match its contents".to_owned(),
        ),
        (
            b.org.as_uuid(),
            3,
            "a record is missing before it".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(found, expected);
}

/// The records of `clinic`'s owner listing calls, in one tenant transaction of its own.
async fn list_calls(db: &Db, clinic: &DemoClinic) -> Result<(), voxanne_db::DbError> {
    let mut tx = db.tenant(clinic.org, clinic.owner).await.expect("tx");
    tx.list_calls(&Default::default(), None, 25).await?;
    tx.commit().await
}

async fn records_by(admin: &mut PgConnection, user: voxanne_domain::UserId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM access_log WHERE actor_id = $1 AND action = 'list'")
        .bind(user.as_uuid())
        .fetch_one(admin)
        .await
        .expect("count")
}

/// Holds back every write to the access log until the returned connection's transaction
/// ends (SHARE conflicts with the ROW EXCLUSIVE lock of an INSERT).
async fn hold_the_log(t: &TestDb) -> PgConnection {
    let mut holder = t.admin().await;
    sqlx::raw_sql("BEGIN; LOCK TABLE access_log IN SHARE MODE")
        .execute(&mut holder)
        .await
        .expect("lock");
    holder
}

/// Until a write to the access log waits for its lock (the writer's statement, held back).
async fn until_held(admin: &mut PgConnection) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'access_log'::regclass",
        )
        .fetch_one(&mut *admin)
        .await
        .expect("locks");
        if held > 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no write waits for the log"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

async fn until_waiting(db: &Db, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.access_writer_waiting() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{} transactions wait for the writer, not {n}",
            db.access_writer_waiting()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn reads_wait_for_their_records_which_many_requests_share_one_write_for() {
    let t = TestDb::new().await;
    let [a, b] = seeded(&t).await;
    let mut admin = t.admin().await;
    let holder = hold_the_log(&t).await;
    let (batches_before, _) = t.db.access_writer_written();
    // The first read's records are held in the writer's statement; 19 more reads of both
    // clinics queue behind it.
    let mut reads = vec![{
        let (db, a) = (t.db.clone(), a.clone());
        tokio::spawn(async move { list_calls(&db, &a).await })
    }];
    until_held(&mut admin).await;
    reads.extend((1..20).map(|i| {
        let db = t.db.clone();
        let clinic = if i % 2 == 0 { a.clone() } else { b.clone() };
        tokio::spawn(async move { list_calls(&db, &clinic).await })
    }));
    until_waiting(&t.db, 19).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Not one read is answered before its record is written.
    for read in &reads {
        assert!(
            !read.is_finished(),
            "a read returned before its record was written"
        );
    }
    assert_eq!(records_by(&mut admin, a.owner).await, 0);
    drop(holder);
    for read in reads {
        read.await.expect("task").expect("read");
    }
    // Every read left its record, in two writes: the first alone, then the 19 together.
    assert_eq!(records_by(&mut admin, a.owner).await, 10);
    assert_eq!(records_by(&mut admin, b.owner).await, 10);
    let (batches, _) = t.db.access_writer_written();
    assert_eq!(batches - batches_before, 2);
}

#[tokio::test]
async fn a_read_whose_record_cannot_be_written_fails_and_only_that_one() {
    let t = TestDb::new().await;
    let [a, b] = seeded(&t).await;
    let mut admin = t.admin().await;
    // The writer is refused altogether: the read fails, with the access log's error.
    sqlx::raw_sql("REVOKE EXECUTE ON FUNCTION app.write_access_records FROM voxanne_app")
        .execute(&mut admin)
        .await
        .expect("revoke");
    let refused = list_calls(&t.db, &a).await;
    assert!(
        matches!(refused, Err(voxanne_db::DbError::AccessLog(_))),
        "{refused:?}"
    );
    sqlx::raw_sql("GRANT EXECUTE ON FUNCTION app.write_access_records TO voxanne_app")
        .execute(&mut admin)
        .await
        .expect("grant");
    list_calls(&t.db, &a).await.expect("read");

    // In one batch with others, a record the database refuses (its user is no longer a
    // member when it is written) fails its own read, and the others are written.
    let holder = hold_the_log(&t).await;
    let first = {
        let (db, b) = (t.db.clone(), b.clone());
        tokio::spawn(async move { list_calls(&db, &b).await })
    };
    until_held(&mut admin).await;
    let mut revoked = t.db.tenant(a.org, a.staff).await.expect("tx");
    revoked
        .list_calls(&Default::default(), None, 25)
        .await
        .expect("list");
    sqlx::query("DELETE FROM organization_members WHERE org_id = $1 AND user_id = $2")
        .bind(a.org.as_uuid())
        .bind(a.staff.as_uuid())
        .execute(&mut admin)
        .await
        .expect("remove the member");
    let revoked = tokio::spawn(async move { revoked.commit().await });
    let others: Vec<_> = (0..4)
        .map(|_| {
            let (db, b) = (t.db.clone(), b.clone());
            tokio::spawn(async move { list_calls(&db, &b).await })
        })
        .collect();
    until_waiting(&t.db, 5).await;
    drop(holder);
    first.await.expect("task").expect("read");
    let revoked = revoked.await.expect("task");
    assert!(
        matches!(revoked, Err(voxanne_db::DbError::AccessLog(_))),
        "{revoked:?}"
    );
    for other in others {
        other.await.expect("task").expect("read");
    }
    assert_eq!(records_by(&mut admin, b.owner).await, 5);
    assert_eq!(records_by(&mut admin, a.staff).await, 0);
}

#[tokio::test]
async fn the_writer_adds_a_users_record_only_to_a_clinic_they_are_a_member_of() {
    let t = TestDb::new().await;
    let [a, b] = seeded(&t).await;
    let mut app = t.app_conn().await;
    let call = |org: Uuid, kind: &str, actor: Uuid| {
        format!(
            "SELECT app.write_access_records(ARRAY['{org}']::uuid[], ARRAY['{kind}'], \
             ARRAY['{actor}']::uuid[], ARRAY['call'], ARRAY[NULL]::uuid[], ARRAY['list'], \
             ARRAY['forged'], ARRAY[NULL]::inet[], ARRAY[NULL], ARRAY[NULL])"
        )
    };
    // A's owner's record in B's log: refused.
    let forged = sqlx::raw_sql(&call(b.org.as_uuid(), "user", a.owner.as_uuid()))
        .execute(&mut app)
        .await;
    assert_eq!(code(&forged).as_deref(), Some("42501"), "{forged:?}");
    // Columns of different lengths: refused.
    let ragged = sqlx::raw_sql(&call(a.org.as_uuid(), "user", a.owner.as_uuid()).replacen(
        "ARRAY['list']",
        "ARRAY['list', 'read']",
        1,
    ))
    .execute(&mut app)
    .await;
    assert_eq!(code(&ragged).as_deref(), Some("22023"), "{ragged:?}");
    // The member's own record is added, unsealed and stamped now.
    sqlx::raw_sql(&call(a.org.as_uuid(), "user", a.owner.as_uuid()))
        .execute(&mut app)
        .await
        .expect("write");
    let mut admin = t.admin().await;
    let rows: Vec<(Uuid, Option<i64>)> =
        sqlx::query_as("SELECT org_id, seq FROM access_log WHERE via = 'forged'")
            .fetch_all(&mut admin)
            .await
            .expect("rows");
    assert_eq!(rows, [(a.org.as_uuid(), None)]);
    // Nobody else may call it.
    let public: bool = sqlx::query_scalar(
        "SELECT has_function_privilege('public', 'app.write_access_records(uuid[], text[], uuid[], text[], uuid[], text[], text[], inet[], text[], text[])', 'EXECUTE')",
    )
    .fetch_one(&mut admin)
    .await
    .expect("privilege");
    assert!(!public);
}

/// `clinic`'s records about `patient`, as its owner reads the log.
async fn about(db: &Db, clinic: &DemoClinic, patient: Uuid) -> Vec<AccessRecord> {
    let mut tx = db.tenant(clinic.org, clinic.owner).await.expect("tx");
    let filter = AccessFilter {
        patient: Some(patient),
        ..Default::default()
    };
    let records = tx
        .list_access_log(&filter, None, 100, Action::List)
        .await
        .expect("the log");
    tx.commit().await.expect("commit");
    records
}

/// A page of calls names its callers in its one record; the log filtered by one of them finds
/// that record before the sealer has sealed it and after (migration 0035 indexes the patients
/// of sealed records only, and the query asks for the unsealed ones apart).
#[tokio::test]
async fn a_patient_named_only_in_a_lists_record_is_found_sealed_or_not() {
    let t = TestDb::new().await;
    let [a, _] = seeded(&t).await;
    list_calls(&t.db, &a)
        .await
        .expect("the page and its record");
    let mut admin = t.admin().await;
    let patient: Uuid = sqlx::query_scalar(
        "SELECT patients[1] FROM access_log
          WHERE org_id = $1 AND action = 'list' AND patients IS NOT NULL",
    )
    .bind(a.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("the list's record names patients");
    let the_list = |records: &[AccessRecord]| {
        records
            .iter()
            .filter(|r| r.subject_kind == "call" && r.action == "list")
            .map(|r| r.seq)
            .collect::<Vec<_>>()
    };

    let unsealed = about(&t.db, &a, patient).await;
    assert_eq!(the_list(&unsealed), [None], "{unsealed:?}");

    while seal_access_log(&t.db, 100, 1000).await.expect("seal") > 0 {}
    let sealed = about(&t.db, &a, patient).await;
    let seqs = the_list(&sealed);
    assert!(
        seqs.len() == 1 && seqs[0].is_some(),
        "the sealed list's record: {sealed:?}"
    );
    // The sealed record is in the index of patients, which a query for sealed records uses.
    let sql = format!(
        "SELECT id FROM access_log WHERE seq IS NOT NULL AND patients @> ARRAY['{patient}'::uuid]"
    );
    sqlx::raw_sql("BEGIN; SET LOCAL enable_seqscan = off")
        .execute(&mut admin)
        .await
        .expect("no sequential scan");
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
        .fetch_all(&mut admin)
        .await
        .expect("the plan");
    let plan = plan.join("\n");
    // (On Citus the shards plan the query, and the SET LOCAL stays on the coordinator.)
    assert!(
        t.db.distributed() || plan.contains("access_log_patients_idx"),
        "{plan}"
    );
    let found: Vec<Uuid> = sqlx::query_scalar(&sql)
        .fetch_all(&mut admin)
        .await
        .expect("by the index");
    let list = sealed
        .iter()
        .find(|r| r.subject_kind == "call")
        .expect("the list's record");
    assert!(found.contains(&list.id), "{found:?}");
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut admin)
        .await
        .expect("rollback");
}
