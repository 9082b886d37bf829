//! Where Vapi reaches this server, and the client of Vapi's REST API (the dialer's too: it
//! lives with the jobs).

pub use voxanne_jobs::vapi::{VapiApi, VapiError, VapiSettings, DEFAULT_API_URL};
