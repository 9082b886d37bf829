use crate::UnknownVariant;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Declares a string-valued enum whose text form matches the CHECK constraint in the schema.
/// The text is a `tt`, not a `literal`: a `literal` fragment reaches utoipa's derive wrapped in
/// an invisible group, which it skips, and the OpenAPI document then spelled the variants in
/// PascalCase while the API speaks lowercase.
macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:tt),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownVariant {
                        value: s.to_owned(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownVariant;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use text_enum;

text_enum!(
    /// Who placed the call.
    CallDirection { Inbound => "inbound", Outbound => "outbound" }
);

text_enum!(
    /// Where a call is in its life.
    CallStatus {
        Queued => "queued",
        Ringing => "ringing",
        InProgress => "in_progress",
        Completed => "completed",
        Missed => "missed",
        Failed => "failed",
        Voicemail => "voicemail",
    }
);

text_enum!(
    /// Where an appointment is in its life. A cancelled one no longer blocks its slot.
    AppointmentStatus {
        Booked => "booked",
        Cancelled => "cancelled",
        Completed => "completed",
        NoShow => "no_show",
    }
);

text_enum!(
    /// Where a call's recording is in the ingest pipeline (`purged`: removed from storage
    /// when the clinic's retention ran out).
    RecordingStatus {
        None => "none",
        Queued => "queued",
        Processing => "processing",
        Stored => "stored",
        Failed => "failed",
        Purged => "purged",
    }
);

text_enum!(
    /// Where an outbound campaign is.
    CampaignStatus {
        Draft => "draft",
        Active => "active",
        Paused => "paused",
        Completed => "completed",
    }
);

text_enum!(
    /// Whether a clinic is served. A suspended clinic's members and numbers get nothing.
    OrgStatus { Active => "active", Suspended => "suspended" }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for s in CallStatus::ALL {
            assert_eq!(s.as_str().parse::<CallStatus>(), Ok(*s));
        }
        assert_eq!("inbound".parse(), Ok(CallDirection::Inbound));
        assert!("sideways".parse::<CallDirection>().is_err());
    }
}

#[cfg(test)]
mod schema_tests {
    use super::*;
    use crate::{CalendarProvider, IntegrationProvider, SmsStatus};

    /// The enum values of `T`'s OpenAPI schema.
    fn schema_values<T: utoipa::PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).expect("schema");
        schema["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {schema}"))
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect()
    }

    fn texts<T: Copy>(all: &[T], text: fn(T) -> &'static str) -> Vec<String> {
        all.iter().map(|v| text(*v).to_owned()).collect()
    }

    #[test]
    fn the_openapi_document_spells_every_enum_as_the_api_speaks_it() {
        assert_eq!(
            schema_values::<CallDirection>(),
            texts(CallDirection::ALL, CallDirection::as_str)
        );
        assert_eq!(
            schema_values::<CallStatus>(),
            texts(CallStatus::ALL, CallStatus::as_str)
        );
        assert_eq!(
            schema_values::<RecordingStatus>(),
            texts(RecordingStatus::ALL, RecordingStatus::as_str)
        );
        assert_eq!(
            schema_values::<AppointmentStatus>(),
            texts(AppointmentStatus::ALL, AppointmentStatus::as_str)
        );
        assert_eq!(
            schema_values::<SmsStatus>(),
            texts(SmsStatus::ALL, SmsStatus::as_str)
        );
        assert_eq!(
            schema_values::<CalendarProvider>(),
            texts(CalendarProvider::ALL, CalendarProvider::as_str)
        );
        assert_eq!(
            schema_values::<IntegrationProvider>(),
            texts(IntegrationProvider::ALL, IntegrationProvider::as_str)
        );
    }
}
