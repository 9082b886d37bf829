//! The background jobs' tests, one binary (one link).

mod access_seal;
mod claiming;
mod encryption;
mod retention;
mod sms;
