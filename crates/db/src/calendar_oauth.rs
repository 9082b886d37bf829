//! The calendar OAuth flow's rows: the single-use state an admin's `oauth/start` leaves for
//! the provider's callback (its PKCE verifier sealed like the calendar tokens), and the
//! connection the callback stores or updates once the provider has given tokens. The
//! callback takes the state through `system::take_calendar_oauth_state` (it has no JWT).

use crate::calendar_connections::{CalendarConnection, NewCalendarConnection};
use crate::crypto::Keyring;
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use voxanne_domain::{CalendarProvider, OrgId};

/// What `oauth/start` remembers for the callback.
#[derive(Debug)]
pub struct NewOAuthState {
    pub provider: CalendarProvider,
    pub verifier: SecretString,
    /// sha256 of the browser cookie's value.
    pub browser_hash: [u8; 32],
    pub expires_at: DateTime<Utc>,
}

/// What a PKCE verifier is sealed for: its org and state row.
pub fn verifier_aad(org: OrgId, id: Uuid) -> String {
    format!("calendar_oauth_states.verifier_enc|{org}|{id}")
}

impl TenantTx {
    /// Stores a state for the transaction's user; returns its id.
    pub async fn insert_calendar_oauth_state(
        &mut self,
        keyring: &Keyring,
        new: &NewOAuthState,
    ) -> Result<Uuid, DbError> {
        let org = self.org();
        let user = self.membership().user;
        let id = Uuid::new_v4();
        let sealed = keyring.seal(
            new.verifier.expose_secret().as_bytes(),
            &verifier_aad(org, id),
        )?;
        sqlx::query!(
            "INSERT INTO calendar_oauth_states
                 (org_id, id, user_id, provider, verifier_enc, key_id, browser_hash, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            org.as_uuid(),
            id,
            user.as_uuid(),
            new.provider.as_str(),
            sealed.bytes,
            sealed.key_id,
            new.browser_hash.as_slice(),
            new.expires_at
        )
        .execute(self.conn())
        .await?;
        // Expired states of this org that no callback took go with the next start.
        sqlx::query!(
            "DELETE FROM calendar_oauth_states WHERE org_id = $1 AND expires_at < now()",
            org.as_uuid()
        )
        .execute(self.conn())
        .await?;
        Ok(id)
    }

    /// Stores the tokens of `new` for its (provider, account): a new connection, or the
    /// account's existing one with its tokens replaced (linking the same account again, which
    /// also mends a `broken` one) and its sync due at once.
    pub async fn upsert_calendar_connection(
        &mut self,
        keyring: &Keyring,
        new: &NewCalendarConnection,
    ) -> Result<CalendarConnection, DbError> {
        let org = self.org();
        let existing = sqlx::query_scalar!(
            "SELECT id FROM calendar_connections
              WHERE org_id = $1 AND provider = $2 AND account_email = $3
              FOR UPDATE",
            org.as_uuid(),
            new.provider.as_str(),
            new.account_email
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(id) = existing else {
            return self.insert_calendar_connection(keyring, new).await;
        };
        let (access, refresh) = new.seal(keyring, org, id)?;
        // A provider that gives no new refresh token on a repeated consent leaves the old
        // one in place only if it was sealed under the same key as the new access token.
        sqlx::query!(
            "UPDATE calendar_connections
                SET access_token_enc = $3,
                    refresh_token_enc = CASE WHEN $4::bytea IS NOT NULL THEN $4
                                             WHEN key_id = $5 THEN refresh_token_enc
                                             ELSE NULL END,
                    key_id = $5, token_expires_at = $6,
                    status = 'active', broken_reason = NULL, broken_at = NULL,
                    sync_due_at = now(), sync_failures = 0, last_sync_error = NULL,
                    updated_at = now()
              WHERE org_id = $1 AND id = $2",
            org.as_uuid(),
            id,
            access.bytes,
            refresh.as_ref().map(|r| r.bytes.as_slice()),
            access.key_id,
            new.token_expires_at
        )
        .execute(self.conn())
        .await?;
        self.get_calendar_connection(id.into())
            .await?
            .ok_or(DbError::NotFound)
    }
}
