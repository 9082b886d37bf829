//! Running a `tool-calls` message. Each tool call runs in its own tenant transaction of the
//! proved clinic, so one refusal does not undo another call's work, and the database's
//! no-double-booking rule holds for the agent as for the staff. A tool that writes claims the
//! platform's `toolCallId` as an idempotency key: a retried call replays its first answer
//! instead of booking twice. Answers are short sentences the agent can read out; a refusal is
//! an answer too (its transaction is rolled back and nothing is kept).

use crate::catalogue::{Tool, TOOLS};
use crate::speech::{TROUBLE, UNAVAILABLE};
use crate::{booking, lookup, Agent, CallContext};
use serde_json::{json, Value};
use uuid::Uuid;
use voxanne_db::idempotency::Claim;
use voxanne_db::system::Probe;
use voxanne_db::{DbError, TenantError, TenantTx, SYSTEM_ACTOR};
use voxanne_webhooks::vapi::ToolCall;

/// Why a tool did not do what was asked.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Said to the caller; nothing is kept.
    Say(String),
    /// Logged; the caller hears [`TROUBLE`].
    Internal(String),
    /// Said to the caller, like `Say`: the agent named an id (`table`.id) that this clinic
    /// does not have. If it is another clinic's, that is a security event (docs/TENANCY.md §4).
    Probe {
        say: String,
        table: &'static str,
        id: Uuid,
    },
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        Refusal::Internal(e.to_string())
    }
}

pub(crate) type Answer = Result<String, Refusal>;

pub(crate) fn say<T>(text: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Say(text.into()))
}

/// An id a tool call named that its clinic does not have: the caller of [`Agent::run_tool_calls`]
/// reports it to the security log, which decides whether it is another clinic's.
#[derive(Debug, Clone)]
pub struct ToolProbe {
    pub probe: Probe,
    /// The tool that was given the id.
    pub tool: &'static str,
}

/// The reply to a `tool-calls` message, and the probes found while making it.
#[derive(Debug)]
pub struct ToolResults {
    /// `{"results": [{"name", "toolCallId", "result"}, …]}`, one per call, in order.
    pub reply: Value,
    pub probes: Vec<ToolProbe>,
}

impl Agent {
    /// Runs the calls of a `tool-calls` message one by one, each in its own transaction.
    pub async fn run_tool_calls(&self, call: &CallContext, calls: &[ToolCall]) -> ToolResults {
        let mut results = Vec::with_capacity(calls.len());
        let mut probes = Vec::new();
        for tool_call in calls {
            let result = self.run_one(call, tool_call, &mut probes).await;
            results.push(tool_result(tool_call, &result));
        }
        ToolResults {
            reply: json!({ "results": results }),
            probes,
        }
    }

    async fn run_one(
        &self,
        call: &CallContext,
        tool_call: &ToolCall,
        probes: &mut Vec<ToolProbe>,
    ) -> String {
        let Some(tool) = TOOLS.iter().find(|t| t.name == tool_call.name) else {
            return format!("There is no tool called {}.", tool_call.name);
        };
        let mut tx = match self.db.job_tenant(call.org).await {
            Ok(mut tx) => {
                // The access log: the agent, by its tool, on the platform's call.
                tx.set_actor(voxanne_db::ActorKind::Agent);
                let request = call.provider_call_id.as_str();
                tx.set_origin(&format!("tool:{}", tool.name), None, Some(request));
                tx
            }
            Err(TenantError::Suspended | TenantError::NotMember) => return UNAVAILABLE.to_owned(),
            Err(e) => {
                tracing::error!(error = %e, tool = tool.name, "agent tool: no transaction");
                return TROUBLE.to_owned();
            }
        };
        let key = tool.writes.then(|| idempotency_key(call, tool_call));
        if let Some(key) = &key {
            let request = json!({"op": "agent_tool", "tool": tool.name,
                "arguments": tool_call.arguments, "call": call.provider_call_id});
            match tx.claim_idempotency_key(key, &request).await {
                Ok(Claim::New) => {}
                Ok(Claim::Replay { body, .. }) => {
                    return body
                        .as_str()
                        .map_or_else(|| TROUBLE.to_owned(), str::to_owned)
                }
                Ok(Claim::Reused) => {
                    return "That request id was already used for a different request.".to_owned()
                }
                Err(e) => {
                    tracing::error!(error = %e, tool = tool.name, "agent tool: idempotency key");
                    return TROUBLE.to_owned();
                }
            }
        }
        let answer = run(&mut tx, call, tool, &tool_call.arguments).await;
        let finish = async {
            let text = answer?;
            if let Some(key) = &key {
                tx.record_response(key, 200, &json!(text)).await?;
            }
            tx.commit().await?;
            Ok::<_, Refusal>(text)
        };
        match finish.await {
            Ok(text) => text,
            Err(Refusal::Say(text)) => text,
            Err(Refusal::Probe { say, table, id }) => {
                probes.push(ToolProbe {
                    probe: Probe {
                        org: call.org,
                        user: SYSTEM_ACTOR,
                        table,
                        column: "id",
                        id,
                    },
                    tool: tool.name,
                });
                say
            }
            Err(Refusal::Internal(e)) => {
                tracing::error!(error = %e, tool = tool.name, "agent tool failed");
                TROUBLE.to_owned()
            }
        }
    }
}

/// The reply for a clinic that is not taking calls: no tool runs, nothing is read.
pub fn unavailable_results(calls: &[ToolCall]) -> Value {
    json!({ "results": calls.iter()
        .map(|c| tool_result(c, UNAVAILABLE))
        .collect::<Vec<_>>() })
}

/// One of Vapi's `ToolCallResult`s: `name` and `toolCallId` (both required by Vapi's schema),
/// and the `result` as one line (Vapi's tool guide: line breaks break its parsing).
fn tool_result(tool_call: &ToolCall, result: &str) -> Value {
    let line: String = result
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    json!({"name": tool_call.name, "toolCallId": tool_call.id, "result": line})
}

/// The idempotency key of a tool call: the platform's id, within the clinic.
fn idempotency_key(call: &CallContext, tool_call: &ToolCall) -> String {
    let key = format!("tool-call:{}:{}", call.provider, tool_call.id);
    if key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic()) {
        key
    } else {
        // Too long or not printable: the same id still gives the same key.
        let digest = sha256_hex(tool_call.id.as_bytes());
        format!("tool-call:{}:sha256:{digest}", call.provider)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tool's implementation.
async fn run(tx: &mut TenantTx, call: &CallContext, tool: &Tool, args: &Value) -> Answer {
    match tool.name {
        "find_contact" => lookup::find_contact(tx, call).await,
        "check_availability" => booking::check_availability(tx, args).await,
        "hold_slot" => booking::hold_slot(tx, call, args).await,
        "confirm_booking" => booking::confirm_booking(tx, call, args).await,
        "cancel_appointment" => booking::cancel_appointment(tx, call, args).await,
        "reschedule_appointment" => booking::reschedule_appointment(tx, call, args).await,
        "search_knowledge_base" => lookup::search_knowledge_base(tx, args).await,
        "check_dnc" => lookup::check_dnc(tx, call, args).await,
        "take_message" => booking::take_message(tx, call, args).await,
        other => Err(Refusal::Internal(format!(
            "tool {other} has no implementation"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use voxanne_domain::PhoneNumber;

    fn tool_call(id: &str) -> ToolCall {
        ToolCall {
            id: id.to_owned(),
            name: "hold_slot".to_owned(),
            arguments: json!({}),
        }
    }

    #[test]
    fn a_result_is_one_line_with_the_calls_name_and_id() {
        let r = tool_result(&tool_call("tc-1"), "Held.\n  Say yes\r\n\nto book.");
        assert_eq!(
            r,
            json!({"name": "hold_slot", "toolCallId": "tc-1", "result": "Held. Say yes to book."})
        );
    }

    #[test]
    fn an_unusable_tool_call_id_still_gives_one_stable_key() {
        let call = CallContext {
            org: voxanne_domain::OrgId::from(Uuid::nil()),
            provider: "vapi",
            provider_call_id: "c".into(),
            clinic_number: PhoneNumber::parse("+14155550100").expect("number"),
            caller: None,
            direction: voxanne_domain::CallDirection::Inbound,
        };
        assert_eq!(
            idempotency_key(&call, &tool_call("tc-1")),
            "tool-call:vapi:tc-1"
        );
        let long = "x".repeat(300);
        let key = idempotency_key(&call, &tool_call(&long));
        assert!(key.starts_with("tool-call:vapi:sha256:"), "{key}");
        assert_eq!(key, idempotency_key(&call, &tool_call(&long)));
        assert!(idempotency_key(&call, &tool_call("a b")).contains("sha256"));
    }
}
