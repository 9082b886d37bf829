//! The access log's sealer: drains every clinic's new records into its chain, batch by batch,
//! and stops when told.

use std::time::Duration;
use voxanne_db::demo;
use voxanne_jobs::{AccessLogSealer, SealConfig};
use voxanne_testkit::TestDb;

async fn unsealed(t: &TestDb) -> i64 {
    let mut admin = t.admin().await;
    sqlx::query_scalar("SELECT count(*) FROM access_log WHERE seq IS NULL")
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

#[tokio::test]
async fn the_sealer_drains_every_clinics_records_in_small_batches_and_the_chains_hold() {
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seed");
    // More records than one statement seals (2 clinics × 3 records).
    // (As the superuser: Citus runs an INSERT … SELECT as a COPY, which row level security
    // refuses for the application.)
    let mut admin = t.admin().await;
    for clinic in [&a, &b] {
        sqlx::query(
            "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via)
             SELECT $1, 'system', 'call', 'read', 'job' FROM generate_series(1, 40)",
        )
        .bind(clinic.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("records");
    }
    let before = unsealed(&t).await;
    assert!(before >= 80, "{before}");
    let sealer = AccessLogSealer::new(
        t.db.clone(),
        SealConfig {
            every: Duration::from_millis(50),
            orgs: 2,
            batch: 3,
        },
    );
    assert_eq!(sealer.drain().await.expect("drain"), before);
    assert_eq!(unsealed(&t).await, 0);
    let broken: i64 = sqlx::query_scalar("SELECT count(*) FROM app.broken_access_chains()")
        .fetch_one(&mut admin)
        .await
        .expect("chains");
    assert_eq!(broken, 0);
    let heads: Vec<(i64, i64)> =
        sqlx::query_as("SELECT count(*), max(seq) FROM access_log GROUP BY org_id ORDER BY org_id")
            .fetch_all(&mut admin)
            .await
            .expect("heads");
    assert!(heads.iter().all(|(n, max)| n == max), "{heads:?}");

    // Running: a record written later is sealed at the next tick, and the loop stops when
    // told.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(sealer.run(async move {
        let _ = stopped.await;
    }));
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tx");
    sqlx::query(
        "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via)
         VALUES ($1, 'system', 'call', 'read', 'job')",
    )
    .bind(a.org.as_uuid())
    .execute(tx.conn())
    .await
    .expect("a record");
    tx.commit().await.expect("commit");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while unsealed(&t).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "never sealed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the sealer stops when told")
        .expect("no panic");
}
