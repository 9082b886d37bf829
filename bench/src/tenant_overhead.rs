//! What the tenant boundary costs per request, against raw PostgreSQL, in one run.
//!
//! Each variant reads one page (26 rows) of a clinic's calls on one connection of a local
//! cluster, N times:
//!
//! | variant | what |
//! | --- | --- |
//! | raw | the query alone, as a superuser (no RLS, no transaction) |
//! | raw tx | BEGIN; the query; COMMIT |
//! | rls context | as voxanne_app: BEGIN + SET LOCAL context (one batch); the query; COMMIT |
//! | + inline check | the same, with the membership SELECT written out in the batch |
//! | + function | the same, with the membership check as `app.current_membership()` |
//! | + prepared | context batch, then the membership check as a prepared statement (one more round trip) |
//! | + scalar fn | like + function, called as a scalar |
//! | tenant | `Db::tenant` + `list_calls` + commit: what every API request pays |
//! | … (pinned) | the same, with the context helpers given `SET search_path` as they had before
//! migration 0023 (a SET clause stops PostgreSQL inlining them): what inlining saves |
//!
//! Variants run interleaved over several rounds and the best round of each counts, so that
//! a burst of other load on the machine does not decide a ratio. Printed: µs per request and
//! ratios to `raw` and `raw tx`.
//!
//! `cargo run --release -p voxanne-bench --bin tenant-overhead [-- N]`

use sqlx::postgres::PgPoolOptions;
use sqlx::{Executor, PgPool};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use voxanne_db::calls::CallFilter;
use voxanne_db::{demo, Db};
use voxanne_testkit::TestDb;

const QUERY: &str = "SELECT id, org_id, contact_id, direction, status, from_number, to_number,
        started_at, ended_at, duration_seconds, recording_status, recording_path, transcript,
        summary, created_at
   FROM calls WHERE org_id = $1 ORDER BY started_at DESC, id DESC LIMIT 26";
const ROUNDS: usize = 5;
const MEMBERSHIP: &str =
    "SELECT m.role, o.status FROM organization_members m JOIN organizations o ON o.id = m.org_id
  WHERE m.org_id = app.current_org_id() AND m.user_id = app.current_user_id()";

type Fut = Pin<Box<dyn Future<Output = Result<(), Box<dyn std::error::Error>>>>>;
type Variant = Box<dyn Fn() -> Fut>;

/// As voxanne_app: `batch` (which begins), the query, COMMIT.
fn with_batch(pool: &PgPool, batch: String, org: uuid::Uuid) -> Variant {
    let pool = pool.clone();
    let batch = std::rc::Rc::new(batch);
    Box::new(move || {
        let (pool, batch) = (pool.clone(), batch.clone());
        Box::pin(async move {
            let mut conn = pool.acquire().await?;
            conn.fetch_all(batch.as_str()).await?;
            sqlx::query(QUERY).bind(org).fetch_all(&mut *conn).await?;
            conn.execute("COMMIT").await?;
            Ok(())
        })
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await?;
    let a = a.clone();
    let org = a.org.as_uuid();
    let raw = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(t.admin_options())
        .await?;
    let app = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(t.app_options())
        .await?;
    let db = Db::connect(t.app_options(), 1).await?;

    let context = format!(
        "BEGIN; SET LOCAL app.org_id = '{}'; SET LOCAL app.user_id = '{}'",
        a.org, a.owner
    );
    let inline = format!(
        "{context}; SELECT m.role, o.status FROM organization_members m JOIN organizations o ON o.id = m.org_id
          WHERE m.org_id = app.current_org_id() AND m.user_id = app.current_user_id()"
    );
    let function = format!("{context}; SELECT role, status FROM app.current_membership()");
    let scalar = format!("{context}; SELECT app.current_membership()");

    let tenant = |db: Db| -> Variant {
        Box::new(move || {
            let db = db.clone();
            Box::pin(async move {
                let mut tx = db.tenant(a.org, a.owner).await?;
                tx.list_calls(&CallFilter::default(), None, 25).await?;
                Ok(tx.commit().await?)
            })
        })
    };
    let variants: Vec<(&str, Variant)> = vec![
        ("raw", {
            let raw = raw.clone();
            Box::new(move || {
                let raw = raw.clone();
                Box::pin(async move {
                    Ok(sqlx::query(QUERY)
                        .bind(org)
                        .fetch_all(&raw)
                        .await
                        .map(drop)?)
                })
            })
        }),
        ("raw tx", {
            let raw = raw.clone();
            Box::new(move || {
                let raw = raw.clone();
                Box::pin(async move {
                    let mut tx = raw.begin().await?;
                    sqlx::query(QUERY).bind(org).fetch_all(&mut *tx).await?;
                    Ok(tx.commit().await?)
                })
            })
        }),
        ("rls context", with_batch(&app, context.clone(), org)),
        ("+ inline check", with_batch(&app, inline, org)),
        ("+ function", with_batch(&app, function.clone(), org)),
        ("+ prepared", {
            let app = app.clone();
            let context = std::rc::Rc::new(context.clone());
            Box::new(move || {
                let (app, context) = (app.clone(), context.clone());
                Box::pin(async move {
                    let mut conn = app.acquire().await?;
                    conn.fetch_all(context.as_str()).await?;
                    sqlx::query(MEMBERSHIP).fetch_optional(&mut *conn).await?;
                    sqlx::query(QUERY).bind(org).fetch_all(&mut *conn).await?;
                    conn.execute("COMMIT").await?;
                    Ok(())
                })
            })
        }),
        ("+ scalar fn", with_batch(&app, scalar, org)),
        ("tenant", tenant(db.clone())),
        (
            "+ function (pinned)",
            with_batch(&app, function.clone(), org),
        ),
        ("tenant (pinned)", tenant(db.clone())),
    ];
    let pinned = |name: &str| name.ends_with("(pinned)");
    // The helpers as migration 0001 made them, and as they are now.
    let pin = "ALTER FUNCTION app.current_org_id() SET search_path = pg_catalog, pg_temp;
               ALTER FUNCTION app.current_user_id() SET search_path = pg_catalog, pg_temp";
    let unpin = "ALTER FUNCTION app.current_org_id() RESET search_path;
                 ALTER FUNCTION app.current_user_id() RESET search_path";

    for (name, run) in &variants {
        if pinned(name) {
            raw.execute(pin).await?;
        }
        for _ in 0..200 {
            run().await?;
        }
        if pinned(name) {
            raw.execute(unpin).await?;
        }
    }
    let mut best = vec![Duration::MAX; variants.len()];
    for round in 0..ROUNDS {
        eprint!("\rround {}/{ROUNDS}: {n} requests per variant", round + 1);
        for (i, (name, run)) in variants.iter().enumerate() {
            if pinned(name) {
                raw.execute(pin).await?;
            }
            let start = Instant::now();
            for _ in 0..n {
                run().await?;
            }
            best[i] = best[i].min(start.elapsed());
            if pinned(name) {
                raw.execute(unpin).await?;
            }
        }
    }
    eprintln!();
    let us = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(n);
    let (raw_us, raw_tx_us) = (us(best[0]), us(best[1]));
    println!(
        "{:<15} {:>10} {:>7} {:>9}",
        "variant", "µs/req", "vs raw", "vs raw tx"
    );
    for ((name, _), d) in variants.iter().zip(&best) {
        let v = us(*d);
        println!(
            "{name:<15} {v:>10.1} {:>7.2} {:>9.2}",
            v / raw_us,
            v / raw_tx_us
        );
    }
    Ok(())
}
