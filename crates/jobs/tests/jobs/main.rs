//! The background jobs' tests, one binary (one link).

mod claiming;
mod sms;
