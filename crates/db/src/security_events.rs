//! Security events of the active org: cross-tenant references by its users, denied
//! memberships and bad tokens that named it.

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{SecurityEventId, UserId};

/// A row of `security_events` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
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

/// `query_as!` for [`SecurityEvent`]: the column list goes between the first two pieces.
macro_rules! event_query {
    ($($query:tt)*) => {
        query_row!(
            SecurityEvent,
            r#"id, kind, actor_user_id AS "actor_user_id: UserId", route, target, detail, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    SecurityEvent,
    SecurityEventId,
    "security_events",
    event_query
);

impl TenantTx {
    /// Newest first; `after` is the (created_at, id) of the last event of the previous page.
    pub async fn list_security_events(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, DbError> {
        self.page::<SecurityEvent>(after, limit).await
    }
}
