//! Outbound calling campaigns.

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
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
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct CampaignFields {
    pub name: String,
    pub status: CampaignStatus,
    pub message: String,
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// `query_as!` for [`Campaign`]: the column list goes between the first two SQL pieces.
macro_rules! campaign_query {
    ($($query:tt)*) => {
        query_row!(
            Campaign,
            r#"id, name, status AS "status: CampaignStatus", message, scheduled_at, created_at"#,
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
                "INSERT INTO campaigns (org_id, name, status, message, scheduled_at)
                 VALUES ($1, $2, $3, $4, $5) RETURNING ",
                ""
            ],
            org,
            f.name,
            f.status.as_str(),
            f.message,
            f.scheduled_at
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
                "UPDATE campaigns SET name = $3, status = $4, message = $5, scheduled_at = $6
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            f.name,
            f.status.as_str(),
            f.message,
            f.scheduled_at
        )
        .fetch_optional(self.conn())
        .await?)
    }
}
