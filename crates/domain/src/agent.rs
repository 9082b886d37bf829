//! The voice agent's configuration rules: opening hours and the clinic's time zone.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A day of the week, as the keys of [`OpeningHours`] spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Weekday::Mon => "mon",
            Weekday::Tue => "tue",
            Weekday::Wed => "wed",
            Weekday::Thu => "thu",
            Weekday::Fri => "fri",
            Weekday::Sat => "sat",
            Weekday::Sun => "sun",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Opening time to closing time on one day, in minutes after midnight (`24:00` may close).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub start: u16,
    pub end: u16,
}

fn parse_hhmm(text: &str) -> Option<u16> {
    let b = text.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let hours = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let minutes = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    match (hours, minutes) {
        (0..=23, 0..=59) | (24, 0) => Some(hours * 60 + minutes),
        _ => None,
    }
}

fn hhmm(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OpeningHoursError(String);

/// When the clinic is open, per weekday: `{"mon": [["09:00","12:00"],["13:00","17:00"]], …}`.
/// Keys are `mon`..`sun`; a missing or empty day is closed. Each interval is `HH:MM` to
/// `HH:MM` (24-hour clock, `24:00` allowed as a closing time), opens before it closes, and no
/// two intervals of a day overlap. Intervals are kept sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(
    try_from = "BTreeMap<String, Vec<(String, String)>>",
    into = "BTreeMap<String, Vec<(String, String)>>"
)]
#[schema(
    value_type = Object,
    example = json!({"mon": [["09:00", "12:00"], ["13:00", "17:00"]], "tue": [["09:00", "17:00"]]})
)]
pub struct OpeningHours(BTreeMap<Weekday, Vec<Interval>>);

impl OpeningHours {
    pub fn day(&self, day: Weekday) -> &[Interval] {
        self.0.get(&day).map(Vec::as_slice).unwrap_or_default()
    }
}

impl TryFrom<BTreeMap<String, Vec<(String, String)>>> for OpeningHours {
    type Error = OpeningHoursError;

    fn try_from(raw: BTreeMap<String, Vec<(String, String)>>) -> Result<Self, Self::Error> {
        let mut days = BTreeMap::new();
        for (key, intervals) in raw {
            let day = Weekday::parse(&key).ok_or_else(|| {
                OpeningHoursError(format!(
                    "`{key}` is not a day: expected mon, tue, wed, thu, fri, sat, sun"
                ))
            })?;
            let mut parsed = Vec::with_capacity(intervals.len());
            for (start, end) in intervals {
                let time = |t: &str| {
                    parse_hhmm(t).ok_or_else(|| {
                        OpeningHoursError(format!(
                            "{key}: `{t}` is not a time (HH:MM, 00:00 to 24:00)"
                        ))
                    })
                };
                let interval = Interval {
                    start: time(&start)?,
                    end: time(&end)?,
                };
                if interval.start >= interval.end {
                    return Err(OpeningHoursError(format!(
                        "{key}: {start} to {end}: opening must be before closing"
                    )));
                }
                parsed.push(interval);
            }
            parsed.sort();
            if let Some(pair) = parsed.windows(2).find(|p| p[1].start < p[0].end) {
                return Err(OpeningHoursError(format!(
                    "{key}: {} to {} overlaps {} to {}",
                    hhmm(pair[0].start),
                    hhmm(pair[0].end),
                    hhmm(pair[1].start),
                    hhmm(pair[1].end)
                )));
            }
            if !parsed.is_empty() {
                days.insert(day, parsed);
            }
        }
        Ok(Self(days))
    }
}

/// All seven days, closed ones as `[]`.
impl From<OpeningHours> for BTreeMap<String, Vec<(String, String)>> {
    fn from(hours: OpeningHours) -> Self {
        Weekday::ALL
            .into_iter()
            .map(|day| {
                let intervals = hours
                    .day(day)
                    .iter()
                    .map(|i| (hhmm(i.start), hhmm(i.end)))
                    .collect();
                (day.as_str().to_owned(), intervals)
            })
            .collect()
    }
}

/// An IANA time zone name (`Europe/London`, `America/New_York`, `UTC`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "Europe/London")]
pub struct TimeZoneName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IANA time zone name, e.g. Europe/London")]
pub struct TimeZoneError(String);

impl TimeZoneName {
    pub fn parse(name: &str) -> Result<Self, TimeZoneError> {
        name.parse::<chrono_tz::Tz>()
            .map(|tz| Self(tz.name().to_owned()))
            .map_err(|_| TimeZoneError(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn utc() -> Self {
        Self("UTC".to_owned())
    }
}

impl TryFrom<String> for TimeZoneName {
    type Error = TimeZoneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<TimeZoneName> for String {
    fn from(value: TimeZoneName) -> Self {
        value.0
    }
}

impl fmt::Display for TimeZoneName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(json: &str) -> Result<OpeningHours, String> {
        let raw: BTreeMap<String, Vec<(String, String)>> =
            serde_json_lite(json).ok_or("not the raw shape")?;
        OpeningHours::try_from(raw).map_err(|e| e.to_string())
    }

    /// The raw shape, without a JSON dependency: `day=HH:MM-HH:MM,HH:MM-HH:MM;day=…`.
    fn serde_json_lite(text: &str) -> Option<BTreeMap<String, Vec<(String, String)>>> {
        let mut map = BTreeMap::new();
        for day in text.split(';').filter(|d| !d.is_empty()) {
            let (key, list) = day.split_once('=')?;
            let mut intervals = Vec::new();
            for pair in list.split(',').filter(|p| !p.is_empty()) {
                let (a, b) = pair.split_once('-')?;
                intervals.push((a.to_owned(), b.to_owned()));
            }
            map.insert(key.to_owned(), intervals);
        }
        Some(map)
    }

    #[test]
    fn valid_hours_are_sorted_and_closed_days_are_empty() {
        let h = hours("mon=13:00-17:00,09:00-12:00;sat=;sun=22:00-24:00").expect("valid");
        assert_eq!(
            h.day(Weekday::Mon),
            &[
                Interval {
                    start: 540,
                    end: 720
                },
                Interval {
                    start: 780,
                    end: 1020
                }
            ]
        );
        assert!(h.day(Weekday::Sat).is_empty() && h.day(Weekday::Tue).is_empty());
        let out = BTreeMap::<String, Vec<(String, String)>>::from(h);
        assert_eq!(out.len(), 7);
        assert_eq!(out["sun"], vec![("22:00".to_owned(), "24:00".to_owned())]);
        assert!(
            hours("tue=09:00-12:00,12:00-13:00").is_ok(),
            "touching is fine"
        );
    }

    #[test]
    fn bad_hours_are_refused_with_the_reason() {
        for (bad, says) in [
            ("monday=09:00-17:00", "not a day"),
            ("mon=9:00-17:00", "not a time"),
            ("mon=09:00-24:30", "not a time"),
            ("mon=09:60-17:00", "not a time"),
            ("mon=17:00-09:00", "before closing"),
            ("mon=09:00-09:00", "before closing"),
            ("mon=09:00-13:00,12:00-17:00", "overlaps"),
        ] {
            let err = hours(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            TimeZoneName::parse("Europe/London").map(String::from),
            Ok("Europe/London".to_owned())
        );
        assert!(TimeZoneName::parse("UTC").is_ok());
        for bad in ["Mars/Olympus", "", "GMT+25", "europe/london/x"] {
            assert!(TimeZoneName::parse(bad).is_err(), "{bad}");
        }
    }
}
