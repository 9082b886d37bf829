//! Security events of the active org: cross-tenant references by its users, denied
//! memberships and bad tokens that named it.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;

/// A row of `security_events` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct SecurityEvent {
    pub id: voxanne_domain::SecurityEventId,
    /// `cross_tenant_reference`, `membership_denied` or `invalid_token`.
    pub kind: String,
    /// The user who acted, when known (a bad token has none).
    pub actor_user_id: Option<voxanne_domain::UserId>,
    /// Method and path of the request.
    pub route: Option<String>,
    /// The id that was asked for (cross-tenant references).
    pub target: Option<String>,
    pub detail: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, kind, actor_user_id, route, target, detail, created_at";

impl crate::TenantRow for SecurityEvent {
    const TABLE: &'static str = "security_events";
    const COLUMNS: &'static str = COLUMNS;
    type Id = voxanne_domain::SecurityEventId;
}

impl TenantTx {
    /// Newest first; `after` is the (created_at, id) of the last event of the previous page.
    pub async fn list_security_events(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, DbError> {
        self.page::<SecurityEvent>(after, limit).await
    }
}
