//! Opening the database: an external server (`DATABASE_URL`) or the embedded cluster. Either
//! way the roles and migrations are brought up to date first.

use crate::config::Config;
use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use std::sync::Arc;
use voxanne_db::crypto::Keyring;
use voxanne_db::embedded::{ClusterOptions, EmbeddedCluster, ADMIN_ROLE};
use voxanne_db::migrate::{migrate, APP_ROLE};
use voxanne_db::Db;

pub const EMBEDDED_DATABASE: &str = "voxanne";

pub struct Database {
    /// The application's pool, sealing and opening patient text with `keyring`.
    pub db: Db,
    pub keyring: Arc<Keyring>,
    pub cluster: Option<EmbeddedCluster>,
}

impl Database {
    /// Stops the embedded cluster if this process started it.
    pub async fn shutdown(self) {
        self.db.close().await;
        if let Some(cluster) = self.cluster {
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
                Err(e) => tracing::error!(error = %e, "stopping the embedded PostgreSQL"),
            }
        }
    }
}

pub async fn open(config: &Config) -> anyhow::Result<Database> {
    let keyring = Arc::new(crate::secret::encryption_keyring(config)?);
    let pooler = config.db_pooler()?;
    if pooler == voxanne_db::Pooler::Transaction {
        tracing::info!("the application pool is behind a transaction-mode pooler: unnamed statements, no statement cache");
    }
    let password = config
        .app_db_password
        .as_ref()
        .map(|p| p.expose_secret().to_owned());
    match &config.database_url {
        Some(url) => {
            let admin: PgConnectOptions = url
                .parse()
                .context("DATABASE_URL is not a PostgreSQL URL")?;
            migrate(&admin, password.as_deref())
                .await
                .context("migrating the database")?;
            let app = match &config.app_database_url {
                Some(app_url) => app_url
                    .parse()
                    .context("VOXANNE_APP_DATABASE_URL is not a PostgreSQL URL")?,
                None => app_url_from(url, password.as_deref())?,
            };
            let db = Db::connect_with(
                app,
                voxanne_db::PoolSettings {
                    pooler,
                    ..config.pool_settings()
                },
            )
                .await
                .context("connecting as voxanne_app (set VOXANNE_APP_DATABASE_URL or VOXANNE_APP_DB_PASSWORD)")?;
            Ok(Database {
                db: db.with_keyring(keyring.clone()),
                keyring,
                cluster: None,
            })
        }
        None => {
            let data_dir = config.data_dir.clone();
            let cluster = tokio::task::spawn_blocking(move || {
                EmbeddedCluster::start(&data_dir, ClusterOptions::default())
            })
            .await
            .context("starting the embedded PostgreSQL")??;
            let opened = open_embedded(&cluster, config).await;
            match opened {
                Ok(db) => Ok(Database {
                    db: db.with_keyring(keyring.clone()),
                    keyring,
                    cluster: Some(cluster),
                }),
                Err(e) => {
                    let _ = tokio::task::spawn_blocking(move || cluster.stop()).await;
                    Err(e)
                }
            }
        }
    }
}

/// `voxanne migrate --distributed`: the migrations, then the tables distributed on the Citus
/// coordinator that DATABASE_URL names, one line per table.
pub async fn migrate_distributed(config: &Config) -> anyhow::Result<()> {
    let Some(url) = &config.database_url else {
        anyhow::bail!(
            "--distributed needs DATABASE_URL to name the Citus coordinator (the embedded \
             cluster is a single server); see docs/SCALING.md"
        );
    };
    let admin: PgConnectOptions = url
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    let password = config
        .app_db_password
        .as_ref()
        .map(|p| p.expose_secret().to_owned());
    let mut count = 0;
    let distribution =
        voxanne_db::migrate::migrate_distributed(&admin, password.as_deref(), |table| {
            count += 1;
            let placement = match table.placement {
                voxanne_db::distribute::Placement::Distributed => "distributed by clinic",
                voxanne_db::distribute::Placement::Reference => "reference table",
            };
            let state = if table.changed { "" } else { " (already)" };
            println!(
                "[{count:>2}] {:<40} {placement}{state}, {:.1} s",
                table.table,
                table.elapsed.as_secs_f64()
            );
        })
        .await
        .context("distributing the database")?;
    println!(
        "{} tables placed on {} worker(s) in {:.1} s",
        distribution.tables.len(),
        distribution.workers,
        distribution.elapsed.as_secs_f64()
    );
    Ok(())
}

async fn open_embedded(cluster: &EmbeddedCluster, config: &Config) -> anyhow::Result<Db> {
    let mut admin = PgConnection::connect_with(&cluster.connect_options(ADMIN_ROLE, "postgres"))
        .await
        .context("connecting to the embedded PostgreSQL")?;
    let exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#,
        EMBEDDED_DATABASE
    )
    .fetch_one(&mut admin)
    .await?;
    if !exists {
        admin
            .execute(format!("CREATE DATABASE {EMBEDDED_DATABASE}").as_str())
            .await?;
    }
    admin.close().await?;
    migrate(
        &cluster.connect_options(ADMIN_ROLE, EMBEDDED_DATABASE),
        None,
    )
    .await
    .context("migrating the embedded database")?;
    Db::connect_with(
        cluster.connect_options(APP_ROLE, EMBEDDED_DATABASE),
        config.pool_settings(),
    )
    .await
    .context("connecting as voxanne_app")
}

/// The admin URL with the application role's credentials in it (never the admin's password).
fn app_url_from(admin_url: &str, password: Option<&str>) -> anyhow::Result<PgConnectOptions> {
    let mut url = url::Url::parse(admin_url).context("DATABASE_URL is not a URL")?;
    // A URL without a host (a Unix socket in `?host=`) cannot carry a password anyway.
    let _ = url.set_password(None);
    let options: PgConnectOptions = url
        .as_str()
        .parse()
        .context("DATABASE_URL is not a PostgreSQL URL")?;
    let options = options.username(APP_ROLE);
    Ok(match password {
        Some(password) => options.password(password),
        None => options,
    })
}
