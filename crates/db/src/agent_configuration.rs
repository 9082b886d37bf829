//! The voice agent's configuration: one row per org, defaults until the clinic saves one.

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::Row;
use voxanne_domain::{OpeningHours, PhoneNumber, TimeZoneName};

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentConfiguration {
    /// What the agent says when it answers.
    pub greeting: String,
    pub voice: String,
    pub opening_hours: OpeningHours,
    pub time_zone: TimeZoneName,
    /// Where the agent transfers a caller who asks for a person (E.164).
    #[schema(value_type = Option<String>, example = "+14155550100")]
    pub transfer_number: Option<PhoneNumber>,
    /// Whether Vapi runs the clinic's calls under its HIPAA mode (`compliancePlan.hipaaEnabled`:
    /// Vapi keeps no recording or transcript; honoured on Vapi plans that include it).
    pub hipaa_enabled: bool,
    /// `null` until the clinic saves a configuration (the defaults apply).
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for AgentConfiguration {
    /// The column defaults of `agent_configurations`.
    fn default() -> Self {
        Self {
            greeting: String::new(),
            voice: "vapi:Elliot".to_owned(),
            opening_hours: OpeningHours::default(),
            time_zone: TimeZoneName::utc(),
            transfer_number: None,
            hipaa_enabled: false,
            updated_at: None,
        }
    }
}

const COLUMNS: &str =
    "greeting, voice, opening_hours, time_zone, transfer_number, hipaa_enabled, updated_at";

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("agent_configurations: {e}"))
}

fn from_row(row: &PgRow) -> Result<AgentConfiguration, DbError> {
    let hours: serde_json::Value = row.try_get("opening_hours")?;
    let time_zone: String = row.try_get("time_zone")?;
    let transfer: Option<String> = row.try_get("transfer_number")?;
    Ok(AgentConfiguration {
        greeting: row.try_get("greeting")?,
        voice: row.try_get("voice")?,
        opening_hours: serde_json::from_value(hours).map_err(corrupt)?,
        time_zone: TimeZoneName::parse(&time_zone).map_err(corrupt)?,
        transfer_number: transfer
            .map(|t| PhoneNumber::parse(&t))
            .transpose()
            .map_err(corrupt)?,
        hipaa_enabled: row.try_get("hipaa_enabled")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl TenantTx {
    /// The org's configuration, or the defaults when it has none.
    pub async fn get_agent_configuration(&mut self) -> Result<AgentConfiguration, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM agent_configurations WHERE org_id = $1"
        ))
        .bind(org)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref()
            .map(from_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Creates or replaces the org's configuration (`updated_at` is set here).
    pub async fn put_agent_configuration(
        &mut self,
        config: &AgentConfiguration,
    ) -> Result<AgentConfiguration, DbError> {
        let org = self.org().as_uuid();
        let hours = serde_json::to_value(&config.opening_hours).map_err(corrupt)?;
        let row = sqlx::query(&format!(
            "INSERT INTO agent_configurations
                 (org_id, greeting, voice, opening_hours, time_zone, transfer_number, hipaa_enabled)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (org_id) DO UPDATE SET
                 greeting = EXCLUDED.greeting,
                 voice = EXCLUDED.voice,
                 opening_hours = EXCLUDED.opening_hours,
                 time_zone = EXCLUDED.time_zone,
                 transfer_number = EXCLUDED.transfer_number,
                 hipaa_enabled = EXCLUDED.hipaa_enabled,
                 updated_at = now()
             RETURNING {COLUMNS}"
        ))
        .bind(org)
        .bind(&config.greeting)
        .bind(&config.voice)
        .bind(hours)
        .bind(config.time_zone.as_str())
        .bind(config.transfer_number.as_ref().map(PhoneNumber::as_str))
        .bind(config.hipaa_enabled)
        .fetch_one(self.conn())
        .await?;
        from_row(&row)
    }
}
