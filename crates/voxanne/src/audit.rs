//! `voxanne audit`: the tenant isolation report of a database (see the voxanne-audit crate).
//! Exit status 0: no finding reaches `--fail-on`; 1: one does; 2: the audit could not run.

use crate::config::Config;
use crate::database::EMBEDDED_DATABASE;
use anyhow::Context;
use sqlx::{Connection, PgConnection};
use std::io::IsTerminal;
use std::process::ExitCode;
use voxanne_audit::{Options, Severity};
use voxanne_db::embedded::{ClusterOptions, EmbeddedCluster, ADMIN_ROLE};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Markdown,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Schemas whose tables are audited (repeatable).
    #[arg(long = "schema", default_value = "public", num_args = 1..)]
    schemas: Vec<String>,
    /// The column that names the tenant in every tenant table.
    #[arg(long, default_value = "org_id")]
    tenant_column: String,
    /// The table of tenants (`name` or `schema.name`); its primary key is the tenant id.
    #[arg(long, default_value = "organizations")]
    tenant_table: String,
    /// The role the application logs in as (it must not own tenant tables).
    #[arg(long, default_value = "voxanne_app")]
    app_role: String,
    /// Login roles allowed SUPERUSER or BYPASSRLS besides the connecting one (repeatable).
    #[arg(long = "admin-role")]
    admin_roles: Vec<String>,
    #[arg(long, value_enum, default_value = "markdown")]
    format: Format,
    /// Exit 1 when a finding is at least this severe: critical, high, medium or low.
    #[arg(long, default_value = "high")]
    fail_on: Severity,
}

pub async fn run(config: &Config, args: AuditArgs) -> ExitCode {
    match audit(config, &args).await {
        Ok(report) => {
            match args.format {
                Format::Markdown => print!("{}", voxanne_audit::markdown(&report)),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                },
            }
            ExitCode::from(report.exit_code(args.fail_on))
        }
        Err(e) => {
            eprintln!("error: could not audit: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn audit(config: &Config, args: &AuditArgs) -> anyhow::Result<voxanne_audit::Report> {
    let options = Options {
        schemas: args.schemas.clone(),
        tenant_column: args.tenant_column.clone(),
        tenant_table: args.tenant_table.clone(),
        app_role: args.app_role.clone(),
        admin_roles: args.admin_roles.clone(),
        progress: std::io::stderr().is_terminal(),
    };
    match &config.database_url {
        Some(url) => {
            let mut conn = PgConnection::connect(url)
                .await
                .context("connecting to DATABASE_URL")?;
            let report = voxanne_audit::audit(&mut conn, &options).await;
            let _ = conn.close().await;
            Ok(report?)
        }
        None => {
            // The embedded database of `serve`, read as the cluster's superuser (the counts
            // must see past RLS). Nothing is created or migrated: audit what is there.
            let data_dir = config.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || {
                EmbeddedCluster::start(&data_dir, ClusterOptions::default())
            })
            .await
            .context("starting the embedded PostgreSQL")??;
            let report = async {
                let mut conn = PgConnection::connect_with(
                    &cluster.connect_options(ADMIN_ROLE, EMBEDDED_DATABASE),
                )
                .await
                .context("connecting to the embedded database (run `voxanne migrate` first)")?;
                let report = voxanne_audit::audit(&mut conn, &options).await;
                let _ = conn.close().await;
                anyhow::Ok(report?)
            }
            .await;
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
            }
            report
        }
    }
}
