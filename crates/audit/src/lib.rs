//! `voxanne audit`: a read-only verification report of tenant isolation in a PostgreSQL
//! database, ours or any other. Every check is one catalog query over all tables (see
//! [`checks`]); only the row counts (orphans, dangling tenants, cross-tenant references) need
//! a query per table, and they show progress on stderr. Everything runs in one
//! `READ ONLY` transaction that is rolled back: the audit changes nothing.

pub mod checks;
mod render;

pub use render::{markdown, JSON_SHAPE};

use serde::Serialize;
use sqlx::{Connection, PgConnection};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(format!(
                "unknown severity {s:?} (critical, high, medium, low)"
            )),
        }
    }
}

/// What to audit and how to recognise tenant data.
#[derive(Debug, Clone)]
pub struct Options {
    pub schemas: Vec<String>,
    pub tenant_column: String,
    /// `name` (looked up in `schemas`) or `schema.name`.
    pub tenant_table: String,
    /// The role the application logs in as: it must not own tenant tables.
    pub app_role: String,
    /// Login roles allowed SUPERUSER/BYPASSRLS (the connecting role is always added).
    pub admin_roles: Vec<String>,
    /// Show a progress bar for the row counts (stderr, only on a terminal).
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            schemas: vec!["public".into()],
            tenant_column: "org_id".into(),
            tenant_table: "organizations".into(),
            app_role: "voxanne_app".into(),
            admin_roles: Vec::new(),
            progress: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub severity: Severity,
    pub object: String,
    pub message: String,
    pub fix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub title: String,
    pub severity: Severity,
    pub why: String,
    /// Objects that passed.
    pub passed: Vec<String>,
    pub findings: Vec<Finding>,
    pub query_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub database: String,
    pub role: String,
    /// Whether the counts were read past RLS (superuser or BYPASSRLS); else they may be low.
    pub counts_bypass_rls: bool,
    pub schemas: Vec<String>,
    pub tenant_table: String,
    pub tenant_column: String,
    pub tables_checked: i64,
    pub tables_with_tenant_column: usize,
    pub rls_enabled: usize,
    pub rls_forced: usize,
    pub with_policy: usize,
    pub findings: std::collections::BTreeMap<Severity, usize>,
    /// Time spent in the catalog queries (all checks), and in the row counts.
    pub catalog_query_ms: f64,
    pub count_query_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub checks: Vec<CheckResult>,
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst severity found, if any.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// 0 when no finding reaches `fail_on`, 1 when one does.
    pub fn exit_code(&self, fail_on: Severity) -> u8 {
        match self.worst() {
            Some(s) if s >= fail_on => 1,
            _ => 0,
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("tenant table {0:?} not found in schemas {1:?}")]
    NoTenantTable(String, Vec<String>),
    #[error("{context}: {source}")]
    Query {
        context: String,
        #[source]
        source: sqlx::Error,
    },
}

fn ctx(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> AuditError {
    let context = context.into();
    move |source| AuditError::Query { context, source }
}

type Row = (String, bool, Option<String>, Option<String>, Option<String>);

struct Params {
    schemas: Vec<String>,
    tenant_tables: Vec<i64>,
    tenant_column: String,
    tenant_table: i64,
    tenant_key: String,
    app_role: String,
    admins: Vec<String>,
}

fn bind<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    p: &'q Params,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(&p.schemas)
        .bind(&p.tenant_tables)
        .bind(&p.tenant_column)
        .bind(p.tenant_table)
        .bind(&p.tenant_key)
        .bind(&p.app_role)
        .bind(&p.admins)
}

/// Audits the database behind `conn` inside a read-only transaction, rolled back at the end.
pub async fn audit(conn: &mut PgConnection, options: &Options) -> Result<Report, AuditError> {
    let mut tx = conn.begin().await.map_err(ctx("BEGIN"))?;
    sqlx::query!("SET TRANSACTION READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(ctx("SET TRANSACTION READ ONLY"))?;
    let report = run(&mut tx, options).await;
    tx.rollback().await.map_err(ctx("ROLLBACK"))?;
    report
}

async fn run(conn: &mut PgConnection, options: &Options) -> Result<Report, AuditError> {
    let catalog_started = Instant::now();
    let connection = sqlx::query!(
        r#"SELECT current_database()::text AS "database!", current_user::text AS "role!",
                  (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
                    AS "bypass!""#
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(ctx("reading the connection"))?;
    let (database, role, bypass) = (connection.database, connection.role, connection.bypass);
    let tenant = sqlx::query!(
        r#"SELECT c.oid::int8 AS "oid!", format('%I.%I', n.nspname, c.relname) AS "name!",
                  coalesce((SELECT a.attname::text FROM pg_constraint k
                              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.conkey[1]
                             WHERE k.conrelid = c.oid AND k.contype = 'p'
                               AND cardinality(k.conkey) = 1), 'id') AS "key!"
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p')
              AND (n.nspname || '.' || c.relname = $1 OR (c.relname = $1 AND n.nspname = ANY($2)))
            ORDER BY array_position($2, n.nspname::text) NULLS FIRST LIMIT 1"#,
        options.tenant_table,
        options.schemas.as_slice()
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(ctx("finding the tenant table"))?
    .map(|row| (row.oid, row.name, row.key));
    let (tenant_oid, tenant_name, tenant_key) = tenant.ok_or_else(|| {
        AuditError::NoTenantTable(options.tenant_table.clone(), options.schemas.clone())
    })?;
    let tenant_tables = sqlx::query_scalar!(
        r#"SELECT c.oid::int8 AS "oid!" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p')
              AND (c.oid::int8 = $3 OR EXISTS (SELECT 1 FROM pg_attribute a
                    WHERE a.attrelid = c.oid AND a.attname = $2 AND NOT a.attisdropped))"#,
        options.schemas.as_slice(),
        options.tenant_column,
        tenant_oid
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("listing the tenant tables"))?;
    let tables_checked = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = ANY($1) AND c.relkind IN ('r', 'p')"#,
        options.schemas.as_slice()
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(ctx("counting tables"))?;
    // The connecting role is the admin, unless it is the application's own role.
    let mut admins = options.admin_roles.clone();
    if role != options.app_role {
        admins.push(role.clone());
    }
    let params = Params {
        schemas: options.schemas.clone(),
        tenant_tables,
        tenant_column: options.tenant_column.clone(),
        tenant_table: tenant_oid,
        tenant_key,
        app_role: options.app_role.clone(),
        admins,
    };

    let citus = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') AS "citus!""#
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(ctx("looking for Citus"))?;
    let citus_checks = if citus { checks::CITUS_CHECKS } else { &[] };

    let mut results = Vec::new();
    for check in checks::CHECKS.iter().chain(citus_checks) {
        let started = Instant::now();
        // Dynamic: the checks are a table (checks.rs) run in turn, each with the same parameters.
        let rows: Vec<Row> = bind(sqlx::query_as(check.sql), &params)
            .fetch_all(&mut *conn)
            .await
            .map_err(ctx(format!("check {}", check.id)))?;
        let mut result = CheckResult {
            id: check.id.into(),
            title: check.title.into(),
            severity: check.severity,
            why: check.why.into(),
            passed: Vec::new(),
            findings: Vec::new(),
            query_ms: ms(started.elapsed()),
        };
        for (object, failed, message, fix, severity) in rows {
            let (failed, message) = match check.refine {
                Some(refine) => (
                    failed && refine(message.as_deref().unwrap_or("")),
                    Some(
                        "a tenant function is called per row (not wrapped in (select ...))".into(),
                    ),
                ),
                None => (failed, message),
            };
            if failed {
                result.findings.push(Finding {
                    check: check.id.into(),
                    severity: severity
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(check.severity),
                    object,
                    message: message.unwrap_or_default(),
                    fix: fix.unwrap_or_default(),
                });
            } else {
                result.passed.push(object);
            }
        }
        results.push(result);
    }

    type TableRow = (String, String, bool, bool, bool, bool);
    // Dynamic like the checks: checks.rs holds every catalog query, bound alike by `bind`.
    let tables: Vec<TableRow> = bind(sqlx::query_as(checks::TENANT_TABLES), &params)
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("listing the tenant tables"))?;
    type FkRow = (
        String,
        String,
        String,
        String,
        String,
        Vec<String>,
        Vec<String>,
    );
    let cross: Vec<FkRow> = bind(sqlx::query_as(checks::CROSS_FKS), &params)
        .fetch_all(&mut *conn)
        .await
        .map_err(ctx("listing cross-tenant foreign keys"))?;
    let catalog_query_ms = ms(catalog_started.elapsed());

    // Row counts: one query per tenant table (and per cross-tenant foreign key).
    let counts_started = Instant::now();
    let bar = progress_bar(options.progress, (tables.len() + cross.len()) as u64);
    let mut nulls = empty(checks::NULL_ROWS, "Rows with a NULL tenant");
    let mut dangling = empty(checks::DANGLING_ROWS, "Rows whose tenant exists");
    let mut crossing = empty(checks::CROSS_ROWS, "Rows that point into another tenant");
    for (qname, tcol, is_tenant_table, ..) in &tables {
        bar.set_message(qname.clone());
        let col = quote_ident(tcol);
        let dangling_sql = if *is_tenant_table {
            "0::int8".to_owned()
        } else {
            format!(
                "count(*) FILTER (WHERE t.{col} IS NOT NULL AND NOT EXISTS \
                 (SELECT 1 FROM {tenant_name} o WHERE o.{key} = t.{col}))",
                key = quote_ident(&params.tenant_key)
            )
        };
        let sql = format!(
            "SELECT count(*) FILTER (WHERE t.{col} IS NULL), {dangling_sql} FROM {qname} t"
        );
        // Dynamic: the table and column come from the catalog, read above.
        if citus {
            sqlx::raw_sql("SAVEPOINT audit_count")
                .execute(&mut *conn)
                .await
                .map_err(ctx("SAVEPOINT"))?;
        }
        let counted = sqlx::query_as(&sql).fetch_one(&mut *conn).await;
        if citus {
            let end = if counted.is_ok() {
                "RELEASE SAVEPOINT audit_count"
            } else {
                "ROLLBACK TO SAVEPOINT audit_count"
            };
            sqlx::raw_sql(end)
                .execute(&mut *conn)
                .await
                .map_err(ctx("ending the SAVEPOINT"))?;
        }
        let (null_count, dangling_count): (i64, i64) = match counted {
            Ok(counts) => counts,
            // On Citus, a tenant table distributed the wrong way cannot be joined with the
            // tenant table (citus.distribution reports it): its NULLs are counted alone.
            Err(e) if citus && is_unsupported(&e) => {
                let nulls = format!(
                    "SELECT count(*) FILTER (WHERE t.{col} IS NULL), 0::int8 FROM {qname} t"
                );
                // Dynamic: as above.
                sqlx::query_as(&nulls)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(ctx(format!("counting rows of {qname}")))?
            }
            Err(e) => return Err(ctx(format!("counting rows of {qname}"))(e)),
        };
        tally(
            &mut nulls,
            qname,
            null_count,
            format!("{null_count} rows with a NULL {tcol}"),
            format!("DELETE FROM {qname} WHERE {col} IS NULL; -- after checking what they are"),
        );
        if !is_tenant_table {
            tally(
                &mut dangling,
                qname,
                dangling_count,
                format!("{dangling_count} rows whose {tcol} names no row of {tenant_name}"),
                format!(
                    "DELETE FROM {qname} t WHERE NOT EXISTS (SELECT 1 FROM {tenant_name} o WHERE o.{key} = t.{col}); -- then add the foreign key",
                    key = quote_ident(&params.tenant_key)
                ),
            );
        }
        bar.inc(1);
    }
    for (object, child, parent, ctcol, ptcol, ccols, pcols) in &cross {
        bar.set_message(object.clone());
        let on = ccols
            .iter()
            .zip(pcols)
            .map(|(c, p)| format!("c.{} = p.{}", quote_ident(c), quote_ident(p)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let sql = format!(
            "SELECT count(*) FROM {child} c JOIN {parent} p ON {on} WHERE c.{} IS DISTINCT FROM p.{}",
            quote_ident(ctcol),
            quote_ident(ptcol)
        );
        // Dynamic: the tables and key columns come from the catalog, read above.
        let n: i64 = sqlx::query_scalar(&sql)
            .fetch_one(&mut *conn)
            .await
            .map_err(ctx(format!("counting cross-tenant rows of {object}")))?;
        tally(
            &mut crossing,
            object,
            n,
            format!("{n} rows of {child} reference a row of {parent} in another tenant"),
            format!(
                "SELECT c.* FROM {child} c JOIN {parent} p ON {on} WHERE c.{} IS DISTINCT FROM p.{}; -- review, fix, then make the foreign key include {}",
                quote_ident(ctcol),
                quote_ident(ptcol),
                quote_ident(ctcol)
            ),
        );
        bar.inc(1);
    }
    bar.finish_and_clear();
    let count_query_ms = ms(counts_started.elapsed());
    results.push(nulls);
    results.push(dangling);
    results.push(crossing);
    if let Some(chains) = access_chains(conn).await? {
        results.push(chains);
    }

    let findings: Vec<Finding> = results
        .iter()
        .flat_map(|r| r.findings.iter().cloned())
        .collect();
    let mut by_severity = std::collections::BTreeMap::new();
    for s in Severity::ALL {
        by_severity.insert(s, findings.iter().filter(|f| f.severity == s).count());
    }
    Ok(Report {
        summary: Summary {
            database,
            role,
            counts_bypass_rls: bypass,
            schemas: options.schemas.clone(),
            tenant_table: tenant_name,
            tenant_column: options.tenant_column.clone(),
            tables_checked,
            tables_with_tenant_column: tables.len(),
            rls_enabled: tables.iter().filter(|t| t.3).count(),
            rls_forced: tables.iter().filter(|t| t.3 && t.4).count(),
            with_policy: tables.iter().filter(|t| t.5).count(),
            findings: by_severity,
            catalog_query_ms,
            count_query_ms,
        },
        checks: results,
        findings,
    })
}

/// `access_log.chain`, where the schema has Voxanne's chained access log and the connection may
/// verify it (None otherwise: the check does not apply, or is not the connection's to run).
async fn access_chains(conn: &mut PgConnection) -> Result<Option<CheckResult>, AuditError> {
    let runnable: bool = sqlx::query_scalar(
        "SELECT coalesce(has_function_privilege(to_regprocedure('app.broken_access_chains()'), 'EXECUTE'), false)",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(ctx("looking for the access log"))?;
    if !runnable {
        return Ok(None);
    }
    let started = Instant::now();
    let broken: Vec<(String, i64, String)> = sqlx::query_as(
        "SELECT org_id::text, seq, problem FROM app.broken_access_chains() ORDER BY org_id",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(ctx("verifying the access log's chains"))?;
    let mut result = empty(
        checks::ACCESS_CHAIN,
        "Every clinic's access log chain holds",
    );
    for (org, seq, problem) in broken {
        result.findings.push(Finding {
            check: result.id.clone(),
            severity: result.severity,
            object: format!("public.access_log of {org}"),
            message: format!("record {seq}: {problem}"),
            fix: format!(
                "-- restore the clinic's access log from a backup taken before the change, and find who changed it: SELECT * FROM access_log WHERE org_id = '{org}' AND seq >= {seq} ORDER BY seq"
            ),
        });
    }
    if result.findings.is_empty() {
        result.passed.push("public.access_log".into());
    }
    result.query_ms = ms(started.elapsed());
    Ok(Some(result))
}

fn empty((id, why, severity): (&str, &str, Severity), title: &str) -> CheckResult {
    CheckResult {
        id: id.into(),
        title: title.into(),
        severity,
        why: why.into(),
        passed: Vec::new(),
        findings: Vec::new(),
        query_ms: 0.0,
    }
}

fn tally(result: &mut CheckResult, object: &str, n: i64, message: String, fix: String) {
    if n > 0 {
        result.findings.push(Finding {
            check: result.id.clone(),
            severity: result.severity,
            object: object.into(),
            message,
            fix,
        });
    } else {
        result.passed.push(object.into());
    }
}

fn progress_bar(enabled: bool, len: u64) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(len),
        indicatif::ProgressDrawTarget::stderr(),
    );
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("counting rows {bar:30} {pos}/{len} {msg}")
    {
        bar.set_style(style);
    }
    bar
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Quotes an identifier for SQL (`"` doubled).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A statement the server refused as unsupported (SQLSTATE 0A000): on Citus, a join it cannot
/// plan.
fn is_unsupported(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "0A000")
}
