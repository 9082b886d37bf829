//! Text enums as database values: stored as their lowercase text, decoded by parsing it (an
//! unknown value is a decode error naming it, never a silent default). Lets the db crate's
//! compile-checked queries name the type (`status AS "status: CallStatus"`).

/// Implements `sqlx::Type`, `Decode` and `Encode` for PostgreSQL `text` on a type with
/// `as_str()` and `FromStr`.
macro_rules! text_sql {
    ($($name:ty),+ $(,)?) => {$(
        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <str as sqlx::Type<sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
                <str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(
                value: sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse::<$name>()?)
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <&str as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }
    )+};
}

text_sql!(
    crate::Role,
    crate::CallDirection,
    crate::CallStatus,
    crate::AppointmentStatus,
    crate::RecordingStatus,
    crate::CampaignStatus,
    crate::OrgStatus,
    crate::CalendarProvider,
    crate::CalendarConnectionStatus,
    crate::CalendarWriteStatus,
    crate::IntegrationProvider,
    crate::SmsStatus,
    crate::messages::InboxKind,
    crate::messages::InboxStatus,
    crate::messages::InboxChannel,
    crate::messages::ConsentChannel,
    crate::outreach::LeadStatus,
    crate::outreach::TargetStatus,
    crate::outreach::CallOutcome,
);

#[cfg(test)]
mod tests {
    use crate::{CallStatus, Role};

    // The database speaks the same text as the API.
    #[test]
    fn enums_are_postgres_text() {
        use sqlx::Type;
        let text = <str as Type<sqlx::Postgres>>::type_info();
        assert!(<CallStatus as Type<sqlx::Postgres>>::compatible(&text));
        assert!(<Role as Type<sqlx::Postgres>>::compatible(&text));
    }
}
