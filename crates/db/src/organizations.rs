//! The active org itself: read, rename, erase.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use voxanne_domain::{OrgName, OrgStatus};

/// A row of `organizations` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct Organization {
    pub id: voxanne_domain::OrgId,
    pub name: String,
    #[sqlx(try_from = "String")]
    pub status: OrgStatus,
    pub created_at: DateTime<Utc>,
}

/// What erasing an org removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasedOrg {
    /// Rows removed, per tenant table (from the catalog, so a new table is counted too).
    pub rows: Vec<(String, i64)>,
    /// The stored recordings the org's calls pointed at: the rows are gone, and whoever owns
    /// object storage removes these objects once the erase has committed.
    pub recording_paths: Vec<String>,
}

impl ErasedOrg {
    pub fn total_rows(&self) -> i64 {
        self.rows.iter().map(|(_, n)| n).sum()
    }
}

/// Tenant tables are the tables of `public` with an `org_id` column (and `organizations`).
const TENANT_TABLES_SQL: &str = "SELECT c.relname::text
       FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
        AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
      ORDER BY 1";

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TenantTx {
    pub async fn get_organization(&mut self) -> Result<Organization, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as::<_, Organization>(
            "SELECT id, name, status, created_at FROM organizations WHERE id = $1",
        )
        .bind(org)
        .fetch_one(self.conn())
        .await?;
        Ok(row)
    }

    pub async fn rename_organization(&mut self, name: &OrgName) -> Result<Organization, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as::<_, Organization>(
            "UPDATE organizations SET name = $2 WHERE id = $1
             RETURNING id, name, status, created_at",
        )
        .bind(org)
        .bind(name.as_str())
        .fetch_one(self.conn())
        .await?;
        Ok(row)
    }

    /// Deletes the org's row; the schema cascades to every tenant table. The org row is locked
    /// first (`FOR UPDATE` conflicts with the `FOR KEY SHARE` that every foreign-key check on
    /// `organizations` takes), so no row can be added to the org while it is counted and
    /// erased: the counts and the recording paths are complete.
    pub async fn erase_organization(&mut self) -> Result<ErasedOrg, DbError> {
        let org = self.org().as_uuid();
        sqlx::query("SELECT 1 FROM organizations WHERE id = $1 FOR UPDATE")
            .bind(org)
            .fetch_one(self.conn())
            .await?;
        let recording_paths: Vec<String> = sqlx::query_scalar(
            "SELECT recording_path FROM calls
              WHERE org_id = $1 AND recording_path IS NOT NULL ORDER BY recording_path",
        )
        .bind(org)
        .fetch_all(self.conn())
        .await?;
        let tables: Vec<String> = sqlx::query_scalar(TENANT_TABLES_SQL)
            .fetch_all(self.conn())
            .await?;
        let mut rows = Vec::with_capacity(tables.len() + 1);
        if !tables.is_empty() {
            let counts = tables
                .iter()
                .map(|t| {
                    format!(
                        "SELECT {}::text, count(*) FROM public.{} WHERE org_id = $1",
                        quote_literal(t),
                        quote_ident(t)
                    )
                })
                .collect::<Vec<_>>()
                .join(" UNION ALL ");
            rows = sqlx::query_as::<_, (String, i64)>(&counts)
                .bind(org)
                .fetch_all(self.conn())
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM organizations WHERE id = $1")
            .bind(org)
            .execute(self.conn())
            .await?
            .rows_affected();
        if deleted != 1 {
            return Err(DbError::NotFound);
        }
        rows.push(("organizations".to_owned(), 1));
        Ok(ErasedOrg {
            rows,
            recording_paths,
        })
    }
}

fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
