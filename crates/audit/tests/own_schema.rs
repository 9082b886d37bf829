//! Our own migrated schema audits with zero findings at high or above. This runs in CI (`cargo
//! test`): a migration that breaks tenant isolation fails the build. (Its own test binary,
//! hence its own cluster: the fixture's planted roles never reach it.)

use sqlx::{Connection, PgConnection};
use voxanne_audit::{audit, Options, Severity};
use voxanne_testkit::TestDb;

#[tokio::test]
async fn our_migrated_schema_has_no_finding_at_high_or_above() {
    let t = TestDb::new().await;
    let mut admin = PgConnection::connect_with(&t.admin_options())
        .await
        .expect("admin");
    let report = audit(&mut admin, &Options::default()).await.expect("audit");
    let serious: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
    // It did look: every table of the schema is a tenant table with forced RLS and a policy.
    let s = &report.summary;
    assert!(s.tables_with_tenant_column >= 18, "{s:?}");
    assert_eq!(s.rls_enabled, s.tables_with_tenant_column);
    assert_eq!(s.rls_forced, s.tables_with_tenant_column);
    assert_eq!(s.with_policy, s.tables_with_tenant_column);
    // Nothing at all, at any severity, is expected today: print what there is if not.
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
}

#[tokio::test]
async fn a_using_true_policy_on_organizations_is_critical() {
    // The hole the hand-written hardening report called "OK".
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    sqlx::query("CREATE POLICY open ON organizations USING (true)")
        .execute(&mut admin)
        .await
        .expect("plant");
    let report = audit(&mut admin, &Options::default()).await.expect("audit");
    assert!(
        report.findings.iter().any(|f| f.check == "rls.always_true"
            && f.object == "public.organizations policy open"
            && f.severity == Severity::Critical),
        "{:#?}",
        report.findings
    );
}

#[tokio::test]
async fn as_the_application_role_it_still_audits_and_says_counts_may_be_low() {
    let t = TestDb::new().await;
    let mut app = t.app_conn().await;
    // Connected as the application, the cluster's superuser is not implied: name the admin.
    let options = Options {
        admin_roles: vec!["postgres".into()],
        ..Options::default()
    };
    let report = audit(&mut app, &options).await.expect("audit");
    assert!(!report.summary.counts_bypass_rls);
    assert_eq!(report.summary.role, "voxanne_app");
    assert!(voxanne_audit::markdown(&report).contains("row counts may be low"));
    let serious: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity >= Severity::High)
        .collect();
    assert!(serious.is_empty(), "{serious:#?}");
}

#[tokio::test]
async fn the_application_role_owning_a_table_is_found_even_when_it_connects() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    sqlx::query("ALTER TABLE dnc_list OWNER TO voxanne_app")
        .execute(&mut admin)
        .await
        .expect("plant");
    let mut app = t.app_conn().await;
    // Connected as the application, the cluster's superuser is not implied: name the admin.
    let options = Options {
        admin_roles: vec!["postgres".into()],
        ..Options::default()
    };
    let report = audit(&mut app, &options).await.expect("audit");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.check == "roles.app_owns_tables"
                && f.object == "public.dnc_list"
                && f.severity == Severity::High),
        "{:#?}",
        report.findings
    );
}

/// On a distributed database (the test kit's Citus mode; skipped otherwise): a tenant table
/// that is not distributed, or distributed by another column, is a high finding, and the
/// distributed schema itself has none (the test above, in the same mode).
#[tokio::test]
async fn on_citus_an_undistributed_or_misdistributed_tenant_table_is_high() {
    if !voxanne_testkit::citus_mode() {
        eprintln!("skipped: not in the test kit's Citus mode (VOXANNE_TEST_CITUS=1)");
        return;
    }
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    sqlx::raw_sql(
        "CREATE TABLE public.fx_local (org_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (org_id, id));
         CREATE TABLE public.fx_by_id (org_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (org_id, id));
         SELECT create_distributed_table('public.fx_by_id', 'id', colocate_with => 'none');",
    )
    .execute(&mut admin)
    .await
    .expect("planting");
    let report = audit(&mut admin, &Options::default()).await.expect("audit");
    let found: Vec<(&str, &str)> = report
        .findings
        .iter()
        .filter(|f| f.check == "citus.distribution")
        .map(|f| (f.object.as_str(), f.message.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("public.fx_by_id", "distributed by id instead of org_id"),
            (
                "public.fx_local",
                "not distributed: every clinic's rows on the coordinator"
            ),
        ],
        "{:#?}",
        report.findings
    );
    assert!(report
        .findings
        .iter()
        .filter(|f| f.check == "citus.distribution")
        .all(|f| f.severity == Severity::High));
    // The schema's own tables were looked at, and passed.
    let check = report
        .checks
        .iter()
        .find(|c| c.id == "citus.distribution")
        .expect("the check ran");
    assert!(
        check.passed.iter().any(|p| p == "public.calls"),
        "{check:#?}"
    );
}

#[tokio::test]
async fn an_access_log_record_changed_behind_the_schemas_back_is_critical() {
    let t = TestDb::new().await;
    let [a, _] = voxanne_db::demo::seed(&t.db).await.expect("seed");
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tx");
    for _ in 0..3 {
        sqlx::query(
            "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via)
             VALUES ($1, 'user', 'calls', 'list', 'GET /api/v1/calls')",
        )
        .bind(a.org.as_uuid())
        .execute(tx.conn())
        .await
        .expect("record");
    }
    tx.commit().await.expect("commit");
    voxanne_db::system::seal_access_log(&t.db, 100, 10_000)
        .await
        .expect("seal");
    let mut admin = t.admin().await;
    let clean = audit(&mut admin, &Options::default()).await.expect("audit");
    let chain = clean
        .checks
        .iter()
        .find(|c| c.id == "access_log.chain")
        .expect("the chain is checked");
    assert_eq!(chain.passed, ["public.access_log"], "{chain:#?}");
    // Changed by a superuser who went around the append-only trigger.
    let edit = format!(
        "UPDATE access_log SET via = 'nothing to see' WHERE org_id = '{}' AND seq = 2",
        a.org.as_uuid()
    );
    for sql in [
        "SET citus.enable_unsafe_triggers = on",
        "ALTER TABLE access_log DISABLE TRIGGER access_log_sealed_once",
        edit.as_str(),
    ] {
        sqlx::raw_sql(sql).execute(&mut admin).await.expect(sql);
    }
    let report = audit(&mut admin, &Options::default()).await.expect("audit");
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "access_log.chain")
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", report.findings);
    assert_eq!(found[0].severity, Severity::Critical);
    assert_eq!(
        found[0].object,
        format!("public.access_log of {}", a.org.as_uuid())
    );
    assert!(found[0].message.starts_with("record 2:"), "{:?}", found[0]);
}
