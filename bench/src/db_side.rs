//! What the tenant boundary costs the database, in throughput, against the query it protects:
//! `pgbench` (PostgreSQL's own load generator, a second process on the same machine) runs
//! each variant with several clients, in interleaved rounds; the best round of each counts.
//!
//! | variant | what each transaction is |
//! | --- | --- |
//! | bare | one page (26 rows) of a clinic's calls, as the superuser: no RLS, no transaction |
//! | bare in a tx | the same between `BEGIN` and `COMMIT` (three round trips, as the tenant's) |
//! | context, no RLS | the same batch as the superuser (who bypasses RLS): what `SET LOCAL` costs |
//! | context only | as `voxanne_app`: `BEGIN; SET LOCAL` context; the page under RLS; `COMMIT` |
//! | tenant | as `voxanne_app`, what every API request sends: `BEGIN` and `app.enter_tenant` (the context and the membership check, one batch), the same page under forced RLS, `COMMIT` |
//! | tenant, SET LOCAL | the same with the context written by two `SET LOCAL`s and the check by `app.current_membership()`, as before migration 0024 |
//! | tenant (pinned) | the tenant's, with the context helpers given `SET search_path` as before migration 0023 |
//!
//! The target (see the speed issue): tenant ≥ 0.5 × bare. Printed: transactions per second
//! and ratios to `bare`.
//!
//! `cargo run --release -p voxanne-bench --bin db-side [-- CLIENTS SECONDS ROUNDS CALLS]`
//! (defaults 16 10 3 10000; `-- 2 1 1 200` is a smoke run).

use sqlx::Executor;
use std::path::Path;
use voxanne_bench::pgbench;
use voxanne_db::demo;
use voxanne_testkit::TestDb;

const COLUMNS: &str = "id, org_id, contact_id, direction, status, from_number, to_number, \
     started_at, ended_at, duration_seconds, recording_status, recording_path, summary, created_at";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize, default: u32| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (clients, seconds, rounds, calls) = (arg(1, 16), arg(2, 10), arg(3, 3), arg(4, 10_000));
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await?;
    let mut admin = t.admin().await;
    // A clinic with `calls` calls, each with a transcript, as a busy clinic's are.
    sqlx::query(
        "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at,
                            ended_at, duration_seconds, transcript, summary)
         SELECT $1, 'inbound', 'completed', '+14155551001', '+14155550100',
                now() - make_interval(mins => i), now() - make_interval(mins => i) + interval '2 minutes',
                120, '\\x00'::bytea || convert_to(repeat('Caller: I would like an appointment. ', 20), 'UTF8'),
                '\\x00'::bytea || convert_to('Asked for an appointment.', 'UTF8')
           FROM generate_series(1, $2) i",
    )
    .bind(a.org.as_uuid())
    .bind(i32::try_from(calls).unwrap_or(i32::MAX))
    .execute(&mut admin)
    .await?;
    admin.execute("ANALYZE").await?;

    let dir = tempfile::tempdir()?;
    let page = format!(
        "SELECT {COLUMNS} FROM calls WHERE org_id = '{}' ORDER BY started_at DESC, id DESC LIMIT 26;",
        a.org
    );
    let bare = dir.path().join("bare.sql");
    std::fs::write(&bare, format!("{page}\n"))?;
    // As the application sends it: one batch opens the transaction, sets the context and
    // checks the membership; then the query; then COMMIT. (`\;` joins statements into one
    // message for pgbench, one round trip, as the application's batch is; `;` ends one.)
    let tenant = dir.path().join("tenant.sql");
    std::fs::write(
        &tenant,
        format!(
            "BEGIN \\; SELECT role, status, now() = statement_timestamp() AS fresh FROM app.enter_tenant('{}', '{}');\n{page}\nCOMMIT;\n",
            a.org, a.owner
        ),
    )?;
    // As it did before migration 0024: the context by two SET LOCALs, then the check.
    let set_local = dir.path().join("set_local.sql");
    std::fs::write(
        &set_local,
        format!(
            "BEGIN \\; SET LOCAL app.org_id = '{}' \\; SET LOCAL app.user_id = '{}' \\; SELECT role, status, now() = statement_timestamp() AS fresh FROM app.current_membership();\n{page}\nCOMMIT;\n",
            a.org, a.owner
        ),
    )?;
    // The same without the membership check: what the check costs.
    let unchecked = dir.path().join("unchecked.sql");
    std::fs::write(
        &unchecked,
        format!(
            "BEGIN \\; SET LOCAL app.org_id = '{}' \\; SET LOCAL app.user_id = '{}';\n{page}\nCOMMIT;\n",
            a.org, a.owner
        ),
    )?;
    // The bare query inside a transaction, as the superuser: what BEGIN/COMMIT cost.
    let bare_tx = dir.path().join("bare_tx.sql");
    std::fs::write(&bare_tx, format!("BEGIN;\n{page}\nCOMMIT;\n"))?;
    let pin = "ALTER FUNCTION app.current_org_id() SET search_path = pg_catalog, pg_temp;
               ALTER FUNCTION app.current_user_id() SET search_path = pg_catalog, pg_temp";
    let unpin = "ALTER FUNCTION app.current_org_id() RESET search_path;
                 ALTER FUNCTION app.current_user_id() RESET search_path";

    let superuser = t.admin_options().get_username().to_owned();
    let variants: [(&str, &str, &Path, bool); 7] = [
        ("bare", superuser.as_str(), &bare, false),
        ("bare in a tx", superuser.as_str(), &bare_tx, false),
        ("context, no RLS", superuser.as_str(), &unchecked, false),
        ("context only", "voxanne_app", &unchecked, false),
        ("tenant", "voxanne_app", &tenant, false),
        ("tenant (pinned)", "voxanne_app", &tenant, true),
        ("tenant, SET LOCAL", "voxanne_app", &set_local, false),
    ];
    let mut best = [0.0_f64; 7];
    for round in 0..rounds {
        eprint!(
            "\rround {}/{rounds}: {clients} clients, {seconds} s per variant",
            round + 1
        );
        for (i, (_, role, script, pinned)) in variants.iter().enumerate() {
            if *pinned {
                admin.execute(pin).await?;
            }
            let tps = pgbench(&t.admin_options(), role, script, clients, seconds);
            if *pinned {
                admin.execute(unpin).await?;
            }
            best[i] = best[i].max(tps?);
        }
    }
    eprintln!();
    println!("{:<16} {:>10} {:>8}", "variant", "tx/s", "vs bare");
    for ((name, ..), tps) in variants.iter().zip(best) {
        println!("{name:<16} {tps:>10.0} {:>8.2}", tps / best[0]);
    }
    Ok(())
}
