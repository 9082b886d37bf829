use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        pub struct $name(Uuid);

        impl $name {
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        /// A row's key as the database returns it (`#[sqlx(try_from = "Uuid")]`).
        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// An organization (a clinic): the tenant.
    OrgId
);
id_type!(
    /// A user, as named by the `sub` claim of the identity provider.
    UserId
);
id_type!(
    /// A call (`calls.id`).
    CallId
);
id_type!(
    /// A contact, a patient or caller of a clinic (`contacts.id`).
    ContactId
);
id_type!(
    /// An appointment (`appointments.id`).
    AppointmentId
);
id_type!(
    /// A hold on a slot while a caller decides (`appointment_holds.id`).
    HoldId
);
id_type!(
    /// An outbound campaign (`campaigns.id`).
    CampaignId
);
id_type!(
    /// A phone number a clinic owns (`phone_numbers.id`).
    PhoneNumberId
);
id_type!(
    /// A knowledge-base document (`knowledge_base_documents.id`).
    DocumentId
);
id_type!(
    /// An entry of the do-not-call list (`dnc_list.id`).
    DncEntryId
);
id_type!(
    /// A security event (`security_events.id`).
    SecurityEventId
);
id_type!(
    /// An SMS confirmation or notice (`sms_confirmation_logs.id`).
    SmsId
);
id_type!(
    /// A calendar connection (`calendar_connections.id`).
    CalendarConnectionId
);
id_type!(
    /// A practitioner (`practitioners.id`): a bookable resource with a name.
    PractitionerId
);
id_type!(
    /// A service a clinic offers (`services.id`).
    ServiceId
);
id_type!(
    /// A clinic's location (`locations.id`).
    LocationId
);
id_type!(
    /// A closure: days a clinic or practitioner is closed (`closures.id`).
    ClosureId
);
id_type!(
    /// An invitation into a clinic (`invitations.id`).
    InvitationId
);
id_type!(
    /// A message of the clinic's inbox (`inbox_messages.id`).
    InboxMessageId
);
id_type!(
    /// A reminder rule (`reminder_rules.id`).
    ReminderRuleId
);
id_type!(
    /// A lead: someone the clinic may call who is not yet a patient (`leads.id`).
    LeadId
);
id_type!(
    /// One number of a campaign's audience (`campaign_targets.id`).
    CampaignTargetId
);
id_type!(
    /// One outbound attempt (`cold_call_logs.id`).
    ColdCallId
);
