pub mod calls;
pub mod health;
pub mod me;
