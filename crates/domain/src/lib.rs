//! Voxanne's domain types. They validate on construction, so a value of one of these types
//! is valid wherever it appears; no I/O happens here.

mod agent;
pub mod availability;
pub mod booking;
mod calls;
mod chunks;
mod ids;
mod members;
pub mod messages;
mod org;
pub mod outreach;
mod phone;
mod providers;
mod role;
mod sms;
#[cfg(feature = "sqlx")]
mod sql;

pub use agent::{Interval, OpeningHours, OpeningHoursError, TimeZoneError, TimeZoneName, Weekday};
pub use calls::{
    AppointmentStatus, CallDirection, CallStatus, CampaignStatus, OrgStatus, RecordingStatus,
};
pub use chunks::chunks;
pub use ids::{
    AppointmentId, CalendarConnectionId, CallId, CampaignId, CampaignTargetId, ClosureId,
    ColdCallId, ContactId, DncEntryId, DocumentId, HoldId, InboxMessageId, InvitationId, LeadId,
    LocationId, OrgId, PhoneNumberId, PractitionerId, ReminderRuleId, SecurityEventId, ServiceId,
    SmsId, UserId,
};
pub use members::{check_member_change, MemberChange, MemberRefusal};
pub use org::{OrgName, OrgNameError, ORG_NAME_MAX_CHARS};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use providers::{
    CalendarConnectionStatus, CalendarProvider, CalendarWriteStatus, IntegrationProvider,
};
pub use role::Role;
pub use sms::{confirmation_body, moved_body, SmsStatus};

/// A string that did not name any variant of an enumeration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not one of: {expected}")]
pub struct UnknownVariant {
    pub value: String,
    pub expected: &'static str,
}
