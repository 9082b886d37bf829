//! Voxanne's domain types. They validate on construction, so a value of one of these types
//! is valid wherever it appears; no I/O happens here.

pub mod availability;
mod calls;
mod ids;
mod phone;
mod role;

pub use calls::{AppointmentStatus, CallDirection, CallStatus, RecordingStatus};
pub use ids::{CallId, ContactId, OrgId, UserId};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use role::Role;

/// A string that did not name any variant of an enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of: {expected}")]
pub struct UnknownVariant {
    pub value: String,
    pub expected: &'static str,
}
