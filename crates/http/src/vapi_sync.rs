//! Onboarding a clinic's Vapi account in one step: with the clinic's private API key (its
//! vapi integration's `api_key`), make Vapi send this clinic's calls here, authenticated.
//!
//! 1. The clinic's webhook secret is made if it has none (stored sealed before Vapi hears
//!    of it).
//! 2. Its Vapi credential (`POST /credential`, a custom credential whose
//!    `authenticationPlan` is the clinic's `server_auth` with that secret) is created, or
//!    updated when the clinic has one (`PATCH /credential/{id}`; re-created if Vapi lost it),
//!    and its id kept as the integration's `credential_id`.
//! 3. Each number of the Vapi account (`GET /phone-number`) that is the clinic's in Voxanne,
//!    or that no clinic has yet (then it becomes the clinic's), is pointed here:
//!    `PATCH /phone-number/{id}` with `server: {url, credentialId}` and no fixed assistant,
//!    so that Vapi asks for one (`assistant-request`). A number another clinic has is left
//!    alone. A number already pointed here is not touched.
//!
//! Running it again changes nothing that is right. No tenant transaction is held while Vapi
//! is called.

use crate::error::ApiError;
use crate::vapi::{VapiApi, VapiError, VapiSettings};
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Map, Value};
use voxanne_agent::CREDENTIAL_ID;
use voxanne_db::crypto::Keyring;
use voxanne_db::phone_numbers::NUMBER_TAKEN;
use voxanne_db::{Db, DbError, TenantTx};
use voxanne_domain::{IntegrationProvider, OrgId, PhoneNumber, UserId};
use voxanne_webhooks::vapi_auth::ServerAuth;

const API_KEY: &str = "api_key";
const WEBHOOK_SECRET: &str = "webhook_secret";
/// The credential's name in the clinic's Vapi dashboard (Vapi allows 40 characters).
const CREDENTIAL_NAME: &str = "Voxanne webhooks";

/// What the sync did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncReport {
    /// Where the clinic's numbers now send their calls.
    pub server_url: String,
    pub credential: CredentialChange,
    /// Whether a webhook secret was made for the clinic (it had none).
    pub webhook_secret_generated: bool,
    pub numbers: Vec<NumberChange>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CredentialChange {
    /// The Vapi credential's id (kept as the integration's `credential_id`).
    pub id: String,
    /// `created` or `updated`.
    pub action: &'static str,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NumberChange {
    /// As Vapi lists it.
    pub number: String,
    /// Vapi's id of the number.
    pub vapi_id: String,
    /// `linked` (pointed here now), `registered` (added to the clinic's numbers and linked),
    /// `unchanged` (already pointed here), `taken` (another clinic's: left alone),
    /// `not_e164` (not a phone number: left alone).
    pub action: &'static str,
}

impl From<VapiError> for ApiError {
    fn from(e: VapiError) -> Self {
        match e {
            VapiError::Unauthorized(_) => ApiError::Unprocessable {
                code: "vapi_key_refused",
                message: format!(
                    "{e}: PUT /api/v1/integrations/vapi with the private API key of the \
                     clinic's Vapi account"
                ),
            },
            VapiError::RateLimited { retry_after } => ApiError::RateLimited {
                code: "vapi_rate_limited",
                message: e.to_string(),
                retry_after,
            },
            other => ApiError::Upstream {
                code: "vapi_failed",
                message: other.to_string(),
            },
        }
    }
}

fn conflict(code: &'static str, message: &str) -> ApiError {
    ApiError::Conflict {
        code,
        message: message.to_owned(),
    }
}

/// A new webhook secret: 32 random bytes, URL-safe base64.
fn new_secret() -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The clinic's tenant transaction: as `user` (who must be a member) or as the system.
async fn open(db: &Db, org: OrgId, user: Option<UserId>) -> Result<TenantTx, ApiError> {
    Ok(match user {
        Some(user) => db.tenant(org, user).await?,
        None => db.job_tenant(org).await?,
    })
}

/// Saves the vapi integration's config, and its secrets when given.
async fn save(
    db: &Db,
    keyring: &Keyring,
    org: OrgId,
    user: Option<UserId>,
    config: &Map<String, Value>,
    secrets: Option<&voxanne_db::integrations::Secrets>,
) -> Result<(), ApiError> {
    let mut tx = open(db, org, user).await?;
    tx.put_integration(keyring, IntegrationProvider::Vapi, config, secrets)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Points the clinic's Vapi numbers at this server (the module's documentation says how).
/// `user` is the admin who asked (`None`: the operator, from the command line).
pub async fn sync(
    db: &Db,
    keyring: &Keyring,
    settings: &VapiSettings,
    org: OrgId,
    user: Option<UserId>,
) -> Result<SyncReport, ApiError> {
    let server_url = settings.webhook_url().ok_or_else(|| {
        conflict(
            "public_url_not_set",
            "this server does not know the address Vapi reaches it at: set VOXANNE_PUBLIC_URL",
        )
    })?;

    // What the clinic has, read in one short transaction.
    let mut tx = open(db, org, user).await?;
    let stored = tx
        .get_integration(IntegrationProvider::Vapi)
        .await?
        .ok_or_else(|| {
            conflict(
                "vapi_not_configured",
                "PUT /api/v1/integrations/vapi with secrets.api_key (the Vapi account's private API key) first",
            )
        })?;
    let mut owned = Vec::new();
    let mut after = None;
    loop {
        let page = tx.list_phone_numbers(after, 500).await?;
        let done = page.len() < 500;
        after = page.last().map(|n| (n.created_at, n.id.as_uuid()));
        owned.extend(page.into_iter().map(|n| n.number));
        if done {
            break;
        }
    }
    tx.commit().await?;
    let mut secrets = stored.open_secrets(keyring, org).map_err(|_| {
        conflict(
            "secrets_unreadable",
            "the stored vapi secrets cannot be decrypted: PUT them again",
        )
    })?;
    let api_key = secrets
        .get(API_KEY)
        .map(|k| k.expose_secret().to_owned())
        .ok_or_else(|| {
            conflict(
                "vapi_api_key_missing",
                "PUT /api/v1/integrations/vapi with secrets.api_key (the Vapi account's private API key) first",
            )
        })?;
    let mut config = stored.config.clone();
    let auth = ServerAuth::from_config(&Value::Object(config.clone()))
        .map_err(|e| ApiError::validation(format!("config.server_auth.{}", e.field), e.message))?;

    // 1. A secret the clinic's credential carries, stored before Vapi is told of it.
    let webhook_secret_generated = !secrets.contains_key(WEBHOOK_SECRET);
    if webhook_secret_generated {
        secrets.insert(WEBHOOK_SECRET.to_owned(), new_secret());
        save(db, keyring, org, user, &config, Some(&secrets)).await?;
    }
    let secret = secrets
        .get(WEBHOOK_SECRET)
        .map(|s| s.expose_secret().to_owned())
        .unwrap_or_default();

    // 2. The clinic's credential at Vapi.
    let api = VapiApi::new(settings, &api_key);
    let token_url = settings.token_url().unwrap_or_default();
    let credential = auth.vapi_credential(CREDENTIAL_NAME, &secret, (&token_url, &org.to_string()));
    let known = config
        .get(CREDENTIAL_ID)
        .and_then(Value::as_str)
        .map(str::to_owned);
    let update =
        json!({"name": CREDENTIAL_NAME, "authenticationPlan": credential["authenticationPlan"]});
    let credential = match known {
        Some(id) => match api.update_credential(&id, &update).await {
            Ok(()) => CredentialChange {
                id,
                action: "updated",
            },
            Err(VapiError::NotFound(_)) => CredentialChange {
                id: api.create_credential(&credential).await?,
                action: "created",
            },
            Err(e) => return Err(e.into()),
        },
        None => CredentialChange {
            id: api.create_credential(&credential).await?,
            action: "created",
        },
    };
    if credential.action == "created" {
        config.insert(CREDENTIAL_ID.to_owned(), json!(credential.id));
        save(db, keyring, org, user, &config, None).await?;
    }

    // 3. The numbers.
    let mut numbers = Vec::new();
    for listed in api.phone_numbers().await? {
        let vapi_id = listed["id"].as_str().unwrap_or_default().to_owned();
        let text = listed["number"].as_str().unwrap_or_default().to_owned();
        let change = |action| NumberChange {
            number: text.clone(),
            vapi_id: vapi_id.clone(),
            action,
        };
        let Ok(number) = PhoneNumber::parse(&text) else {
            numbers.push(change("not_e164"));
            continue;
        };
        let mut action = "linked";
        if !owned.iter().any(|o| o == number.as_str()) {
            let mut tx = open(db, org, user).await?;
            match tx.add_phone_number(&number, Some("Vapi")).await {
                Ok(_) => {
                    tx.commit().await?;
                    owned.push(number.as_str().to_owned());
                    action = "registered";
                }
                Err(DbError::Constraint { constraint }) if constraint == NUMBER_TAKEN => {
                    numbers.push(change("taken"));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let pointed_here = listed["server"]["url"] == json!(server_url)
            && listed["server"]["credentialId"] == json!(credential.id);
        let fixed = ["assistantId", "squadId", "workflowId"]
            .iter()
            .any(|k| !listed[*k].is_null());
        if pointed_here && !fixed {
            numbers.push(change(if action == "registered" {
                action
            } else {
                "unchanged"
            }));
            continue;
        }
        let mut server = listed["server"].as_object().cloned().unwrap_or_default();
        server.insert("url".into(), json!(server_url));
        server.insert("credentialId".into(), json!(credential.id));
        let mut update =
            json!({"server": server, "assistantId": null, "squadId": null, "workflowId": null});
        if let Some(provider) = listed.get("provider") {
            update["provider"] = provider.clone();
        }
        api.update_phone_number(&vapi_id, &update).await?;
        numbers.push(change(action));
    }
    tracing::info!(%org, credential = %credential.action, numbers = numbers.len(), "synced the clinic's Vapi account");
    Ok(SyncReport {
        server_url,
        credential,
        webhook_secret_generated,
        numbers,
    })
}
