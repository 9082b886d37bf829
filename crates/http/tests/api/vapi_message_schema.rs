//! The OpenAPI schema of a Vapi server message says what the server accepts: every message of
//! Vapi's documented shapes (the fixtures, transcribed from Vapi's documentation and SDK, see
//! fixtures/vapi/README.md) validates against it and is accepted, and a message the server
//! refuses as `invalid_webhook` does not validate. So a client or fuzzer that trusts the
//! document finds no body that the schema allows and the server refuses.

use crate::support::*;
use serde_json::{json, Value};

fn message_schema() -> Value {
    let doc = serde_json::to_value(voxanne_http::openapi()).expect("the document");
    let schema = doc["components"]["schemas"]["VapiServerMessage"].clone();
    assert!(
        schema.is_object(),
        "the document names the Vapi message schema"
    );
    schema
}

fn fixture_with_values(name: &str) -> Vec<u8> {
    vapi_fixture(
        name,
        &[
            ("__CALL_ID__", json!("call-schema-1")),
            ("__CALLER__", json!("+14155559876")),
            ("__CLINIC_NUMBER__", json!("+14155550100")),
            ("__RECORDING_URL__", json!("https://storage.vapi.ai/1.wav")),
            (
                "__PRESIGNED_URL__",
                json!("https://storage.vapi.ai/1.wav?X-Amz-Signature=abc"),
            ),
            ("__TOOL_CALL_ID__", json!("tool-call-1")),
            ("__TOOL__", json!("check_availability")),
            ("__ARGUMENTS_OBJECT__", json!({"date": "2031-03-03"})),
        ],
    )
}

const FIXTURES: [&str; 14] = [
    "assistant-request",
    "conversation-update",
    "end-of-call-report-presigned",
    "end-of-call-report",
    "hang",
    "speech-update",
    "status-update-ended",
    "status-update",
    "tool-calls",
    "transcript-final",
    "transcript",
    "transfer-destination-request",
    "unknown-type",
    "user-interrupted",
];

#[tokio::test]
async fn the_documented_messages_validate_and_the_refused_ones_do_not() {
    let validator = jsonschema::validator_for(&message_schema()).expect("a valid JSON Schema");
    for name in FIXTURES {
        let body: Value = serde_json::from_slice(&fixture_with_values(name)).expect("JSON");
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name} does not validate: {errors:?}");
        // And the parser agrees: it is a message the server acts on or acknowledges.
        assert!(
            voxanne_webhooks::vapi::parse(&serde_json::to_vec(&body).expect("bytes")).is_ok(),
            "{name} validates but the server refuses it"
        );
    }
    let refused = [
        json!({}),
        json!({"message": "status-update"}),
        json!({"message": {}}),
        json!({"message": {"type": 7}}),
        json!({"message": {"type": "status-update", "call": {"id": "c"}}}),
        json!({"message": {"type": "status-update", "status": "ended"}}),
        json!({"message": {"type": "end-of-call-report"}}),
        json!({"message": {"type": "end-of-call-report", "call": {}}}),
        json!({"message": {"type": "assistant-request", "call": {"type": "inboundPhoneCall"}}}),
        json!({"message": {"type": "tool-calls", "call": {"id": "c"}}}),
        json!({"message": {"type": "tool-calls", "call": {"id": "c"},
            "toolCallList": [{"function": {"name": "check_dnc"}}]}}),
        json!({"message": {"type": "tool-calls", "call": {"id": "c"},
            "toolCallList": [{"id": "t1", "function": {}}]}}),
        json!({"message": {"type": "transfer-destination-request"}}),
    ];
    for body in refused {
        let bytes = serde_json::to_vec(&body).expect("bytes");
        assert!(
            voxanne_webhooks::vapi::parse(&bytes).is_err(),
            "the server accepts {body}"
        );
        assert!(
            !validator.is_valid(&body),
            "the schema allows {body}, which the server refuses"
        );
    }
}
