//! The voice agent's configuration: greeting, voice, opening hours, time zone and transfer
//! number. One per clinic; staff may read it, admins change it.

use crate::error::ApiError;
use crate::extract::{AppJson, Tenant};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::agent_configuration::AgentConfiguration as StoredConfiguration;
use voxanne_domain::{OpeningHours, PhoneNumber, TimeZoneName};
use voxanne_webhooks::vapi_voice::Voice;

const MAX_GREETING_CHARS: usize = 1000;
const MAX_VOICE_CHARS: usize = 120;

/// The whole configuration (PUT replaces it). Opening hours are keyed `mon`..`sun`, each a
/// list of non-overlapping `["HH:MM","HH:MM"]` intervals; a missing day is closed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "greeting": "Thank you for calling Riverside Clinic, how can I help?",
    "voice": "vapi:Savannah",
    "opening_hours": {"mon": [["09:00", "12:30"], ["13:30", "17:00"]], "tue": [["09:00", "17:00"]], "sat": []},
    "time_zone": "Europe/London",
    "transfer_number": "+442079460958",
    "hipaa_enabled": true
}))]
pub struct PutAgentConfiguration {
    #[schema(max_length = 1000)]
    greeting: String,
    /// A voice of Vapi's catalogue: `provider:voiceId` (`vapi:Elliot`, `openai:alloy`,
    /// `11labs:<voice id>`, `azure:en-US-AriaNeural`, …) or the name of one of Vapi's own
    /// voices; stored as `provider:voiceId`.
    #[schema(example = "vapi:Savannah")]
    voice: String,
    opening_hours: OpeningHours,
    time_zone: TimeZoneName,
    /// E.164; `null` or absent: no transfer.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    transfer_number: Option<PhoneNumber>,
    /// Vapi's HIPAA mode for the clinic's calls (`compliancePlan.hipaaEnabled`); default false.
    #[serde(default)]
    hipaa_enabled: bool,
}

/// The clinic's agent configuration as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AgentConfiguration {
    /// What the agent says when it answers.
    greeting: String,
    /// `provider:voiceId`.
    voice: String,
    opening_hours: OpeningHours,
    time_zone: TimeZoneName,
    /// Where the agent transfers a caller who asks for a person (E.164).
    #[schema(value_type = Option<String>, example = "+14155550100")]
    transfer_number: Option<PhoneNumber>,
    /// Whether Vapi runs the clinic's calls under its HIPAA mode (`compliancePlan.hipaaEnabled`:
    /// Vapi keeps no recording or transcript; honoured on Vapi plans that include it).
    hipaa_enabled: bool,
    /// `null` until the clinic saves a configuration (the defaults apply).
    updated_at: Option<DateTime<Utc>>,
}

impl From<StoredConfiguration> for AgentConfiguration {
    fn from(c: StoredConfiguration) -> Self {
        Self {
            greeting: c.greeting,
            voice: c.voice,
            opening_hours: c.opening_hours,
            time_zone: c.time_zone,
            transfer_number: c.transfer_number,
            hipaa_enabled: c.hipaa_enabled,
            updated_at: c.updated_at,
        }
    }
}

impl PutAgentConfiguration {
    fn parse(self) -> Result<StoredConfiguration, ApiError> {
        if self.greeting.chars().count() > MAX_GREETING_CHARS {
            return Err(ApiError::validation(
                "greeting",
                format!("must be at most {MAX_GREETING_CHARS} characters"),
            ));
        }
        let voice = self.voice.trim();
        if voice.is_empty() || voice.chars().count() > MAX_VOICE_CHARS {
            return Err(ApiError::validation(
                "voice",
                format!("must be 1 to {MAX_VOICE_CHARS} characters"),
            ));
        }
        let voice = Voice::parse(voice).map_err(|e| ApiError::validation("voice", e))?;
        Ok(StoredConfiguration {
            greeting: self.greeting,
            voice: voice.as_stored(),
            hipaa_enabled: self.hipaa_enabled,
            opening_hours: self.opening_hours,
            time_zone: self.time_zone,
            transfer_number: self.transfer_number,
            updated_at: None,
        })
    }
}

/// The clinic's agent configuration; the defaults (`updated_at: null`) until one is saved.
#[utoipa::path(get, path = "/agent-configuration", tag = "agent", responses((status = 200, body = AgentConfiguration)))]
pub async fn get(Tenant(mut tx): Tenant) -> Result<Json<AgentConfiguration>, ApiError> {
    let config = tx.get_agent_configuration().await?;
    tx.commit().await?;
    Ok(Json(config.into()))
}

/// Replaces the clinic's agent configuration (admins).
#[utoipa::path(put, path = "/agent-configuration", tag = "agent", request_body = PutAgentConfiguration, responses((status = 200, body = AgentConfiguration)))]
pub async fn put(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<PutAgentConfiguration>,
) -> Result<Json<AgentConfiguration>, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "staff cannot change the agent configuration",
    )?;
    let config = body.parse()?;
    let saved = tx.put_agent_configuration(&config).await?;
    tx.commit().await?;
    Ok(Json(saved.into()))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new().routes(routes!(get, put))
}
