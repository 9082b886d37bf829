//! The background jobs' tests, one binary (one link).

mod access_seal;
mod claiming;
mod encryption;
mod recording_encryption;
mod retention;
mod sms;
