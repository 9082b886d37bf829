//! The query shapes that many tenant tables share, written once: a page of the active
//! org's rows newest first, one of its rows by id, and deleting one by id. A row type says
//! which table it is and how it is keyed ([`TenantRow`], implemented by [`tenant_row!`]).
//!
//! Every query here is compile-checked: the macros paste the table and the row's column
//! list (string literals) into sqlx's `query_as!`, so a misspelt or dropped column fails the
//! build, not a request.

use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use std::future::Future;
use uuid::Uuid;

/// A keyset position in a newest-first list: the `(created_at, id)` of the last row of the
/// previous page.
pub type After = Option<(DateTime<Utc>, Uuid)>;

/// A tenant table's row as this crate reads it, with its typed key. `tx.find::<Contact>(id)`,
/// `tx.page::<Contact>(after, limit)` and `tx.delete::<Contact>(id)` then work for every such
/// table. Implement it with [`tenant_row!`].
pub trait TenantRow: Sized + Send + Unpin {
    /// The table, as errors and the security log name it.
    const TABLE: &'static str;
    /// The row's id type (`ContactId`, …).
    type Id: Copy + Into<Uuid> + Send;
    /// The kind of patient data the row is, as the access log names it (`None`: not patient
    /// data). Reading, listing and deleting such rows is noted on the transaction.
    const SUBJECT: Option<&'static str> = None;

    /// The contact whose data the row is.
    fn patient(&self) -> Option<Uuid> {
        None
    }

    fn id_of(&self) -> Uuid;

    fn find_in(
        tx: &mut TenantTx,
        id: Self::Id,
    ) -> impl Future<Output = Result<Option<Self>, DbError>> + Send;

    fn page_in(
        tx: &mut TenantTx,
        after: After,
        limit: u32,
    ) -> impl Future<Output = Result<Vec<Self>, DbError>> + Send;

    fn delete_in(
        tx: &mut TenantTx,
        id: Self::Id,
    ) -> impl Future<Output = Result<bool, DbError>> + Send;
}

/// How a row read from its table becomes the row type: as it is, or with its sealed patient
/// text opened in the transaction (encrypted.rs: `Call` from `Call<Vec<u8>>`).
pub trait FromStored<S>: Sized {
    fn from_stored(tx: &TenantTx, stored: S) -> Result<Self, DbError>;
}

impl<T> FromStored<T> for T {
    fn from_stored(_: &TenantTx, stored: T) -> Result<T, DbError> {
        Ok(stored)
    }
}

impl TenantTx {
    /// Rows as read from their table, made the row type ([`FromStored`]).
    pub(crate) fn opened<S, T: FromStored<S>>(&self, rows: Vec<S>) -> Result<Vec<T>, DbError> {
        rows.into_iter().map(|s| T::from_stored(self, s)).collect()
    }

    /// A row as read from its table, if any, made the row type ([`FromStored`]).
    pub(crate) fn opened_opt<S, T: FromStored<S>>(
        &self,
        row: Option<S>,
    ) -> Result<Option<T>, DbError> {
        row.map(|s| T::from_stored(self, s)).transpose()
    }

    /// The active org's row `id`, if it has one (another org's row is as absent as none).
    pub async fn find<T: TenantRow>(&mut self, id: T::Id) -> Result<Option<T>, DbError> {
        let row = T::find_in(self, id).await?;
        if let Some(row) = &row {
            self.note_row(row, Action::Read);
        }
        Ok(row)
    }

    /// A page of the active org's rows, newest first, after the keyset position `after`.
    pub async fn page<T: TenantRow>(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<T>, DbError> {
        let rows = T::page_in(self, after, limit).await?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// Notes an access to `row` (when it is patient data).
    pub(crate) fn note_row<T: TenantRow>(&mut self, row: &T, action: Action) {
        if let Some(kind) = T::SUBJECT {
            self.note_access(kind, Some(row.id_of()), action, row.patient());
        }
    }

    /// Notes a list of `rows` (when they are patient data): one record, naming their contacts.
    pub(crate) fn note_rows<T: TenantRow>(&mut self, rows: &[T]) {
        if let Some(kind) = T::SUBJECT {
            self.note_access(kind, None, Action::List, rows.iter().filter_map(T::patient));
        }
    }

    /// Deletes the active org's row `id`; whether there was one.
    pub async fn delete<T: TenantRow>(&mut self, id: T::Id) -> Result<bool, DbError> {
        let deleted = T::delete_in(self, id).await?;
        if let (Some(kind), true) = (T::SUBJECT, deleted) {
            self.note_access(kind, Some(id.into()), Action::Delete, []);
        }
        Ok(deleted)
    }
}

/// `sqlx::query_as!` for a row type whose column list is `$columns`: the SQL is the pieces in
/// brackets with the column list between the first and the second, e.g.
/// `query_row!(Contact, "id, name", ["SELECT ", " FROM contacts WHERE id = $1"], id)`.
/// Modules wrap it once per row type (`contact_query!([…], …)`), so the list is written once.
macro_rules! query_row {
    ($row:path, $columns:tt, [$before:tt, $($after:tt),+] $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!($row, $before + $columns $(+ $after)+ $(, $arg)*)
    };
}
pub(crate) use query_row;

/// Implements [`TenantRow`] for `$row` keyed by `$id` in `$table`, reading it with `$query`
/// (the module's `query_row!` wrapper for the row type). `detach = [...]`: statements (`$1`
/// the org, `$2` the id) that clear the references other rows hold to the one deleted,
/// first, in the same transaction: the schema's foreign keys refuse the delete otherwise
/// (NO ACTION, which Citus allows where it refuses SET NULL: migrations/0025).
/// `subject = "call", patient = |row: &Self| …`: the row is patient data of that kind, whose
/// contact the closure names (the access log: `crate::access`).
macro_rules! tenant_row {
    ($row:ty, $id:ty, $table:tt, $query:ident
        $(, subject = $kind:literal, patient = $patient:expr)?
        $(, detach = [$($detach:literal),* $(,)?])? $(,)?) => {
        impl $crate::TenantRow for $row {
            const TABLE: &'static str = $table;
            type Id = $id;
            $(
                const SUBJECT: Option<&'static str> = Some($kind);

                fn patient(&self) -> Option<uuid::Uuid> {
                    let of: fn(&Self) -> Option<uuid::Uuid> = $patient;
                    of(self)
                }
            )?

            fn id_of(&self) -> uuid::Uuid {
                self.id.into()
            }

            async fn find_in(
                tx: &mut $crate::TenantTx,
                id: $id,
            ) -> Result<Option<Self>, $crate::DbError> {
                let org = tx.org().as_uuid();
                $query!(
                    ["SELECT ", " FROM ", $table, " WHERE org_id = $1 AND id = $2"],
                    org,
                    id.as_uuid()
                )
                .fetch_optional(tx.conn())
                .await?
                .map(|row| $crate::rows::FromStored::from_stored(tx, row))
                .transpose()
            }

            async fn page_in(
                tx: &mut $crate::TenantTx,
                after: $crate::rows::After,
                limit: u32,
            ) -> Result<Vec<Self>, $crate::DbError> {
                let org = tx.org().as_uuid();
                let rows = $query!(
                    [
                        "SELECT ",
                        " FROM ",
                        $table,
                        " WHERE org_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                          ORDER BY created_at DESC, id DESC LIMIT $4"
                    ],
                    org,
                    after.map(|a| a.0),
                    after.map(|a| a.1),
                    i64::from(limit)
                )
                .fetch_all(tx.conn())
                .await?;
                tx.opened(rows)
            }

            async fn delete_in(tx: &mut $crate::TenantTx, id: $id) -> Result<bool, $crate::DbError> {
                let org = tx.org().as_uuid();
                $($(
                    sqlx::query!($detach, org, id.as_uuid())
                        .execute(tx.conn())
                        .await?;
                )*)?
                let done = sqlx::query!(
                    "DELETE FROM " + $table + " WHERE org_id = $1 AND id = $2",
                    org,
                    id.as_uuid()
                )
                .execute(tx.conn())
                .await?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}
pub(crate) use tenant_row;
