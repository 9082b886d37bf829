//! Webhooks carry no JWT: a clinic is whatever the provider proves. This crate holds the proof
//! half, the providers' signature schemes, as pure functions; resolving the clinic from the
//! called number and loading its secret happen in the HTTP layer.

pub mod signature;
pub mod vapi;
pub mod vapi_auth;
pub mod vapi_voice;
pub mod voice;

/// Removes NUL characters from every key and string of `value`. What a signed provider
/// report says is kept, but PostgreSQL cannot store a NUL in text: the signature is checked
/// over the raw bytes first, then the text is read without them.
pub fn strip_nul(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(text) => {
            if text.contains('\0') {
                text.retain(|c| c != '\0');
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nul),
        Value::Object(fields) => {
            if fields.keys().any(|k| k.contains('\0')) {
                *fields = std::mem::take(fields)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', ""), v))
                    .collect();
            }
            fields.values_mut().for_each(strip_nul);
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
