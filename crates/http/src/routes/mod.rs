pub mod calls;
pub mod health;
pub mod me;
pub mod members;
pub mod organizations;
pub mod security_events;
