pub mod appointments;
pub mod availability;
pub mod calls;
pub mod health;
pub mod holds;
pub mod me;
pub mod security_events;
