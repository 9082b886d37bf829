//! The audit's query time on a 100-table tenant schema (the issue asks for well under a
//! second): every check is one catalog query over all tables, so the catalog time should
//! hardly depend on the table count; the row counts are one query per table by nature.
//!
//! Builds, in an empty database of a local cluster, `organizations` and 100 tenant tables,
//! each secured (RLS forced, a wrapped policy), with a composite foreign key to the previous
//! table, its index, and 100 rows. Runs the audit ROUNDS times and prints the best and the
//! median of the catalog time and of the row-count time, and the slowest check.
//!
//! `cargo run --release -p voxanne-bench --bin audit-100 [-- TABLES]`

use sqlx::{Connection, Executor, PgConnection};
use voxanne_audit::{audit, Options};

const ROUNDS: usize = 7;

#[tokio::main]
async fn main() {
    let tables: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let (_url, options) = voxanne_testkit::empty_database_url().await;
    let mut conn = PgConnection::connect_with(&options)
        .await
        .expect("connecting");
    let mut sql = String::from(
        "CREATE TABLE organizations (id uuid PRIMARY KEY DEFAULT gen_random_uuid());
         ALTER TABLE organizations ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
         CREATE POLICY p ON organizations USING (id = (select current_setting('app.org_id')::uuid))
             WITH CHECK (id = (select current_setting('app.org_id')::uuid));
         INSERT INTO organizations SELECT gen_random_uuid() FROM generate_series(1, 10);\n",
    );
    for i in 0..tables {
        let parent = if i == 0 {
            String::new()
        } else {
            format!(
                ", parent_id uuid, FOREIGN KEY (org_id, parent_id) REFERENCES t{:03} (org_id, id)",
                i - 1
            )
        };
        sql.push_str(&format!(
            "CREATE TABLE t{i:03} (org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                 id uuid NOT NULL DEFAULT gen_random_uuid(), body text, PRIMARY KEY (org_id, id){parent});
             ALTER TABLE t{i:03} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY p ON t{i:03} USING (org_id = (select current_setting('app.org_id')::uuid))
                 WITH CHECK (org_id = (select current_setting('app.org_id')::uuid));
             INSERT INTO t{i:03} (org_id, body) SELECT o.id, 'x' FROM organizations o, generate_series(1, 10);\n"
        ));
        if i > 0 {
            sql.push_str(&format!("CREATE INDEX ON t{i:03} (org_id, parent_id);\n"));
        }
    }
    conn.execute(sql.as_str())
        .await
        .expect("building the schema");
    conn.execute("ANALYZE").await.expect("analyze");

    let options = Options {
        app_role: "nobody".into(),
        ..Options::default()
    };
    let mut catalog = Vec::new();
    let mut counts = Vec::new();
    let mut slowest = (String::new(), 0.0f64);
    for _ in 0..ROUNDS {
        let report = audit(&mut conn, &options).await.expect("audit");
        assert_eq!(report.summary.tables_with_tenant_column, tables + 1);
        catalog.push(report.summary.catalog_query_ms);
        counts.push(report.summary.count_query_ms);
        for c in &report.checks {
            if c.query_ms > slowest.1 {
                slowest = (c.id.clone(), c.query_ms);
            }
        }
        if !report.findings.is_empty() {
            eprintln!("unexpected findings: {:#?}", report.findings);
        }
    }
    if std::env::var_os("AUDIT_CHECK_TIMES").is_some() {
        let report = audit(&mut conn, &options).await.expect("audit");
        for c in &report.checks {
            println!("{:>8.1} ms  {}", c.query_ms, c.id);
        }
    }
    catalog.sort_by(f64::total_cmp);
    counts.sort_by(f64::total_cmp);
    println!(
        "{tables} tenant tables, {ROUNDS} rounds: catalog queries best {:.1} ms, median {:.1} ms; \
         row counts best {:.1} ms, median {:.1} ms; slowest check {} at {:.1} ms",
        catalog[0],
        catalog[ROUNDS / 2],
        counts[0],
        counts[ROUNDS / 2],
        slowest.0,
        slowest.1
    );
}
