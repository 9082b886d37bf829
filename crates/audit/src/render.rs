//! The Markdown report. (JSON is the report serialized as it is: see [`JSON_SHAPE`].)

use crate::{Report, Severity};
use std::fmt::Write;

/// The documented JSON shape (also in the README), checked by the tests.
pub const JSON_SHAPE: &str = r#"{
  "summary":  { "database", "role", "counts_bypass_rls", "schemas", "tenant_table", "tenant_column",
                "tables_checked", "tables_with_tenant_column", "rls_enabled", "rls_forced",
                "with_policy", "findings": { "critical", "high", "medium", "low" },
                "catalog_query_ms", "count_query_ms" },
  "checks":   [ { "id", "title", "severity", "why", "passed": [object], "findings": [finding], "query_ms" } ],
  "findings": [ { "check", "severity", "object", "message", "fix" } ]
}"#;

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(report: &Report) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let _ = writeln!(out, "# Tenant isolation audit: {}\n", s.database);
    let _ = writeln!(out, "| | |\n| --- | --- |");
    let _ = writeln!(out, "| Schemas | {} |", cell(&s.schemas.join(", ")));
    let _ = writeln!(
        out,
        "| Tenant | `{}` column, tenant table `{}` |",
        cell(&s.tenant_column),
        cell(&s.tenant_table)
    );
    let _ = writeln!(out, "| Tables checked | {} |", s.tables_checked);
    let _ = writeln!(
        out,
        "| Tables with tenant column | {} |",
        s.tables_with_tenant_column
    );
    let n = s.tables_with_tenant_column;
    let _ = writeln!(
        out,
        "| RLS enabled / forced / with a policy | {}/{n} / {}/{n} / {}/{n} |",
        s.rls_enabled, s.rls_forced, s.with_policy
    );
    let by = Severity::ALL
        .iter()
        .map(|sev| {
            format!(
                "{} {}",
                s.findings.get(sev).copied().unwrap_or(0),
                sev.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(out, "| Findings | {by} |");
    let _ = writeln!(
        out,
        "| Read as | `{}`{} |",
        cell(&s.role),
        if s.counts_bypass_rls {
            ""
        } else {
            " (RLS applies to this role: row counts may be low)"
        }
    );
    let _ = writeln!(
        out,
        "| Query time | catalog {:.1} ms, row counts {:.1} ms |\n",
        s.catalog_query_ms, s.count_query_ms
    );

    for check in &report.checks {
        let status = if check.findings.is_empty() {
            "pass".to_owned()
        } else {
            format!("{} failed", check.findings.len())
        };
        let _ = writeln!(out, "## `{}`: {} ({status})\n", check.id, check.title);
        let _ = writeln!(out, "Severity {}. {}\n", check.severity.as_str(), check.why);
        if check.findings.is_empty() && check.passed.is_empty() {
            let _ = writeln!(out, "Nothing to check.\n");
            continue;
        }
        let _ = writeln!(
            out,
            "| Result | Object | Problem | Fix |\n| --- | --- | --- | --- |"
        );
        for f in &check.findings {
            let _ = writeln!(
                out,
                "| FAIL {} | `{}` | {} | `{}` |",
                f.severity.as_str(),
                cell(&f.object),
                cell(&f.message),
                cell(&f.fix)
            );
        }
        for p in &check.passed {
            let _ = writeln!(out, "| pass | `{}` | | |", cell(p));
        }
        let _ = writeln!(out);
    }
    out
}
