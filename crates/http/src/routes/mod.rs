pub mod calls;
pub mod health;
pub mod me;
pub mod security_events;
