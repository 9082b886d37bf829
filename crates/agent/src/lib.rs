//! The voice agent's side of a call: how to answer (`assistant-request`) and the functions it
//! runs while the patient is on the line (`tool-calls`). Both arrive as platform webhooks; the
//! HTTP layer proves the clinic first (the request is signed with the secret of the clinic
//! that owns the called number) and hands over only then. From there on every read and write
//! runs in that clinic's tenant transaction, and every booking follows the same rule as the
//! REST API's (`voxanne_domain::booking`).
//!
//! - [`catalogue`]: the tools the agent is given.
//! - [`dispatch`]: running a `tool-calls` message, one transaction and one idempotency key per
//!   call.
//! - `booking`, `lookup`: what each tool does.
//! - `speech`: every sentence a refusal is said with; no field name or error code reaches a
//!   caller.
//! - [`assistant`]: the reply to `assistant-request` and `transfer-destination-request`.

mod arguments;
pub mod assistant;
mod booking;
pub mod catalogue;
pub mod dispatch;
mod lookup;
mod speech;

pub use assistant::{
    clinic_assistant, no_transfer, transfer_destination, unavailable_assistant, ServerRef,
    ServiceOffer, ASSISTANT_DEADLINE, CREDENTIAL_ID,
};
pub use catalogue::{Tool, TOOLS};
pub use dispatch::{unavailable_results, ToolProbe, ToolResults};

use voxanne_db::Db;
use voxanne_domain::{OrgId, PhoneNumber};

/// What the agent needs of the server it runs in: the database, whose handle only opens
/// tenant transactions, and where the platform reaches this server.
#[derive(Debug, Clone)]
pub struct Agent {
    db: Db,
    /// Where the assistant's server messages and tool calls go
    /// (`{public_url}/webhooks/voice/vapi`), when this server knows its public address.
    webhook_url: Option<String>,
}

impl Agent {
    pub fn new(db: Db, webhook_url: Option<String>) -> Self {
        Self { db, webhook_url }
    }
}

/// The call a tool runs for, as the platform proved it: the clinic owns the called number and
/// signed the request; the caller's number is what the telephone network reported.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub org: OrgId,
    /// `vapi`, …: with `provider_call_id`, the key of the call row.
    pub provider: &'static str,
    pub provider_call_id: String,
    pub clinic_number: PhoneNumber,
    /// The other party: the caller, or the callee of an outbound call. `None` when the
    /// number was withheld.
    pub caller: Option<PhoneNumber>,
    /// `Outbound` for a call the clinic placed (a campaign's).
    pub direction: voxanne_domain::CallDirection,
}
