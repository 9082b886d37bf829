//! Distributing the schema with Citus (docs/SCALING.md): every tenant table by its tenant
//! column, colocated with `organizations`, so that a clinic's rows live together on one
//! worker; the global tables as reference tables (a copy on every node).
//!
//! [`distribute`] runs after the normal migrations, on the coordinator, as the admin role. It
//! checks the preconditions first and names every table that breaks one; it is idempotent (a
//! table already distributed the right way is left alone) and converts a database that
//! already holds data (Citus copies the rows into the shards).

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, Row};
use std::time::{Duration, Instant};

/// The table whose `id` is the tenant (every other tenant table has an `org_id`).
const TENANT_ROOT: &str = "public.organizations";

/// Tables that stay on the coordinator alone: the migrator's bookkeeping, which only the
/// migrator (connected to the coordinator) reads.
const COORDINATOR_LOCAL: &[&str] = &["public._sqlx_migrations"];

/// Global tables that name a clinic but are keyed by something else, on purpose: the number
/// directory (one number, one clinic: migrations/0026) is a reference table.
const GLOBAL_BY_DESIGN: &[&str] = &["app.phone_number_directory"];

/// A constraint that stops a table from being distributed by clinic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub table: String,
    pub constraint: String,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DistributeError {
    #[error(
        "the Citus extension is not available in this database ({0}). Install Citus on the \
         coordinator and every worker, start them with shared_preload_libraries = 'citus', and \
         add the workers (SELECT citus_add_node(...)); see docs/SCALING.md"
    )]
    NoCitus(String),
    #[error("{} constraint(s) stop the schema from being distributed by clinic:\n{}",
        .0.len(),
        .0.iter().map(|v| format!("  {} ({}): {}", v.table, v.constraint, v.problem)).collect::<Vec<_>>().join("\n"))]
    Preconditions(Vec<Violation>),
    #[error("{table} is already placed by Citus, but {problem}; undo it (SELECT undistribute_table('{table}', cascade_via_foreign_keys => true)) and run again")]
    WronglyDistributed { table: String, problem: String },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// How a table is (to be) placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Sharded by the tenant column, colocated with `organizations`.
    Distributed,
    /// A full copy on every node.
    Reference,
}

/// One table done by [`distribute`].
#[derive(Debug, Clone)]
pub struct TableDone {
    pub table: String,
    pub placement: Placement,
    /// False when it was distributed already (a rerun).
    pub changed: bool,
    pub elapsed: Duration,
}

/// What [`distribute`] did.
#[derive(Debug, Clone, Default)]
pub struct Distribution {
    pub tables: Vec<TableDone>,
    /// Active worker nodes (0: the coordinator holds the shards itself).
    pub workers: i64,
    pub elapsed: Duration,
}

/// Whether the database has the Citus extension installed: the one probe the migrator and
/// the application's pool share. Unprepared (the simple query protocol), so nothing stays
/// behind on a pooler's server connection.
pub async fn is_distributed(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    conn.fetch_one("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'citus')")
        .await?
        .try_get(0)
}

/// Makes sure the Citus extension exists in the database (the admin may create it).
pub(crate) async fn ensure_citus(conn: &mut PgConnection) -> Result<(), DistributeError> {
    conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        .await
        .map_err(|e| DistributeError::NoCitus(e.to_string()))?;
    Ok(())
}

/// The constraints that stop the tenant tables from being distributed by clinic, from the
/// catalog: a unique key or exclusion constraint without the tenant column (with `=`), a
/// foreign key between tenant tables that does not pair the tenant columns, a foreign key
/// that sets the tenant column to NULL or a default, and a global table that refers to a
/// tenant table (a copy on every node cannot refer to rows that live on one).
pub async fn preconditions(conn: &mut PgConnection) -> Result<Vec<Violation>, sqlx::Error> {
    const SQL: &str = r#"
WITH tenant AS (
    SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name, a.attnum AS col, a.attname
      FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
           AND a.attname = CASE WHEN c.oid = $1::regclass THEN 'id' ELSE 'org_id' END
     WHERE n.nspname IN ('public', 'app') AND c.relkind IN ('r', 'p')
       AND (c.oid = $1::regclass OR a.attname = 'org_id')
       AND format('%I.%I', n.nspname, c.relname) <> ALL ($3::text[])),
global AS (
    SELECT c.oid, format('%I.%I', n.nspname, c.relname) AS name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname IN ('public', 'app') AND c.relkind IN ('r', 'p')
       AND c.oid NOT IN (SELECT oid FROM tenant)
       AND format('%I.%I', n.nspname, c.relname) <> ALL ($2::text[]))
SELECT t.name AS "table", ic.relname::text AS "constraint",
       format('a unique key without %I', t.attname) AS problem
  FROM tenant t
  JOIN pg_index i ON i.indrelid = t.oid AND i.indisunique
  JOIN pg_class ic ON ic.oid = i.indexrelid
 WHERE NOT (t.col = ANY (i.indkey::int2[]))
UNION ALL
SELECT t.name, k.conname::text, format('an exclusion constraint without %I WITH =', t.attname)
  FROM tenant t JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype = 'x'
 WHERE NOT EXISTS (
        SELECT FROM unnest(k.conkey, k.conexclop) AS u(att, op)
          JOIN pg_operator o ON o.oid = u.op
         WHERE u.att = t.col AND o.oprname = '=')
UNION ALL
SELECT t.name, k.conname::text,
       format('a foreign key to %s that does not pair %I with its tenant column', r.name, t.attname)
  FROM tenant t
  JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype = 'f'
  JOIN tenant r ON r.oid = k.confrelid
 WHERE NOT EXISTS (SELECT FROM unnest(k.conkey, k.confkey) AS u(a, b) WHERE u.a = t.col AND u.b = r.col)
UNION ALL
SELECT t.name, k.conname::text,
       'a foreign key that sets the referring columns to NULL or a default: Citus refuses it when the tenant column is one of them'
  FROM tenant t
  JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype = 'f'
 WHERE (k.confdeltype IN ('n', 'd') OR k.confupdtype IN ('n', 'd')) AND t.col = ANY (k.conkey)
UNION ALL
SELECT g.name, k.conname::text, format('a global table that refers to the tenant table %s', r.name)
  FROM global g
  JOIN pg_constraint k ON k.conrelid = g.oid AND k.contype = 'f'
  JOIN tenant r ON r.oid = k.confrelid
ORDER BY 1, 2"#;
    let rows = sqlx::query(SQL)
        .bind(TENANT_ROOT)
        .bind(COORDINATOR_LOCAL)
        .bind(GLOBAL_BY_DESIGN)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Violation {
                table: row.try_get("table")?,
                constraint: row.try_get("constraint")?,
                problem: row.try_get("problem")?,
            })
        })
        .collect()
}

/// The tables to place, in an order Citus accepts: the global tables first (reference
/// tables, those referred to before those that refer), then `organizations`, then the other
/// tenant tables, each after the tenant tables it refers to.
async fn plan(conn: &mut PgConnection) -> Result<Vec<(String, Placement, String)>, sqlx::Error> {
    const SQL: &str = r#"
SELECT format('%I.%I', n.nspname, c.relname) AS name,
       (EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
         OR c.oid = $1::regclass)
         AND format('%I.%I', n.nspname, c.relname) <> ALL ($3::text[]) AS tenant,
       coalesce((SELECT array_agg(DISTINCT format('%I.%I', rn.nspname, rc.relname))
                   FROM pg_constraint k
                   JOIN pg_class rc ON rc.oid = k.confrelid
                   JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                  WHERE k.conrelid = c.oid AND k.contype = 'f' AND k.confrelid <> c.oid), '{}') AS refers_to
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('public', 'app') AND c.relkind IN ('r', 'p') AND NOT c.relispartition
   AND format('%I.%I', n.nspname, c.relname) <> ALL ($2::text[])
 ORDER BY 2, 1"#;
    let rows = sqlx::query(SQL)
        .bind(TENANT_ROOT)
        .bind(COORDINATOR_LOCAL)
        .bind(GLOBAL_BY_DESIGN)
        .fetch_all(&mut *conn)
        .await?;
    let mut pending: Vec<(String, bool, Vec<String>)> = rows
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let mut ordered: Vec<(String, Placement, String)> = Vec::new();
    while !pending.is_empty() {
        let done: Vec<&str> = ordered.iter().map(|(t, _, _)| t.as_str()).collect();
        // Global tables before tenant tables; within each, a table whose references are done.
        let ready = pending
            .iter()
            .position(|(_, tenant, refs)| {
                !tenant && refs.iter().all(|r| done.contains(&r.as_str()))
            })
            .or_else(|| {
                pending.iter().position(|(name, tenant, refs)| {
                    *tenant
                        && (name == TENANT_ROOT || done.contains(&TENANT_ROOT))
                        && refs.iter().all(|r| done.contains(&r.as_str()))
                })
            })
            // A cycle (none in this schema): Citus reports what it refuses.
            .unwrap_or(0);
        let (name, tenant, _) = pending.remove(ready);
        let (placement, column) = match (tenant, name == TENANT_ROOT) {
            (false, _) => (Placement::Reference, String::new()),
            (true, true) => (Placement::Distributed, "id".to_owned()),
            (true, false) => (Placement::Distributed, "org_id".to_owned()),
        };
        ordered.push((name, placement, column));
    }
    Ok(ordered)
}

/// How `table` is placed now: `None` when it is a plain local table.
async fn current_placement(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Option<(String, Option<String>, i32)>, sqlx::Error> {
    // A reference table is partmethod 'n' with repmodel 't'; 'n' with 's' is a Citus local
    // table (kept on the coordinator), reported as 'l'.
    let row = sqlx::query(
        "SELECT CASE WHEN partmethod = 'n' AND repmodel <> 't' THEN 'l' ELSE partmethod::text END,
                column_to_column_name(logicalrelid, partkey), colocationid
           FROM pg_dist_partition WHERE logicalrelid = $1::regclass",
    )
    .bind(table)
    .fetch_optional(conn)
    .await?;
    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)))
        .transpose()
}

/// Distributes the migrated schema (see the module documentation). `progress` hears of each
/// table as it is done.
pub async fn distribute(
    admin: &PgConnectOptions,
    mut progress: impl FnMut(&TableDone),
) -> Result<Distribution, DistributeError> {
    let started = Instant::now();
    let mut conn = PgConnection::connect_with(admin).await?;
    ensure_citus(&mut conn).await?;
    let violations = preconditions(&mut conn).await?;
    if !violations.is_empty() {
        return Err(DistributeError::Preconditions(violations));
    }
    let workers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND groupid <> 0",
    )
    .fetch_one(&mut conn)
    .await?;
    // The booking guards are triggers (migrations/0006): Citus runs them on the shards, where
    // their queries name the clinic's own rows (org_id = NEW.org_id), which live on the same
    // worker as the row that fired them (colocation). Citus calls such triggers unsafe
    // because it cannot check that; here the precondition above and the tests do.
    conn.execute("SET citus.enable_unsafe_triggers = on")
        .await?;
    // A reference table that a local table still refers to (phone_numbers to the number
    // directory, before its turn) would otherwise turn that table, and every table joined
    // to it by foreign keys, organizations included, into Citus local tables that can no
    // longer be distributed.
    conn.execute("SET citus.enable_local_reference_table_foreign_keys = off")
        .await?;
    let mut tables = Vec::new();
    let mut root_colocation = None;
    // Tables placed now: Citus copied the rows they held into the shards, and left the
    // coordinator's own copy behind.
    let mut placed = Vec::new();
    for (table, placement, column) in plan(&mut conn).await? {
        let table_started = Instant::now();
        let changed = match current_placement(&mut conn, &table).await? {
            None => {
                placed.push(table.clone());
                match placement {
                    Placement::Reference => {
                        sqlx::query("SELECT create_reference_table($1::regclass)")
                            .bind(&table)
                            .execute(&mut conn)
                            .await?;
                    }
                    Placement::Distributed => {
                        let colocate = if table == TENANT_ROOT {
                            "default"
                        } else {
                            TENANT_ROOT
                        };
                        sqlx::query(
                            "SELECT create_distributed_table($1::regclass, $2, colocate_with => $3)",
                        )
                        .bind(&table)
                        .bind(&column)
                        .bind(colocate)
                        .execute(&mut conn)
                        .await?;
                    }
                }
                true
            }
            Some((method, partition_column, colocation)) => {
                let problem = match placement {
                    _ if method == "l" => {
                        Some("as a Citus local table (on the coordinator alone)".to_owned())
                    }
                    Placement::Reference if method != "n" => {
                        Some("it should be a reference table".to_owned())
                    }
                    Placement::Distributed if method != "h" => {
                        Some("it should be hash-distributed".to_owned())
                    }
                    Placement::Distributed if partition_column.as_deref() != Some(&column) => {
                        Some(format!(
                            "by {} instead of {column}",
                            partition_column.unwrap_or_default()
                        ))
                    }
                    Placement::Distributed
                        if table != TENANT_ROOT && root_colocation != Some(colocation) =>
                    {
                        Some(format!("not colocated with {TENANT_ROOT}"))
                    }
                    _ => None,
                };
                if let Some(problem) = problem {
                    return Err(DistributeError::WronglyDistributed { table, problem });
                }
                false
            }
        };
        if table == TENANT_ROOT {
            root_colocation = current_placement(&mut conn, &table)
                .await?
                .map(|(_, _, colocation)| colocation);
        }
        let done = TableDone {
            table,
            placement,
            changed,
            elapsed: table_started.elapsed(),
        };
        progress(&done);
        tables.push(done);
    }
    // Only once every table is placed: a local table must not refer to the rows removed.
    for table in &placed {
        sqlx::query("SELECT truncate_local_data_after_distributing_table($1::regclass)")
            .bind(table)
            .execute(&mut conn)
            .await?;
    }
    conn.close().await?;
    Ok(Distribution {
        tables,
        workers,
        elapsed: started.elapsed(),
    })
}
