//! The access log (migrations/0028): append-only for the application, each clinic's records
//! sealed into a hash chain of its own, and any later change, by a superuser too, found.

use sqlx::PgConnection;
use uuid::Uuid;
use voxanne_db::demo::{self, DemoClinic};
use voxanne_db::system::seal_access_log;
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
