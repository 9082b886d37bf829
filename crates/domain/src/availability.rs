//! Opening hours and free slots: the rules of availability, without I/O.

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::Deserialize;
use std::collections::BTreeMap;

/// A half-open span of time, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Span {
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// A clinic's weekly opening hours, in its local time: for each weekday, intervals
/// `[open, close)`. Stored as `{"mon": [["09:00","17:00"]], ...}`; "24:00" closes at midnight.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, Vec<[String; 2]>>")]
pub struct OpeningHours {
    days: BTreeMap<u32, Vec<(NaiveTime, Option<NaiveTime>)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("opening hours: {0}")]
pub struct OpeningHoursError(String);

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

fn parse_time(text: &str) -> Result<NaiveTime, OpeningHoursError> {
    NaiveTime::parse_from_str(text, "%H:%M")
        .map_err(|_| OpeningHoursError(format!("`{text}` is not a time (HH:MM)")))
}

impl TryFrom<BTreeMap<String, Vec<[String; 2]>>> for OpeningHours {
    type Error = OpeningHoursError;

    fn try_from(raw: BTreeMap<String, Vec<[String; 2]>>) -> Result<Self, Self::Error> {
        let mut days = BTreeMap::new();
        for (day, intervals) in raw {
            let weekday = DAYS
                .iter()
                .find(|(name, _)| *name == day)
                .map(|(_, w)| *w)
                .ok_or_else(|| OpeningHoursError(format!("`{day}` is not one of mon..sun")))?;
            let mut parsed = Vec::new();
            for [open, close] in intervals {
                let open_at = parse_time(&open)?;
                // None: midnight at the end of the day.
                let close_at = if close == "24:00" {
                    None
                } else {
                    Some(parse_time(&close)?)
                };
                if close_at.is_some_and(|c| c <= open_at) {
                    return Err(OpeningHoursError(format!(
                        "{day}: `{open}`-`{close}` closes before it opens"
                    )));
                }
                parsed.push((open_at, close_at));
            }
            days.insert(weekday.num_days_from_monday(), parsed);
        }
        Ok(Self { days })
    }
}

/// The instant of a local time. A time skipped by a DST change counts from the end of the
/// gap; a time that happens twice is its first occurrence.
fn instant(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

impl OpeningHours {
    /// The opening intervals that touch `window`, as instants.
    pub fn spans(&self, tz: Tz, window: Span) -> Vec<Span> {
        let first = window.start.with_timezone(&tz).date_naive() - Duration::days(1);
        let last = window.end.with_timezone(&tz).date_naive() + Duration::days(1);
        let mut spans = Vec::new();
        let mut day: NaiveDate = first;
        while day <= last {
            let weekday = day.weekday().num_days_from_monday();
            for (open, close) in self.days.get(&weekday).into_iter().flatten() {
                let end_local = match close {
                    Some(close) => day.and_time(*close),
                    None => (day + Duration::days(1)).and_time(NaiveTime::MIN),
                };
                let (Some(start), Some(end)) =
                    (instant(tz, day.and_time(*open)), instant(tz, end_local))
                else {
                    continue;
                };
                let span = Span { start, end };
                if start < end && span.overlaps(&window) {
                    spans.push(span);
                }
            }
            day += Duration::days(1);
        }
        spans.sort();
        spans
    }
}

/// The free slots of `duration` in `window`: on a grid of `duration` from the start of each
/// opening interval, inside it and inside `window`, not starting before `not_before`, and
/// overlapping no span of `busy`.
pub fn free_slots(
    hours: &OpeningHours,
    tz: Tz,
    window: Span,
    duration: Duration,
    busy: &[Span],
    not_before: DateTime<Utc>,
) -> Vec<Span> {
    let mut slots = Vec::new();
    if duration <= Duration::zero() {
        return slots;
    }
    for open in hours.spans(tz, window) {
        let mut start = open.start;
        while start + duration <= open.end {
            let slot = Span {
                start,
                end: start + duration,
            };
            start = slot.end;
            if slot.start < window.start || slot.end > window.end || slot.start < not_before {
                continue;
            }
            if busy.iter().any(|b| b.overlaps(&slot)) {
                continue;
            }
            slots.push(slot);
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(json: &[(&str, &[(&str, &str)])]) -> OpeningHours {
        let raw: BTreeMap<String, Vec<[String; 2]>> = json
            .iter()
            .map(|(d, iv)| {
                (
                    d.to_string(),
                    iv.iter()
                        .map(|(a, b)| [a.to_string(), b.to_string()])
                        .collect(),
                )
            })
            .collect();
        OpeningHours::try_from(raw).expect("valid hours")
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn window(a: &str, b: &str) -> Span {
        Span {
            start: at(a),
            end: at(b),
        }
    }

    #[test]
    fn slots_follow_local_opening_hours_on_a_grid_from_the_opening() {
        // 2030-01-07 is a Monday; Los Angeles is UTC-8 in January.
        let h = hours(&[("mon", &[("09:00", "10:45")])]);
        let tz: Tz = "America/Los_Angeles".parse().expect("tz");
        let slots = free_slots(
            &h,
            tz,
            window("2030-01-07T00:00:00Z", "2030-01-09T00:00:00Z"),
            Duration::minutes(30),
            &[],
            at("2000-01-01T00:00:00Z"),
        );
        let starts: Vec<String> = slots.iter().map(|s| s.start.to_rfc3339()).collect();
        assert_eq!(
            starts,
            [
                "2030-01-07T17:00:00+00:00",
                "2030-01-07T17:30:00+00:00",
                "2030-01-07T18:00:00+00:00"
            ]
        );
    }

    #[test]
    fn busy_spans_and_the_past_are_not_free() {
        let h = hours(&[("mon", &[("09:00", "11:00")])]);
        let slots = free_slots(
            &h,
            Tz::UTC,
            window("2030-01-07T00:00:00Z", "2030-01-08T00:00:00Z"),
            Duration::minutes(30),
            &[window("2030-01-07T09:45:00Z", "2030-01-07T10:15:00Z")],
            at("2030-01-07T09:15:00Z"),
        );
        let starts: Vec<String> = slots.iter().map(|s| s.start.to_rfc3339()).collect();
        assert_eq!(starts, ["2030-01-07T10:30:00+00:00"]);
    }

    #[test]
    fn midnight_closing_and_dst_days_work() {
        // Europe/London springs forward on 2030-03-31 (a Sunday) at 01:00 UTC.
        let h = hours(&[("sun", &[("00:00", "24:00")])]);
        let tz: Tz = "Europe/London".parse().expect("tz");
        let slots = free_slots(
            &h,
            tz,
            window("2030-03-30T00:00:00Z", "2030-04-01T00:00:00Z"),
            Duration::hours(1),
            &[],
            at("2000-01-01T00:00:00Z"),
        );
        assert_eq!(slots.len(), 23, "a 23-hour day");
    }

    #[test]
    fn bad_hours_are_refused() {
        for raw in [
            vec![(
                "mon".to_owned(),
                vec![["17:00".to_owned(), "09:00".to_owned()]],
            )],
            vec![("funday".to_owned(), vec![])],
            vec![("tue".to_owned(), vec![["9am".to_owned(), "5pm".to_owned()]])],
        ] {
            let raw: BTreeMap<_, _> = raw.into_iter().collect();
            assert!(OpeningHours::try_from(raw).is_err());
        }
    }
}
