//! The members of the active org and their roles.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_domain::{Role, UserId};

/// A row of `organization_members` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: UserId,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    /// Its built-in account's address and name, if it has one.
    pub email: Option<String>,
    pub display_name: Option<String>,
}

/// The memberships a change depends on, read and locked in the change's transaction: every
/// owner, the acting user and the member changed. Until the transaction ends no other
/// transaction can change or remove them, so a decision taken on them stays true.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberLocks {
    /// The actor's role now (it may have changed since the request began), if still a member.
    pub actor: Option<Role>,
    /// The changed member's role, if they are a member.
    pub target: Option<Role>,
    pub owners: Vec<Uuid>,
}

impl MemberLocks {
    /// Owners other than `user`: those left if `user` stops being one.
    pub fn owners_other_than(&self, user: UserId) -> usize {
        self.owners.iter().filter(|o| **o != user.as_uuid()).count()
    }
}

impl TenantTx {
    /// Oldest first; `after` is the (created_at, user_id) of the last member of the previous page.
    pub async fn list_members(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
    ) -> Result<Vec<Member>, DbError> {
        let org = self.org().as_uuid();
        let members = sqlx::query!(
            r#"SELECT m.user_id, m.role AS "role: Role", m.created_at
                 FROM organization_members m
                WHERE m.org_id = $1
                  AND ($2::timestamptz IS NULL OR (m.created_at, m.user_id) > ($2, $3))
                ORDER BY m.created_at, m.user_id
                LIMIT $4"#,
            org,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        // The members' built-in accounts, by a statement of its own: the function reads the
        // memberships itself (SECURITY DEFINER, for the accounts' table), and Citus cannot
        // run it inside a query that it sends to the clinic's shard.
        let accounts = sqlx::query!(
            r#"SELECT user_id AS "user_id!", email AS "email!", display_name
                 FROM app.member_accounts()"#
        )
        .fetch_all(self.conn())
        .await?;
        let account = |user: Uuid| accounts.iter().find(|a| a.user_id == user);
        Ok(members
            .into_iter()
            .map(|m| Member {
                user_id: m.user_id.into(),
                role: m.role,
                created_at: m.created_at,
                email: account(m.user_id).map(|a| a.email.clone()),
                display_name: account(m.user_id).and_then(|a| a.display_name.clone()),
            })
            .collect())
    }

    /// Locks the memberships that a change of `target`'s membership depends on (see
    /// [`MemberLocks`]).
    ///
    /// Why row locks and not a constraint trigger: the invariant "at least one owner" is about
    /// a set of rows, which no row-level CHECK can see, and a deferred trigger that counts
    /// owners at commit is still racy under READ COMMITTED (two transactions each demoting a
    /// different owner each see the other's owner at commit). Locking every owner row (plus
    /// the actor's and the target's) `FOR UPDATE` in one statement, in `user_id` order so that
    /// concurrent changes queue instead of deadlocking, makes them take turns: the second
    /// waits for the first to commit, then PostgreSQL re-checks each row it waited for against
    /// the `WHERE` clause, so an owner demoted meanwhile is no longer counted. The owners it
    /// returns stay owners until this transaction ends, so "another owner remains" holds at
    /// commit. No migration is needed, and the lock is per org: other clinics never wait.
    pub async fn lock_members(&mut self, target: Option<UserId>) -> Result<MemberLocks, DbError> {
        let org = self.org().as_uuid();
        let actor = self.membership().user.as_uuid();
        let target = target.map(|t| t.as_uuid());
        let rows = sqlx::query!(
            r#"SELECT user_id, role AS "role: Role" FROM organization_members
                WHERE org_id = $1 AND (role = 'owner' OR user_id = $2 OR user_id = $3)
                ORDER BY user_id
                FOR UPDATE"#,
            org,
            actor,
            target
        )
        .fetch_all(self.conn())
        .await?;
        let mut locks = MemberLocks {
            actor: None,
            target: None,
            owners: Vec::new(),
        };
        for row in rows {
            let (user, role) = (row.user_id, row.role);
            if user == actor {
                locks.actor = Some(role);
            }
            if Some(user) == target {
                locks.target = Some(role);
            }
            if role == Role::Owner {
                locks.owners.push(user);
            }
        }
        Ok(locks)
    }

    /// Adds `user`; `None` if they are a member already.
    pub async fn add_member(
        &mut self,
        user: UserId,
        role: Role,
    ) -> Result<Option<Member>, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as!(
            Member,
            r#"INSERT INTO organization_members (org_id, user_id, role) VALUES ($1, $2, $3)
               ON CONFLICT (org_id, user_id) DO NOTHING
               RETURNING user_id, role AS "role: Role", created_at,
                         NULL::text AS "email?", NULL::text AS "display_name?""#,
            org,
            user.as_uuid(),
            role.as_str()
        )
        .fetch_optional(self.conn())
        .await?;
        Ok(row)
    }

    /// `None` if `user` is not a member.
    pub async fn set_member_role(
        &mut self,
        user: UserId,
        role: Role,
    ) -> Result<Option<Member>, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as!(
            Member,
            r#"UPDATE organization_members SET role = $3 WHERE org_id = $1 AND user_id = $2
               RETURNING user_id, role AS "role: Role", created_at,
                         NULL::text AS "email?", NULL::text AS "display_name?""#,
            org,
            user.as_uuid(),
            role.as_str()
        )
        .fetch_optional(self.conn())
        .await?;
        Ok(row)
    }

    /// Whether `user` was a member.
    pub async fn remove_member(&mut self, user: UserId) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let removed = sqlx::query!(
            "DELETE FROM organization_members WHERE org_id = $1 AND user_id = $2",
            org,
            user.as_uuid()
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(removed > 0)
    }
}
