//! Running behind a connection pooler in transaction mode (pgbouncer `pool_mode =
//! transaction`, Supabase's pooler on port 6543): the pooler lends a server connection to one
//! client for one transaction, and the next transaction of that client may run on another
//! server connection, shared with other clients.
//!
//! What sqlx 0.8 does on the wire, and why each setting here is needed:
//!
//! - A query with bind parameters is sent as Parse and Describe, then a Sync; sqlx waits for
//!   the server to be ready; then Bind and Execute, then another Sync. Outside a transaction
//!   the pooler may hand the server connection to another client between the two Syncs, so
//!   the Bind would land where the statement was never parsed, or where another client's
//!   statement of the same name is. Behind such a pooler every statement of the application
//!   therefore runs inside a transaction, whose server connection stays the client's until
//!   COMMIT or ROLLBACK: tenant transactions always do, the cross-org operations of
//!   `system.rs` get one of their own, and readiness is one simple query (one message).
//! - sqlx names the statements it prepares (`sqlx_s_1`, `sqlx_s_2`, … counted per client
//!   connection) even when its statement cache is off (capacity 0: then it never closes them),
//!   and pgbouncer before 1.21 passes the names through: two clients that meet on one server
//!   connection collide ("prepared statement \"sqlx_s_1\" already exists"), and a cached
//!   statement would be bound on a server connection that does not have it. So behind a
//!   transaction-mode pooler every query is sent as the unnamed statement ([`TxConn`]), which
//!   each Parse replaces, and the statement cache is off, so that no Bind is ever sent
//!   without its own Parse in the same transaction. (sqlx's own catalog lookups for
//!   user-defined types would still be named; the schema has none that the application binds
//!   or reads, and the pooler tests check that no named statement is left on a server.)
//! - sqlx sends `extra_float_digits` as a startup parameter, which pgbouncer refuses unless it
//!   is listed in `ignore_startup_parameters`; it is left out (the server's default, 1 since
//!   PostgreSQL 12, prints floats exactly).
//!
//! The tenant context is transaction-local (`SET LOCAL`) either way, and nothing sets session
//! state, so the pooler can never carry one request's tenant into another's transaction.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgQueryResult, PgRow, PgStatement};
use sqlx::{Describe, Either, Execute, Executor, PgConnection, Postgres};

/// What stands between the application and PostgreSQL (`VOXANNE_DB_POOLER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pooler {
    /// A direct connection, or a pooler in session mode: each pooled connection is one server
    /// session, so statements are prepared once per connection and cached.
    #[default]
    None,
    /// A pooler in transaction mode: nothing the application sends may outlive its
    /// transaction (unnamed statements, no statement cache).
    Transaction,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown pooler mode `{0}`: expected `none` or `transaction`")]
pub struct UnknownPooler(String);

impl std::str::FromStr for Pooler {
    type Err = UnknownPooler;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Pooler::None),
            "transaction" => Ok(Pooler::Transaction),
            _ => Err(UnknownPooler(s.to_owned())),
        }
    }
}

impl std::fmt::Display for Pooler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pooler::None => "none",
            Pooler::Transaction => "transaction",
        })
    }
}

impl Pooler {
    /// The application's connection options for this mode.
    pub fn connect_options(self, options: PgConnectOptions) -> PgConnectOptions {
        match self {
            Pooler::None => options,
            Pooler::Transaction => options.statement_cache_capacity(0).extra_float_digits(None),
        }
    }

    /// Whether statements must be sent unnamed.
    pub(crate) fn unnamed_statements(self) -> bool {
        self == Pooler::Transaction
    }
}

/// The connection of an open transaction, as a sqlx executor: `query.fetch_all(tx.conn())`.
/// Behind a transaction-mode pooler it sends every query as the unnamed statement, and
/// refuses to prepare named ones.
#[derive(Debug)]
pub struct TxConn<'c> {
    conn: &'c mut PgConnection,
    unnamed: bool,
}

impl<'c> TxConn<'c> {
    pub(crate) fn new(conn: &'c mut PgConnection, pooler: Pooler) -> Self {
        Self {
            conn,
            unnamed: pooler.unnamed_statements(),
        }
    }
}

/// A query that asks to be sent as the unnamed statement: sqlx parses a non-persistent query
/// into the unnamed statement instead of a named one.
struct Unnamed<E>(E);

impl<'q, E: Execute<'q, Postgres>> Execute<'q, Postgres> for Unnamed<E> {
    fn sql(&self) -> &'q str {
        self.0.sql()
    }

    fn statement(&self) -> Option<&PgStatement<'q>> {
        self.0.statement()
    }

    fn take_arguments(&mut self) -> Result<Option<PgArguments>, sqlx::error::BoxDynError> {
        self.0.take_arguments()
    }

    fn persistent(&self) -> bool {
        false
    }
}

fn named_statements_refused<'e, T: Send + 'e>() -> BoxFuture<'e, Result<T, sqlx::Error>> {
    Box::pin(async {
        Err(sqlx::Error::Configuration(
            "named prepared statements do not survive a transaction-mode pooler".into(),
        ))
    })
}

impl<'c> Executor<'c> for TxConn<'c> {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.unnamed {
            self.conn.fetch_many(Unnamed(query))
        } else {
            self.conn.fetch_many(query)
        }
    }

    fn fetch_optional<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if self.unnamed {
            self.conn.fetch_optional(Unnamed(query))
        } else {
            self.conn.fetch_optional(query)
        }
    }

    fn prepare_with<'e, 'q: 'e>(
        self,
        sql: &'q str,
        parameters: &'e [sqlx::postgres::PgTypeInfo],
    ) -> BoxFuture<'e, Result<PgStatement<'q>, sqlx::Error>>
    where
        'c: 'e,
    {
        // sqlx prepares these as named statements.
        if self.unnamed {
            return named_statements_refused();
        }
        self.conn.prepare_with(sql, parameters)
    }

    fn describe<'e, 'q: 'e>(
        self,
        sql: &'q str,
    ) -> BoxFuture<'e, Result<Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        if self.unnamed {
            return named_statements_refused();
        }
        self.conn.describe(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::Pooler;

    #[test]
    fn the_pooler_mode_is_none_or_transaction() {
        assert_eq!(
            "transaction".parse::<Pooler>().ok(),
            Some(Pooler::Transaction)
        );
        assert_eq!(
            " Transaction ".parse::<Pooler>().ok(),
            Some(Pooler::Transaction)
        );
        assert_eq!("none".parse::<Pooler>().ok(), Some(Pooler::None));
        assert_eq!(Pooler::default(), Pooler::None);
        let error = "session"
            .parse::<Pooler>()
            .expect_err("refused")
            .to_string();
        assert!(error.contains("`session`"), "{error}");
    }
}
