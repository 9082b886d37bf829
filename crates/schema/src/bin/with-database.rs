//! `with-database <command> [args…]`: starts a private PostgreSQL cluster in a temp dir,
//! creates and migrates a database on it, runs the command with `DATABASE_URL` set to that
//! database (as the cluster's superuser), then stops the cluster and exits with the
//! command's status.
//!
//! This is how the compile-checked queries' offline data (`.sqlx/`) is made and verified:
//! `scripts/sqlx-prepare` runs `cargo sqlx prepare` under it. It needs nothing but the
//! PostgreSQL server binaries (see `scripts/ensure-postgres`).

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, ExitCode};
use voxanne_schema::embedded::{ClusterOptions, EmbeddedCluster, ADMIN_ROLE};

const DATABASE: &str = "voxanne";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: with-database <command> [args…]");
        return ExitCode::from(2);
    };
    let dir = match tempfile::Builder::new().prefix("voxanne-sqlx-").tempdir() {
        Ok(dir) => dir,
        Err(e) => return fail(format!("creating a temp dir: {e}")),
    };
    // The cluster may run as another OS account (when we are root): let it in.
    if let Err(e) = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)) {
        return fail(format!(
            "opening the temp dir to the cluster's account: {e}"
        ));
    }
    let cluster = match EmbeddedCluster::start(
        dir.path(),
        ClusterOptions {
            ephemeral: true,
            citus: false,
        },
    ) {
        Ok(cluster) => cluster,
        Err(e) => return fail(format!("starting PostgreSQL: {e}")),
    };
    let status = match prepare(&cluster) {
        Ok(url) => Command::new(&program)
            .args(args)
            .env("DATABASE_URL", url)
            .status()
            .map_err(|e| format!("running {}: {e}", program.to_string_lossy())),
        Err(e) => Err(e),
    };
    if let Err(e) = cluster.stop() {
        eprintln!("with-database: stopping PostgreSQL: {e}");
    }
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => fail(e),
    }
}

/// Creates and migrates the database; its superuser URL over the cluster's socket.
fn prepare(cluster: &EmbeddedCluster) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the runtime: {e}"))?;
    runtime.block_on(async {
        use sqlx::{Connection, Executor};
        let mut admin =
            sqlx::PgConnection::connect_with(&cluster.connect_options(ADMIN_ROLE, "postgres"))
                .await
                .map_err(|e| format!("connecting to PostgreSQL: {e}"))?;
        admin
            .execute(format!("CREATE DATABASE {DATABASE}").as_str())
            .await
            .map_err(|e| format!("creating the database: {e}"))?;
        voxanne_schema::migrate::migrate(&cluster.connect_options(ADMIN_ROLE, DATABASE), None)
            .await
            .map_err(|e| format!("migrating the database: {e}"))
    })?;
    let (socket, port) = cluster.socket();
    Ok(format!(
        "postgres://{ADMIN_ROLE}@localhost/{DATABASE}?host={}&port={port}",
        socket.display()
    ))
}

fn fail(message: String) -> ExitCode {
    eprintln!("with-database: {message}");
    ExitCode::FAILURE
}
