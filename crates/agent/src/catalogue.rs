//! The tools the agent is given: their names, what the model is told they do, and their
//! arguments as JSON schemas. What each one does is in `booking` and `lookup`; `dispatch`
//! runs them.

use serde_json::{json, Value};

/// A tool the agent is given.
#[derive(Debug)]
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    /// Its arguments, as a JSON schema.
    pub parameters: fn() -> Value,
    /// Writes: its `toolCallId` is claimed as an idempotency key.
    pub writes: bool,
}

fn phone_parameter() -> Value {
    json!({"type": "object", "properties": {
        "phone": {"type": "string", "description": "E.164; default: the caller's number"}}})
}

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "find_contact",
        description: "Look the caller up in the clinic's contacts by the number they are calling from; says their name and upcoming appointments.",
        // The caller's own number only: a caller never learns about another patient.
        parameters: || json!({"type": "object", "properties": {}}),
        writes: false,
    },
    Tool {
        name: "check_availability",
        description: "Free appointment times on a date (or the next free ones), in the clinic's time zone: for a service, across the practitioners who give it (or the one the caller names).",
        parameters: || {
            json!({"type": "object", "properties": {
                "service": {"type": "string", "description": "what the caller needs, one of the clinic's services; it sets the length"},
                "practitioner": {"type": "string", "description": "the practitioner the caller asks for, by name"},
                "date": {"type": "string", "description": "YYYY-MM-DD, in the clinic's time zone; default: the next free times"},
                "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "without a service; default 30"}}})
        },
        writes: false,
    },
    Tool {
        name: "hold_slot",
        description: "Hold a free time for the caller for five minutes while they confirm.",
        parameters: || {
            json!({"type": "object", "required": ["starts_at"], "properties": {
                "starts_at": {"type": "string", "description": "as given by check_availability, or YYYY-MM-DDTHH:MM in the clinic's time zone"},
                "service": {"type": "string", "description": "the service, as asked of check_availability"},
                "practitioner": {"type": "string", "description": "as given by check_availability"},
                "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "without a service; default 30"},
                "patient_name": {"type": "string", "description": "the caller's name, if they are not a contact yet"}}})
        },
        writes: true,
    },
    Tool {
        name: "confirm_booking",
        description: "Book the time held by hold_slot, once the caller has said yes.",
        parameters: || {
            json!({"type": "object", "required": ["hold_id"], "properties": {
                "hold_id": {"type": "string", "description": "from hold_slot"},
                "notes": {"type": "string", "description": "the reason for the visit"}}})
        },
        writes: true,
    },
    Tool {
        name: "cancel_appointment",
        description: "Cancel one of the caller's own appointments (default: their next one).",
        parameters: || {
            json!({"type": "object", "properties": {
                "appointment_id": {"type": "string", "description": "from find_contact; default: the caller's next appointment"}}})
        },
        writes: true,
    },
    Tool {
        name: "reschedule_appointment",
        description: "Move one of the caller's own appointments (default: their next one) to a free time.",
        parameters: || {
            json!({"type": "object", "required": ["starts_at"], "properties": {
                "appointment_id": {"type": "string", "description": "from find_contact; default: the caller's next appointment"},
                "starts_at": {"type": "string", "description": "the new time, as given by check_availability"}}})
        },
        writes: true,
    },
    Tool {
        name: "search_knowledge_base",
        description: "Search the clinic's own notes (prices, parking, insurance, preparation) to answer a question.",
        parameters: || {
            json!({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string"}}})
        },
        writes: false,
    },
    Tool {
        name: "take_message",
        description: "Take a message for the clinic, or a request to be called back, when the caller does not want to book: the clinic's staff read it in their inbox.",
        parameters: || {
            json!({"type": "object", "required": ["message"], "properties": {
                "message": {"type": "string", "description": "what the caller wants the clinic to know, in a sentence or two"},
                "callback": {"type": "boolean", "description": "true if the caller asks to be called back"},
                "name": {"type": "string", "description": "the caller's name, as they gave it"},
                "phone": {"type": "string", "description": "the number to call back, E.164; default: the caller's number"}}})
        },
        writes: true,
    },
    Tool {
        name: "check_dnc",
        description: "Whether a number is on the clinic's do-not-call list.",
        parameters: phone_parameter,
        writes: false,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_an_object_schema_and_a_unique_name() {
        let mut names: Vec<_> = TOOLS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TOOLS.len());
        for tool in TOOLS {
            assert_eq!((tool.parameters)()["type"], "object", "{}", tool.name);
        }
    }
}
