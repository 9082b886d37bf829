//! The tenant boundary. Application code reaches tenant data only through a [`TenantTx`]: a
//! transaction that was opened with the tenant context set (transaction-local, in the same
//! round trip as BEGIN) and whose org membership was verified in the database before the
//! handle was handed out. When the handle is dropped without `commit`, sqlx rolls back.

use crate::{Db, DbError};
use sqlx::{PgConnection, Postgres, Transaction};
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
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for TenantError {
    fn from(e: sqlx::Error) -> Self {
        TenantError::Db(DbError::from(e))
    }
}

/// The only handle to tenant data.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    membership: Membership,
}

/// `BEGIN` and the tenant context in one statement batch, one round trip. The ids are uuids,
/// whose text form is hex and dashes only, so formatting them into SQL is safe.
fn begin_statement(org: Option<OrgId>, user: Option<UserId>) -> String {
    let org = org.map(|o| o.to_string()).unwrap_or_default();
    let user = user.map(|u| u.to_string()).unwrap_or_default();
    format!(
        "BEGIN; SELECT set_config('app.org_id', '{org}', true), set_config('app.user_id', '{user}', true)"
    )
}

/// Opens a transaction with the given tenant context. The one place the context is set;
/// `None` leaves that part empty (and an empty org matches no row).
pub(crate) async fn begin_with_context(
    db: &Db,
    org: Option<OrgId>,
    user: Option<UserId>,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    db.pool().begin_with(begin_statement(org, user)).await
}

impl TenantTx {
    /// Opens `org`'s tenant transaction for `user`, after checking in the database, on every
    /// call, that the user is a member and the org is active.
    pub(crate) async fn begin(db: &Db, org: OrgId, user: UserId) -> Result<Self, TenantError> {
        let mut tx = begin_with_context(db, Some(org), Some(user)).await?;
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT m.role, o.status
               FROM organization_members m
               JOIN organizations o ON o.id = m.org_id
              WHERE m.org_id = $1 AND m.user_id = $2",
        )
        .bind(org.as_uuid())
        .bind(user.as_uuid())
        .fetch_optional(&mut *tx)
        .await?;
        let (role, status) = row.ok_or(TenantError::NotMember)?;
        if status != "active" {
            return Err(TenantError::Suspended);
        }
        let role = role
            .parse::<Role>()
            .map_err(|e| DbError::Corrupt(e.to_string()))?;
        Ok(Self {
            tx,
            membership: Membership { org, user, role },
        })
    }

    /// Wraps a transaction opened by a named operation of this crate (provisioning), whose
    /// membership is established by the operation itself.
    pub(crate) fn from_parts(tx: Transaction<'static, Postgres>, membership: Membership) -> Self {
        Self { tx, membership }
    }

    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    pub fn org(&self) -> OrgId {
        self.membership.org
    }

    /// The connection, inside the tenant transaction: every statement run on it is bound by
    /// the org's row level security.
    pub fn conn(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    pub async fn commit(self) -> Result<(), DbError> {
        self.tx.commit().await.map_err(DbError::from)
    }
}
