//! A caller cancelled at any await (a client that disconnects mid-request, a timeout) leaves
//! its pooled connection clean: never idle inside its transaction, never carrying its tenant
//! context into the next user of the connection.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::demo::{self, DemoClinic};
use voxanne_db::Db;
use voxanne_testkit::TestDb;

/// Polls `fut` `polls` times, `pause` apart so the database's answers can arrive in between,
/// then drops it. Returns whether it finished before that.
async fn cancel_after<F: Future>(fut: F, polls: usize, pause: Duration) -> bool {
    let mut fut = std::pin::pin!(fut);
    for _ in 0..polls {
        let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
        if ready {
            return true;
        }
        tokio::time::sleep(pause).await;
    }
    false
}

/// On the pool's only connection: the next tenant transaction is `me`'s alone.
async fn next_user_sees_only_its_own_context(db: &Db, me: &DemoClinic, round: &str) {
    let mut tx = db
        .tenant(me.org, me.owner)
        .await
        .expect("the next tenant tx");
    let (setting, fresh): (String, bool) =
        sqlx::query_as("SELECT current_setting('app.org_id'), now() = transaction_timestamp()")
            .fetch_one(tx.conn())
            .await
            .expect("context");
    assert_eq!(setting, me.org.to_string(), "{round}");
    assert!(fresh, "{round}");
    let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT org_id FROM calls")
        .fetch_all(tx.conn())
        .await
        .expect("calls");
    assert_eq!(orgs, vec![me.org.as_uuid()], "{round}");
    tx.commit().await.expect("commit");
}

#[tokio::test]
async fn a_tenant_transaction_cancelled_at_any_await_leaves_its_connection_clean() {
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seeding");
    let db = Db::connect(t.app_options(), 1).await.expect("pool of one");
    let mut cancelled = 0;
    // The longest pause lets even a slow opening (Citus, a loaded machine) finish.
    for pause_us in [0, 50, 200, 1000, 20_000] {
        for polls in 1..=12 {
            let round = format!("cancelled after {polls} polls, {pause_us} µs apart");
            let pause = Duration::from_micros(pause_us);
            // The opening batch (BEGIN, context, membership) in flight, then a query.
            let opened = cancel_after(
                async {
                    let mut tx = db.tenant(a.org, a.owner).await.expect("tenant tx");
                    sqlx::query("SELECT (SELECT count(*) FROM calls), pg_sleep(0.001)")
                        .execute(tx.conn())
                        .await
                        .expect("query");
                },
                polls,
                pause,
            )
            .await;
            if !opened {
                cancelled += 1;
            }
            // A background job's transaction, and a cross-org operation, likewise.
            cancel_after(db.job_tenant(a.org), polls, pause).await;
            cancel_after(voxanne_db::system::memberships(&db, a.owner), polls, pause).await;
            assert_eq!(t.idle_in_transaction().await, 0, "{round}");
            next_user_sees_only_its_own_context(&db, &b, &round).await;
        }
    }
    // The schedule really cut requests short, and let others finish: both outcomes were met
    // (how many of each depends on the machine's speed).
    assert!(
        (4..60).contains(&cancelled),
        "{cancelled} of 60 requests were cancelled"
    );
}

#[tokio::test]
async fn cancelled_requests_under_load_leave_no_connection_in_a_transaction() {
    let t = TestDb::new().await;
    let clinics = demo::seed(&t.db).await.expect("seeding");
    let db = Db::connect(t.app_options(), 4).await.expect("pool of four");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..400u64 {
        let db = db.clone();
        let me = clinics[(i % 2) as usize].clone();
        tasks.spawn(async move {
            // Timeouts from 0 to ~2 ms: cancelled anywhere from the pool queue to the commit.
            let cut = Duration::from_micros((i * 37) % 2000);
            let _ = tokio::time::timeout(cut, async {
                let mut tx = db.tenant(me.org, me.owner).await.expect("tenant tx");
                let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT org_id FROM calls")
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
        next_user_sees_only_its_own_context(&db, me, &format!("after the load, {i}")).await;
    }
}

/// The pool hands out connections without pinging them first (a round trip saved on every
/// request): one that died while idle (the server ended its session) costs the next tenant
/// transaction nothing but a retry on a new connection, and a lone cross-org statement is
/// checked before it is sent.
#[tokio::test]
async fn a_connection_that_died_idle_is_replaced_not_reported() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let db = Db::connect(t.app_options(), 1).await.expect("pool of one");
    let terminate = || async {
        let mut admin = t.admin().await;
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE datname = current_database() AND usename = 'voxanne_app'",
        )
        .fetch_all(&mut admin)
        .await
        .expect("terminate");
        // The pool's one connection among them (and the seeding pool's).
        assert!(!ended.is_empty() && ended.iter().all(|e| *e), "{ended:?}");
        // The session is gone once its backend has left pg_stat_activity.
        for _ in 0..100 {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND usename = 'voxanne_app'",
            )
            .fetch_one(&mut admin)
            .await
            .expect("count");
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the terminated backend did not go");
    };
    db.tenant(a.org, a.owner)
        .await
        .expect("tx")
        .commit()
        .await
        .expect("commit");
    // Let the pool's release ping finish before the connection is killed.
    tokio::time::sleep(Duration::from_millis(100)).await;
    terminate().await;
    let mut tx = db.tenant(a.org, a.owner).await.expect("a new connection");
    let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT org_id FROM calls")
        .fetch_all(tx.conn())
        .await
        .expect("calls");
    assert_eq!(orgs, vec![a.org.as_uuid()]);
    tx.commit().await.expect("commit");

    tokio::time::sleep(Duration::from_millis(100)).await;
    terminate().await;
    let requeued = voxanne_db::system::requeue_stale_calls(&db)
        .await
        .expect("a lone statement on a new connection");
    assert_eq!(requeued, 0);
}
