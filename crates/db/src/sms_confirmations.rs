//! SMS confirmations the system sent for appointments (written by the messaging pipeline).

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq, utoipa::ToSchema)]
pub struct SmsConfirmation {
    pub id: Uuid,
    pub appointment_id: Option<Uuid>,
    pub to_number: String,
    pub body: String,
    pub provider_message_id: Option<String>,
    /// `queued`, `sent`, `delivered` or `failed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, appointment_id, to_number, body, provider_message_id, status, created_at";

impl TenantTx {
    pub async fn list_sms_confirmations(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<SmsConfirmation>, DbError> {
        self.list_recent("sms_confirmation_logs", COLUMNS, after, limit)
            .await
    }

    pub async fn get_sms_confirmation(
        &mut self,
        id: Uuid,
    ) -> Result<Option<SmsConfirmation>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as::<_, SmsConfirmation>(&format!(
            "SELECT {COLUMNS} FROM sms_confirmation_logs WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(self.conn())
        .await?)
    }
}
