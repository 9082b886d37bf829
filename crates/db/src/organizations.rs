//! The active org itself: read, rename, erase.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{OrgName, OrgStatus};

/// A row of `organizations` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct Organization {
    pub id: voxanne_domain::OrgId,
    pub name: String,
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

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl TenantTx {
    pub async fn get_organization(&mut self) -> Result<Organization, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as!(
            Organization,
            r#"SELECT id, name, status AS "status: OrgStatus", created_at
                 FROM organizations WHERE id = $1"#,
            org
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row)
    }

    pub async fn rename_organization(&mut self, name: &OrgName) -> Result<Organization, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as!(
            Organization,
            r#"UPDATE organizations SET name = $2 WHERE id = $1
               RETURNING id, name, status AS "status: OrgStatus", created_at"#,
            org,
            name.as_str()
        )
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
        sqlx::query!(
            "SELECT 1 AS one FROM organizations WHERE id = $1 FOR UPDATE",
            org
        )
        .fetch_one(self.conn())
        .await?;
        let recording_paths = sqlx::query_scalar!(
            r#"SELECT recording_path AS "recording_path!" FROM calls
                WHERE org_id = $1 AND recording_path IS NOT NULL ORDER BY recording_path"#,
            org
        )
        .fetch_all(self.conn())
        .await?;
        // Tenant tables are the tables of `public` with an `org_id` column (and
        // `organizations`), read from the catalog so that a new table is counted too.
        let tables = sqlx::query_scalar!(
            r#"SELECT c.relname::text AS "name!"
                 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
                  AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a
                               WHERE a.attrelid = c.oid AND a.attname = 'org_id'
                                 AND NOT a.attisdropped)
                ORDER BY 1"#
        )
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
            // Dynamic: one count per table found in the catalog above.
            rows = sqlx::query_as::<_, (String, i64)>(&counts)
                .bind(org)
                .fetch_all(self.conn())
                .await?;
        }
        // The clinic's numbers leave the global directory (migrations/0026), which the cascade
        // from organizations does not reach; its rows of phone_numbers go with them.
        sqlx::query!(
            "DELETE FROM app.phone_number_directory WHERE org_id = $1",
            org
        )
        .execute(self.conn())
        .await?;
        let deleted = sqlx::query!("DELETE FROM organizations WHERE id = $1", org)
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
