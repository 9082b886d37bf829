//! SMS confirmations: the text a booked appointment sends, and the one-way life of a message.

use crate::calls::text_enum;
use crate::UnknownVariant;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

text_enum!(
    /// Where an SMS confirmation is. `queued`: waiting for the worker; `sending`: a worker holds
    /// it; `sent`: the provider accepted it; `delivered`, `undelivered`, `failed`: the outcome;
    /// `suppressed`: never sent, the number is on the clinic's do-not-call list (or the
    /// appointment was cancelled first).
    SmsStatus {
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        Delivered => "delivered",
        Undelivered => "undelivered",
        Failed => "failed",
        Suppressed => "suppressed",
    }
);

impl SmsStatus {
    /// Where the status stands in a message's life; a message only moves up. The three
    /// outcomes share the last rank, so the first one known wins. `suppressed` has no rank:
    /// nothing moves a suppressed message.
    pub const fn rank(self) -> Option<u8> {
        match self {
            SmsStatus::Queued => Some(0),
            SmsStatus::Sending => Some(1),
            SmsStatus::Sent => Some(2),
            SmsStatus::Delivered | SmsStatus::Undelivered | SmsStatus::Failed => Some(3),
            SmsStatus::Suppressed => None,
        }
    }

    /// The statuses that `self` may overwrite: those of a strictly lower rank.
    pub fn overwrites(self) -> Vec<SmsStatus> {
        let Some(rank) = self.rank() else {
            return Vec::new();
        };
        Self::ALL
            .iter()
            .copied()
            .filter(|s| s.rank().is_some_and(|r| r < rank))
            .collect()
    }

    /// A Twilio message status (`MessageStatus` of a callback, `status` of the API's answer).
    /// `None` for the statuses of inbound messages and any word Twilio may add later.
    pub fn from_twilio(status: &str) -> Option<SmsStatus> {
        match status {
            "queued" | "accepted" | "scheduled" => Some(SmsStatus::Queued),
            "sending" => Some(SmsStatus::Sending),
            "sent" => Some(SmsStatus::Sent),
            "delivered" | "read" => Some(SmsStatus::Delivered),
            "undelivered" => Some(SmsStatus::Undelivered),
            "failed" | "canceled" => Some(SmsStatus::Failed),
            _ => None,
        }
    }

    /// What a message is once the provider has accepted it, from the status the provider
    /// answered with: at least `sent` (a provider's `queued` means queued at the provider,
    /// not by us), or the outcome if the provider already knows it.
    pub fn accepted_as(provider_status: Option<&str>) -> SmsStatus {
        match provider_status.and_then(Self::from_twilio) {
            Some(s @ (SmsStatus::Delivered | SmsStatus::Undelivered | SmsStatus::Failed)) => s,
            _ => SmsStatus::Sent,
        }
    }
}

/// The confirmation text of an appointment: the clinic's name, and the start's date and time
/// in the clinic's time zone (an IANA name; UTC if it is not one). E.g. "Sunrise Dental: your
/// appointment on Mon 3 Mar 2031 at 09:00 is confirmed."
pub fn confirmation_body(clinic: &str, starts_at: DateTime<Utc>, time_zone: &str) -> String {
    let tz: Tz = time_zone.parse().unwrap_or(Tz::UTC);
    let local = starts_at.with_timezone(&tz);
    format!(
        "{}: your appointment on {} is confirmed.",
        clinic.trim(),
        local.format("%a %-d %b %Y at %H:%M")
    )
}

/// The text sent when a booked appointment moves: like [`confirmation_body`], with the new
/// start. E.g. "Sunrise Dental: your appointment has moved to Tue 4 Mar 2031 at 11:00."
pub fn moved_body(clinic: &str, starts_at: DateTime<Utc>, time_zone: &str) -> String {
    let tz: Tz = time_zone.parse().unwrap_or(Tz::UTC);
    let local = starts_at.with_timezone(&tz);
    format!(
        "{}: your appointment has moved to {}.",
        clinic.trim(),
        local.format("%a %-d %b %Y at %H:%M")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_move_names_the_new_local_time() {
        let starts = Utc
            .with_ymd_and_hms(2031, 3, 4, 19, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            moved_body("Sunrise Dental", starts, "America/Los_Angeles"),
            "Sunrise Dental: your appointment has moved to Tue 4 Mar 2031 at 11:00."
        );
    }

    #[test]
    fn the_body_names_the_clinic_and_the_local_date_and_time() {
        let starts = Utc
            .with_ymd_and_hms(2031, 3, 3, 17, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            confirmation_body("Sunrise Dental", starts, "America/Los_Angeles"),
            "Sunrise Dental: your appointment on Mon 3 Mar 2031 at 09:00 is confirmed."
        );
        assert_eq!(
            confirmation_body("Sunrise Dental", starts, "UTC"),
            "Sunrise Dental: your appointment on Mon 3 Mar 2031 at 17:00 is confirmed."
        );
        assert_eq!(
            confirmation_body("Sunrise Dental", starts, "Not/AZone"),
            "Sunrise Dental: your appointment on Mon 3 Mar 2031 at 17:00 is confirmed.",
            "UTC when the name is not a time zone"
        );
    }

    #[test]
    fn a_status_only_moves_up_and_the_first_outcome_wins() {
        use SmsStatus::*;
        assert_eq!(Delivered.overwrites(), vec![Queued, Sending, Sent]);
        assert_eq!(Sent.overwrites(), vec![Queued, Sending]);
        assert!(!Sent.overwrites().contains(&Delivered), "a late sent");
        assert!(!Delivered.overwrites().contains(&Failed));
        assert!(!Failed.overwrites().contains(&Delivered));
        assert!(Queued.overwrites().is_empty());
        for s in SmsStatus::ALL {
            assert!(
                !s.overwrites().contains(&Suppressed),
                "{s} moved a suppressed message"
            );
        }
        assert!(Suppressed.overwrites().is_empty());
    }

    #[test]
    fn an_accepted_message_never_reads_queued() {
        assert_eq!(SmsStatus::accepted_as(Some("queued")), SmsStatus::Sent);
        assert_eq!(SmsStatus::accepted_as(Some("accepted")), SmsStatus::Sent);
        assert_eq!(SmsStatus::accepted_as(Some("sending")), SmsStatus::Sent);
        assert_eq!(SmsStatus::accepted_as(None), SmsStatus::Sent);
        assert_eq!(SmsStatus::accepted_as(Some("failed")), SmsStatus::Failed);
        assert_eq!(SmsStatus::from_twilio("receiving"), None);
    }
}
