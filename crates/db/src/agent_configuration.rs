//! The voice agent's configuration: one row per org, defaults until the clinic saves one.

use crate::rows::query_row;
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{OpeningHours, PhoneNumber, TimeZoneName};

/// A clinic's agent configuration, checked (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentConfiguration {
    /// What the agent says when it answers.
    pub greeting: String,
    pub voice: String,
    pub opening_hours: OpeningHours,
    pub time_zone: TimeZoneName,
    /// Where the agent transfers a caller who asks for a person (E.164).
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

/// A row of `agent_configurations` as stored, before its values are checked.
struct StoredConfiguration {
    greeting: String,
    voice: String,
    opening_hours: serde_json::Value,
    time_zone: String,
    transfer_number: Option<String>,
    hipaa_enabled: bool,
    updated_at: DateTime<Utc>,
}

/// `query_as!` for [`StoredConfiguration`]: the column list goes between the first two pieces.
macro_rules! configuration_query {
    ($($query:tt)*) => {
        query_row!(
            StoredConfiguration,
            "greeting, voice, opening_hours, time_zone, transfer_number, hipaa_enabled, updated_at",
            $($query)*
        )
    };
}

fn corrupt(e: impl std::fmt::Display) -> DbError {
    DbError::Corrupt(format!("agent_configurations: {e}"))
}

impl TryFrom<StoredConfiguration> for AgentConfiguration {
    type Error = DbError;
    fn try_from(row: StoredConfiguration) -> Result<Self, DbError> {
        Ok(AgentConfiguration {
            greeting: row.greeting,
            voice: row.voice,
            opening_hours: serde_json::from_value(row.opening_hours).map_err(corrupt)?,
            time_zone: TimeZoneName::parse(&row.time_zone).map_err(corrupt)?,
            transfer_number: row
                .transfer_number
                .map(|t| PhoneNumber::parse(&t))
                .transpose()
                .map_err(corrupt)?,
            hipaa_enabled: row.hipaa_enabled,
            updated_at: Some(row.updated_at),
        })
    }
}

impl TenantTx {
    /// The org's configuration, or the defaults when it has none.
    pub async fn get_agent_configuration(&mut self) -> Result<AgentConfiguration, DbError> {
        let org = self.org().as_uuid();
        let row = configuration_query!(
            ["SELECT ", " FROM agent_configurations WHERE org_id = $1"],
            org
        )
        .fetch_optional(self.conn())
        .await?;
        row.map(AgentConfiguration::try_from)
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
        let row = configuration_query!(
            [
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
                     updated_at = EXCLUDED.updated_at
                 RETURNING ",
                ""
            ],
            org,
            config.greeting,
            config.voice,
            hours,
            config.time_zone.as_str(),
            config.transfer_number.as_ref().map(PhoneNumber::as_str),
            config.hipaa_enabled
        )
        .fetch_one(self.conn())
        .await?;
        row.try_into()
    }
}
