//! Outbound calling campaigns.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;
use voxanne_domain::CampaignStatus;

/// A row of `campaigns` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct Campaign {
    pub id: voxanne_domain::CampaignId,
    pub name: String,
    #[sqlx(try_from = "String")]
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

const COLUMNS: &str = "id, name, status, message, scheduled_at, created_at";

impl crate::TenantRow for Campaign {
    const TABLE: &'static str = "campaigns";
    const COLUMNS: &'static str = COLUMNS;
    type Id = voxanne_domain::CampaignId;
}

impl TenantTx {
    pub async fn list_campaigns(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Campaign>, DbError> {
        self.page::<Campaign>(after, limit).await
    }

    pub async fn insert_campaign(&mut self, f: &CampaignFields) -> Result<Campaign, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as::<_, Campaign>(&format!(
            "INSERT INTO campaigns (org_id, name, status, message, scheduled_at) VALUES ($1, $2, $3, $4, $5)
             RETURNING {COLUMNS}"
        ))
        .bind(org)
        .bind(&f.name)
        .bind(f.status.as_str())
        .bind(&f.message)
        .bind(f.scheduled_at)
        .fetch_one(self.conn())
        .await?)
    }

    pub async fn update_campaign(
        &mut self,
        id: voxanne_domain::CampaignId,
        f: &CampaignFields,
    ) -> Result<Option<Campaign>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as::<_, Campaign>(&format!(
            "UPDATE campaigns SET name = $3, status = $4, message = $5, scheduled_at = $6
              WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
        ))
        .bind(org)
        .bind(id)
        .bind(&f.name)
        .bind(f.status.as_str())
        .bind(&f.message)
        .bind(f.scheduled_at)
        .fetch_optional(self.conn())
        .await?)
    }
}
