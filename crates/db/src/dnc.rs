//! The do-not-call list: numbers the agent must never call.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;
use voxanne_domain::PhoneNumber;

/// A row of `dnc_list` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct DncEntry {
    pub id: voxanne_domain::DncEntryId,
    /// E.164.
    pub phone: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, phone, reason, created_at";

impl crate::TenantRow for DncEntry {
    const TABLE: &'static str = "dnc_list";
    const COLUMNS: &'static str = COLUMNS;
    type Id = voxanne_domain::DncEntryId;
}

impl TenantTx {
    pub async fn list_dnc(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<DncEntry>, DbError> {
        self.page::<DncEntry>(after, limit).await
    }

    pub async fn insert_dnc(
        &mut self,
        phone: &PhoneNumber,
        reason: Option<&str>,
    ) -> Result<DncEntry, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as::<_, DncEntry>(&format!(
            "INSERT INTO dnc_list (org_id, phone, reason) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
        ))
        .bind(org)
        .bind(phone.as_str())
        .bind(reason)
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn is_on_dnc(&mut self, phone: &PhoneNumber) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM dnc_list WHERE org_id = $1 AND phone = $2)",
        )
        .bind(org)
        .bind(phone.as_str())
        .fetch_one(self.conn())
        .await?)
    }
}
