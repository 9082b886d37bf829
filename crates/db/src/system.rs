//! The named operations that are not confined to one org's tenant transaction. Each one is
//! listed here, does one thing, and is reviewed as such (TENANCY.md section 3); nothing else
//! in the application reads or writes across orgs.

use crate::tenant::ScopedTx;
use crate::{Db, DbError, Membership, TenantTx};
use serde::Serialize;
use sqlx::FromRow;
use uuid::Uuid;
use voxanne_domain::{OrgId, Role, UserId};

/// A new org and its first owner.
#[derive(Debug, Clone)]
pub struct NewOrg {
    pub id: OrgId,
    pub name: String,
    pub owner: UserId,
}

/// Provisioning: creates the org and its owner membership, inside the new org's own tenant
/// context (RLS checks both rows), and hands back its tenant transaction, uncommitted, so the
/// caller can seed it in the same transaction.
pub async fn provision_org(db: &Db, new: &NewOrg) -> Result<TenantTx, DbError> {
    let (mut tx, _) = ScopedTx::begin(db, Some(new.id), Some(new.owner), None).await?;
    sqlx::query("INSERT INTO organizations (id, name) VALUES ($1, $2)")
        .bind(new.id.as_uuid())
        .bind(new.name.trim())
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO organization_members (org_id, user_id, role) VALUES ($1, $2, 'owner')",
    )
    .bind(new.id.as_uuid())
    .bind(new.owner.as_uuid())
    .execute(tx.conn())
    .await?;
    Ok(TenantTx::from_parts(
        tx,
        Membership {
            org: new.id,
            user: new.owner,
            role: Role::Owner,
        },
    ))
}

/// One org a user belongs to.
#[derive(Debug, Clone, Serialize, FromRow, PartialEq, Eq, utoipa::ToSchema)]
pub struct OrgMembership {
    pub org_id: Uuid,
    pub name: String,
    pub status: String,
    pub role: String,
}

/// The orgs `user` belongs to, through the SECURITY DEFINER `app.my_memberships()`, which
/// answers for the user of the transaction's context only.
pub async fn memberships(db: &Db, user: UserId) -> Result<Vec<OrgMembership>, DbError> {
    let (mut tx, _) = ScopedTx::begin(db, None, Some(user), None).await?;
    let rows = sqlx::query_as::<_, OrgMembership>(
        "SELECT org_id, name, status, role FROM app.my_memberships()",
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(rows)
}
