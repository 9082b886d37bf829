//! A schema the audit has never seen (tests/fixture.sql): one planted defect per check, each
//! found with the right object and severity, and the clean objects beside them not flagged.

use sqlx::{Connection, Executor, PgConnection};
use voxanne_audit::{audit, markdown, Options, Report, Severity};

async fn fixture() -> PgConnection {
    let (_url, options) = voxanne_testkit::empty_database_url().await;
    let mut admin = PgConnection::connect_with(&options).await.expect("admin");
    let (roles, schema) = include_str!("fixture.sql")
        .split_once("-- END ROLES")
        .expect("the roles marker");
    // Roles belong to the cluster, not the database: create them once, not concurrently.
    static ROLES: tokio::sync::Mutex<bool> = tokio::sync::Mutex::const_new(false);
    let mut created = ROLES.lock().await;
    if !*created {
        admin
            .execute(roles)
            .await
            .expect("creating the fixture roles");
        *created = true;
    }
    drop(created);
    admin
        .execute(schema)
        .await
        .expect("loading the fixture schema");
    admin
}

fn options() -> Options {
    Options {
        schemas: vec!["public".into()],
        tenant_column: "tenant_id".into(),
        tenant_table: "tenants".into(),
        app_role: "fixture_app".into(),
        admin_roles: Vec::new(),
        progress: false,
    }
}

async fn report() -> Report {
    let mut admin = fixture().await;
    audit(&mut admin, &options()).await.expect("audit")
}

/// Every check of the audit, with the object planted for it and the severity expected.
const PLANTED: &[(&str, &str, Severity)] = &[
    ("tenant.missing_column", "public.audit_log", Severity::High),
    (
        "tenant.nullable_column",
        "public.t_nullable",
        Severity::High,
    ),
    ("tenant.null_rows", "public.t_nullable", Severity::High),
    ("fk.tenant_missing", "public.t_no_fk", Severity::High),
    ("tenant.dangling_rows", "public.t_no_fk", Severity::High),
    (
        "fk.tenant_not_cascade",
        "public.t_restrict (t_restrict_tenant_id_fkey)",
        Severity::Medium,
    ),
    (
        "fk.cross_tenant",
        "public.t_cross (t_cross_parent_fkey)",
        Severity::High,
    ),
    (
        "fk.cross_tenant_rows",
        "public.t_cross (t_cross_parent_fkey)",
        Severity::Critical,
    ),
    ("rls.disabled", "public.t_rls_off", Severity::Critical),
    ("rls.not_forced", "public.t_not_forced", Severity::High),
    ("rls.no_policy", "public.t_no_policy", Severity::Medium),
    (
        "rls.always_true",
        "public.t_true policy open",
        Severity::Critical,
    ),
    (
        "rls.user_metadata",
        "public.t_metadata policy by_metadata",
        Severity::High,
    ),
    (
        "rls.unwrapped_function",
        "public.t_unwrapped policy per_row",
        Severity::Low,
    ),
    (
        "rls.overlapping_permissive",
        "public.t_overlap",
        Severity::Medium,
    ),
    (
        "rls.missing_with_check",
        "public.t_no_check policy no_check",
        Severity::Medium,
    ),
    (
        "index.tenant_leading",
        "public.t_no_index",
        Severity::Medium,
    ),
    (
        "index.fk_unindexed",
        "public.t_fk_noidx (t_fk_noidx_item_fkey)",
        Severity::Low,
    ),
    ("bypass.view_definer", "public.v_definer", Severity::High),
    (
        "bypass.definer_search_path",
        "public.leak()",
        Severity::High,
    ),
    ("bypass.matview", "public.mv_items", Severity::High),
    (
        "roles.bypass_rls",
        "role fixture_bypass",
        Severity::Critical,
    ),
    (
        "roles.app_owns_tables",
        "public.t_app_owned",
        Severity::High,
    ),
    ("grants.public", "public.t_public", Severity::High),
    (
        "rls.membership_unfiltered",
        "public.t_any_member policy any_member",
        Severity::Critical,
    ),
    ("tenant.column_default", "public.t_default", Severity::High),
    (
        "bypass.definer_tenant_param",
        "public.items_of(p_tenant_id uuid)",
        Severity::High,
    ),
    (
        "bypass.definer_tenant_param",
        "public.items_for_users(tenant uuid)",
        Severity::High,
    ),
    (
        "rls.using_ignores_tenant",
        "public.t_read_any policy reads_any",
        Severity::Critical,
    ),
    (
        "rls.check_ignores_tenant",
        "public.t_write_any policy writes_any",
        Severity::Critical,
    ),
    ("grants.anon_write", "public.t_anon_write", Severity::High),
    ("grants.truncate", "public.t_truncate", Severity::High),
];

#[tokio::test]
async fn every_planted_defect_is_found_with_its_object_and_severity() {
    let report = report().await;
    let mut missing = Vec::new();
    for (check, object, severity) in PLANTED {
        let found = report
            .findings
            .iter()
            .any(|f| f.check == *check && f.object == *object && f.severity == *severity);
        if !found {
            missing.push((check, object, severity));
        }
    }
    assert!(
        missing.is_empty(),
        "not found: {missing:#?}\nall findings: {:#?}",
        report.findings
    );
}

#[tokio::test]
async fn every_check_has_a_planted_defect() {
    let report = report().await;
    for check in &report.checks {
        assert!(
            PLANTED.iter().any(|(id, ..)| *id == check.id),
            "check {} has no planted defect in the fixture",
            check.id
        );
    }
}

#[tokio::test]
async fn the_clean_objects_beside_them_are_not_flagged() {
    let report = report().await;
    let clean = [
        "public.tenants",
        "public.clean_items",
        "public.clean_children",
        "public.global_settings",
        "public.v_invoker",
        "public.safe()",
        "public.members",
        "public.clean_by_membership",
        "public.clean_defaulted",
        "public.items_for_app(p_tenant_id uuid)",
    ];
    for f in &report.findings {
        for c in clean {
            assert!(
                f.object != c && !f.object.starts_with(&format!("{c} ")),
                "false positive on a clean object: {f:#?}"
            );
        }
    }
    // ...and they were looked at: each is in the passed list of some check.
    for c in clean {
        assert!(
            report.checks.iter().any(|r| r
                .passed
                .iter()
                .any(|p| p == c || p.starts_with(&format!("{c} ")))),
            "{c} was never checked"
        );
    }
    // No finding on anything the fixture did not plant a defect in.
    for f in &report.findings {
        let planted_table = PLANTED.iter().any(|(_, object, _)| {
            let table = object.split(' ').next().unwrap_or(object);
            f.object.starts_with(table)
        });
        assert!(planted_table, "finding on an unplanted object: {f:#?}");
    }
}

#[tokio::test]
async fn the_summary_counts_tables_rls_and_findings() {
    let report = report().await;
    let s = &report.summary;
    assert_eq!(s.tenant_table, "public.tenants");
    // Every public table but audit_log and global_settings has tenant_id (tenants counts too).
    assert_eq!(s.tables_checked as usize, s.tables_with_tenant_column + 2);
    assert_eq!(s.rls_enabled, s.tables_with_tenant_column - 1);
    assert_eq!(s.rls_forced, s.tables_with_tenant_column - 2);
    assert_eq!(s.with_policy, s.tables_with_tenant_column - 1);
    let total: usize = s.findings.values().sum();
    assert_eq!(total, report.findings.len());
    assert!(s.counts_bypass_rls);
}

#[tokio::test]
async fn the_audit_leaves_the_database_unchanged() {
    let mut admin = fixture().await;
    let snapshot = "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM (
        SELECT c.oid::text || c.relname || c.relrowsecurity || c.relforcerowsecurity || coalesce(c.relacl::text, '') AS x
          FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
        UNION ALL SELECT polname || coalesce(pg_get_expr(polqual, polrelid), '') FROM pg_policy
        UNION ALL SELECT count(*)::text FROM t_cross) s";
    let before: String = sqlx::query_scalar(snapshot)
        .fetch_one(&mut admin)
        .await
        .expect("before");
    audit(&mut admin, &options()).await.expect("audit");
    let after: String = sqlx::query_scalar(snapshot)
        .fetch_one(&mut admin)
        .await
        .expect("after");
    assert_eq!(before, after);
    // The read-only transaction is over: the caller's connection is back to read-write.
    let read_only: String = sqlx::query_scalar("SHOW transaction_read_only")
        .fetch_one(&mut admin)
        .await
        .expect("query");
    assert_eq!(read_only, "off");
}

#[tokio::test]
async fn an_unknown_tenant_table_is_an_error_not_a_clean_report() {
    let mut admin = fixture().await;
    let mut o = options();
    o.tenant_table = "no_such_table".into();
    assert!(audit(&mut admin, &o).await.is_err());
}

#[tokio::test]
async fn the_markdown_report_renders_a_summary_and_a_table_per_check() {
    let report = report().await;
    let md = markdown(&report);
    assert!(md.starts_with("# Tenant isolation audit"), "{md}");
    assert!(md.contains("| Tables checked |"), "{md}");
    assert!(
        md.contains("| RLS enabled / forced / with a policy |"),
        "{md}"
    );
    for check in &report.checks {
        let heading = format!("## `{}`", check.id);
        let at = md
            .find(&heading)
            .unwrap_or_else(|| panic!("no section {heading}"));
        let section = &md[at..];
        assert!(section.contains("| Result | Object | Problem | Fix |\n| --- | --- | --- | --- |"));
    }
    // Every table row has the same number of cells as its header (pipes in SQL are escaped).
    for line in md
        .lines()
        .filter(|l| l.starts_with("| FAIL") || l.starts_with("| pass"))
    {
        let cells = line.replace("\\|", "").matches('|').count();
        assert_eq!(cells, 5, "{line}");
    }
    assert!(
        md.contains("| FAIL critical | `public.t_rls_off` |"),
        "{md}"
    );
}

#[tokio::test]
async fn the_json_report_has_the_documented_shape() {
    let report = report().await;
    let json = report.json();
    for key in ["summary", "checks", "findings"] {
        assert!(json.get(key).is_some(), "{key}");
    }
    // Every key the JSON has is documented, and a finding has exactly the documented keys.
    let documented = voxanne_audit::JSON_SHAPE;
    for object in [&json["summary"], &json["checks"][0]] {
        for key in object.as_object().expect("an object").keys() {
            assert!(
                documented.contains(&format!("\"{key}\"")),
                "undocumented key {key}"
            );
        }
    }
    let findings = json["findings"].as_array().expect("findings array");
    for f in findings {
        assert_eq!(f.as_object().map(|o| o.len()), Some(5), "{f}");
    }
    assert_eq!(findings.len(), report.findings.len());
    for f in findings {
        for key in ["check", "severity", "object", "message", "fix"] {
            assert!(f[key].is_string(), "{key} in {f}");
        }
        let sev = f["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "high", "medium", "low"].contains(&sev),
            "{sev}"
        );
        assert!(!f["fix"].as_str().unwrap_or_default().is_empty(), "{f}");
    }
    for key in [
        "tables_checked",
        "tables_with_tenant_column",
        "rls_enabled",
        "rls_forced",
    ] {
        assert!(json["summary"][key].is_number(), "{key}");
    }
    for sev in ["critical", "high", "medium", "low"] {
        assert!(json["summary"]["findings"][sev].is_number(), "{sev}");
    }
    for c in json["checks"].as_array().expect("checks") {
        for key in ["id", "title", "severity", "why"] {
            assert!(c[key].is_string(), "{key}");
        }
        assert!(c["passed"].is_array() && c["findings"].is_array());
    }
}

#[tokio::test]
async fn fail_on_thresholds_decide_the_exit_code() {
    let report = report().await;
    assert_eq!(report.worst(), Some(Severity::Critical));
    for s in Severity::ALL {
        assert_eq!(report.exit_code(s), 1);
    }
    let mut only_low = report.clone();
    only_low.findings.retain(|f| f.severity == Severity::Low);
    assert_eq!(only_low.exit_code(Severity::Low), 1);
    assert_eq!(only_low.exit_code(Severity::Medium), 0);
    assert_eq!(only_low.exit_code(Severity::High), 0);
    only_low.findings.clear();
    assert_eq!(only_low.exit_code(Severity::Low), 0);
}

#[tokio::test]
async fn the_readme_documents_every_check_and_the_json_shape() {
    let readme = include_str!("../../../README.md");
    let report = report().await;
    for check in &report.checks {
        assert!(
            readme.contains(&format!("| `{}` | {}", check.id, check.severity.as_str())),
            "README lacks check {} ({})",
            check.id,
            check.severity.as_str()
        );
    }
    for line in voxanne_audit::JSON_SHAPE.lines() {
        assert!(
            readme.contains(line.trim()),
            "README lacks JSON shape line {line}"
        );
    }
}
