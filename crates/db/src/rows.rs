//! The query shapes that many tenant tables share, written once: a page of the active
//! org's rows newest first, one of its rows by id, and deleting one by id. A row type says
//! which table it is and how it is keyed ([`TenantRow`]); table and column lists are
//! `&'static str` from this crate, never request data.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::FromRow;
use uuid::Uuid;

/// A tenant table's row as this crate reads it: the table, the columns selected, and the
/// typed key. `tx.find::<Contact>(id)`, `tx.page::<Contact>(after, limit)` and
/// `tx.delete::<Contact>(id)` are then written once for every such table.
pub trait TenantRow: for<'r> FromRow<'r, PgRow> + Send + Unpin {
    const TABLE: &'static str;
    const COLUMNS: &'static str;
    /// The row's id type (`ContactId`, …).
    type Id: Copy + Into<Uuid> + Send;
}

impl TenantTx {
    /// The active org's row `id`, if it has one (another org's row is as absent as none).
    pub async fn find<T: TenantRow>(&mut self, id: T::Id) -> Result<Option<T>, DbError> {
        self.find_by_id(T::TABLE, T::COLUMNS, id.into()).await
    }

    /// A page of the active org's rows, newest first, after the keyset position `after`.
    pub async fn page<T: TenantRow>(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<T>, DbError> {
        self.list_recent(T::TABLE, T::COLUMNS, after, limit).await
    }

    /// Deletes the active org's row `id`; whether there was one.
    pub async fn delete<T: TenantRow>(&mut self, id: T::Id) -> Result<bool, DbError> {
        self.delete_by_id(T::TABLE, id.into()).await
    }

    /// `columns` of the active org's rows of `table`, ordered by `(created_at, id)` newest
    /// first, after the keyset position `after`.
    pub(crate) async fn list_recent<T>(
        &mut self,
        table: &'static str,
        columns: &'static str,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<T>, DbError>
    where
        T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as::<_, T>(&format!(
            "SELECT {columns} FROM {table}
              WHERE org_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              ORDER BY created_at DESC, id DESC
              LIMIT $4"
        ))
        .bind(org)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?)
    }

    /// `columns` of the active org's row `id` of `table`, if there is one.
    pub(crate) async fn find_by_id<T>(
        &mut self,
        table: &'static str,
        columns: &'static str,
        id: Uuid,
    ) -> Result<Option<T>, DbError>
    where
        T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as::<_, T>(&format!(
            "SELECT {columns} FROM {table} WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(self.conn())
        .await?)
    }

    /// Deletes the active org's row `id` of `table`; whether there was one.
    pub(crate) async fn delete_by_id(
        &mut self,
        table: &'static str,
        id: Uuid,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let done = sqlx::query(&format!(
            "DELETE FROM {table} WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
