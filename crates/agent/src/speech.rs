//! What a caller hears when the agent cannot do what was asked, and how times are said. A
//! refusal of the booking rule or of the database is said in plain words: never a field
//! name, an error code or an error's `Display` meant for developers.

use crate::dispatch::Refusal;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use voxanne_db::appointments::BookingError;
use voxanne_domain::booking::SlotRefusal;
use voxanne_domain::AppointmentStatus;

/// For a clinic that is not taking calls.
pub(crate) const UNAVAILABLE: &str = "Sorry, this clinic can't take bookings right now.";
/// For anything that went wrong on our side (logged, never described).
pub(crate) const TROUBLE: &str =
    "Sorry, something went wrong on our side. Please try again in a moment.";

/// The sentence for a refusal of the booking rule.
pub(crate) fn slot_refusal(refusal: SlotRefusal) -> &'static str {
    match refusal {
        SlotRefusal::ResourceName => "Sorry, I can't book that; please ask the clinic directly.",
        SlotRefusal::EndsBeforeStart => "That time range isn't valid.",
        SlotRefusal::TooLong => "An appointment can last at most a day.",
        SlotRefusal::NotesTooLong => "That note is too long; please keep it short.",
        SlotRefusal::Length => "The length must be a number of minutes from 5 to 480.",
        SlotRefusal::HoldTime => "I can't hold a time for that long.",
        SlotRefusal::InThePast => "That time has already passed.",
        SlotRefusal::Closed => "The clinic isn't open at that time.",
    }
}

impl From<SlotRefusal> for Refusal {
    fn from(refusal: SlotRefusal) -> Self {
        Refusal::Say(slot_refusal(refusal).to_owned())
    }
}

/// An appointment's status, as said to a caller.
fn status_words(status: AppointmentStatus) -> &'static str {
    match status {
        AppointmentStatus::Booked => "booked",
        AppointmentStatus::Cancelled => "cancelled",
        AppointmentStatus::Completed => "completed",
        AppointmentStatus::NoShow => "marked as a no-show",
    }
}

/// A refused booking write: said, except for the database's own failures (logged).
impl From<BookingError> for Refusal {
    fn from(e: BookingError) -> Self {
        let say = |s: &str| Refusal::Say(s.to_owned());
        match e {
            BookingError::SlotTaken => {
                say("Sorry, that time has just been taken. Let's find another one.")
            }
            BookingError::CalendarBusy => {
                say("Sorry, that time is not free in the clinic's diary. Let's find another one.")
            }
            BookingError::HoldExpired => {
                say("The hold on that time ran out. Let's check the free times again.")
            }
            BookingError::HoldAlreadyConfirmed => say("That time is already booked for you."),
            BookingError::NotBooked(status) => Refusal::Say(format!(
                "That appointment is {} and can't be changed.",
                status_words(status)
            )),
            BookingError::EmptyRange => say(slot_refusal(SlotRefusal::EndsBeforeStart)),
            BookingError::NotFound | BookingError::InvalidReference { .. } => {
                say("I couldn't find that.")
            }
            BookingError::Db(e) => Refusal::Internal(e.to_string()),
        }
    }
}

/// "Tuesday 3 March at 09:00".
pub(crate) fn spoken(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%A %-d %B at %H:%M")
        .to_string()
}

/// The instant as the agent passes it back to a tool: RFC 3339 in the clinic's offset.
pub(crate) fn machine(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// What a caller may hear: a sentence of words, without identifiers (`ends_at`,
    /// `slot_taken`), code-like punctuation or the developer's wording of the error.
    fn assert_speakable(sentence: &str, developer_text: &str) {
        assert!(!sentence.contains('_'), "an identifier in {sentence:?}");
        assert!(
            !sentence.contains(['`', '{', '}', ':', '=']),
            "code-like text in {sentence:?}"
        );
        assert!(
            sentence.starts_with(|c: char| c.is_ascii_uppercase()) && sentence.ends_with('.'),
            "not a sentence: {sentence:?}"
        );
        assert_ne!(sentence, developer_text);
    }

    #[test]
    fn every_refusal_of_the_booking_rule_is_said_without_field_names() {
        for refusal in SlotRefusal::ALL {
            let Refusal::Say(sentence) = Refusal::from(refusal) else {
                panic!("{refusal:?} is not said to the caller");
            };
            assert_speakable(&sentence, &refusal.to_string());
        }
    }

    #[test]
    fn every_refused_booking_write_is_said_without_field_names() {
        let mut refused = vec![
            BookingError::SlotTaken,
            BookingError::CalendarBusy,
            BookingError::HoldExpired,
            BookingError::HoldAlreadyConfirmed,
            BookingError::EmptyRange,
            BookingError::NotFound,
            BookingError::InvalidReference {
                field: "contact_id",
                table: "contacts",
                id: Uuid::nil(),
            },
        ];
        refused.extend(
            AppointmentStatus::ALL
                .iter()
                .map(|s| BookingError::NotBooked(*s)),
        );
        for e in refused {
            let developer_text = e.to_string();
            let Refusal::Say(sentence) = Refusal::from(e) else {
                panic!("{developer_text} is not said to the caller");
            };
            assert_speakable(&sentence, &developer_text);
        }
    }

    #[test]
    fn the_databases_failures_are_not_described_to_the_caller() {
        let e = BookingError::Db(voxanne_db::DbError::NotFound);
        assert!(matches!(Refusal::from(e), Refusal::Internal(_)));
        for sentence in [UNAVAILABLE, TROUBLE] {
            assert_speakable(sentence, "");
        }
    }
}
