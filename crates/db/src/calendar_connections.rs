//! Calendar connections: a clinic's linked Google or Microsoft calendars. The OAuth tokens
//! are sealed (`crypto.rs`) before they reach SQL and are never read back into a listing:
//! only [`TenantTx::calendar_tokens`] opens them, for the code that talks to the calendar.

use crate::crypto::Keyring;
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::FromRow;
use uuid::Uuid;
use voxanne_domain::{CalendarProvider, OrgId};

/// A linked calendar as the API shows it: whether tokens are stored, never the tokens.
/// A row of `calendar_connections` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct CalendarConnection {
    pub id: voxanne_domain::CalendarConnectionId,
    #[sqlx(try_from = "String")]
    pub provider: CalendarProvider,
    pub account_email: String,
    pub has_access_token: bool,
    pub has_refresh_token: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str =
    "id, provider, account_email, access_token_enc IS NOT NULL AS has_access_token, \
     refresh_token_enc IS NOT NULL AS has_refresh_token, token_expires_at, created_at";

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
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<CalendarConnection>, DbError> {
        let org = self.org().as_uuid();
        let rows = sqlx::query_as::<_, CalendarConnection>(&format!(
            "SELECT {COLUMNS} FROM calendar_connections
              WHERE org_id = $1 AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
              ORDER BY created_at DESC, id DESC
              LIMIT $4"
        ))
        .bind(org)
        .bind(after.map(|a| a.0))
        .bind(after.map(|a| a.1))
        .bind(limit)
        .fetch_all(self.conn())
        .await?;
        Ok(rows)
    }

    pub async fn get_calendar_connection(
        &mut self,
        id: voxanne_domain::CalendarConnectionId,
    ) -> Result<Option<CalendarConnection>, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query_as::<_, CalendarConnection>(&format!(
            "SELECT {COLUMNS} FROM calendar_connections WHERE org_id = $1 AND id = $2"
        ))
        .bind(org)
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        Ok(row)
    }

    /// Seals the tokens with the current key and stores the link.
    pub async fn insert_calendar_connection(
        &mut self,
        keyring: &Keyring,
        new: &NewCalendarConnection,
    ) -> Result<CalendarConnection, DbError> {
        let org = self.org();
        let id = Uuid::new_v4();
        let access = keyring.seal(
            new.access_token.expose_secret().as_bytes(),
            &token_aad("access_token_enc", org, id),
        )?;
        let refresh = new
            .refresh_token
            .as_ref()
            .map(|t| {
                keyring.seal(
                    t.expose_secret().as_bytes(),
                    &token_aad("refresh_token_enc", org, id),
                )
            })
            .transpose()?;
        let row = sqlx::query_as::<_, CalendarConnection>(&format!(
            "INSERT INTO calendar_connections (org_id, id, provider, account_email,
                 access_token_enc, refresh_token_enc, key_id, token_expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             RETURNING {COLUMNS}"
        ))
        .bind(org.as_uuid())
        .bind(id)
        .bind(new.provider.as_str())
        .bind(&new.account_email)
        .bind(&access.bytes)
        .bind(refresh.as_ref().map(|r| &r.bytes))
        .bind(&access.key_id)
        .bind(new.token_expires_at)
        .fetch_one(self.conn())
        .await?;
        Ok(row)
    }

    /// Whether a connection was deleted.
    pub async fn delete_calendar_connection(
        &mut self,
        id: voxanne_domain::CalendarConnectionId,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let deleted = sqlx::query("DELETE FROM calendar_connections WHERE org_id = $1 AND id = $2")
            .bind(org)
            .bind(id)
            .execute(self.conn())
            .await?
            .rows_affected();
        Ok(deleted > 0)
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
        type Row = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT access_token_enc, refresh_token_enc, key_id
               FROM calendar_connections WHERE org_id = $1 AND id = $2",
        )
        .bind(org.as_uuid())
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
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
