//! Integration settings: a clinic's telephony/SMS provider accounts. `config` holds the
//! non-secret settings in clear; the secrets are one JSON object, sealed (`crypto.rs`) into
//! `secrets_enc` before it reaches SQL.

use crate::crypto::{CryptoError, Keyring, Sealed};
use crate::rows::query_row;
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use voxanne_domain::{IntegrationProvider, OrgId};

/// One provider's stored settings; the secrets still sealed.
#[derive(Debug, Clone)]
pub struct StoredIntegration {
    pub provider: IntegrationProvider,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub secrets: Option<Sealed>,
    pub updated_at: DateTime<Utc>,
}

/// Decrypted secrets, by name.
pub type Secrets = BTreeMap<String, SecretString>;

/// What a provider's secrets are sealed for: the org and the provider.
pub fn secrets_aad(org: OrgId, provider: IntegrationProvider) -> String {
    format!("integration_settings.secrets_enc|{org}|{provider}")
}

/// Why stored secrets could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OpenSecretsError {
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the decrypted secrets are not a JSON object of strings")]
    Malformed,
}

impl StoredIntegration {
    /// The decrypted secrets (empty when none are stored).
    pub fn open_secrets(&self, keyring: &Keyring, org: OrgId) -> Result<Secrets, OpenSecretsError> {
        match &self.secrets {
            None => Ok(Secrets::new()),
            Some(sealed) => open_sealed(sealed, keyring, org, self.provider),
        }
    }
}

/// Decrypts `provider`'s secrets of `org`, sealed into `sealed`.
pub fn open_sealed(
    sealed: &Sealed,
    keyring: &Keyring,
    org: OrgId,
    provider: IntegrationProvider,
) -> Result<Secrets, OpenSecretsError> {
    let plain = keyring.open(&sealed.key_id, &sealed.bytes, &secrets_aad(org, provider))?;
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&plain).map_err(|_| OpenSecretsError::Malformed)?;
    Ok(map
        .into_iter()
        .map(|(name, value)| (name, SecretString::from(value)))
        .collect())
}

/// A row of `integration_settings` as stored, before its values are checked.
struct IntegrationRow {
    provider: String,
    config: serde_json::Value,
    secrets_enc: Option<Vec<u8>>,
    key_id: Option<String>,
    updated_at: DateTime<Utc>,
}

/// `query_as!` for [`IntegrationRow`]: the column list goes between the first two pieces.
macro_rules! integration_query {
    ($($query:tt)*) => {
        query_row!(
            IntegrationRow,
            "provider, config, secrets_enc, key_id, updated_at",
            $($query)*
        )
    };
}

fn from_row(row: IntegrationRow) -> Result<StoredIntegration, DbError> {
    let provider = row
        .provider
        .parse()
        .map_err(|e: voxanne_domain::UnknownVariant| DbError::Corrupt(e.to_string()))?;
    let config = match row.config {
        serde_json::Value::Object(map) => map,
        _ => {
            return Err(DbError::Corrupt(
                "integration config is not an object".into(),
            ))
        }
    };
    let secrets = match (row.secrets_enc, row.key_id) {
        (Some(bytes), Some(key_id)) => Some(Sealed { key_id, bytes }),
        (None, _) => None,
        (Some(_), None) => return Err(DbError::Corrupt("sealed secrets without a key id".into())),
    };
    Ok(StoredIntegration {
        provider,
        config,
        secrets,
        updated_at: row.updated_at,
    })
}

impl TenantTx {
    /// The org's stored integrations, by provider.
    pub async fn list_integrations(&mut self) -> Result<Vec<StoredIntegration>, DbError> {
        let org = self.org().as_uuid();
        let rows = integration_query!(
            [
                "SELECT ",
                " FROM integration_settings WHERE org_id = $1 ORDER BY provider"
            ],
            org
        )
        .fetch_all(self.conn())
        .await?;
        rows.into_iter().map(from_row).collect()
    }

    pub async fn get_integration(
        &mut self,
        provider: IntegrationProvider,
    ) -> Result<Option<StoredIntegration>, DbError> {
        let org = self.org().as_uuid();
        let row = integration_query!(
            [
                "SELECT ",
                " FROM integration_settings WHERE org_id = $1 AND provider = $2"
            ],
            org,
            provider.as_str()
        )
        .fetch_optional(self.conn())
        .await?;
        row.map(from_row).transpose()
    }

    /// Creates or replaces the provider's settings. `secrets`, when given, replaces the stored
    /// secrets (sealed with the current key); `None` keeps them as they are.
    pub async fn put_integration(
        &mut self,
        keyring: &Keyring,
        provider: IntegrationProvider,
        config: &serde_json::Map<String, serde_json::Value>,
        secrets: Option<&Secrets>,
    ) -> Result<StoredIntegration, DbError> {
        let org = self.org();
        let sealed = secrets
            .map(|secrets| {
                let clear: BTreeMap<&str, &str> = secrets
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose_secret()))
                    .collect();
                let json = Zeroizing::new(
                    serde_json::to_vec(&clear).map_err(|e| DbError::Corrupt(e.to_string()))?,
                );
                Ok::<_, DbError>(keyring.seal(&json, &secrets_aad(org, provider))?)
            })
            .transpose()?;
        let row = integration_query!(
            [
                "INSERT INTO integration_settings (org_id, provider, config, secrets_enc, key_id)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (org_id, provider) DO UPDATE SET
                 config = EXCLUDED.config,
                 secrets_enc = CASE WHEN $6 THEN EXCLUDED.secrets_enc ELSE integration_settings.secrets_enc END,
                 key_id = CASE WHEN $6 THEN EXCLUDED.key_id ELSE integration_settings.key_id END,
                     updated_at = EXCLUDED.updated_at
                 RETURNING ",
                ""
            ],
            org.as_uuid(),
            provider.as_str(),
            serde_json::Value::Object(config.clone()),
            sealed.as_ref().map(|s| s.bytes.as_slice()),
            sealed.as_ref().map(|s| s.key_id.as_str()),
            sealed.is_some()
        )
        .fetch_one(self.conn())
        .await?;
        from_row(row)
    }
}
