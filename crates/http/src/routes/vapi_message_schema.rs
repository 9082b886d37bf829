//! The OpenAPI schema of a Vapi server message, as Voxanne reads it: `message.type` always;
//! for the five types it acts on, the fields it cannot do without (a message without them is
//! a 400 `invalid_webhook`); any other type is acknowledged with whatever it carries. Written
//! by hand because the rule depends on `type` (a `oneOf` on its value), which no derive spells.

use utoipa::openapi::schema::{
    AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type,
};
use utoipa::openapi::RefOr;

/// The types Voxanne acts on, with the fields each requires besides `type` and `call.id`.
const ACTED_ON: [(&str, &[&str]); 5] = [
    ("status-update", &["status"]),
    ("end-of-call-report", &[]),
    ("assistant-request", &[]),
    ("tool-calls", &[]),
    ("transfer-destination-request", &[]),
];

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// `{"id": string, …}` (the call a message is about; other fields are optional).
fn call() -> ObjectBuilder {
    ObjectBuilder::new()
        .property("id", string().min_length(Some(1)))
        .required("id")
        .property(
            "type",
            string().description(Some(
                "`inboundPhoneCall` (assumed when absent) or `outboundPhoneCall`",
            )),
        )
        .property("phoneNumber", number())
        .property("customer", number())
}

/// `{"number": "+1…"}`.
fn number() -> ObjectBuilder {
    ObjectBuilder::new().property("number", string().description(Some("E.164")))
}

/// One tool call: an id and the function's name (`arguments` an object or JSON text).
fn tool_call() -> ObjectBuilder {
    ObjectBuilder::new()
        .property("id", string().min_length(Some(1)))
        .required("id")
        .property(
            "function",
            ObjectBuilder::new()
                .property("name", string().min_length(Some(1)))
                .required("name")
                .property("arguments", ObjectBuilder::new()),
        )
        .required("function")
}

fn acted_on(kind: &str, required: &[&str]) -> RefOr<Schema> {
    let mut message = ObjectBuilder::new()
        .property("type", string().enum_values(Some([kind])))
        .required("type")
        .property("call", call())
        .required("call")
        .property("phoneNumber", number())
        .property("customer", number());
    for field in required {
        message = message.property(*field, string()).required(*field);
    }
    if kind != "tool-calls" {
        return message.into();
    }
    message = message
        .property(
            "toolCallList",
            ArrayBuilder::new().items(tool_call()).description(Some(
                "the calls to run (or the older `toolWithToolCallList`, each item's \
                     `toolCall`)",
            )),
        )
        .property(
            "toolWithToolCallList",
            ArrayBuilder::new().items(
                ObjectBuilder::new()
                    .property("toolCall", tool_call())
                    .required("toolCall"),
            ),
        );
    // One of the two lists is there.
    let either = AnyOfBuilder::new()
        .item(ObjectBuilder::new().required("toolCallList"))
        .item(ObjectBuilder::new().required("toolWithToolCallList"));
    AllOfBuilder::new().item(message).item(either).into()
}

/// A message type Voxanne only acknowledges.
fn other() -> ObjectBuilder {
    let known = ACTED_ON.map(|(kind, _)| regex_escape(kind)).join("|");
    ObjectBuilder::new()
        .property(
            "type",
            string()
                .min_length(Some(1))
                .pattern(Some(format!("^(?!(?:{known})$)")))
                .description(Some(
                    "any other server message type (acknowledged, not acted on)",
                )),
        )
        .required("type")
}

fn regex_escape(text: &str) -> String {
    text.replace('-', "\\-")
}

/// `{"message": {…}}`.
pub fn server_message() -> RefOr<Schema> {
    let mut one_of = OneOfBuilder::new();
    for (kind, required) in ACTED_ON {
        one_of = one_of.item(acted_on(kind, required));
    }
    one_of = one_of.item(other());
    ObjectBuilder::new()
        .property("message", one_of)
        .required("message")
        .description(Some(
            "A Vapi server message (the fields Voxanne reads; others are ignored).",
        ))
        .into()
}
