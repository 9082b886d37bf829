//! `voxanne`: the command line. Thin on purpose; the work is in the library crates.

mod audit;
mod config;
mod database;
mod demo;
mod secret;
mod simulate;

use anyhow::Context;
use clap::{Parser, Subcommand};
use config::{Config, ServeArgs};
use std::sync::Arc;
use std::time::Duration;
use voxanne_domain::{OrgId, Role, UserId};
use voxanne_http::auth::{mint_hs256, AuthConfig, DevToken, JwtVerifier};
use voxanne_http::AppState;
use voxanne_jobs::Job as _;

#[derive(Debug, Parser)]
#[command(
    name = "voxanne",
    version,
    about = "The backend of an AI phone receptionist for clinics"
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (migrates first).
    Serve(ServeArgs),
    /// Run the background jobs (recording ingest, SMS confirmations) until SIGTERM. Several
    /// may run at once.
    Worker,
    /// Create the roles and apply pending migrations, then exit.
    Migrate {
        /// Then distribute the tables with Citus (DATABASE_URL names the coordinator, whose
        /// workers are added): every tenant table by clinic, the global tables as reference
        /// tables. Checks the preconditions first; safe to rerun. See docs/SCALING.md.
        #[arg(long)]
        distributed: bool,
    },
    /// Mint a development JWT signed with the HS256 secret.
    Token {
        #[arg(long)]
        user: UserId,
        #[arg(long)]
        org: OrgId,
        /// Informational only: the server uses the membership's role.
        #[arg(long)]
        role: Option<Role>,
        /// Lifetime, e.g. 30m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Verify tenant isolation in the database (read-only): a report, and exit 1 when a
    /// finding reaches --fail-on, 2 when the audit could not run.
    Audit(audit::AuditArgs),
    /// Play phone calls against a running server, as the voice platform would.
    Call {
        #[command(subcommand)]
        command: CallCommand,
    },
    /// Organization provisioning.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// A patient's rights: erasure.
    Patient {
        #[command(subcommand)]
        command: PatientCommand,
    },
    /// A clinic's Vapi account.
    Vapi {
        #[command(subcommand)]
        command: VapiCommand,
    },
    /// Seed two demo clinics (idempotent) and print their users' tokens and curl lines.
    Demo {
        /// Print the same as JSON.
        #[arg(long)]
        json: bool,
        /// The API's base URL, for the curl lines.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        base_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum CallCommand {
    /// A whole call to a clinic's number: signed assistant-request, tool calls that find a
    /// free time (and with --book, hold and book it), and the end-of-call report with a
    /// recording this command serves until the worker fetches it.
    Simulate(simulate::SimulateArgs),
}

#[derive(Debug, Subcommand)]
enum VapiCommand {
    /// Point the clinic's Vapi numbers at this server (--public-url) with its credential, as
    /// `POST /api/v1/integrations/vapi/sync` does; prints what changed.
    Sync {
        #[arg(long)]
        org: OrgId,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization with its first owner: an identity provider's user (`--owner`)
    /// or a built-in account (`--owner-email`: made if it does not exist, and a link to
    /// choose its password is printed).
    Create {
        #[arg(long)]
        name: String,
        /// The owner's user id (the `sub` of their tokens).
        #[arg(
            long,
            required_unless_present = "owner_email",
            conflicts_with = "owner_email"
        )]
        owner: Option<UserId>,
        /// The owner's email address, for the dashboard.
        #[arg(long)]
        owner_email: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum PatientCommand {
    /// Erase everything the clinic holds about one contact, recordings included (as
    /// `POST /api/v1/contacts/{id}/erase`; docs/RETENTION.md). Refused under a legal hold.
    Erase {
        /// The clinic.
        #[arg(long)]
        org: OrgId,
        /// The contact.
        #[arg(long)]
        contact: voxanne_domain::ContactId,
    },
    /// Write everything the clinic holds about one contact to a zip archive (as
    /// `GET /api/v1/contacts/{id}/export`): its rows table by table, and its recordings.
    Export {
        /// The clinic.
        #[arg(long)]
        org: OrgId,
        /// The contact.
        #[arg(long)]
        contact: voxanne_domain::ContactId,
        /// The archive to write (not overwritten if it exists).
        #[arg(long)]
        out: std::path::PathBuf,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    if let Command::Audit(args) = cli.command {
        return audit::run(&cli.config, args).await;
    }
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config;
    match cli.command {
        Command::Serve(args) => serve(&config, args).await,
        Command::Audit(_) => anyhow::bail!("audit runs from main"),
        Command::Worker => worker(&config).await,
        Command::Call {
            command: CallCommand::Simulate(args),
        } => simulate::run(args).await,
        Command::Migrate { distributed: true } => database::migrate_distributed(&config).await,
        Command::Migrate { distributed: false } => {
            let database = database::open(&config).await?;
            println!("migrations applied");
            database.shutdown().await;
            Ok(())
        }
        Command::Token {
            user,
            org,
            role,
            ttl,
        } => {
            let secret = secret::jwt_secret(&config)?;
            let token = mint_hs256(
                &secret,
                &config.jwt_audience,
                &DevToken {
                    user,
                    org: Some(org),
                    role,
                    ttl,
                },
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{token}");
            Ok(())
        }
        Command::Org {
            command:
                OrgCommand::Create {
                    name,
                    owner,
                    owner_email,
                },
        } => {
            let name = name.trim().to_owned();
            anyhow::ensure!(
                !name.is_empty() && name.len() <= 200,
                "--name must be 1 to 200 characters"
            );
            let email = owner_email.map(|e| e.trim().to_lowercase());
            if let Some(email) = &email {
                anyhow::ensure!(
                    voxanne_http::fields::email("--owner-email", Some(email)).is_ok(),
                    "--owner-email must be an email address"
                );
            }
            let database = database::open(&config).await?;
            let org = OrgId::new_random();
            let created = async {
                let mut link = None;
                let owner = match (owner, &email) {
                    (Some(owner), _) => owner,
                    (None, Some(email)) => {
                        let (owner, token) =
                            account_for_owner(&database.db, &config, email).await?;
                        link = token;
                        owner
                    }
                    (None, None) => anyhow::bail!("--owner or --owner-email is required"),
                };
                let tx = voxanne_db::system::provision_org(
                    &database.db,
                    &voxanne_db::system::NewOrg {
                        id: org,
                        name: name.clone(),
                        owner,
                    },
                )
                .await?;
                tx.commit().await?;
                anyhow::Ok((owner, link))
            }
            .await;
            database.shutdown().await;
            let (owner, link) = created.context("creating the organization")?;
            println!("{org}");
            eprintln!("created organization \"{name}\" ({org}) with owner {owner}");
            if let Some(link) = link {
                eprintln!(
                    "the owner chooses a password (the link works once, for {}): {link}",
                    humantime::format_duration(config.invitation_ttl)
                );
            }
            Ok(())
        }
        Command::Patient {
            command: PatientCommand::Erase { org, contact },
        } => erase_patient(&config, org, contact).await,
        Command::Patient {
            command: PatientCommand::Export { org, contact, out },
        } => export_patient(&config, org, contact, &out).await,
        Command::Vapi {
            command: VapiCommand::Sync { org, json },
        } => {
            let settings = config.vapi()?;
            let database = database::open(&config).await?;
            let synced = voxanne_http::vapi_sync::sync(
                &database.db,
                &database.keyring,
                &settings,
                org,
                None,
            )
            .await;
            database.shutdown().await;
            let report = synced.map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "Vapi credential {} ({}); numbers point at {}",
                    report.credential.id, report.credential.action, report.server_url
                );
                if report.webhook_secret_generated {
                    println!("  a webhook secret was made for the clinic");
                }
                for n in &report.numbers {
                    println!("  {:<16} {:<12} (Vapi {})", n.number, n.action, n.vapi_id);
                }
            }
            Ok(())
        }
        Command::Demo { json, base_url } => {
            let secret = secret::jwt_secret(&config)?;
            let database = database::open(&config).await?;
            let seeded = demo::seed(
                &database.db,
                &database.keyring,
                &secret,
                &config.jwt_audience,
                &base_url,
            )
            .await;
            database.shutdown().await;
            let report = seeded?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            Ok(())
        }
    }
}

/// The built-in account of `email` (made, without a password, if there is none), and for a
/// new one a link to choose its password.
async fn account_for_owner(
    db: &voxanne_db::Db,
    config: &Config,
    email: &str,
) -> anyhow::Result<(UserId, Option<String>)> {
    if let Some(made) = voxanne_db::system::create_account(db, None, email, None, "!").await? {
        let token = voxanne_http::accounts::new_secret();
        let ttl = chrono::Duration::from_std(config.invitation_ttl)?;
        voxanne_db::system::start_password_reset(
            db,
            email,
            &voxanne_http::accounts::secret_hash(&token),
            chrono::Utc::now() + ttl,
        )
        .await?;
        // Where `voxanne serve` is reached: the public address, else the default one.
        let mut link = url::Url::parse(
            config
                .public_url
                .as_deref()
                .unwrap_or("http://127.0.0.1:8080"),
        )?;
        link.set_path("/reset-password");
        link.set_fragment(Some(&token));
        return Ok((made, Some(link.to_string())));
    }
    let existing = voxanne_db::system::account_for_sign_in(db, email)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the account of {email} could not be read"))?;
    Ok((existing.id, None))
}

async fn serve(config: &Config, args: ServeArgs) -> anyhow::Result<()> {
    let secret = secret::jwt_secret(config)?;
    let auth = JwtVerifier::new(AuthConfig {
        hs256_secret: Some(secret.clone()),
        jwks: config.jwks(),
        audience: config.jwt_audience.clone(),
    })
    .await?;
    let server_config = config.server_config()?;
    let database = database::open(config).await?;
    let keyring = database.keyring.clone();
    tracing::info!(
        current_key = keyring.current_key_id(),
        "encryption keys loaded"
    );
    let shutdown = shutdown_signal();
    let result = async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("binding {}", args.addr))?;
        let addr = listener.local_addr()?;
        let mut demo_users = Vec::new();
        if args.demo {
            let report = demo::seed(
                &database.db,
                &keyring,
                &secret,
                &config.jwt_audience,
                &format!("http://{addr}"),
            )
            .await?;
            print!("{report}");
            for clinic in &report.clinics {
                for user in &clinic.users {
                    demo_users.push(voxanne_http::accounts::DemoUser {
                        label: format!("{} {}", clinic.name, user.role),
                        user_id: user.user_id,
                        org_id: clinic.org_id,
                    });
                }
            }
        }
        println!("Voxanne is listening on http://{addr} (Ctrl-C to stop)");
        tracing::info!(%addr, "listening");
        let recordings = open_storage(config)?;
        let metrics = Arc::new(voxanne_jobs::Metrics::default());
        let calendar = Arc::new(config.calendar()?);
        let (security, security_writer) =
            voxanne_http::security_log::SecurityLog::start(database.db.clone());
        let state = AppState {
            db: database.db.clone(),
            auth: Arc::new(auth),
            recordings: recordings.clone(),
            keyring: keyring.clone(),
            metrics: metrics.clone(),
            security,
            limits: Arc::new(config.limits()?),
            vapi: Arc::new(config.vapi()?),
            calendar: calendar.clone(),
            accounts: Arc::new(config.accounts(addr, demo_users)?),
            live: Arc::default(),
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = if args.no_worker {
            None
        } else {
            let mut worker_config = config.worker_config()?;
            if args.demo && !worker_config.allow_private_addresses {
                // `voxanne call simulate` serves its recording on 127.0.0.1.
                tracing::warn!("demo mode: recordings may be downloaded from private addresses");
                worker_config.allow_private_addresses = true;
            }
            Some(spawn_workers(
                &database.db,
                recordings,
                keyring,
                calendar,
                config,
                worker_config,
                metrics,
                &stopped,
            )?)
        };
        let mut server_stopped = stopped;
        let signal = tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        if let Some(metrics_addr) = config.metrics_addr()? {
            let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
                .await
                .with_context(|| format!("binding the metrics address {metrics_addr}"))?;
            tracing::info!(addr = %metrics_addr, "metrics at /metrics");
            let mut metrics_stopped = server_stopped.clone();
            tokio::spawn(voxanne_http::server::run(
                metrics_listener,
                voxanne_http::metrics_router(state.clone()),
                voxanne_http::ServerConfig::default(),
                async move {
                    let _ = metrics_stopped.wait_for(|stop| *stop).await;
                },
            ));
        }
        let served = voxanne_http::serve(listener, state, server_config, async move {
            let _ = server_stopped.wait_for(|stop| *stop).await;
        })
        .await;
        signal.abort();
        if let Some(workers) = workers {
            stop_workers(workers, config.shutdown_grace).await;
        }
        // The server's handles are gone: the security log writes what is queued, then ends.
        if tokio::time::timeout(config.shutdown_grace, security_writer)
            .await
            .is_err()
        {
            tracing::warn!("shutdown deadline reached: security findings still queued are lost");
        }
        served?;
        anyhow::Ok(())
    }
    .await;
    tracing::info!("shutting down");
    database.shutdown().await;
    result
}

/// The recordings' object store: `VOXANNE_STORAGE_URL` (S3-compatible) when set, else a local
/// directory (`VOXANNE_STORAGE_DIR`, default `<data dir>/objects`).
fn open_storage(config: &Config) -> anyhow::Result<Arc<dyn object_store::ObjectStore>> {
    let location = match &config.storage_url {
        Some(url) => url.clone(),
        None => config.storage_dir().display().to_string(),
    };
    voxanne_http::storage::open(&location)
        .with_context(|| format!("opening the recordings storage at {location}"))
}

/// A tenant transaction of `org` for an operator's command: its access records name the CLI
/// and `via`.
async fn cli_tenant(
    db: &voxanne_db::Db,
    org: OrgId,
    via: &str,
) -> anyhow::Result<voxanne_db::TenantTx> {
    let mut tx = db
        .job_tenant(org)
        .await
        .map_err(|e| anyhow::anyhow!("opening the clinic {org}: {e}"))?;
    tx.set_actor(voxanne_db::ActorKind::Cli);
    tx.set_origin(via, None, None);
    Ok(tx)
}

/// `voxanne patient erase`: one tenant transaction of the clinic, as the CLI, with each step
/// on stderr as it happens.
async fn erase_patient(
    config: &Config,
    org: OrgId,
    contact: voxanne_domain::ContactId,
) -> anyhow::Result<()> {
    use voxanne_jobs::erase::{erase_contact, ErasePatientError, Progress};
    let store = open_storage(config)?;
    let database = database::open(config).await?;
    let erased = async {
        let mut tx = cli_tenant(&database.db, org, "cli:patient erase").await?;
        let progress = |step: Progress<'_>| match step {
            Progress::Found(scope) => eprintln!(
                "found: {} calls ({} recordings), {} appointments, {} SMS, {} messages, {} leads, \
                 {} campaign targets, {} campaign calls",
                scope.calls.len(),
                scope.recordings.len(),
                scope.appointments.len(),
                scope.sms.len(),
                scope.messages.len(),
                scope.leads.len(),
                scope.campaign_targets.len(),
                scope.campaign_calls.len()
            ),
            Progress::Recording(done, total) => {
                eprintln!("recordings removed from storage: {done}/{total}")
            }
            Progress::Rows(_) => eprintln!("rows removed; committing"),
        };
        let erased = match erase_contact(&mut tx, store.as_ref(), contact, progress).await {
            Ok(Some(erased)) => erased,
            Ok(None) => anyhow::bail!("the clinic {org} has no contact {contact}"),
            Err(ErasePatientError::Held) => anyhow::bail!(
                "the contact, or one of its calls, is under a legal hold: release it first \
                 (DELETE /api/v1/legal-holds/{{id}})"
            ),
            Err(e) => return Err(e.into()),
        };
        tx.commit().await?;
        anyhow::Ok(erased)
    }
    .await;
    database.shutdown().await;
    let erased = erased?;
    println!(
        "erased contact {contact}: {} calls, {} recordings, {} appointments, {} SMS, {} messages, \
         {} leads, {} campaign targets, {} campaign calls",
        erased.calls,
        erased.recordings,
        erased.appointments,
        erased.sms,
        erased.messages,
        erased.leads,
        erased.campaign_targets,
        erased.campaign_calls
    );
    Ok(())
}

/// `voxanne patient export`: the archive is written next to `out`, then moved into place, with
/// its progress on stderr.
async fn export_patient(
    config: &Config,
    org: OrgId,
    contact: voxanne_domain::ContactId,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use voxanne_jobs::export::{export_contact, ExportProgress};
    anyhow::ensure!(!out.exists(), "{} exists already", out.display());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let dir = tempfile::tempdir_in(&parent)
        .with_context(|| format!("writing in {}", parent.display()))?;
    let store = open_storage(config)?;
    let database = database::open(config).await?;
    let exported = async {
        let tx = cli_tenant(&database.db, org, "cli:patient export").await?;
        let progress = |step: ExportProgress| match step {
            ExportProgress::Rows { rows, recordings } => {
                eprintln!("read {rows} rows; {recordings} recordings to copy")
            }
            ExportProgress::Recording { done, total, bytes } => {
                eprintln!("recordings copied: {done}/{total} ({bytes} bytes)")
            }
            ExportProgress::Written { bytes } => eprintln!("archive written: {bytes} bytes"),
        };
        match export_contact(tx, store.as_ref(), contact, dir.path(), progress).await? {
            Some(exported) => anyhow::Ok(exported),
            None => anyhow::bail!("the clinic {org} has no contact {contact}"),
        }
    }
    .await;
    database.shutdown().await;
    let exported = exported?;
    std::fs::rename(&exported.path, out)
        .with_context(|| format!("moving the archive to {}", out.display()))?;
    println!(
        "{}: {} rows, {} recordings, {} bytes",
        out.display(),
        exported.rows,
        exported.recordings,
        exported.bytes
    );
    Ok(())
}

/// The background jobs `serve` and `worker` run.
type Workers = [tokio::task::JoinHandle<()>; 8];

/// Starts the background jobs, the recording worker, the SMS sender, the calendar sync, the
/// calendar event writer, the campaign dialer, the access log sealer, the retention purge and
/// the encryption of patient text, each until `stop` turns true.
#[allow(clippy::too_many_arguments)]
fn spawn_workers(
    db: &voxanne_db::Db,
    recordings: Arc<dyn object_store::ObjectStore>,
    keyring: Arc<voxanne_db::crypto::Keyring>,
    calendar: Arc<voxanne_calendar::CalendarOAuth>,
    config: &Config,
    worker_config: voxanne_jobs::WorkerConfig,
    metrics: Arc<voxanne_jobs::Metrics>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Workers> {
    let until_stopped = || {
        let mut stop = stop.clone();
        async move {
            let _ = stop.wait_for(|stop| *stop).await;
        }
    };
    let retention = voxanne_jobs::RetentionJob::new(
        db.clone(),
        recordings.clone(),
        voxanne_jobs::RetentionConfig::default(),
        metrics.clone(),
    );
    let encryption = voxanne_jobs::EncryptionJob::new(
        db.clone(),
        recordings.clone(),
        voxanne_jobs::EncryptionConfig::default(),
        metrics.clone(),
    );
    let recording = voxanne_jobs::Worker::new(
        db.clone(),
        recordings,
        keyring.clone(),
        worker_config,
        metrics.clone(),
    )?;
    let sms = voxanne_jobs::SmsWorker::new(
        db.clone(),
        keyring.clone(),
        config.sms_config()?,
        metrics.clone(),
    )?;
    let sync = voxanne_jobs::CalendarSync::new(
        db.clone(),
        keyring.clone(),
        calendar.clone(),
        config.calendar_sync_config()?,
        metrics.clone(),
    );
    let dialer = voxanne_jobs::Dialer::new(
        db.clone(),
        keyring.clone(),
        Arc::new(config.vapi()?),
        voxanne_jobs::DialerConfig::default(),
        metrics.clone(),
    );
    let writer = voxanne_jobs::CalendarWriter::new(
        db.clone(),
        keyring,
        calendar,
        voxanne_jobs::Schedule {
            batch: config.worker_batch,
            ..voxanne_jobs::Schedule::default()
        },
        metrics,
    );
    tracing::info!("recording worker started");
    let stopped = until_stopped();
    let recording = tokio::spawn(async move { recording.run(stopped).await });
    tracing::info!("sms worker started");
    let stopped = until_stopped();
    let sms = tokio::spawn(async move { sms.run(stopped).await });
    tracing::info!("calendar sync and event writer started");
    let stopped = until_stopped();
    let sync = tokio::spawn(async move { sync.run(stopped).await });
    let stopped = until_stopped();
    let writer = tokio::spawn(async move { writer.run(stopped).await });
    tracing::info!("campaign dialer started");
    let stopped = until_stopped();
    let dialer = tokio::spawn(async move { dialer.run(stopped).await });
    tracing::info!("access log sealer started");
    let sealer =
        voxanne_jobs::AccessLogSealer::new(db.clone(), voxanne_jobs::SealConfig::default());
    let stopped = until_stopped();
    let sealer = tokio::spawn(async move { sealer.run(stopped).await });
    tracing::info!("retention purge started");
    let stopped = until_stopped();
    let retention = tokio::spawn(async move { retention.run(stopped).await });
    tracing::info!("patient text encryption started");
    let stopped = until_stopped();
    let encryption = tokio::spawn(async move { encryption.run(stopped).await });
    Ok([
        recording, sms, sync, writer, dialer, sealer, retention, encryption,
    ])
}

/// `voxanne worker`: the background jobs alone, until SIGINT or SIGTERM (the batches in
/// flight are finished first).
async fn worker(config: &Config) -> anyhow::Result<()> {
    let database = database::open(config).await?;
    let keyring = database.keyring.clone();
    let result = async {
        let shutdown = shutdown_signal();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let workers = spawn_workers(
            &database.db,
            open_storage(config)?,
            keyring,
            Arc::new(config.calendar()?),
            config,
            config.worker_config()?,
            Arc::default(),
            &stopped,
        )?;
        shutdown.await;
        let _ = stop.send(true);
        stop_workers(workers, config.shutdown_grace).await;
        anyhow::Ok(())
    }
    .await;
    database.shutdown().await;
    result
}

/// Waits for the workers to finish their batches in flight, for at most `grace`; then stops
/// them where they are (their claimed jobs go back to the queue when the leases run out).
async fn stop_workers(workers: Workers, grace: std::time::Duration) {
    let aborts: Vec<_> = workers.iter().map(|w| w.abort_handle()).collect();
    let finished = tokio::time::timeout(grace, async {
        for worker in workers {
            let _ = worker.await;
        }
    })
    .await;
    if finished.is_err() {
        tracing::warn!("shutdown deadline reached: stopping the background jobs mid-batch");
        for abort in aborts {
            abort.abort();
        }
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled, so a signal that comes early is not lost.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGTERM"))
        .ok();
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGINT"))
        .ok();
    async move {
        let term = async {
            match terminate.as_mut() {
                Some(s) => drop(s.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        let int = async {
            match interrupt.as_mut() {
                Some(s) => drop(s.recv().await),
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = term => {}
            () = int => {}
        }
    }
}
