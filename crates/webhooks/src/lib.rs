//! Webhooks carry no JWT: a clinic is whatever the provider proves. This crate holds the proof
//! half, the providers' signature schemes, as pure functions; resolving the clinic from the
//! called number and loading its secret happen in the HTTP layer.

pub mod signature;
pub mod vapi;
pub mod voice;
