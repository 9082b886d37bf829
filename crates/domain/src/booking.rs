//! The booking rule: what a requested appointment or hold may be, whoever asks for it (the
//! REST API for the staff, the voice agent for a caller). Pure: the caller supplies the clock
//! and the clinic's hours. Each refusal is a [`SlotRefusal`]; the API answers it with a field
//! and a message, the agent with a sentence for the caller. No double booking is not here: it
//! is the database's (migrations/0006_booking.sql).

use crate::availability::{OpeningHours, Span};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

/// What is booked when the request names nothing (a room, a practitioner).
pub const DEFAULT_RESOURCE: &str = "default";
/// A resource's name, in characters.
pub const RESOURCE_CHARS: std::ops::RangeInclusive<usize> = 1..=100;
/// The longest appointment or hold.
pub const MAX_LENGTH: Duration = Duration::hours(24);
/// The longest notes of an appointment, in characters.
pub const MAX_NOTES_CHARS: usize = 2000;
/// A slot length asked for in minutes (availability, the agent): from 5 minutes to 8 hours.
pub const SLOT_MINUTES: std::ops::RangeInclusive<u64> = 5..=480;
/// How long a hold keeps its slot when the request does not say.
pub const DEFAULT_HOLD_SECONDS: u32 = 120;
/// How long a hold may keep its slot, at most.
pub const MAX_HOLD_SECONDS: u32 = 900;

/// Why a requested slot is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotRefusal {
    #[error("the resource's name must be 1 to 100 characters")]
    ResourceName,
    #[error("the slot must end after it starts")]
    EndsBeforeStart,
    #[error("the slot may last at most 24 hours")]
    TooLong,
    #[error("the notes may be at most 2000 characters")]
    NotesTooLong,
    #[error("a slot length is a whole number of minutes from 5 to 480")]
    Length,
    #[error("a hold lasts from 1 to 900 seconds")]
    HoldTime,
    #[error("the slot has already started")]
    InThePast,
    #[error("the clinic is not open for the whole slot")]
    Closed,
}

impl SlotRefusal {
    /// Every refusal, for those who must answer each one (the agent's sentences).
    pub const ALL: [SlotRefusal; 8] = [
        SlotRefusal::ResourceName,
        SlotRefusal::EndsBeforeStart,
        SlotRefusal::TooLong,
        SlotRefusal::NotesTooLong,
        SlotRefusal::Length,
        SlotRefusal::HoldTime,
        SlotRefusal::InThePast,
        SlotRefusal::Closed,
    ];
}

/// A slot as asked for: a resource and a span, both valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedSlot {
    pub resource: String,
    pub span: Span,
}

/// The resource asked for, trimmed; [`DEFAULT_RESOURCE`] when none is named.
pub fn resource(asked: Option<&str>) -> Result<&str, SlotRefusal> {
    let resource = asked.map(str::trim).unwrap_or(DEFAULT_RESOURCE);
    if RESOURCE_CHARS.contains(&resource.chars().count()) {
        Ok(resource)
    } else {
        Err(SlotRefusal::ResourceName)
    }
}

/// `[starts_at, ends_at)`, if it is not empty and lasts at most [`MAX_LENGTH`].
pub fn span(starts_at: DateTime<Utc>, ends_at: DateTime<Utc>) -> Result<Span, SlotRefusal> {
    if ends_at <= starts_at {
        return Err(SlotRefusal::EndsBeforeStart);
    }
    if ends_at - starts_at > MAX_LENGTH {
        return Err(SlotRefusal::TooLong);
    }
    Ok(Span {
        start: starts_at,
        end: ends_at,
    })
}

/// What a new appointment or hold asks for: the resource first, then the span.
pub fn requested_slot(
    resource_asked: Option<&str>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<RequestedSlot, SlotRefusal> {
    let resource = resource(resource_asked)?.to_owned();
    let span = span(starts_at, ends_at)?;
    Ok(RequestedSlot { resource, span })
}

/// Notes of at most [`MAX_NOTES_CHARS`].
pub fn notes(notes: Option<&str>) -> Result<(), SlotRefusal> {
    if notes.is_some_and(|n| n.chars().count() > MAX_NOTES_CHARS) {
        return Err(SlotRefusal::NotesTooLong);
    }
    Ok(())
}

/// A slot length of `minutes`, within [`SLOT_MINUTES`].
pub fn slot_length(minutes: u64) -> Result<Duration, SlotRefusal> {
    if SLOT_MINUTES.contains(&minutes) {
        // At most 480: the conversion cannot fail.
        Ok(Duration::minutes(i64::try_from(minutes).unwrap_or(0)))
    } else {
        Err(SlotRefusal::Length)
    }
}

/// How long a hold keeps its slot: `asked`, or [`DEFAULT_HOLD_SECONDS`], from 1 to
/// [`MAX_HOLD_SECONDS`].
pub fn hold_seconds(asked: Option<u32>) -> Result<u32, SlotRefusal> {
    let seconds = asked.unwrap_or(DEFAULT_HOLD_SECONDS);
    if (1..=MAX_HOLD_SECONDS).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(SlotRefusal::HoldTime)
    }
}

/// A slot a caller may be offered: not started by `now`, and inside one opening interval of
/// the clinic's `hours` (read in `tz`). A clinic without hours is never open.
pub fn offerable(
    span: Span,
    now: DateTime<Utc>,
    hours: Option<&OpeningHours>,
    tz: Tz,
) -> Result<(), SlotRefusal> {
    if span.start < now {
        return Err(SlotRefusal::InThePast);
    }
    let open = hours.map(|h| h.spans(tz, span)).unwrap_or_default();
    if !open
        .iter()
        .any(|o| o.start <= span.start && span.end <= o.end)
    {
        return Err(SlotRefusal::Closed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// A new variant must be added here (the match is exhaustive) and then to `ALL`.
    fn position(refusal: SlotRefusal) -> usize {
        match refusal {
            SlotRefusal::ResourceName => 0,
            SlotRefusal::EndsBeforeStart => 1,
            SlotRefusal::TooLong => 2,
            SlotRefusal::NotesTooLong => 3,
            SlotRefusal::Length => 4,
            SlotRefusal::HoldTime => 5,
            SlotRefusal::InThePast => 6,
            SlotRefusal::Closed => 7,
        }
    }

    #[test]
    fn all_lists_every_refusal_once() {
        let positions: Vec<usize> = SlotRefusal::ALL.into_iter().map(position).collect();
        assert_eq!(positions, (0..SlotRefusal::ALL.len()).collect::<Vec<_>>());
    }

    #[test]
    fn a_requested_slot_has_a_named_resource_and_a_bounded_span() {
        let start = at("2031-03-03T17:00:00Z");
        let slot =
            requested_slot(Some("  room 1 "), start, start + Duration::minutes(30)).expect("valid");
        assert_eq!(slot.resource, "room 1");
        assert_eq!(
            requested_slot(None, start, start + Duration::minutes(30))
                .expect("valid")
                .resource,
            DEFAULT_RESOURCE
        );
        assert_eq!(
            requested_slot(Some("  "), start, start - Duration::minutes(30)),
            Err(SlotRefusal::ResourceName),
            "the resource is checked first"
        );
        assert_eq!(
            requested_slot(Some(&"x".repeat(101)), start, start),
            Err(SlotRefusal::ResourceName)
        );
        assert_eq!(span(start, start), Err(SlotRefusal::EndsBeforeStart));
        assert!(span(start, start + MAX_LENGTH).is_ok());
        assert_eq!(
            span(start, start + MAX_LENGTH + Duration::seconds(1)),
            Err(SlotRefusal::TooLong)
        );
    }

    #[test]
    fn lengths_notes_and_hold_times_are_bounded() {
        assert_eq!(slot_length(5), Ok(Duration::minutes(5)));
        assert_eq!(slot_length(480), Ok(Duration::minutes(480)));
        assert_eq!(slot_length(4), Err(SlotRefusal::Length));
        assert_eq!(slot_length(481), Err(SlotRefusal::Length));
        assert_eq!(notes(None), Ok(()));
        assert_eq!(notes(Some(&"é".repeat(MAX_NOTES_CHARS))), Ok(()));
        assert_eq!(
            notes(Some(&"x".repeat(MAX_NOTES_CHARS + 1))),
            Err(SlotRefusal::NotesTooLong)
        );
        assert_eq!(hold_seconds(None), Ok(DEFAULT_HOLD_SECONDS));
        assert_eq!(hold_seconds(Some(900)), Ok(900));
        assert_eq!(hold_seconds(Some(0)), Err(SlotRefusal::HoldTime));
        assert_eq!(hold_seconds(Some(901)), Err(SlotRefusal::HoldTime));
    }

    #[test]
    fn a_caller_is_offered_only_future_slots_inside_the_opening_hours() {
        let raw: BTreeMap<String, Vec<[String; 2]>> = [(
            "mon".to_owned(),
            vec![["09:00".to_owned(), "12:00".to_owned()]],
        )]
        .into();
        let hours = OpeningHours::try_from(raw).expect("hours");
        let tz: Tz = "America/New_York".parse().expect("tz");
        // 2031-03-03 is a Monday; New York is UTC-5 then.
        let slot = |start: &str, minutes: i64| {
            let start = at(start);
            Span {
                start,
                end: start + Duration::minutes(minutes),
            }
        };
        let now = at("2031-03-01T00:00:00Z");
        assert_eq!(
            offerable(slot("2031-03-03T14:00:00Z", 30), now, Some(&hours), tz),
            Ok(())
        );
        assert_eq!(
            offerable(slot("2031-03-03T16:45:00Z", 30), now, Some(&hours), tz),
            Err(SlotRefusal::Closed),
            "past closing"
        );
        assert_eq!(
            offerable(slot("2031-03-04T14:00:00Z", 30), now, Some(&hours), tz),
            Err(SlotRefusal::Closed),
            "closed on Tuesdays"
        );
        assert_eq!(
            offerable(slot("2031-03-03T14:00:00Z", 30), now, None, tz),
            Err(SlotRefusal::Closed),
            "no hours, never open"
        );
        assert_eq!(
            offerable(
                slot("2031-03-03T14:00:00Z", 30),
                at("2031-03-03T14:01:00Z"),
                Some(&hours),
                tz
            ),
            Err(SlotRefusal::InThePast)
        );
    }
}
