//! The do-not-call list: numbers the agent must never call.

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{DncEntryId, PhoneNumber};

/// A row of `dnc_list` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct DncEntry {
    pub id: voxanne_domain::DncEntryId,
    /// E.164.
    pub phone: String,
    pub reason: Option<String>,
    /// `staff`, `sms_opt_out` (the patient texted STOP) or `carrier_opt_out` (the provider
    /// reported the recipient unsubscribed).
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// `query_as!` for [`DncEntry`]: the column list goes between the first two SQL pieces.
macro_rules! dnc_query {
    ($($query:tt)*) => {
        query_row!(DncEntry, "id, phone, reason, source, created_at", $($query)*)
    };
}

tenant_row!(DncEntry, DncEntryId, "dnc_list", dnc_query);

impl TenantTx {
    pub async fn list_dnc(&mut self, after: After, limit: u32) -> Result<Vec<DncEntry>, DbError> {
        self.page::<DncEntry>(after, limit).await
    }

    pub async fn insert_dnc(
        &mut self,
        phone: &PhoneNumber,
        reason: Option<&str>,
    ) -> Result<DncEntry, DbError> {
        let org = self.org().as_uuid();
        Ok(dnc_query!(
            [
                "INSERT INTO dnc_list (org_id, phone, reason) VALUES ($1, $2, $3) RETURNING ",
                ""
            ],
            org,
            phone.as_str(),
            reason
        )
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn is_on_dnc(&mut self, phone: &PhoneNumber) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM dnc_list WHERE org_id = $1 AND phone = $2) AS "on!""#,
            org,
            phone.as_str()
        )
        .fetch_one(self.conn())
        .await?)
    }
}
