//! A clinic's invitations (migrations/0019): admins invite an address with a role; the link
//! (the org, the id and a secret whose sha256 is kept) is taken once, through
//! `system::accept_invitation`.

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{InvitationId, Role, UserId};

/// A row of `invitations` (never its secret's hash).
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub id: InvitationId,
    pub email: String,
    pub role: Role,
    pub invited_by: UserId,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub accepted_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
}

macro_rules! invitation_query {
    ($($query:tt)*) => {
        query_row!(
            Invitation,
            r#"id AS "id: InvitationId", email, role AS "role: Role",
               invited_by AS "invited_by: UserId", expires_at, accepted_at,
               accepted_by AS "accepted_by: UserId", created_at"#,
            $($query)*
        )
    };
}

tenant_row!(Invitation, InvitationId, "invitations", invitation_query);

impl TenantTx {
    pub async fn list_invitations(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Invitation>, DbError> {
        self.page::<Invitation>(after, limit).await
    }

    /// A new invitation of `email` with `role`, by the caller, whose link's secret has the
    /// sha256 `secret_hash`.
    pub async fn insert_invitation(
        &mut self,
        email: &str,
        role: Role,
        secret_hash: &[u8],
        expires_at: DateTime<Utc>,
    ) -> Result<Invitation, DbError> {
        let org = self.org().as_uuid();
        let by = self.membership().user.as_uuid();
        Ok(invitation_query!(
            [
                "INSERT INTO invitations (org_id, email, role, secret_hash, invited_by, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
                ""
            ],
            org,
            email,
            role.as_str(),
            secret_hash,
            by,
            expires_at
        )
        .fetch_one(self.conn())
        .await?)
    }
}
