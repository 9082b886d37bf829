//! Telephony and SMS provider settings. `config` is shown as stored; `secrets` are
//! write-only: stored encrypted as one blob, shown masked. Admins change them; staff may
//! look at the masked view.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, Tenant};
use crate::pagination::Page;
use crate::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::crypto::Keyring;
use voxanne_db::integrations::{Secrets, StoredIntegration};
use voxanne_domain::{IntegrationProvider, OrgId};
use voxanne_webhooks::vapi_auth::{ServerAuth, CONFIG_KEY};

const MAX_NAMES: usize = 50;
const MAX_SECRET_BYTES: usize = 8 * 1024;
/// Config keys that name a secret: those belong in `secrets`, never in clear.
const SECRET_WORDS: &[&str] = &[
    "secret",
    "token",
    "password",
    "passwd",
    "private",
    "api_key",
    "apikey",
    "credential",
];
/// Names that look like a secret's and are not: the id of a credential kept at the provider.
const NOT_SECRETS: &[&str] = &["credential_id"];
const MASK: &str = "••••";
/// The secret that authenticates a clinic's Vapi webhooks.
const WEBHOOK_SECRET: &str = "webhook_secret";
const MIN_WEBHOOK_SECRET_BYTES: usize = 16;

/// Creates or replaces a provider's settings. `config` (non-secret settings) replaces the
/// stored config; `secrets` (write-only) replaces the stored secrets, and when omitted the
/// stored ones are kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "config": {"account_sid": "AC0123456789abcdef0123456789abcdef", "from_number": "+14155550100"},
    "secrets": {"auth_token": "example-auth-token-0123456789abcdef"}
}))]
pub struct PutIntegration {
    #[schema(value_type = Object)]
    config: Map<String, Value>,
    /// Write-only: names to values, stored encrypted, shown masked.
    #[schema(value_type = Option<BTreeMap<String, String>>, write_only)]
    secrets: Option<BTreeMap<String, SecretString>>,
}

/// A provider's settings as the API shows them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub provider: IntegrationProvider,
    /// Whether the clinic saved settings for this provider.
    pub configured: bool,
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
    /// The stored secrets' names, values masked: `••••` and, for a value of 16 characters or
    /// more, its last four.
    #[schema(example = json!({"auth_token": "••••cdef"}))]
    pub secrets: BTreeMap<String, String>,
    /// Set when the stored secrets cannot be decrypted (damaged, or sealed with a key that is
    /// no longer configured): PUT new secrets.
    pub secrets_error: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The vapi integration's settings that decide how its webhooks are authenticated
/// (`config.server_auth`, voxanne_webhooks::vapi_auth), refused with the field at fault.
fn check_vapi(config: &Map<String, Value>, secrets: Option<&Secrets>) -> Result<(), ApiError> {
    let field = |name: &str| match name {
        "" => format!("config.{CONFIG_KEY}"),
        name => format!("config.{CONFIG_KEY}.{name}"),
    };
    let auth = ServerAuth::from_config(&Value::Object(config.clone()))
        .map_err(|e| ApiError::validation(field(&e.field), e.message))?;
    let secret = secrets.and_then(|s| s.get(WEBHOOK_SECRET));
    if let (ServerAuth::Hmac(plan), Some(secret)) = (&auth, secret) {
        if plan.secret_is_base64
            && base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                secret.expose_secret(),
            )
            .is_err()
        {
            return Err(ApiError::validation(
                format!("secrets.{WEBHOOK_SECRET}"),
                "secret_is_base64 is set: the secret must be base64",
            ));
        }
    }
    if secret.is_some_and(|s| s.expose_secret().len() < MIN_WEBHOOK_SECRET_BYTES) {
        return Err(ApiError::validation(
            format!("secrets.{WEBHOOK_SECRET}"),
            format!(
                "at least {MIN_WEBHOOK_SECRET_BYTES} characters: it is all that proves a call \
                 is the clinic's"
            ),
        ));
    }
    Ok(())
}

impl PutIntegration {
    fn parse(
        self,
        provider: IntegrationProvider,
    ) -> Result<(Map<String, Value>, Option<Secrets>), ApiError> {
        if self.config.len() > MAX_NAMES {
            return Err(ApiError::validation(
                "config",
                format!("at most {MAX_NAMES} settings"),
            ));
        }
        for name in self.config.keys() {
            let field = format!("config.{name}");
            if !valid_name(name) {
                return Err(ApiError::validation(
                    field,
                    "setting names are 1 to 64 letters, digits or `_`",
                ));
            }
            let lower = name.to_ascii_lowercase();
            if !NOT_SECRETS.contains(&lower.as_str())
                && SECRET_WORDS.iter().any(|w| lower.contains(w))
            {
                return Err(ApiError::validation(
                    field,
                    "this looks like a secret: send it in `secrets`, which is stored encrypted",
                ));
            }
        }
        let secrets = self
            .secrets
            .map(|secrets| {
                if secrets.len() > MAX_NAMES {
                    return Err(ApiError::validation(
                        "secrets",
                        format!("at most {MAX_NAMES} secrets"),
                    ));
                }
                for (name, value) in &secrets {
                    let field = format!("secrets.{name}");
                    if !valid_name(name) {
                        return Err(ApiError::validation(
                            field,
                            "secret names are 1 to 64 letters, digits or `_`",
                        ));
                    }
                    let value = value.expose_secret();
                    if value.trim().is_empty() || value.len() > MAX_SECRET_BYTES {
                        return Err(ApiError::validation(
                            field,
                            format!("must be 1 to {MAX_SECRET_BYTES} bytes"),
                        ));
                    }
                }
                Ok(secrets)
            })
            .transpose()?;
        if provider == IntegrationProvider::Vapi {
            check_vapi(&self.config, secrets.as_ref())?;
        }
        Ok((self.config, secrets))
    }
}

fn mask(value: &SecretString) -> String {
    let chars: Vec<char> = value.expose_secret().chars().collect();
    if chars.len() >= 16 {
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{MASK}{tail}")
    } else {
        MASK.to_owned()
    }
}

fn view(
    keyring: &Keyring,
    org: OrgId,
    provider: IntegrationProvider,
    stored: Option<StoredIntegration>,
) -> IntegrationView {
    let Some(stored) = stored else {
        return IntegrationView {
            provider,
            configured: false,
            config: Map::new(),
            secrets: BTreeMap::new(),
            secrets_error: None,
            updated_at: None,
        };
    };
    let (secrets, secrets_error) = match stored.open_secrets(keyring, org) {
        Ok(secrets) => (
            secrets.iter().map(|(k, v)| (k.clone(), mask(v))).collect(),
            None,
        ),
        Err(e) => {
            tracing::warn!(%provider, error = %e, "stored integration secrets cannot be opened");
            (
                BTreeMap::new(),
                Some(
                    "the stored secrets cannot be decrypted (damaged, or their key is no \
                     longer configured): PUT new secrets"
                        .to_owned(),
                ),
            )
        }
    };
    IntegrationView {
        provider,
        configured: true,
        config: stored.config,
        secrets,
        secrets_error,
        updated_at: Some(stored.updated_at),
    }
}

/// An unknown provider is not a resource: 404.
fn provider(text: &str) -> Result<IntegrationProvider, ApiError> {
    text.parse().map_err(|_| ApiError::NotFound)
}

/// Every provider, configured or not (one page: there are four).
#[utoipa::path(get, path = "/integrations", tag = "integrations", responses((status = 200, body = Page<IntegrationView>)))]
pub async fn list(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
) -> Result<Json<Page<IntegrationView>>, ApiError> {
    let mut stored = tx.list_integrations().await?;
    let org = tx.org();
    tx.commit().await?;
    let data = IntegrationProvider::ALL
        .iter()
        .map(|&p| {
            let row = stored
                .iter()
                .position(|s| s.provider == p)
                .map(|i| stored.swap_remove(i));
            view(&state.keyring, org, p, row)
        })
        .collect();
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

/// One provider's settings, secrets masked.
#[utoipa::path(get, path = "/integrations/{provider}", tag = "integrations", params(("provider" = IntegrationProvider, Path, description = "twilio, vonage, vapi or retell")), responses((status = 200, body = IntegrationView)))]
pub async fn get(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppPath(name): AppPath<String>,
) -> Result<Json<IntegrationView>, ApiError> {
    let provider = provider(&name)?;
    let stored = tx.get_integration(provider).await?;
    let org = tx.org();
    tx.commit().await?;
    Ok(Json(view(&state.keyring, org, provider, stored)))
}

/// Creates or replaces a provider's settings (admins). Secrets are write-only.
#[utoipa::path(put, path = "/integrations/{provider}", tag = "integrations", params(("provider" = IntegrationProvider, Path, description = "twilio, vonage, vapi or retell")), request_body = PutIntegration, responses((status = 200, body = IntegrationView)))]
pub async fn put(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppPath(name): AppPath<String>,
    AppJson(body): AppJson<PutIntegration>,
) -> Result<Json<IntegrationView>, ApiError> {
    let provider = provider(&name)?;
    ApiError::require_admin(tx.membership(), "staff cannot change integrations")?;
    let (config, secrets) = body.parse(provider)?;
    let stored = tx
        .put_integration(&state.keyring, provider, &config, secrets.as_ref())
        .await?;
    let org = tx.org();
    tx.commit().await?;
    Ok(Json(view(&state.keyring, org, provider, Some(stored))))
}

/// Points the clinic's Vapi numbers at this server, in one step (admins): with the clinic's
/// Vapi private API key (`secrets.api_key`, `PUT /integrations/vapi`), makes or updates the
/// clinic's Vapi credential from its `server_auth` and webhook secret (made if it has none),
/// registers the account's numbers that no clinic has yet, and sets each of the clinic's
/// numbers' `server` to this server with that credential. Idempotent; says what it changed.
#[utoipa::path(post, path = "/integrations/vapi/sync", tag = "integrations", responses(
    (status = 200, body = crate::vapi_sync::SyncReport),
    (status = 409, description = "`vapi_not_configured`, `vapi_api_key_missing`, `public_url_not_set`, `secrets_unreadable`", body = crate::openapi::ErrorBody),
    (status = 422, description = "`vapi_key_refused`: Vapi refused the API key", body = crate::openapi::ErrorBody),
    (status = 429, description = "`vapi_rate_limited`, with Retry-After", body = crate::openapi::ErrorBody),
    (status = 502, description = "`vapi_failed`: Vapi answered otherwise or could not be reached", body = crate::openapi::ErrorBody),
))]
pub async fn sync_vapi(
    State(state): State<AppState>,
    Tenant(tx): Tenant,
) -> Result<Json<crate::vapi_sync::SyncReport>, ApiError> {
    ApiError::require_admin(tx.membership(), "staff cannot change integrations")?;
    let (org, user) = (tx.org(), tx.membership().user);
    // Vapi is called with no transaction open.
    tx.commit().await?;
    let report =
        crate::vapi_sync::sync(&state.db, &state.keyring, &state.vapi, org, Some(user)).await?;
    Ok(Json(report))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(sync_vapi))
        .routes(routes!(get, put))
}
