pub mod agent_configuration;
pub mod calendar_connections;
pub mod calls;
pub mod health;
pub mod integrations;
pub mod me;
pub mod security_events;
