//! The voice agent's side of a call: how to answer (`assistant-request`) and the functions it
//! runs while the patient is on the line (`tool-calls`). Both arrive as platform webhooks,
//! after the clinic has been proved (`routes::webhooks::open_clinic`); from there on every
//! read and write runs in that clinic's tenant transaction, through the same booking code as
//! the REST API.

mod assistant;
mod tools;

pub use assistant::{
    clinic_assistant, no_transfer, transfer_destination, unavailable_assistant, ServerRef,
    ASSISTANT_DEADLINE,
};
pub use tools::{run_tool_calls, unavailable_results, TOOLS};

use voxanne_domain::{OrgId, PhoneNumber};

/// The call a tool runs for, as the platform proved it: the clinic owns the called number and
/// signed the request; the caller's number is what the telephone network reported.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub org: OrgId,
    /// `vapi`, …: with `provider_call_id`, the key of the call row.
    pub provider: &'static str,
    pub provider_call_id: String,
    pub clinic_number: PhoneNumber,
    /// `None` when the number was withheld.
    pub caller: Option<PhoneNumber>,
}
