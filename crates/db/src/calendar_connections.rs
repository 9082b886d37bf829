//! Calendar connections: a clinic's linked Google or Microsoft calendars. The OAuth tokens
//! are sealed (`crypto.rs`) before they reach SQL and are never read back into a listing:
//! only [`TenantTx::calendar_tokens`] opens them, for the code that talks to the calendar.

use crate::crypto::{Keyring, Sealed};
use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;
use voxanne_domain::{CalendarConnectionId, CalendarConnectionStatus, CalendarProvider, OrgId};

/// A linked calendar as the API shows it: whether tokens are stored, never the tokens.
/// A row of `calendar_connections` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarConnection {
    pub id: voxanne_domain::CalendarConnectionId,
    pub provider: CalendarProvider,
    pub account_email: String,
    pub has_access_token: bool,
    pub has_refresh_token: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub status: CalendarConnectionStatus,
    /// Why the provider refused the grant, when `broken`.
    pub broken_reason: Option<String>,
    /// The appointments' resource whose diary this calendar is.
    pub resource: String,
    /// Which of the account's calendars ("primary": its default one).
    pub calendar_id: String,
    /// When its busy times were last read.
    pub busy_synced_at: Option<DateTime<Utc>>,
    /// Why the last sync failed, until one succeeds.
    pub last_sync_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `query_as!` for [`CalendarConnection`]: the column list goes between the first two pieces.
macro_rules! connection_query {
    ($($query:tt)*) => {
        query_row!(
            CalendarConnection,
            r#"id, provider AS "provider: CalendarProvider", account_email,
               access_token_enc IS NOT NULL AS "has_access_token!",
               refresh_token_enc IS NOT NULL AS "has_refresh_token!", token_expires_at,
               status AS "status: CalendarConnectionStatus", broken_reason, resource, calendar_id,
               busy_synced_at, last_sync_error, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    CalendarConnection,
    CalendarConnectionId,
    "calendar_connections",
    connection_query
);

/// The constraint that allows one link per (provider, account) in an org.
pub const UNIQUE_ACCOUNT: &str = "calendar_connections_org_id_provider_account_email_key";

#[derive(Debug)]
pub struct NewCalendarConnection {
    pub provider: CalendarProvider,
    pub account_email: String,
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_expires_at: Option<DateTime<Utc>>,
}

impl NewCalendarConnection {
    /// The access and refresh tokens sealed for row `id` of `org`.
    pub(crate) fn seal(
        &self,
        keyring: &Keyring,
        org: OrgId,
        id: Uuid,
    ) -> Result<(Sealed, Option<Sealed>), DbError> {
        let access = keyring.seal(
            self.access_token.expose_secret().as_bytes(),
            &token_aad("access_token_enc", org, id),
        )?;
        let refresh = self
            .refresh_token
            .as_ref()
            .map(|t| {
                keyring.seal(
                    t.expose_secret().as_bytes(),
                    &token_aad("refresh_token_enc", org, id),
                )
            })
            .transpose()?;
        Ok((access, refresh))
    }
}

/// The decrypted tokens of one connection.
#[derive(Debug)]
pub struct CalendarTokens {
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
}

/// What a token is sealed for: its column, org and row. A ciphertext moved elsewhere does
/// not open.
pub fn token_aad(column: &str, org: OrgId, id: Uuid) -> String {
    format!("calendar_connections.{column}|{org}|{id}")
}

impl TenantTx {
    /// Newest first; `after` is the (created_at, id) of the last item of the previous page.
    /// Fetches `limit` rows.
    pub async fn list_calendar_connections(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<CalendarConnection>, DbError> {
        self.page::<CalendarConnection>(after, limit).await
    }

    pub async fn get_calendar_connection(
        &mut self,
        id: CalendarConnectionId,
    ) -> Result<Option<CalendarConnection>, DbError> {
        self.find::<CalendarConnection>(id).await
    }

    /// Seals the tokens with the current key and stores the link.
    pub async fn insert_calendar_connection(
        &mut self,
        keyring: &Keyring,
        new: &NewCalendarConnection,
    ) -> Result<CalendarConnection, DbError> {
        let org = self.org();
        let id = Uuid::new_v4();
        let (access, refresh) = new.seal(keyring, org, id)?;
        let row = connection_query!(
            [
                "INSERT INTO calendar_connections (org_id, id, provider, account_email,
                     access_token_enc, refresh_token_enc, key_id, token_expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING ",
                ""
            ],
            org.as_uuid(),
            id,
            new.provider.as_str(),
            new.account_email,
            access.bytes,
            refresh.as_ref().map(|r| r.bytes.as_slice()),
            access.key_id,
            new.token_expires_at
        )
        .fetch_one(self.conn())
        .await?;
        Ok(row)
    }

    /// Whether a connection was deleted.
    pub async fn delete_calendar_connection(
        &mut self,
        id: CalendarConnectionId,
    ) -> Result<bool, DbError> {
        self.delete::<CalendarConnection>(id).await
    }

    /// The decrypted tokens of a connection, for the code that calls the calendar provider.
    /// A value that does not open (damaged, moved, or its key is no longer configured) is an
    /// error, never a panic.
    pub async fn calendar_tokens(
        &mut self,
        keyring: &Keyring,
        id: Uuid,
    ) -> Result<Option<CalendarTokens>, DbError> {
        let org = self.org();
        let row = sqlx::query!(
            "SELECT access_token_enc, refresh_token_enc, key_id
               FROM calendar_connections WHERE org_id = $1 AND id = $2",
            org.as_uuid(),
            id
        )
        .fetch_optional(self.conn())
        .await?
        .map(|row| (row.access_token_enc, row.refresh_token_enc, row.key_id));
        let Some((access, refresh, key_id)) = row else {
            return Ok(None);
        };
        let open =
            |column: &str, bytes: Option<Vec<u8>>| -> Result<Option<SecretString>, DbError> {
                let Some(bytes) = bytes else { return Ok(None) };
                let key_id = key_id
                    .as_deref()
                    .ok_or_else(|| DbError::Corrupt("a sealed token without a key id".into()))?;
                let plain = keyring.open(key_id, &bytes, &token_aad(column, org, id))?;
                let text = std::str::from_utf8(&plain)
                    .map_err(|_| DbError::Corrupt("a token that is not UTF-8".into()))?;
                Ok(Some(SecretString::from(text)))
            };
        Ok(Some(CalendarTokens {
            access_token: open("access_token_enc", access)?,
            refresh_token: open("refresh_token_enc", refresh)?,
        }))
    }
}
