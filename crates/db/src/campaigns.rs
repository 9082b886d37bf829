//! Outbound calling campaigns.

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, NaiveTime, Utc};
use voxanne_domain::{CampaignId, CampaignStatus};

/// A row of `campaigns` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    pub id: voxanne_domain::CampaignId,
    pub name: String,
    pub status: CampaignStatus,
    /// What the agent says or sends.
    pub message: String,
    pub scheduled_at: Option<DateTime<Utc>>,
    /// The calling window, the callee's local time (within 08:00-21:00).
    pub window_start: NaiveTime,
    pub window_end: NaiveTime,
    /// Attempts per number (no answer and busy are tried again).
    pub max_attempts: i32,
    /// The wait before trying a number again.
    pub retry_minutes: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct CampaignFields {
    pub name: String,
    pub status: CampaignStatus,
    pub message: String,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub window_start: NaiveTime,
    pub window_end: NaiveTime,
    pub max_attempts: i32,
    pub retry_minutes: i32,
}

/// `query_as!` for [`Campaign`]: the column list goes between the first two SQL pieces.
macro_rules! campaign_query {
    ($($query:tt)*) => {
        query_row!(
            Campaign,
            r#"id, name, status AS "status: CampaignStatus", message, scheduled_at, window_start,
               window_end, max_attempts, retry_minutes, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(Campaign, CampaignId, "campaigns", campaign_query);

impl TenantTx {
    pub async fn list_campaigns(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Campaign>, DbError> {
        self.page::<Campaign>(after, limit).await
    }

    pub async fn insert_campaign(&mut self, f: &CampaignFields) -> Result<Campaign, DbError> {
        let org = self.org().as_uuid();
        Ok(campaign_query!(
            [
                "INSERT INTO campaigns (org_id, name, status, message, scheduled_at, window_start,
                                        window_end, max_attempts, retry_minutes)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
                ""
            ],
            org,
            f.name,
            f.status.as_str(),
            f.message,
            f.scheduled_at,
            f.window_start,
            f.window_end,
            f.max_attempts,
            f.retry_minutes
        )
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn update_campaign(
        &mut self,
        id: voxanne_domain::CampaignId,
        f: &CampaignFields,
    ) -> Result<Option<Campaign>, DbError> {
        let org = self.org().as_uuid();
        Ok(campaign_query!(
            [
                "UPDATE campaigns SET name = $3, status = $4, message = $5, scheduled_at = $6,
                        window_start = $7, window_end = $8, max_attempts = $9, retry_minutes = $10
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            f.name,
            f.status.as_str(),
            f.message,
            f.scheduled_at,
            f.window_start,
            f.window_end,
            f.max_attempts,
            f.retry_minutes
        )
        .fetch_optional(self.conn())
        .await?)
    }
}
