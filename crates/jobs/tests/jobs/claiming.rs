//! Claiming recording jobs: fair across orgs, and one statement whatever the number of orgs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;
use voxanne_db::system::claim_recordings;
use voxanne_testkit::TestDb;

const LEASE: Duration = Duration::from_secs(300);

/// Creates `n` active orgs (as the superuser) and returns their ids.
async fn orgs(t: &TestDb, n: i32) -> Vec<Uuid> {
    let mut admin = t.admin().await;
    sqlx::query_scalar(
        "INSERT INTO organizations (name) SELECT 'Clinic ' || g FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(n)
    .fetch_all(&mut admin)
    .await
    .expect("orgs")
}

/// Queues `n` recordings for `org`, created `age_minutes` ago, with one INSERT ... SELECT.
async fn queue(t: &TestDb, org: Uuid, n: i32, age_minutes: i32) {
    let mut admin = t.admin().await;
    sqlx::query(
        "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at,
                            recording_status, recording_url, created_at)
         SELECT $1, 'inbound', 'completed', '+14155550100', '+14155550101', now(), 'queued',
                'http://127.0.0.1:9/' || g || '.wav', now() - make_interval(mins => $3) + g * interval '1 millisecond'
           FROM generate_series(1, $2) g",
    )
    .bind(org)
    .bind(n)
    .bind(age_minutes)
    .execute(&mut admin)
    .await
    .expect("queue");
}

#[tokio::test]
async fn a_huge_backlog_does_not_starve_small_clinics() {
    let t = TestDb::new().await;
    let all = orgs(&t, 21).await;
    let (big, small) = (all[0], &all[1..]);
    // The big clinic's backlog is older than every small clinic's work: FIFO would serve the
    // small clinics after 500 batches.
    queue(&t, big, 10_000, 60).await;
    for org in small {
        queue(&t, *org, 5, 1).await;
    }
    let small: HashSet<Uuid> = small.iter().copied().collect();
    let mut small_left = 100;
    let mut batches = 0;
    let mut big_served = 0;
    while small_left > 0 {
        let batch = claim_recordings(&t.db, 20, LEASE).await.expect("claim");
        batches += 1;
        assert!(!batch.is_empty() && batch.len() <= 20);
        for job in &batch {
            if small.contains(&job.org_id.as_uuid()) {
                small_left -= 1;
            } else {
                big_served += 1;
            }
        }
        assert!(
            batches <= 7,
            "small clinics still waiting after {batches} batches"
        );
    }
    eprintln!("all 100 small-clinic recordings claimed in {batches} batches of 20 (big clinic got {big_served})");
    assert!(big_served > 0, "the big clinic is served too");
}

#[tokio::test]
async fn claiming_is_one_statement_whose_cost_does_not_follow_the_number_of_orgs() {
    let mut timings = Vec::new();
    let mut statement_counts = Vec::new();
    for n in [10, 1000] {
        let t = TestDb::new().await;
        for org in orgs(&t, n).await {
            queue(&t, org, 5, 1).await;
        }
        let mut admin = t.admin().await;
        sqlx::query("ANALYZE calls")
            .execute(&mut admin)
            .await
            .expect("analyze");
        // Warm up, then measure one claim: a single round trip to a single SQL statement,
        // counting every statement the server runs for it (nested ones included).
        claim_recordings(&t.db, 20, LEASE).await.expect("warm up");
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut admin)
            .await
            .expect("pg_stat_statements (PostgreSQL's contrib; the test cluster preloads it)");
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut admin)
            .await
            .expect("reset");
        let started = Instant::now();
        let batch = claim_recordings(&t.db, 20, LEASE).await.expect("claim");
        let elapsed = started.elapsed();
        let statements: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(calls), 0)::bigint FROM pg_stat_statements
              WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                AND query NOT ILIKE '%pg_stat_statements%'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("count statements");
        statement_counts.push((n, statements));
        assert_eq!(batch.len(), 20);
        let per_org: HashMap<Uuid, usize> = batch.iter().fold(HashMap::new(), |mut m, j| {
            *m.entry(j.org_id.as_uuid()).or_default() += 1;
            m
        });
        if n >= 20 {
            assert_eq!(
                per_org.len(),
                20,
                "one job per org while there are more orgs than the batch"
            );
        }
        timings.push((n, elapsed));
    }
    eprintln!("one claim of 20: {timings:?}; statements executed (orgs, statements): {statement_counts:?}");
    assert!(statement_counts[0].1 > 0, "the statements were not counted");
    assert_eq!(
        statement_counts[0].1, statement_counts[1].1,
        "statements per claimed batch grow with the number of orgs: {statement_counts:?}"
    );
}

#[tokio::test]
async fn the_claim_function_is_one_query_after_its_queue_lock_owned_by_the_system_role() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let (lang, owner, definer, body): (String, String, bool, String) = sqlx::query_as(
        "SELECT l.lanname::text, pg_get_userbyid(p.proowner)::text, p.prosecdef, p.prosrc
           FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
          WHERE p.oid = 'app.claim_recordings(integer, interval)'::regprocedure",
    )
    .fetch_one(&mut admin)
    .await
    .expect("function");
    assert_eq!(
        (lang.as_str(), owner.as_str(), definer),
        ("plpgsql", "voxanne_system", true)
    );
    // One query claims the batch, after the queue's turn lock (migrations/0027).
    assert_eq!(body.matches("RETURN QUERY").count(), 1, "one query: {body}");
    assert!(
        body.contains("pg_advisory_xact_lock(hashtext('voxanne.claim_recordings'))"),
        "claimers take turns: {body}"
    );
}

#[tokio::test]
async fn parallel_claimers_get_disjoint_batches_and_never_deadlock() {
    let t = TestDb::new().await;
    let all = orgs(&t, 12).await;
    for (i, org) in all.iter().enumerate() {
        queue(&t, *org, 10 + 5 * i32::try_from(i).expect("small"), 1).await;
    }
    let queued: usize = (0..12).map(|i| 10 + 5 * i).sum();
    // Six workers claiming at once until the queue is empty: every job comes out once, to one
    // of them, and none waits forever (a deadlock would be an error or this timeout).
    let claimers: Vec<_> = (0..6)
        .map(|_| {
            let db = t.db.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = claim_recordings(&db, 7, LEASE).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(
                        batch
                            .into_iter()
                            .map(|j| (j.org_id.as_uuid(), j.call_id.as_uuid())),
                    );
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    let mut busy_claimers = 0;
    for c in claimers {
        let mine = tokio::time::timeout(Duration::from_secs(120), c)
            .await
            .expect("a claimer is stuck")
            .expect("a claimer failed");
        if !mine.is_empty() {
            busy_claimers += 1;
        }
        claimed.extend(mine);
    }
    let distinct: HashSet<_> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(claimed.len(), queued, "every queued job was claimed");
    assert!(busy_claimers > 1, "the claimers did run side by side");
    let mut admin = t.admin().await;
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM calls WHERE recording_status <> 'processing'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(left, 0, "every job is processing under one lease");
}
