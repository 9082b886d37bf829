//! Voxanne's database layer: the application pool, tenant transactions (the tenant boundary,
//! in `tenant.rs`), the named cross-org operations (`system.rs`), queries, migrations and the
//! embedded PostgreSQL cluster.

pub mod access;
mod access_writer;
pub mod agent_configuration;
pub mod appointments;
pub mod calendar_connections;
pub mod calendar_oauth;
pub mod calendar_sync;
pub mod call_events;
pub mod calls;
pub mod campaigns;
pub mod contacts;
pub mod crypto;
pub mod demo;
pub mod dnc;
pub mod encrypted;
pub mod envelope;
pub mod erase;
pub mod idempotency;
pub mod integrations;
pub mod invitations;
pub mod knowledge_base;
pub mod live;
pub mod members;
pub mod messages;
pub mod organizations;
pub mod outreach;
pub mod phone_numbers;
mod pooler;
pub mod practitioners;
pub mod recordings;
pub mod retention;
mod rows;
pub mod scheduling;

pub mod security_events;
mod slots;
pub mod sms_confirmations;
pub mod system;
mod tenant;

pub use voxanne_schema::{distribute, embedded, migrate};

pub use access::{Action, ActorKind};
pub use pooler::{Pooler, TxConn, UnknownPooler};
pub use rows::TenantRow;
pub use tenant::{Membership, TenantError, TenantTx, SYSTEM_ACTOR};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::time::Duration;
use voxanne_domain::{OrgId, UserId};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A row that violates a constraint: the caller asked for something impossible.
    #[error("constraint `{constraint}` rejected the change")]
    Constraint { constraint: String },
    #[error("not found")]
    NotFound,
    #[error("the database holds a value this version does not understand: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Crypto(#[from] crypto::CryptoError),
    /// A value the database cannot store (SQLSTATE class 22, data exception, or 54000,
    /// e.g. a NUL in text, an instant out of range, a value too long for an index). The
    /// edge refuses these first, naming the field; this is the net under it.
    #[error("a value cannot be stored: {0}")]
    InvalidValue(String),
    /// The database cannot be reached, or no connection could be had in time (the pool is
    /// exhausted, the server is restarting): try again shortly.
    #[error("the database is unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// The access records of a read could not be written, so the read is not answered
    /// (access_writer.rs): try again shortly.
    #[error("the access log cannot be written: {0}")]
    AccessLog(String),
    #[error(transparent)]
    Sqlx(sqlx::Error),
}

/// Whether `e` says the database is out of reach rather than that the statement was wrong:
/// no connection in time, a broken or refused connection, a server shutting down or starting.
fn is_unavailable(e: &sqlx::Error) -> bool {
    is_connection_lost(e)
        || match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            // 53300: too many connections.
            sqlx::Error::Database(db) => db.code().is_some_and(|code| &*code == "53300"),
            _ => false,
        }
}

/// A connection that is gone: the socket failed, or the server ended the session (SQLSTATE
/// class 08, connection exception; 57P01-57P03: shut down, crashed, cannot connect now).
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        if is_unavailable(&e) {
            return DbError::Unavailable(e);
        }
        match &e {
            sqlx::Error::RowNotFound => DbError::NotFound,
            sqlx::Error::Database(db)
                if db
                    .code()
                    .is_some_and(|code| code.starts_with("22") || code == "54000") =>
            {
                DbError::InvalidValue(db.message().to_owned())
            }
            sqlx::Error::Database(db) if db.constraint().is_some() => DbError::Constraint {
                constraint: db.constraint().unwrap_or_default().to_owned(),
            },
            sqlx::Error::Database(db) => match relayed_constraint(db.as_ref()) {
                Some(constraint) => DbError::Constraint { constraint },
                None => DbError::Sqlx(e),
            },
            _ => DbError::Sqlx(e),
        }
    }
}

/// The constraint of an integrity error that Citus relayed from a worker: the error comes
/// without its constraint field, and names the constraint in its message, with the id of the
/// shard appended to PostgreSQL's own (`… violates unique constraint
/// "phone_numbers_number_key_102009"`), as it is in the booking guards' (`the slot is booked
/// (constraint "appointment_holds_booked_slot")`, migrations/0025).
fn relayed_constraint(db: &dyn sqlx::error::DatabaseError) -> Option<String> {
    let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
    let integrity = pg.code().starts_with("23");
    let relayed = pg
        .r#where()
        .is_some_and(|w| w.contains("while executing command on"));
    if !(integrity && relayed) {
        return None;
    }
    let (_, rest) = pg.message().split_once("constraint \"")?;
    let (name, _) = rest.split_once('"')?;
    let name = match name.rsplit_once('_') {
        Some((base, shard))
            if !base.is_empty()
                && !shard.is_empty()
                && shard.bytes().all(|b| b.is_ascii_digit()) =>
        {
            base
        }
        _ => name,
    };
    (!name.is_empty()).then(|| name.to_owned())
}

/// The application's handle to the database. It connects as `voxanne_app`, and its pool is
/// private: tenant data is reached through [`Db::tenant`] only.
/// How the application's pool is shared out.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before it is answered "unavailable".
    pub acquire_timeout: Duration,
    /// Tenant transactions one org may hold at once (the rest of the pool stays for the
    /// others); `None`: half the pool.
    pub org_max_in_flight: Option<usize>,
    /// How long a request waits for one of its org's slots before it is refused.
    pub org_wait: Duration,
    /// What the pool connects through: directly, or a pooler in transaction mode.
    pub pooler: Pooler,
}

impl PoolSettings {
    pub fn new(max_connections: u32) -> Self {
        Self {
            max_connections,
            acquire_timeout: Duration::from_secs(10),
            org_max_in_flight: None,
            org_wait: Duration::from_secs(2),
            pooler: Pooler::None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Db {
    pool: PgPool,
    slots: std::sync::Arc<slots::OrgSlots>,
    pooler: Pooler,
    /// Whether the database is distributed with Citus: the tenant context is then written
    /// in the form Citus passes on to its workers (tenant.rs).
    distributed: bool,
    /// Writes the access records of reads, in batches.
    access: access_writer::AccessWriter,
    /// Whether the database is in an episode of unavailability: logged once when it starts
    /// and once when it ends, not once per request.
    unavailable: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Seals and opens patient text (encrypted.rs); without one, patient text can be neither
    /// written nor read.
    keyring: Option<std::sync::Arc<crypto::Keyring>>,
}

impl Db {
    /// Connects as the application role, directly.
    pub async fn connect(app: PgConnectOptions, max_connections: u32) -> Result<Self, DbError> {
        Self::connect_with(app, PoolSettings::new(max_connections)).await
    }

    /// Connects as the application role through `pooler` (see `pooler.rs`).
    pub async fn connect_via(
        app: PgConnectOptions,
        max_connections: u32,
        pooler: Pooler,
    ) -> Result<Self, DbError> {
        let settings = PoolSettings {
            pooler,
            ..PoolSettings::new(max_connections)
        };
        Self::connect_with(app, settings).await
    }

    /// Connects as the application role, with the pool shared out as `settings` say.
    pub async fn connect_with(
        app: PgConnectOptions,
        settings: PoolSettings,
    ) -> Result<Self, DbError> {
        // The access writer's own connection, so that it never queues behind the requests
        // that wait for it.
        let writer_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(settings.pooler.connect_options(app.clone()));
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            // No ping before each acquire: a round trip per request. A connection that died
            // idle fails the tenant transaction's first batch, and another is taken then
            // (tenant.rs).
            .test_before_acquire(false)
            .connect_with(settings.pooler.connect_options(app))
            .await?;
        // The migrator's probe (unprepared). The connection is closed afterwards rather than
        // returned: sqlx pings a returned connection from a task of its own, a round trip
        // that would reach a transaction-mode pooler at a moment no caller chose.
        let mut probe = pool.acquire().await?.detach();
        let distributed = voxanne_schema::distribute::is_distributed(&mut probe).await?;
        sqlx::Connection::close(probe).await?;
        let half = usize::try_from(settings.max_connections / 2).unwrap_or(1);
        Ok(Self {
            pool,
            slots: slots::OrgSlots::new(
                settings.org_max_in_flight.unwrap_or(half),
                settings.org_wait,
            ),
            pooler: settings.pooler,
            distributed,
            access: access_writer::AccessWriter::start(writer_pool),
            unavailable: Default::default(),
            keyring: None,
        })
    }

    /// The handle, sealing and opening patient text with `keyring`.
    pub fn with_keyring(mut self, keyring: std::sync::Arc<crypto::Keyring>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The keyring that encrypts and opens patient data, if one is attached.
    pub fn keyring(&self) -> Option<&std::sync::Arc<crypto::Keyring>> {
        self.keyring.as_ref()
    }

    pub(crate) fn slots(&self) -> &std::sync::Arc<slots::OrgSlots> {
        &self.slots
    }

    /// Whether the database is distributed with Citus (the extension is installed in it).
    pub fn distributed(&self) -> bool {
        self.distributed
    }

    /// What the pool connects through.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// Notes the outcome of reaching the database, logging the start and the end of an
    /// episode of unavailability.
    pub(crate) fn note_reachable(&self, result: Result<(), &sqlx::Error>) {
        use std::sync::atomic::Ordering;
        match result {
            Ok(()) => {
                if self.unavailable.load(Ordering::Relaxed)
                    && self.unavailable.swap(false, Ordering::Relaxed)
                {
                    tracing::info!("the database is reachable again");
                }
            }
            Err(e) if is_unavailable(e) => {
                if !self.unavailable.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %e, "the database is unavailable; requests are answered 503 until it is back");
                }
            }
            Err(_) => {}
        }
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The tenant transaction of `org` for `user`, if the user is a live member of an
    /// active org.
    pub async fn tenant(&self, org: OrgId, user: UserId) -> Result<TenantTx, TenantError> {
        TenantTx::begin(self, org, user).await
    }

    /// `org`'s tenant transaction for a background job (no user): the only way jobs reach
    /// tenant data. Refused when the org is gone or suspended.
    pub async fn job_tenant(&self, org: OrgId) -> Result<TenantTx, TenantError> {
        TenantTx::begin_job(self, org).await
    }

    /// Readiness: can we run a statement? Touches no tenant data. Sent as one simple query
    /// (no bind parameters, so no Parse and Bind split across Syncs), which a
    /// transaction-mode pooler runs on one server connection.
    pub async fn ping(&self) -> Result<(), DbError> {
        sqlx::Executor::execute(&self.pool, "SELECT 1").await?;
        Ok(())
    }

    pub(crate) fn access_writer(&self) -> &access_writer::AccessWriter {
        &self.access
    }

    /// Transactions waiting for the access writer to write their records (for tests and
    /// the benchmark).
    pub fn access_writer_waiting(&self) -> usize {
        self.access.waiting()
    }

    /// The batches the access writer has written so far, and the records in them.
    pub fn access_writer_written(&self) -> (u64, u64) {
        self.access.written()
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.access.close().await;
    }
}
