pub mod calls;
pub mod campaigns;
pub mod contacts;
pub mod dnc;
pub mod health;
pub mod me;
pub mod security_events;
