//! The tenant boundary. Application code reaches tenant data only through a [`TenantTx`]: a
//! transaction opened with the tenant context set transaction-locally (`SET LOCAL`, or
//! `set_config(…, true)` in `app.enter_tenant`: either way a pooled connection never carries
//! it into the next transaction), whose org membership was verified in the database before
//! the handle was handed out.
//!
//! Cost: BEGIN, the context and the membership check travel as one statement batch, so a
//! request pays the round trips of a plain `BEGIN; …; COMMIT` and no more; for a user's
//! request the batch is two statements, `BEGIN` and `app.enter_tenant` (migrations/0024).

use crate::access::{self, Action, ActorKind, Notes, Origin};
use crate::access_writer::AccessWriter;
use crate::{Db, DbError, Pooler, TxConn};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, Row};
use std::net::IpAddr;
use uuid::Uuid;
use voxanne_domain::{OrgId, Role, UserId};

/// A verified answer to "who is acting, for which org, with which role".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub org: OrgId,
    pub user: UserId,
    pub role: Role,
}

/// Why a tenant transaction was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// No membership (the org may also not exist: callers cannot tell the two apart).
    #[error("not a member of this organization")]
    NotMember,
    #[error("this organization is suspended")]
    Suspended,
    /// The org already holds its share of the pool; try again shortly.
    #[error("this organization has too many requests in progress")]
    Busy,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for TenantError {
    fn from(e: sqlx::Error) -> Self {
        TenantError::Db(DbError::from(e))
    }
}

/// Where the tenant context is written (with [`begin_as_member_sql`]): `BEGIN` and `SET
/// LOCAL` of the org and the user. The ids are uuids, whose text is hex digits and dashes
/// only, so formatting them into SQL is safe. An absent part is empty, and an empty org
/// matches no row.
///
/// On a distributed database (Citus) the transaction also asks Citus to send these `SET
/// LOCAL`s on to every worker the transaction reaches (`citus.propagate_set_commands`), so
/// the row level security of the shards reads the same context as the coordinator's.
fn begin_with_context_sql(org: Option<OrgId>, user: Option<UserId>, distributed: bool) -> String {
    let org = org.map(|o| o.to_string()).unwrap_or_default();
    let user = user.map(|u| u.to_string()).unwrap_or_default();
    let propagate = if distributed {
        " SET LOCAL citus.propagate_set_commands = 'local';"
    } else {
        ""
    };
    format!("BEGIN;{propagate} SET LOCAL app.org_id = '{org}'; SET LOCAL app.user_id = '{user}'")
}

/// A user's membership check on a distributed database, once the context is set: Citus does
/// not pass `set_config` on to the workers (so no `app.enter_tenant`), and refuses a query on
/// distributed tables in the same multi-statement batch as the `SET LOCAL`s. The org is
/// named (a uuid's text, safe to format) so that Citus sends the check to the one shard of
/// the org: a query that reached every shard would also bar the transaction from writing a
/// reference table later (Citus' rule for tables joined by foreign keys). No row when the
/// user is not a member of the org; the shard's row level security still applies.
fn membership_sql(org: OrgId, user: UserId) -> String {
    format!(
        "SELECT m.role, o.status FROM organization_members m \
           JOIN organizations o ON o.id = m.org_id \
          WHERE m.org_id = '{org}' AND o.id = '{org}' AND m.user_id = '{user}'"
    )
}

/// A job's check of its org on a distributed database (see [`membership_sql`]).
fn org_status_sql(org: OrgId) -> String {
    format!("SELECT status FROM organizations WHERE id = '{org}'")
}

/// A user's request: `BEGIN`, then `app.enter_tenant` (migrations/0024) writes the same two
/// settings transaction-locally and checks the membership under the RLS of that context: one
/// row, NULLs when the user is not a member of the org; then whether the transaction is fresh.
fn begin_as_member_sql(org: OrgId, user: UserId) -> String {
    format!(
        "BEGIN; SELECT role, status, now() = statement_timestamp() AS fresh \
         FROM app.enter_tenant('{org}', '{user}')"
    )
}

/// The org's status, under the RLS of the context just set (NULL when the org is gone); then
/// whether the transaction is fresh.
const ORG_STATUS_SQL: &str = "SELECT o.status, now() = statement_timestamp() AS fresh \
     FROM (SELECT) AS one LEFT JOIN organizations o ON o.id = app.current_org_id()";

/// Whether the transaction is fresh, for batches that check nothing else.
const FRESH_SQL: &str = "SELECT now() = statement_timestamp() AS fresh";

/// The actor named by a background job's tenant transaction: the nil uuid, which no identity
/// provider issues as a `sub`, so it is never a member of anything.
pub const SYSTEM_ACTOR: UserId = UserId::from_uuid(uuid::Uuid::nil());

/// A transaction on a pooled connection, opened with a tenant context. It ends in exactly one
/// of: COMMIT; ROLLBACK (dropped without commit: a spawned task rolls back before the
/// connection goes back to the pool); or the connection is closed, never reused (any error
/// on the way, or no runtime to roll back on).
///
/// The guard holds the connection from before the first statement is sent, so a caller
/// cancelled at any await (a client that disconnects mid-request) still rolls back: the
/// connection never goes back to the pool inside an open transaction with a stale context.
pub(crate) struct ScopedTx {
    conn: Option<PoolConnection<Postgres>>,
    pooler: Pooler,
    distributed: bool,
}

impl ScopedTx {
    /// Begins, sets the context, and runs `then` in the same batch; returns the rows that
    /// `then` produced. `then`'s rows must end with the boolean column `fresh`
    /// (`now() = statement_timestamp()`): true only in a transaction that this batch began.
    /// A connection found inside an older transaction (which the guard makes impossible, so
    /// this is the second line of defence) is closed, never used, and another one is taken.
    pub(crate) async fn begin(
        db: &Db,
        org: Option<OrgId>,
        user: Option<UserId>,
        then: Option<&str>,
    ) -> Result<(Self, Vec<PgRow>), sqlx::Error> {
        let context = begin_with_context_sql(org, user, db.distributed());
        if !db.distributed() {
            let sql = format!("{context}; {}", then.unwrap_or(FRESH_SQL));
            return Self::open(db, &sql).await;
        }
        // Distributed: the context and the freshness check (no table in it) first, then
        // `then` as a statement of its own (two round trips).
        let (mut tx, rows) = Self::open(db, &format!("{context}; {FRESH_SQL}")).await?;
        match then {
            None => Ok((tx, rows)),
            Some(then) => {
                let rows = batch(tx.raw_conn(), then).await?;
                Ok((tx, rows))
            }
        }
    }

    /// Runs `sql`, a batch that begins the transaction, writes the context and ends with
    /// the rows to check ([`ScopedTx::begin`]).
    async fn open(db: &Db, sql: &str) -> Result<(Self, Vec<PgRow>), sqlx::Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let conn = db.pool().acquire().await;
            if let Err(e) = &conn {
                db.note_reachable(Err(e));
            }
            let mut tx = Self {
                conn: Some(conn?),
                pooler: db.pooler(),
                distributed: db.distributed(),
            };
            let rows = match batch(tx.raw_conn(), sql).await {
                // Reachable: a round trip was answered (a connection handed out is not proof:
                // it is not pinged).
                Ok(rows) => {
                    db.note_reachable(Ok(()));
                    rows
                }
                // The pool does not ping a connection before handing it out (a round trip
                // saved on every request): one that died while idle (a database restart, a
                // pooler that closed it) fails its first batch, before anything ran. Once,
                // another connection is taken.
                Err(e) if attempts == 1 && crate::is_connection_lost(&e) => {
                    tx.discard();
                    tracing::info!(error = %e, "a pooled connection was dead; another is taken");
                    continue;
                }
                Err(e) => {
                    db.note_reachable(Err(&e));
                    tx.discard();
                    return Err(e);
                }
            };
            let fresh = rows
                .first()
                .and_then(|row| row.try_get::<bool, _>("fresh").ok())
                .unwrap_or(false);
            if fresh {
                return Ok((tx, rows));
            }
            tx.discard();
            tracing::error!("a pooled connection was inside an open transaction; it is closed");
            if attempts == 2 {
                return Err(sqlx::Error::Protocol(
                    "pooled connections are inside open transactions".into(),
                ));
            }
        }
    }

    /// The connection as an executor for the statements of the transaction.
    pub(crate) fn conn(&mut self) -> TxConn<'_> {
        let pooler = self.pooler;
        TxConn::new(self.raw_conn(), pooler)
    }

    fn raw_conn(&mut self) -> &mut PgConnection {
        // Present until commit, discard or drop, all of which consume or end `self`.
        self.conn
            .as_deref_mut()
            .expect("ScopedTx used after it ended")
    }

    /// Closes the connection instead of returning it to the pool.
    fn discard(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.close_on_drop();
        }
    }

    /// Takes the connection out of the guard first: a caller cancelled during COMMIT leaves
    /// a statement that ends the transaction either way (sqlx finishes it before reuse).
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.commit_after(None).await
    }

    /// [`ScopedTx::commit`], after `before` (statements that end with the transaction's own
    /// writes): in the COMMIT's batch on one server; on Citus as a batch of its own first (a
    /// statement on distributed tables travels alone there, as in [`ScopedTx::begin`]).
    pub(crate) async fn commit_after(mut self, before: Option<&str>) -> Result<(), sqlx::Error> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let sql = match before {
            None => "COMMIT".to_owned(),
            Some(before) if !self.distributed => format!("{before}; COMMIT"),
            Some(before) => {
                if let Err(e) = batch(&mut conn, before).await {
                    conn.close_on_drop();
                    return Err(e);
                }
                "COMMIT".to_owned()
            }
        };
        let result = batch(&mut conn, &sql).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result.map(drop)
    }
}

impl Drop for ScopedTx {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                // ROLLBACK waits for any statement still in flight (the caller was cancelled
                // mid-await), then ends the transaction; any failure closes the connection.
                runtime.spawn(async move {
                    if batch(&mut conn, "ROLLBACK").await.is_err() {
                        conn.close_on_drop();
                    }
                });
            }
            Err(_) => conn.close_on_drop(),
        }
    }
}

/// Sends `sql` (one or more statements, simple query protocol) and collects the rows. Boxed
/// with an explicit `Send` bound: sqlx's executor futures otherwise trip the compiler's
/// higher-ranked lifetime inference in `spawn` and in axum handlers.
type BatchFuture<'c> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Vec<PgRow>, sqlx::Error>> + Send + 'c>,
>;

fn batch<'c>(conn: &'c mut PgConnection, sql: &'c str) -> BatchFuture<'c> {
    // No bind arguments: sqlx sends it with the simple query protocol, all statements at once.
    Box::pin(sqlx::Executor::fetch_all(conn, sql))
}

/// The only handle to tenant data.
pub struct TenantTx {
    tx: ScopedTx,
    membership: Membership,
    /// Who acts and how, for the access log.
    origin: Origin,
    /// The accesses to patient data so far, written at COMMIT.
    notes: Notes,
    /// Where the records of a transaction that only read go.
    writer: AccessWriter,
    /// Seals and opens the org's patient text (encrypted.rs).
    keyring: Option<std::sync::Arc<crate::crypto::Keyring>>,
    /// A user's transaction holds one of its org's slots on the pool until it ends.
    _slot: Option<crate::slots::OrgSlot>,
}

impl TenantTx {
    /// Opens `org`'s tenant transaction for `user`, after checking in the database, on every
    /// call, that the user is a member and the org is active. One round trip.
    pub(crate) async fn begin(db: &Db, org: OrgId, user: UserId) -> Result<Self, TenantError> {
        let slot = db.slots().acquire(org).await.ok_or(TenantError::Busy)?;
        let (tx, rows) = if db.distributed() {
            ScopedTx::begin(db, Some(org), Some(user), Some(&membership_sql(org, user))).await?
        } else {
            ScopedTx::open(db, &begin_as_member_sql(org, user)).await?
        };
        let row = rows.first().ok_or(TenantError::NotMember)?;
        let (role, status): (Option<String>, Option<String>) = (row.try_get(0)?, row.try_get(1)?);
        let (Some(role), Some(status)) = (role, status) else {
            return Err(TenantError::NotMember);
        };
        if status != "active" {
            return Err(TenantError::Suspended);
        }
        let role = role
            .parse::<Role>()
            .map_err(|e| DbError::Corrupt(e.to_string()))?;
        Ok(Self {
            tx,
            membership: Membership { org, user, role },
            origin: Origin::new(ActorKind::User, Some(user.as_uuid()), "direct"),
            notes: Notes::default(),
            writer: db.access_writer().clone(),
            keyring: db.keyring().cloned(),
            _slot: Some(slot),
        })
    }

    /// The jobs' entry point: `org`'s tenant transaction for background work that no user
    /// started (the recording pipeline). No user is set in the context; the handle's
    /// membership names [`SYSTEM_ACTOR`] with the lowest role. Checked in the database, in
    /// the same round trip, that the org exists and is active.
    pub(crate) async fn begin_job(db: &Db, org: OrgId) -> Result<Self, TenantError> {
        let check = if db.distributed() {
            org_status_sql(org)
        } else {
            ORG_STATUS_SQL.to_owned()
        };
        let (tx, rows) = ScopedTx::begin(db, Some(org), None, Some(&check)).await?;
        let row = rows.first().ok_or(TenantError::NotMember)?;
        let status: Option<String> = row.try_get(0)?;
        let status = status.ok_or(TenantError::NotMember)?;
        if status != "active" {
            return Err(TenantError::Suspended);
        }
        Ok(Self {
            tx,
            membership: Membership {
                org,
                user: SYSTEM_ACTOR,
                role: Role::Staff,
            },
            origin: Origin::new(ActorKind::System, None, "job"),
            notes: Notes::default(),
            writer: db.access_writer().clone(),
            keyring: db.keyring().cloned(),
            _slot: None,
        })
    }

    /// Wraps a transaction opened by a named operation of this crate (provisioning), whose
    /// membership is established by the operation itself.
    pub(crate) fn from_parts(db: &Db, tx: ScopedTx, membership: Membership) -> Self {
        Self {
            tx,
            origin: Origin::new(ActorKind::User, Some(membership.user.as_uuid()), "direct"),
            notes: Notes::default(),
            writer: db.access_writer().clone(),
            keyring: db.keyring().cloned(),
            membership,
            _slot: None,
        }
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn org(&self) -> OrgId {
        self.membership.org
    }

    pub(crate) fn keyring(&self) -> Option<&crate::crypto::Keyring> {
        self.keyring.as_deref()
    }

    /// The keyring of the transaction's pool, for opening the clinic's recordings after it
    /// commits.
    pub fn shared_keyring(&self) -> Option<std::sync::Arc<crate::crypto::Keyring>> {
        self.keyring.clone()
    }

    /// The connection, inside the tenant transaction: every statement run on it is bound by
    /// the org's row level security.
    pub fn conn(&mut self) -> TxConn<'_> {
        self.tx.conn()
    }

    /// How and from where this transaction's accesses come: the route or the tool (`via`),
    /// the client's address and the request id. Text outside the log's alphabets is replaced
    /// (`via`) or not kept (a request id).
    pub fn set_origin(&mut self, via: &str, client_addr: Option<IpAddr>, request_id: Option<&str>) {
        self.origin.via = access::clean_via(via);
        self.origin.client_addr = client_addr;
        self.origin.request_id = request_id.and_then(access::clean_request_id);
    }

    /// How and from where this transaction's accesses come, to carry on to a later
    /// transaction of the same request ([`TenantTx::adopt_origin`]).
    pub fn origin(&self) -> Origin {
        self.origin.clone()
    }

    /// The how and from where of `origin` (not its actor: that is this transaction's own).
    pub fn adopt_origin(&mut self, origin: &Origin) {
        self.origin.via.clone_from(&origin.via);
        self.origin.client_addr = origin.client_addr;
        self.origin.request_id.clone_from(&origin.request_id);
    }

    /// Who acts, when it is not the transaction's user: the voice agent, an operator's command.
    /// A user's id stays on the record (a command run for a member names them).
    pub fn set_actor(&mut self, actor: ActorKind) {
        self.origin.actor = actor;
        if self.membership.user == SYSTEM_ACTOR {
            self.origin.actor_id = None;
        }
    }

    /// Notes an access to patient data (`kind`, one of [`crate::access::subject`]; `id`, the
    /// object, none for a list; `patients`, the contacts whose data it is), written to the
    /// access log when the transaction commits.
    pub fn note_access(
        &mut self,
        kind: &'static str,
        id: Option<Uuid>,
        action: Action,
        patients: impl IntoIterator<Item = Uuid>,
    ) {
        self.notes.add(kind, id, action, patients);
    }

    /// Commits, with the access records of the transaction.
    ///
    /// A transaction that changed patient data writes its records itself, so that the change
    /// and its records commit together: on one server in the COMMIT's own round trip
    /// (`INSERT …; COMMIT`, one batch; a failed INSERT skips the COMMIT and the transaction
    /// rolls back); on Citus the INSERT first, then the COMMIT.
    ///
    /// A transaction that only read commits as it is (a read-only transaction costs no WAL
    /// flush), gives its connection back, and then waits for the access writer to write its
    /// records among those of other requests (access_writer.rs). Its caller answers only
    /// after that: an error here ([`DbError::AccessLog`]) means the read must not be shown.
    pub async fn commit(self) -> Result<(), DbError> {
        let Self {
            tx,
            membership,
            origin,
            notes,
            writer,
            keyring: _,
            _slot,
        } = self;
        if notes.only_reads() {
            tx.commit().await.map_err(DbError::from)?;
            drop(_slot);
            return writer.write(membership.org, origin, notes.into_vec()).await;
        }
        let records = notes.insert_sql(membership.org, &origin);
        tx.commit_after(records.as_deref())
            .await
            .map_err(DbError::from)
    }
}
