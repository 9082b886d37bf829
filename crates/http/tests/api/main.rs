//! The HTTP API's tests, one binary (one link) for all of them: each module is one area,
//! run against the real server on loopback with its own fresh database.

mod support;

mod access_log;
mod accounts;
mod appointments;
mod attack_matrix;
mod auth;
mod calendar_oauth;
mod calendar_sync;
mod calls;
mod campaign_calls;
mod contacts_campaigns_dnc;
mod dashboard;
mod edge;
mod erase;
mod generated_client;
mod hostile_input;
mod knowledge_base_sms;
mod live;
mod messages;
mod openapi;
mod organizations;
mod pgbouncer;
mod phone_numbers;
mod practitioners;
mod recordings;
mod retention;
mod s3_storage;
mod scheduling;
mod schema_constraints;
mod secrets;
mod security_events;
mod sms;
mod vapi_message_schema;
mod vapi_messages;
mod vapi_server_auth;
mod vapi_sync;
mod voice_agent;
mod voice_webhooks;
