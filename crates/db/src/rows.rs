//! The query shapes that many tenant tables share, written once: a page of the active
//! org's rows newest first, one of its rows by id, and deleting one by id. Table and column lists are
//! `&'static str` from this crate, never request data.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::FromRow;
use uuid::Uuid;

impl TenantTx {
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
