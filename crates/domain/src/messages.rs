//! Patients' messages: what an inbound text means (the carrier keywords, a confirmation's
//! "C" and "R"), when a reminder goes (on the clinic's clock, out of its quiet hours), and
//! the text a reminder says.

use crate::calls::text_enum;
use crate::UnknownVariant;
use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

text_enum!(
    /// What Voxanne made of an inbox message. `message`: free text for the clinic to read;
    /// `confirmed`: "C" to a pending confirmation or reminder; `reschedule_request`: "R" (the
    /// clinic calls back); `callback_request`: left with the agent; `opted_out`, `opted_in`,
    /// `help`: a carrier keyword.
    InboxKind {
        Message => "message",
        Confirmed => "confirmed",
        RescheduleRequest => "reschedule_request",
        CallbackRequest => "callback_request",
        OptedOut => "opted_out",
        OptedIn => "opted_in",
        Help => "help",
    }
);

text_enum!(
    /// `open` until the clinic's staff mark it `done`.
    InboxStatus { Open => "open", Done => "done" }
);

text_enum!(
    /// Where an inbox message came from.
    InboxChannel { Sms => "sms", Call => "call" }
);

text_enum!(
    /// What a consent record is about: texts, or outbound calls.
    ConsentChannel { Sms => "sms", Calls => "calls" }
);

/// What an inbound text asks for. The keywords are matched the way carriers and Twilio match
/// them: the whole message, one word, any case, surrounding spaces and punctuation ignored
/// ("Stop." opts out; "stop texting me about parking" is a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT.
    OptOut,
    /// START, UNSTOP, and YES from a number that has opted out.
    OptIn,
    /// HELP, INFO.
    Help,
    /// C, CONFIRM (and YES from a number that has not opted out).
    Confirm,
    /// R, RESCHEDULE.
    Reschedule,
    /// Anything else.
    Message,
}

/// Twilio's default opt-out keywords for long codes (Advanced Opt-Out documents the list:
/// <https://www.twilio.com/docs/messaging/tutorials/advanced-opt-out>).
pub const OPT_OUT_KEYWORDS: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
];
/// Twilio's default opt-in keywords (`YES` only for a number that opted out).
pub const OPT_IN_KEYWORDS: &[&str] = &["START", "UNSTOP"];
/// The help keywords.
pub const HELP_KEYWORDS: &[&str] = &["HELP", "INFO"];

/// The one word of a message, upper-cased, if it is one word.
fn keyword(body: &str) -> Option<String> {
    let word = body.trim_matches(|c: char| c.is_whitespace() || c.is_ascii_punctuation());
    (!word.is_empty() && !word.contains(char::is_whitespace)).then(|| word.to_uppercase())
}

/// What `body` asks for; `opted_out` says whether the sender's number is opted out now (it
/// decides what a YES means).
pub fn intent(body: &str, opted_out: bool) -> Intent {
    let Some(word) = keyword(body) else {
        return Intent::Message;
    };
    let word = word.as_str();
    if OPT_OUT_KEYWORDS.contains(&word) {
        Intent::OptOut
    } else if OPT_IN_KEYWORDS.contains(&word) || (word == "YES" && opted_out) {
        Intent::OptIn
    } else if HELP_KEYWORDS.contains(&word) {
        Intent::Help
    } else if matches!(word, "C" | "CONFIRM" | "YES" | "Y") {
        Intent::Confirm
    } else if matches!(word, "R" | "RESCHEDULE") {
        Intent::Reschedule
    } else {
        Intent::Message
    }
}

/// A clinic's quiet hours: no reminder goes out from `start` to `end` (local; the window may
/// cross midnight). `start == end`: none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl QuietHours {
    /// Whether the local time `t` falls in the quiet hours.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.start == self.end {
            false
        } else if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }

    /// The first instant at or after `at` that is out of the quiet hours, in `tz`.
    pub fn next_allowed(&self, at: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        let local = at.with_timezone(&tz).naive_local();
        if !self.contains(local.time()) {
            return at;
        }
        // The window ends at `end` today, or tomorrow if it crossed midnight and we are before it.
        let day = if self.start > self.end && local.time() >= self.start {
            local.date() + Duration::days(1)
        } else {
            local.date()
        };
        resolve(day.and_time(self.end), tz).max(at)
    }
}

/// A wall-clock time in `tz` as an instant: the earlier of two in a fall-back hour, and the
/// first instant after a spring-forward gap.
pub fn resolve(local: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // A gap is at most a few hours: walk forward a minute at a time, bounded.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// When a reminder `minutes_before` an appointment starting at `starts_at` goes, or `None`
/// if it should not go at all. Counted on the clinic's clock (`tz`): 1440 minutes before 10:00
/// is 10:00 the day before, whether or not the clocks changed in between. A time in the
/// quiet hours moves to their end; a reminder whose time (so moved) is not before the
/// appointment, or has already passed at `now` (booked too late for it), is skipped.
pub fn reminder_due(
    starts_at: DateTime<Utc>,
    minutes_before: i32,
    tz: Tz,
    quiet: QuietHours,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local_start = starts_at.with_timezone(&tz).naive_local();
    let due = resolve(
        local_start - Duration::minutes(i64::from(minutes_before)),
        tz,
    );
    let due = quiet.next_allowed(due, tz);
    (due < starts_at && due >= now).then_some(due)
}

/// The placeholders a reminder template may use.
pub const TEMPLATE_PLACEHOLDERS: &[&str] = &["clinic", "date", "time", "place", "practitioner"];

/// The reminder text when a rule has no template of its own.
pub const DEFAULT_REMINDER_TEMPLATE: &str =
    "{clinic}: a reminder of your appointment on {date} at {time}{place}. Reply C to confirm, R to reschedule, STOP to opt out.";

/// A template names a placeholder Voxanne does not fill, or has an unclosed brace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// Checks a reminder template: every `{…}` one of [`TEMPLATE_PLACEHOLDERS`].
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(TemplateError("a `{` is never closed".into()));
        };
        let name = &after[..close];
        if !TEMPLATE_PLACEHOLDERS.contains(&name) {
            return Err(TemplateError(format!(
                "unknown placeholder {{{name}}}; use {}",
                TEMPLATE_PLACEHOLDERS
                    .iter()
                    .map(|p| format!("{{{p}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// What fills a reminder.
#[derive(Debug, Clone)]
pub struct ReminderFacts<'a> {
    pub clinic: &'a str,
    pub starts_at: DateTime<Utc>,
    pub time_zone: Tz,
    /// The location's name (and address), if the practitioner has one.
    pub place: Option<&'a str>,
    pub practitioner: Option<&'a str>,
}

/// The text of a reminder: `template` (or the default) with its placeholders filled. `{place}`
/// in the default reads " at Main street" (or nothing); in a clinic's own template it is the
/// bare place.
pub fn reminder_body(template: Option<&str>, facts: &ReminderFacts<'_>) -> String {
    let local = facts.starts_at.with_timezone(&facts.time_zone);
    let date = local.format("%a %-d %b %Y").to_string();
    let time = local.format("%H:%M").to_string();
    let (template, place) = match template {
        Some(t) => (t, facts.place.unwrap_or("").to_owned()),
        None => (
            DEFAULT_REMINDER_TEMPLATE,
            facts.place.map(|p| format!(" at {p}")).unwrap_or_default(),
        ),
    };
    template
        .replace("{clinic}", facts.clinic.trim())
        .replace("{date}", &date)
        .replace("{time}", &time)
        .replace("{place}", &place)
        .replace("{practitioner}", facts.practitioner.unwrap_or(""))
}

/// The HELP answer when a clinic has none of its own.
pub fn default_help_text(clinic: &str, number: &str) -> String {
    format!(
        "{}: reply C to confirm an appointment, R to reschedule, STOP to opt out. Call us on {number}.",
        clinic.trim()
    )
}

/// The answer to a "C".
pub fn confirmed_reply(clinic: &str, starts_at: DateTime<Utc>, tz: Tz) -> String {
    format!(
        "{}: thank you, your appointment on {} is confirmed.",
        clinic.trim(),
        starts_at.with_timezone(&tz).format("%a %-d %b %Y at %H:%M")
    )
}

/// The answer to an "R".
pub fn reschedule_reply(clinic: &str) -> String {
    format!(
        "{}: thank you, we will call you to find a new time.",
        clinic.trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("time")
    }

    fn quiet(start: &str, end: &str) -> QuietHours {
        QuietHours {
            start: start.parse().expect("time"),
            end: end.parse().expect("time"),
        }
    }

    #[test]
    fn every_carrier_keyword_in_any_case_and_with_punctuation() {
        for word in OPT_OUT_KEYWORDS {
            assert_eq!(intent(word, false), Intent::OptOut, "{word}");
            assert_eq!(intent(&word.to_lowercase(), false), Intent::OptOut);
            assert_eq!(intent(&format!("  {word}. \n"), false), Intent::OptOut);
        }
        for word in ["START", "unstop", "Start!"] {
            assert_eq!(intent(word, true), Intent::OptIn, "{word}");
            assert_eq!(intent(word, false), Intent::OptIn, "{word}");
        }
        assert_eq!(intent("help", false), Intent::Help);
        assert_eq!(intent("INFO?", false), Intent::Help);
        assert_eq!(
            intent("yes", true),
            Intent::OptIn,
            "YES from an opted-out number"
        );
        assert_eq!(intent("yes", false), Intent::Confirm);
        assert_eq!(intent("c", false), Intent::Confirm);
        assert_eq!(intent("Confirm", false), Intent::Confirm);
        assert_eq!(intent(" r ", false), Intent::Reschedule);
        assert_eq!(intent("stop texting me", false), Intent::Message);
        assert_eq!(intent("Can I bring my son?", false), Intent::Message);
        assert_eq!(intent("", false), Intent::Message);
        assert_eq!(intent("...", false), Intent::Message);
    }

    #[test]
    fn quiet_hours_across_midnight_and_within_a_day() {
        let night = quiet("21:00", "08:00");
        assert!(night.contains("03:00".parse().expect("t")));
        assert!(night.contains("21:00".parse().expect("t")));
        assert!(!night.contains("08:00".parse().expect("t")));
        assert!(!night.contains("12:00".parse().expect("t")));
        let lunch = quiet("12:00", "13:00");
        assert!(lunch.contains("12:30".parse().expect("t")));
        assert!(!lunch.contains("13:00".parse().expect("t")));
        assert!(!quiet("00:00", "00:00").contains("03:00".parse().expect("t")));
    }

    #[test]
    fn a_reminder_due_at_three_in_the_morning_goes_at_the_start_of_the_window() {
        let tz: Tz = "Europe/London".parse().expect("tz");
        // 27 hours before 06:00 is 03:00 the day before (winter: UTC).
        let due = reminder_due(
            at("2031-01-15T06:00:00Z"),
            24 * 60 + 3 * 60,
            tz,
            quiet("21:00", "08:00"),
            at("2031-01-01T00:00:00Z"),
        );
        assert_eq!(due, Some(at("2031-01-14T08:00:00Z")));
        // A 2 h reminder of a 07:00 appointment would go at 05:00: the window opens at 08:00,
        // after the appointment, so it is skipped.
        let skipped = reminder_due(
            at("2031-01-15T07:00:00Z"),
            120,
            tz,
            quiet("21:00", "08:00"),
            at("2031-01-01T00:00:00Z"),
        );
        assert_eq!(skipped, None);
        // Booked too late for it: skipped.
        assert_eq!(
            reminder_due(
                at("2031-01-15T12:00:00Z"),
                1440,
                tz,
                quiet("21:00", "08:00"),
                at("2031-01-15T09:00:00Z"),
            ),
            None
        );
    }

    #[test]
    fn a_day_before_is_the_same_local_time_across_a_dst_change() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        let none = quiet("00:00", "00:00");
        // Clocks went forward on Sun 9 Mar 2031 at 02:00. Mon 10 Mar 10:00 EDT = 14:00Z; the
        // day before at 10:00 is EDT too: 14:00Z (23 hours earlier by the clock on the wall).
        assert_eq!(
            reminder_due(
                at("2031-03-10T14:00:00Z"),
                1440,
                tz,
                none,
                at("2031-01-01T00:00:00Z")
            ),
            Some(at("2031-03-09T14:00:00Z"))
        );
        // Sun 9 Mar 10:00 EDT; the day before, Sat 10:00 EST = 15:00Z (25 hours earlier).
        assert_eq!(
            reminder_due(
                at("2031-03-09T14:00:00Z"),
                1440,
                tz,
                none,
                at("2031-01-01T00:00:00Z")
            ),
            Some(at("2031-03-08T15:00:00Z"))
        );
        // Clocks went back on Sun 2 Nov 2031 at 02:00: 2 h before 03:00 EST is 01:00, which
        // happens twice; the earlier (EDT, 05:00Z) is taken.
        assert_eq!(
            reminder_due(
                at("2031-11-02T08:00:00Z"),
                120,
                tz,
                none,
                at("2031-01-01T00:00:00Z")
            ),
            Some(at("2031-11-02T05:00:00Z"))
        );
        // 1 h before 03:00 EDT on 9 Mar is 02:00, which never happens: 03:00 EDT... is the
        // appointment itself, so the reminder is skipped rather than sent at the start.
        assert_eq!(
            reminder_due(
                at("2031-03-09T07:00:00Z"),
                60,
                tz,
                none,
                at("2031-01-01T00:00:00Z")
            ),
            None
        );
    }

    #[test]
    fn quiet_hours_are_the_clinics_local_ones_on_both_sides_of_a_change() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        let night = quiet("21:00", "08:00");
        // 06:00 EDT on Mon 10 Mar (10:00Z) is quiet: it goes at 08:00 EDT = 12:00Z.
        assert_eq!(
            night.next_allowed(at("2031-03-10T10:00:00Z"), tz),
            at("2031-03-10T12:00:00Z")
        );
        // 06:00 EST on Fri 7 Mar (11:00Z): 08:00 EST = 13:00Z.
        assert_eq!(
            night.next_allowed(at("2031-03-07T11:00:00Z"), tz),
            at("2031-03-07T13:00:00Z")
        );
        // 22:00 EST Sat 8 Mar (03:00Z Sun): the window ends 08:00 EDT Sun = 12:00Z.
        assert_eq!(
            night.next_allowed(at("2031-03-09T03:00:00Z"), tz),
            at("2031-03-09T12:00:00Z")
        );
        assert_eq!(
            night.next_allowed(at("2031-03-09T15:00:00Z"), tz),
            at("2031-03-09T15:00:00Z"),
            "11:00 is allowed"
        );
    }

    #[test]
    fn templates_fill_known_placeholders_and_refuse_others() {
        let tz: Tz = "America/Los_Angeles".parse().expect("tz");
        let facts = ReminderFacts {
            clinic: "Sunrise Dental",
            starts_at: at("2031-03-03T17:00:00Z"),
            time_zone: tz,
            place: Some("Main street"),
            practitioner: Some("Dr Lee"),
        };
        assert_eq!(
            reminder_body(None, &facts),
            "Sunrise Dental: a reminder of your appointment on Mon 3 Mar 2031 at 09:00 at Main street. Reply C to confirm, R to reschedule, STOP to opt out."
        );
        assert_eq!(
            reminder_body(
                Some("{practitioner} sees you {date} {time} ({place})"),
                &facts
            ),
            "Dr Lee sees you Mon 3 Mar 2031 09:00 (Main street)"
        );
        assert!(check_template(DEFAULT_REMINDER_TEMPLATE).is_ok());
        assert!(check_template("{clinic} {doctor}").is_err());
        assert!(check_template("{clinic").is_err());
        assert!(check_template("no placeholders").is_ok());
    }
}
