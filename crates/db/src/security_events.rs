//! Security events of the active org: cross-tenant references by its users, denied
//! memberships and bad tokens that named it.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, FromRow, PartialEq, utoipa::ToSchema)]
pub struct SecurityEvent {
    pub id: Uuid,
    /// `cross_tenant_reference`, `membership_denied` or `invalid_token`.
    pub kind: String,
    /// The user who acted, when known (a bad token has none).
    pub actor_user_id: Option<Uuid>,
    /// Method and path of the request.
    pub route: Option<String>,
    /// The id that was asked for (cross-tenant references).
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl TenantTx {
    /// Newest first; `after` is the (created_at, id) of the last event of the previous page.
    pub async fn list_security_events(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, DbError> {
        let org = self.org().as_uuid();
        let rows = sqlx::query_as::<_, SecurityEvent>(
            "SELECT id, kind, actor_user_id, route, target, detail, created_at
               FROM security_events
              WHERE org_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              ORDER BY created_at DESC, id DESC
              LIMIT $4",
        )
        .bind(org)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        Ok(rows)
    }
}
