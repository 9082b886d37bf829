//! The background jobs' tests, one binary (one link).

mod access_seal;
mod claiming;
mod retention;
mod sms;
