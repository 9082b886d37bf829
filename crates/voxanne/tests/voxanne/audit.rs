//! `voxanne audit` as a user runs it: the built binary, against our migrated database (clean),
//! the same with planted defects (exit codes by --fail-on), the embedded default database,
//! and a database it cannot reach (exit 2).

use sqlx::Executor;
use std::process::{Command, Output};
use voxanne_testkit::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_voxanne");

/// The superuser URL of a test database, over the cluster's Unix socket.
fn url(t: &TestDb) -> String {
    let o = t.admin_options();
    let socket = o.get_socket().expect("socket dir").display().to_string();
    format!(
        "postgres://postgres@localhost/{}?host={socket}&port={}",
        t.name,
        o.get_port()
    )
}

fn audit(url: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("audit")
        .args(args)
        .env("DATABASE_URL", url)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running voxanne audit")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

#[tokio::test]
async fn our_database_audits_clean_and_exits_0() {
    let t = TestDb::new().await;
    let out = audit(&url(&t), &[]);
    let md = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        code(&out),
        0,
        "{md}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(md.starts_with("# Tenant isolation audit"), "{md}");
    assert!(
        md.contains("| Findings | 0 critical, 0 high, 0 medium, 0 low |"),
        "{md}"
    );
    assert!(md.contains("| pass | `public.calls` | | |"), "{md}");
}

#[tokio::test]
async fn json_output_has_the_findings_array() {
    let t = TestDb::new().await;
    let out = audit(&url(&t), &["--format", "json", "--fail-on", "low"]);
    assert_eq!(code(&out), 0);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["findings"], serde_json::json!([]));
    assert!(json["summary"]["tables_with_tenant_column"].as_u64() >= Some(18));
    assert!(json["checks"].as_array().map(|c| c.len()) >= Some(20));
}

#[tokio::test]
async fn a_high_finding_fails_at_high_and_passes_at_critical() {
    let t = TestDb::new().await;
    t.admin()
        .await
        .execute("ALTER TABLE calls NO FORCE ROW LEVEL SECURITY")
        .await
        .expect("plant");
    let u = url(&t);
    let out = audit(&u, &["--format", "json"]);
    assert_eq!(code(&out), 1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let findings = json["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["check"], "rls.not_forced");
    assert_eq!(findings[0]["object"], "public.calls");
    assert_eq!(findings[0]["severity"], "high");
    assert_eq!(
        findings[0]["fix"],
        "ALTER TABLE public.calls FORCE ROW LEVEL SECURITY;"
    );
    assert_eq!(code(&audit(&u, &["--fail-on", "high"])), 1);
    assert_eq!(code(&audit(&u, &["--fail-on", "medium"])), 1);
    assert_eq!(code(&audit(&u, &["--fail-on", "critical"])), 0);
}

#[tokio::test]
async fn a_low_finding_fails_only_at_low() {
    let t = TestDb::new().await;
    t.admin()
        .await
        .execute("DROP INDEX calls_org_contact_idx")
        .await
        .expect("plant");
    let u = url(&t);
    assert_eq!(code(&audit(&u, &[])), 0);
    assert_eq!(code(&audit(&u, &["--fail-on", "medium"])), 0);
    let out = audit(&u, &["--fail-on", "low"]);
    assert_eq!(code(&out), 1);
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("| FAIL low | `public.calls (calls_org_id_contact_id_fkey)` |"),
        "{md}"
    );
}

#[tokio::test]
async fn a_critical_finding_fails_even_at_critical() {
    let t = TestDb::new().await;
    t.admin()
        .await
        .execute("CREATE POLICY everyone ON contacts USING (true)")
        .await
        .expect("plant");
    let out = audit(&url(&t), &["--fail-on", "critical"]);
    assert_eq!(code(&out), 1);
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        md.contains("| FAIL critical | `public.contacts policy everyone` |"),
        "{md}"
    );
}

#[tokio::test]
async fn an_unreachable_database_exits_2() {
    let out = audit("postgres://nobody@127.0.0.1:1/nothing", &[]);
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("could not audit"));
}

#[tokio::test]
async fn a_missing_tenant_table_exits_2() {
    let t = TestDb::new().await;
    let out = audit(&url(&t), &["--tenant-table", "tenants"]);
    assert_eq!(code(&out), 2);
}

#[tokio::test]
async fn a_bad_fail_on_is_a_usage_error() {
    let out = audit(
        "postgres://nobody@127.0.0.1:1/nothing",
        &["--fail-on", "severe"],
    );
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("severe"));
}

#[test]
fn without_a_url_it_audits_the_embedded_database_of_serve() {
    let dir = tempfile::Builder::new()
        .prefix("voxanne-audit-")
        .tempdir()
        .expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let run = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env("VOXANNE_DATA_DIR", dir.path())
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .output()
            .expect("running voxanne")
    };
    let migrated = run(&["migrate"]);
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let out = run(&["audit", "--format", "json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["summary"]["database"], "voxanne");
    assert_eq!(json["findings"], serde_json::json!([]));
}
