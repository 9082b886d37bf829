//! The reply to `assistant-request`: the clinic's own assistant (greeting, voice, time zone,
//! opening hours, transfer number, tools), or, for a clinic that is not taking calls, a polite
//! assistant that knows nothing about it. The shape is Vapi's `CreateAssistantDTO` (Vapi's
//! OpenAPI document): `firstMessage`, `voice` from Vapi's catalogue, the `model` block with
//! the tools in their current form (`function` tools, `endCall`, `transferCall` with
//! destinations), `server`, and `compliancePlan`.

use crate::catalogue::TOOLS;
use crate::Agent;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use std::time::Duration;
use voxanne_db::agent_configuration::AgentConfiguration;
use voxanne_db::{DbError, TenantTx};
use voxanne_domain::{IntegrationProvider, Weekday};
use voxanne_webhooks::vapi_voice::Voice;

/// The id of the clinic's Vapi credential, in its vapi integration config (set by
/// `integrations/vapi/sync`, or by hand).
pub const CREDENTIAL_ID: &str = "credential_id";

/// The platform waits 7.5 s end to end (network included) for the answer; past this much of
/// it, the caller hears the "unavailable" assistant rather than silence.
pub const ASSISTANT_DEADLINE: Duration = Duration::from_secs(5);

const DAY_NAMES: [(Weekday, &str); 7] = [
    (Weekday::Mon, "Monday"),
    (Weekday::Tue, "Tuesday"),
    (Weekday::Wed, "Wednesday"),
    (Weekday::Thu, "Thursday"),
    (Weekday::Fri, "Friday"),
    (Weekday::Sat, "Saturday"),
    (Weekday::Sun, "Sunday"),
];

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// "Monday 09:00-12:00 and 13:00-17:00; Tuesday closed; …"
fn opening_hours_text(config: &AgentConfiguration) -> String {
    DAY_NAMES
        .iter()
        .map(|(day, name)| {
            let intervals = config.opening_hours.day(*day);
            if intervals.is_empty() {
                format!("{name} closed")
            } else {
                let times: Vec<String> = intervals
                    .iter()
                    .map(|i| format!("{}-{}", hhmm(i.start), hhmm(i.end)))
                    .collect();
                format!("{name} {}", times.join(" and "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where the assistant's server messages and tool calls go, and the Vapi credential they carry
/// (`Server`: `url`, `credentialId`). `None`: the phone number's own server settings apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRef {
    pub url: String,
    pub credential_id: String,
}

impl ServerRef {
    fn to_vapi(&self) -> Value {
        json!({"url": self.url, "credentialId": self.credential_id})
    }
}

/// A service the clinic offers, as the assistant is told of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOffer {
    pub name: String,
    pub minutes: i32,
    /// Who gives it.
    pub practitioners: Vec<String>,
}

/// The clinic's assistant, as a transient assistant in Vapi's `assistant-request` reply.
pub fn clinic_assistant(
    clinic: &str,
    config: &AgentConfiguration,
    services: &[ServiceOffer],
    now: DateTime<Utc>,
    server: Option<&ServerRef>,
) -> Value {
    let tz: Tz = config.time_zone.as_str().parse().unwrap_or(Tz::UTC);
    let today = now.with_timezone(&tz).format("%A %-d %B %Y, %H:%M");
    let greeting = if config.greeting.trim().is_empty() {
        format!("Hello, you've reached {clinic}. How can I help you today?")
    } else {
        config.greeting.clone()
    };
    let hours = opening_hours_text(config);
    let transfer = config
        .transfer_number
        .as_ref()
        .map(|n| n.as_str().to_owned());
    let mut prompt = format!(
        "You are the receptionist of {clinic}, answering the phone. Be brief and warm. \
         The clinic's time zone is {tz}; it is now {today} there, and every time you say is in \
         that time zone. Opening hours: {hours}. \
         To book: check_availability, read out a few free times, hold_slot the one the caller \
         picks (ask for their name if find_contact does not know them), repeat it back, and \
         confirm_booking only after they say yes. Callers may cancel or move only their own \
         appointments (cancel_appointment, reschedule_appointment). Answer questions about the \
         clinic with search_knowledge_base, and never make up medical advice.",
        tz = config.time_zone.as_str(),
    );
    if !services.is_empty() {
        let list: Vec<String> = services
            .iter()
            .map(|s| {
                if s.practitioners.is_empty() {
                    format!("{} ({} minutes)", s.name, s.minutes)
                } else {
                    format!(
                        "{} ({} minutes; with {})",
                        s.name,
                        s.minutes,
                        s.practitioners.join(", ")
                    )
                }
            })
            .collect();
        prompt.push_str(&format!(
            " Services: {}. Ask what the caller needs and pass it as `service` to \
             check_availability and hold_slot; pass `practitioner` when the caller asks for \
             someone, and the one check_availability gave with the time to hold_slot.",
            list.join("; ")
        ));
    }
    let mut tools: Vec<Value> = TOOLS
        .iter()
        .map(|t| {
            let mut tool = json!({
                "type": "function",
                "async": false,
                "function": {"name": t.name, "description": t.description, "parameters": (t.parameters)()},
            });
            if let Some(server) = server {
                tool["server"] = server.to_vapi();
            }
            tool
        })
        .collect();
    tools.push(json!({"type": "endCall"}));
    if let Some(number) = &transfer {
        prompt.push_str(
            " If the caller asks for a person, or you cannot help, transfer the call with transferCall.",
        );
        tools.push(json!({
            "type": "transferCall",
            "destinations": [{"type": "number", "number": number,
                              "message": "Please hold while I transfer you."}],
        }));
    }
    let mut assistant = json!({
        "name": clinic.chars().take(40).collect::<String>(),
        "firstMessage": greeting,
        "voice": Voice::from_stored(&config.voice).to_vapi(),
        "model": {
            "provider": "openai",
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": prompt}],
            "tools": tools,
        },
        "compliancePlan": {"hipaaEnabled": config.hipaa_enabled},
        "metadata": {
            "timeZone": config.time_zone.as_str(),
            "openingHours": config.opening_hours,
            "transferNumber": transfer,
        },
    });
    if let Some(server) = server {
        assistant["server"] = server.to_vapi();
    }
    json!({ "assistant": assistant })
}

impl Agent {
    /// The reply to `assistant-request`, in the proved clinic's transaction `tx` (committed):
    /// the clinic's assistant, whose tools and messages come back here with the clinic's own
    /// credential of `provider`. Without one known (or without this server's public address),
    /// the number's server settings in the platform apply.
    pub async fn answer_assistant_request(
        &self,
        mut tx: TenantTx,
        provider: IntegrationProvider,
        now: DateTime<Utc>,
    ) -> Result<Value, DbError> {
        let reply = self.assistant_of(&mut tx, provider, now).await?;
        tx.commit().await?;
        Ok(reply)
    }

    /// The clinic's assistant placing a campaign's call (the `assistant` of Vapi's
    /// `CreateCallDTO`): the clinic's own, tools and all, opening with `opening` and told what
    /// the call is about; its call analysis reports the outcome (`structuredData.outcome`,
    /// one of the `voxanne_domain::outreach::CallOutcome`s of an answered call), which the end-of-call report
    /// brings back.
    pub async fn campaign_assistant(
        &self,
        tx: &mut TenantTx,
        provider: IntegrationProvider,
        now: DateTime<Utc>,
        opening: &str,
        purpose: &str,
    ) -> Result<Value, DbError> {
        let mut reply = self.assistant_of(tx, provider, now).await?;
        let assistant = &mut reply["assistant"];
        assistant["firstMessage"] = json!(opening);
        if let Some(prompt) = assistant["model"]["messages"][0]["content"].as_str() {
            let prompt = format!(
                "{prompt} This is an outbound call the clinic placed, not one the caller made: \
                 you called them about this: {purpose}. If they are not interested, thank them \
                 and end the call; if they say it is the wrong number, apologise and end the \
                 call; if they ask to be called back later, say the clinic will call back. \
                 Never insist."
            );
            assistant["model"]["messages"][0]["content"] = json!(prompt);
        }
        let outcomes = ["not_interested", "callback", "wrong_number", "answered"];
        assistant["analysisPlan"] = json!({
            "structuredDataPlan": {
                "enabled": true,
                "schema": {
                    "type": "object",
                    "properties": {
                        "outcome": {
                            "type": "string",
                            "enum": outcomes,
                            "description": "not_interested: declined; callback: asked to be called later; wrong_number: not the person called; answered: anything else",
                        },
                    },
                    "required": ["outcome"],
                },
            },
        });
        Ok(reply.get("assistant").cloned().unwrap_or_default())
    }

    /// The clinic's assistant (`{"assistant": …}`), read in `tx`.
    async fn assistant_of(
        &self,
        tx: &mut TenantTx,
        provider: IntegrationProvider,
        now: DateTime<Utc>,
    ) -> Result<Value, DbError> {
        let clinic = tx.get_organization().await?.name;
        let config = tx.get_agent_configuration().await?;
        let mut services = Vec::new();
        for service in tx.active_services().await? {
            let practitioners = tx
                .bookables(Some(service.id), None)
                .await?
                .into_iter()
                .map(|b| b.name)
                .collect();
            services.push(ServiceOffer {
                name: service.name,
                minutes: service.duration_minutes,
                practitioners,
            });
        }
        let credential = tx
            .get_integration(provider)
            .await?
            .and_then(|i| i.config.get(CREDENTIAL_ID)?.as_str().map(str::to_owned));
        let server = self
            .webhook_url
            .clone()
            .zip(credential)
            .map(|(url, credential_id)| ServerRef { url, credential_id });
        Ok(clinic_assistant(
            &clinic,
            &config,
            &services,
            now,
            server.as_ref(),
        ))
    }

    /// The reply to `transfer-destination-request`, in the proved clinic's transaction `tx`
    /// (committed).
    pub async fn answer_transfer_request(&self, mut tx: TenantTx) -> Result<Value, DbError> {
        let config = tx.get_agent_configuration().await?;
        tx.commit().await?;
        Ok(transfer_destination(&config))
    }
}

/// The reply to `transfer-destination-request`: the clinic's transfer number (Vapi's
/// `TransferDestinationNumber`), or Vapi's `error` when it has none.
pub fn transfer_destination(config: &AgentConfiguration) -> Value {
    match &config.transfer_number {
        Some(number) => json!({"destination": {"type": "number", "number": number.as_str(),
            "message": "Please hold while I transfer you."}}),
        None => no_transfer(),
    }
}

/// The reply when the call cannot be transferred.
pub fn no_transfer() -> Value {
    json!({"error": "Sorry, I can't transfer this call right now."})
}

/// For a number whose clinic is suspended, or when the clinic's assistant could not be made in
/// time: apologises and hangs up. It carries nothing of any clinic.
pub fn unavailable_assistant() -> Value {
    json!({
        "assistant": {
            "name": "Unavailable",
            "firstMessage": "Sorry, this clinic can't take calls right now. Please try again later. Goodbye.",
            "model": {
                "provider": "openai",
                "model": "gpt-4o",
                "messages": [{"role": "system", "content":
                    "The clinic cannot take calls right now. Apologise briefly, ask the caller to try again later, and end the call. You know nothing else."}],
                "tools": [{"type": "endCall"}],
            },
            "voice": Voice::from_stored(voxanne_webhooks::vapi_voice::DEFAULT).to_vapi(),
            "maxDurationSeconds": 30,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxanne_domain::{PhoneNumber, TimeZoneName};

    #[test]
    fn the_assistant_carries_the_clinics_settings() {
        let config = AgentConfiguration {
            greeting: "Sunrise Dental, Ava speaking.".into(),
            voice: "11labs:rachel".into(),
            opening_hours: serde_json::from_value(
                json!({"mon": [["09:00", "12:00"], ["13:00", "17:00"]]}),
            )
            .expect("hours"),
            time_zone: TimeZoneName::parse("America/New_York").expect("tz"),
            transfer_number: Some(PhoneNumber::parse("+14155550199").expect("number")),
            hipaa_enabled: true,
            updated_at: None,
        };
        let server = ServerRef {
            url: "https://voxanne.example/webhooks/voice/vapi".into(),
            credential_id: "cred-1".into(),
        };
        let a = clinic_assistant("Sunrise Dental", &config, &[], Utc::now(), Some(&server));
        let a = &a["assistant"];
        assert_eq!(a["firstMessage"], "Sunrise Dental, Ava speaking.");
        assert_eq!(
            a["voice"],
            json!({"provider": "11labs", "voiceId": "rachel"})
        );
        let prompt = a["model"]["messages"][0]["content"]
            .as_str()
            .expect("prompt");
        assert!(prompt.contains("America/New_York"), "{prompt}");
        assert!(
            prompt.contains("Monday 09:00-12:00 and 13:00-17:00; Tuesday closed"),
            "{prompt}"
        );
        let tools = a["model"]["tools"].as_array().expect("tools");
        assert_eq!(tools.len(), TOOLS.len() + 2);
        let transfer = tools
            .iter()
            .find(|t| t["type"] == "transferCall")
            .expect("transfer");
        assert_eq!(transfer["destinations"][0]["number"], "+14155550199");
        assert!(tools.iter().any(|t| t == &json!({"type": "endCall"})));
        let functions: Vec<&Value> = tools.iter().filter(|t| t["type"] == "function").collect();
        assert_eq!(functions.len(), TOOLS.len());
        for f in functions {
            assert_eq!(
                f["server"],
                json!({"url": "https://voxanne.example/webhooks/voice/vapi", "credentialId": "cred-1"})
            );
        }
        assert_eq!(a["server"]["credentialId"], "cred-1");
        assert_eq!(a["compliancePlan"], json!({"hipaaEnabled": true}));
        assert!(
            a.get("endCallFunctionEnabled").is_none(),
            "not in Vapi's schema"
        );
        assert_eq!(a["metadata"]["timeZone"], "America/New_York");
    }

    #[test]
    fn without_a_transfer_number_there_is_no_transfer_tool() {
        let a = clinic_assistant("X", &AgentConfiguration::default(), &[], Utc::now(), None);
        let tools = a["assistant"]["model"]["tools"].as_array().expect("tools");
        assert!(tools.iter().all(|t| t["type"] != "transferCall"));
        assert!(
            tools.iter().all(|t| t.get("server").is_none()),
            "the number's server applies"
        );
        assert!(a["assistant"].get("server").is_none());
        assert_eq!(
            a["assistant"]["voice"],
            json!({"provider": "vapi", "voiceId": "Elliot"})
        );
        assert_eq!(
            a["assistant"]["firstMessage"],
            "Hello, you've reached X. How can I help you today?"
        );
    }
}
