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
    /// Whether a linked calendar is in use: `broken` when the provider refused its refresh
    /// token (the grant was revoked or expired), until the clinic links the account again.
    CalendarConnectionStatus { Active => "active", Broken => "broken" }
);

text_enum!(
    /// Where one appointment's event in one linked calendar stands: `pending` (to be written,
    /// or retried after a failure), `writing`, `synced` (the calendar matches), `failed`
    /// (refused for good, with the provider's message).
    CalendarWriteStatus {
        Pending => "pending",
        Writing => "writing",
        Synced => "synced",
        Failed => "failed",
    }
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
