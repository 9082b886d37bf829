//! The outside services a clinic connects: calendars, and telephony/SMS providers.

use crate::calls::text_enum;
use crate::UnknownVariant;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

text_enum!(
    /// A calendar a clinic links (OAuth tokens are kept encrypted).
    CalendarProvider { Google => "google", Microsoft => "microsoft" }
);

text_enum!(
    /// A telephony or SMS provider whose credentials a clinic stores (encrypted).
    IntegrationProvider {
        Twilio => "twilio",
        Vonage => "vonage",
        Vapi => "vapi",
        Retell => "retell",
    }
);
