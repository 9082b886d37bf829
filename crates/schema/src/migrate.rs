//! Roles and migrations.
//!
//! Three roles (docs/TENANCY.md section 3):
//! - `voxanne_owner` owns every table and runs the migrations (NOLOGIN: the admin connection
//!   `SET ROLE`s to it). FORCE ROW LEVEL SECURITY binds it like everyone else.
//! - `voxanne_app` is what the application logs in as: it owns nothing, has no BYPASSRLS, and
//!   holds only DML grants. Without a tenant context it sees zero rows.
//! - `voxanne_system` (NOLOGIN, BYPASSRLS) owns the few SECURITY DEFINER functions that work
//!   across orgs (migrations/0003_cross_org_operations.sql); nobody logs in as it.

use crate::distribute::{
    distribute, ensure_citus, is_distributed, DistributeError, Distribution, TableDone,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

pub const OWNER_ROLE: &str = "voxanne_owner";
pub const APP_ROLE: &str = "voxanne_app";
pub const SYSTEM_ROLE: &str = "voxanne_system";

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

const BOOTSTRAP: &str = r#"
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voxanne_owner') THEN
        CREATE ROLE voxanne_owner NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voxanne_system') THEN
        CREATE ROLE voxanne_system NOLOGIN NOSUPERUSER BYPASSRLS NOCREATEROLE NOCREATEDB;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'voxanne_app') THEN
        CREATE ROLE voxanne_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
    END IF;
    EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO voxanne_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO voxanne_app', current_database());
END
$$;
GRANT voxanne_owner TO CURRENT_USER;
GRANT voxanne_system TO voxanne_owner;
GRANT USAGE, CREATE ON SCHEMA public TO voxanne_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
"#;

/// `ALTER ROLE ... PASSWORD` takes no bind parameters, so the password is a quoted literal.
fn password_sql(password: &str) -> String {
    format!(
        "ALTER ROLE voxanne_app PASSWORD '{}'",
        password.replace('\'', "''")
    )
}

/// Creates the roles (idempotently) and applies every pending migration as `voxanne_owner`.
/// `admin` must be allowed to create roles (a superuser, or Supabase's `postgres`). On a
/// database where the Citus extension is installed, the tables are then distributed as
/// [`migrate_distributed`] does (a table added by a new migration included).
pub async fn migrate(
    admin: &PgConnectOptions,
    app_password: Option<&str>,
) -> Result<(), DistributeError> {
    migrate_with(admin, app_password, &MIGRATOR).await
}

/// [`migrate`] with another set of migrations: an earlier state of the schema, for testing
/// what a migration does to the data it finds (`Migrator::new` on a directory holding the
/// first migrations).
pub async fn migrate_with(
    admin: &PgConnectOptions,
    app_password: Option<&str>,
    migrator: &sqlx::migrate::Migrator,
) -> Result<(), DistributeError> {
    if run(admin, app_password, migrator, false).await? {
        distribute(admin, |_| {}).await?;
    }
    Ok(())
}

/// `voxanne migrate --distributed`: creates the Citus extension (the coordinator must have
/// it installed and preloaded, and its workers added), applies the migrations, and
/// distributes every table (`distribute.rs`). Idempotent.
pub async fn migrate_distributed(
    admin: &PgConnectOptions,
    app_password: Option<&str>,
    progress: impl FnMut(&TableDone),
) -> Result<Distribution, DistributeError> {
    run(admin, app_password, &MIGRATOR, true).await?;
    distribute(admin, progress).await
}

/// Bootstraps the roles and migrates; whether the database is distributed.
async fn run(
    admin: &PgConnectOptions,
    app_password: Option<&str>,
    migrator: &sqlx::migrate::Migrator,
    create_citus: bool,
) -> Result<bool, DistributeError> {
    let mut conn = PgConnection::connect_with(admin).await?;
    // Two processes starting at once must not race on CREATE ROLE.
    conn.execute("SELECT pg_advisory_lock(7286001)").await?;
    let result = async {
        if create_citus {
            // Before the roles: Citus creates them on the workers too.
            ensure_citus(&mut conn).await?;
        }
        let distributed = is_distributed(&mut conn).await?;
        bootstrap_and_migrate(&mut conn, app_password, migrator, distributed).await?;
        Ok::<_, DistributeError>(distributed)
    }
    .await;
    conn.execute("RESET ROLE; SELECT pg_advisory_unlock(7286001)")
        .await?;
    conn.close().await?;
    result
}

async fn bootstrap_and_migrate(
    conn: &mut PgConnection,
    app_password: Option<&str>,
    migrator: &sqlx::migrate::Migrator,
    distributed: bool,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(BOOTSTRAP).execute(&mut *conn).await?;
    if let Some(password) = app_password {
        sqlx::raw_sql(&password_sql(password))
            .execute(&mut *conn)
            .await?;
    }
    if distributed {
        // Citus reaches the workers over connections of its own, as the current role: the
        // owner's for the migrations' DDL, voxanne_system's inside the cross-org functions
        // (SECURITY DEFINER). Both must be able to log in there, on the workers only: on the
        // coordinator, where clients connect, they stay NOLOGIN (a BYPASSRLS role that can log
        // in is what `voxanne audit` calls critical). No password; the coordinator
        // authenticates to the workers as docs/SCALING.md says.
        // Citus carries ALTER ROLE to every node; then, with that turned off, the
        // coordinator's own copy is set back.
        sqlx::raw_sql(
            "ALTER ROLE voxanne_owner LOGIN; ALTER ROLE voxanne_system LOGIN;
             SET citus.enable_alter_role_propagation = off;
             ALTER ROLE voxanne_owner NOLOGIN; ALTER ROLE voxanne_system NOLOGIN;
             RESET citus.enable_alter_role_propagation;",
        )
        .execute(&mut *conn)
        .await?;
    }
    conn.execute("SET ROLE voxanne_owner").await?;
    migrator.run(&mut *conn).await?;
    Ok(())
}
