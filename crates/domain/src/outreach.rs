//! The clinic's outbound calls: when a callee may be called (their local calling hours, in
//! every time zone their number may be in), what an attempt's end means (the platform's
//! `endedReason` and the agent's own report), and what it makes of the lead.

use crate::calls::text_enum;
use crate::{PhoneNumber, UnknownVariant};
use chrono::{DateTime, Duration, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use std::str::FromStr;

text_enum!(
    /// Where a lead stands: `new` until called; `contacted` (reached, nothing decided),
    /// `callback`, `booked`, `not_interested`, `wrong_number` from a call's outcome;
    /// `do_not_call` (on the do-not-call list or its consent withdrawn); `converted` once it
    /// became a contact.
    LeadStatus {
        New => "new",
        Contacted => "contacted",
        Callback => "callback",
        Booked => "booked",
        NotInterested => "not_interested",
        WrongNumber => "wrong_number",
        DoNotCall => "do_not_call",
        Converted => "converted",
    }
);

text_enum!(
    /// A campaign target in the dialer's queue: `queued` (waiting for its time), `dialing`
    /// (claimed: the platform is being asked), `calling` (waiting for the end-of-call report),
    /// then `done`, `skipped` (never called: do-not-call, no consent, no known time zone) or
    /// `failed`.
    TargetStatus {
        Queued => "queued",
        Dialing => "dialing",
        Calling => "calling",
        Done => "done",
        Skipped => "skipped",
        Failed => "failed",
    }
);

text_enum!(
    /// How one outbound attempt ended.
    CallOutcome {
        Booked => "booked",
        NotInterested => "not_interested",
        Callback => "callback",
        Voicemail => "voicemail",
        WrongNumber => "wrong_number",
        NoAnswer => "no_answer",
        Busy => "busy",
        Answered => "answered",
        Failed => "failed",
    }
);

/// The latest a call may start, the earliest, in the callee's local time, whatever a campaign
/// says: the TCPA's calling hours (47 U.S.C. 227, 47 CFR 64.1200(c)(1): not before 8 a.m. or
/// after 9 p.m. at the called party's location), applied to every callee.
pub const EARLIEST_CALL: NaiveTime = match NaiveTime::from_hms_opt(8, 0, 0) {
    Some(t) => t,
    None => panic!("08:00"),
};
pub const LATEST_CALL: NaiveTime = match NaiveTime::from_hms_opt(21, 0, 0) {
    Some(t) => t,
    None => panic!("21:00"),
};

/// The time zones a number's holder may be in, by its country calling code (the longest
/// known prefix). A country of several zones gives them all: a call goes only when it is
/// within the window in each. `None`: a country not in the table (give the lead a time zone).
pub fn zones_of_number(phone: &PhoneNumber) -> Option<Vec<Tz>> {
    use chrono_tz::{America, Asia, Atlantic, Australia, Europe, Pacific};
    let digits = phone.as_str().trim_start_matches('+');
    // Longest prefixes first: a territory inside +1 before +1 itself.
    let table: &[(&str, &[Tz])] = &[
        ("1808", &[Pacific::Honolulu]),
        ("1907", &[America::Anchorage, America::Adak]),
        ("1670", &[Pacific::Saipan]),
        ("1671", &[Pacific::Guam]),
        ("1684", &[Pacific::Pago_Pago]),
        (
            "1",
            &[
                America::St_Johns,
                America::Halifax,
                America::New_York,
                America::Chicago,
                America::Denver,
                America::Phoenix,
                America::Los_Angeles,
                America::Anchorage,
                Pacific::Honolulu,
            ],
        ),
        ("351", &[Europe::Lisbon, Atlantic::Azores]),
        ("353", &[Europe::Dublin]),
        ("971", &[Asia::Dubai]),
        ("972", &[Asia::Jerusalem]),
        ("27", &[chrono_tz::Africa::Johannesburg]),
        ("31", &[Europe::Amsterdam]),
        ("32", &[Europe::Brussels]),
        ("33", &[Europe::Paris]),
        ("34", &[Europe::Madrid, Atlantic::Canary]),
        ("39", &[Europe::Rome]),
        ("41", &[Europe::Zurich]),
        ("43", &[Europe::Vienna]),
        ("44", &[Europe::London]),
        ("45", &[Europe::Copenhagen]),
        ("46", &[Europe::Stockholm]),
        ("47", &[Europe::Oslo]),
        ("48", &[Europe::Warsaw]),
        ("49", &[Europe::Berlin]),
        (
            "52",
            &[
                America::Tijuana,
                America::Hermosillo,
                America::Mexico_City,
                America::Cancun,
            ],
        ),
        (
            "61",
            &[
                Australia::Perth,
                Australia::Darwin,
                Australia::Adelaide,
                Australia::Brisbane,
                Australia::Sydney,
                Australia::Lord_Howe,
            ],
        ),
        ("64", &[Pacific::Auckland, Pacific::Chatham]),
        ("65", &[Asia::Singapore]),
        ("81", &[Asia::Tokyo]),
        ("91", &[Asia::Kolkata]),
    ];
    table
        .iter()
        .filter(|(prefix, _)| digits.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, zones)| zones.to_vec())
}

/// Why a callee's time zones are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZoneError {
    #[error("{0:?} is not an IANA time zone")]
    Unknown(String),
    #[error("the time zone of {0} is not known from its country code: give the lead a time_zone")]
    Country(String),
}

/// Every zone the callee of `phone` may be in: the lead's own `time_zone` when given, else
/// those of the number's country.
pub fn callee_zones(phone: &PhoneNumber, time_zone: Option<&str>) -> Result<Vec<Tz>, ZoneError> {
    match time_zone.map(str::trim).filter(|z| !z.is_empty()) {
        Some(zone) => zone
            .parse::<Tz>()
            .map(|tz| vec![tz])
            .map_err(|_| ZoneError::Unknown(zone.to_owned())),
        None => zones_of_number(phone).ok_or_else(|| ZoneError::Country(phone.to_string())),
    }
}

/// A campaign's calling window, the callee's local time, `start` inclusive, `end` exclusive.
/// Always within [`EARLIEST_CALL`], [`LATEST_CALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallingWindow {
    start: NaiveTime,
    end: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("the calling window must lie within 08:00-21:00, the callee's local time")]
    OutsideCallingHours,
    #[error("the calling window must start before it ends")]
    Empty,
}

impl CallingWindow {
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, WindowError> {
        if start < EARLIEST_CALL || end > LATEST_CALL {
            return Err(WindowError::OutsideCallingHours);
        }
        if start >= end {
            return Err(WindowError::Empty);
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> NaiveTime {
        self.start
    }

    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// Whether `at` is within the window in every one of `zones`.
    pub fn open_at(&self, at: DateTime<Utc>, zones: &[Tz]) -> bool {
        !zones.is_empty()
            && zones.iter().all(|tz| {
                let local = at.with_timezone(tz).time();
                local >= self.start && local < self.end
            })
    }

    /// The first moment from `now` on when the window is open in every zone (`now` itself
    /// if it is), looking a week ahead; `None` if it never is (zones too far apart for the
    /// window).
    pub fn next_open(&self, now: DateTime<Utc>, zones: &[Tz]) -> Option<DateTime<Utc>> {
        if self.open_at(now, zones) {
            return Some(now);
        }
        // The window opens, if at all, when the last of the zones reaches its start: try
        // every zone's start on every day of the week ahead, earliest first.
        let mut candidates: Vec<DateTime<Utc>> = Vec::new();
        for tz in zones {
            let today = now.with_timezone(tz).date_naive();
            for day in -1..=8 {
                let date = today + Duration::days(day);
                if let Some(local) = tz
                    .from_local_datetime(&date.and_time(self.start))
                    .earliest()
                {
                    let at = local.with_timezone(&Utc);
                    if at > now {
                        candidates.push(at);
                    }
                }
            }
        }
        candidates.sort();
        candidates.into_iter().find(|at| self.open_at(*at, zones))
    }
}

/// What `endedReason` (Vapi's list: docs.vapi.ai/calls/call-ended-reason) and the agent's
/// reported outcome make of an attempt. `booked`: an appointment was made on the call (the
/// booking path's own record, trusted over anything said).
pub fn outcome_of(ended_reason: Option<&str>, reported: Option<&str>, booked: bool) -> CallOutcome {
    if booked {
        return CallOutcome::Booked;
    }
    match ended_reason.unwrap_or_default() {
        "customer-did-not-answer" => return CallOutcome::NoAnswer,
        "customer-busy" => return CallOutcome::Busy,
        "voicemail" => return CallOutcome::Voicemail,
        "twilio-reported-customer-misdialed" => return CallOutcome::WrongNumber,
        reason
            if reason.starts_with("call.start.error")
                || reason.ends_with("failed-to-connect-call")
                || reason.contains("outbound-call-failed-to-connect") =>
        {
            return CallOutcome::Failed
        }
        _ => {}
    }
    match reported.and_then(|r| r.parse::<CallOutcome>().ok()) {
        // "booked" is believed only from the bookings themselves.
        Some(CallOutcome::Booked) | None => CallOutcome::Answered,
        Some(other) => other,
    }
}

impl CallOutcome {
    /// Worth another attempt later: nobody picked up.
    pub fn retries(self) -> bool {
        matches!(self, CallOutcome::NoAnswer | CallOutcome::Busy)
    }

    /// What the attempt makes of the lead.
    pub fn lead_status(self) -> LeadStatus {
        match self {
            CallOutcome::Booked => LeadStatus::Booked,
            CallOutcome::NotInterested => LeadStatus::NotInterested,
            CallOutcome::WrongNumber => LeadStatus::WrongNumber,
            CallOutcome::Callback => LeadStatus::Callback,
            _ => LeadStatus::Contacted,
        }
    }
}

/// The agent's opening line on a campaign call: the campaign's script with `{name}` and
/// `{clinic}` filled in, or a plain introduction.
pub fn opening_line(script: &str, name: &str, clinic: &str) -> String {
    let name = name.trim();
    if script.trim().is_empty() {
        return if name.is_empty() {
            format!("Hello, this is the assistant of {clinic}. Do you have a minute?")
        } else {
            format!("Hello {name}, this is the assistant of {clinic}. Do you have a minute?")
        };
    }
    script
        .replace("{name}", if name.is_empty() { "there" } else { name })
        .replace("{clinic}", clinic)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("an RFC 3339 time")
    }

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).expect("a time")
    }

    fn number(text: &str) -> PhoneNumber {
        PhoneNumber::parse(text).expect("an E.164 number")
    }

    #[test]
    fn the_window_stays_within_the_calling_hours() {
        assert_eq!(
            CallingWindow::new(hm(7, 59), hm(12, 0)),
            Err(WindowError::OutsideCallingHours)
        );
        assert_eq!(
            CallingWindow::new(hm(9, 0), hm(21, 1)),
            Err(WindowError::OutsideCallingHours)
        );
        assert_eq!(
            CallingWindow::new(hm(12, 0), hm(12, 0)),
            Err(WindowError::Empty)
        );
        assert!(CallingWindow::new(EARLIEST_CALL, LATEST_CALL).is_ok());
    }

    #[test]
    fn a_number_of_several_zones_is_called_only_when_all_are_open() {
        let window = CallingWindow::new(EARLIEST_CALL, LATEST_CALL).expect("window");
        let us = zones_of_number(&number("+12125550100")).expect("+1 is known");
        assert!(us.contains(&chrono_tz::Pacific::Honolulu));
        // 14:00 UTC in January: 09:00 in New York, 04:00 in Honolulu: not yet.
        assert!(!window.open_at(at("2027-01-12T14:00:00Z"), &us));
        // 19:00 UTC: 09:00 in Honolulu, 15:30 in St John's: every zone is open.
        assert!(window.open_at(at("2027-01-12T19:00:00Z"), &us));
        // 01:00 UTC: 21:30 in St John's: closed.
        assert!(!window.open_at(at("2027-01-13T01:00:00Z"), &us));
        // It opens when Honolulu reaches 08:00 (18:00 UTC).
        assert_eq!(
            window.next_open(at("2027-01-12T14:00:00Z"), &us),
            Some(at("2027-01-12T18:00:00Z"))
        );
        // A territory's own prefix wins over +1.
        assert_eq!(
            zones_of_number(&number("+16715550100")),
            Some(vec![chrono_tz::Pacific::Guam])
        );
        assert_eq!(zones_of_number(&number("+8613800138000")), None);
    }

    #[test]
    fn the_lead_time_zone_decides_and_follows_dst() {
        let window = CallingWindow::new(hm(9, 0), hm(17, 0)).expect("window");
        let zones =
            callee_zones(&number("+14155550100"), Some("America/Los_Angeles")).expect("a zone");
        // 09:00 in Los Angeles is 17:00 UTC in winter (PST) and 16:00 in summer (PDT).
        assert!(window.open_at(at("2027-01-12T17:00:00Z"), &zones));
        assert!(!window.open_at(at("2027-01-12T16:30:00Z"), &zones));
        assert!(window.open_at(at("2027-07-12T16:00:00Z"), &zones));
        // Asked on the night of the spring change, it opens at 09:00 PDT.
        assert_eq!(
            window.next_open(at("2027-03-14T06:00:00Z"), &zones),
            Some(at("2027-03-14T16:00:00Z"))
        );
        assert_eq!(
            callee_zones(&number("+8613800138000"), None),
            Err(ZoneError::Country("+8613800138000".into()))
        );
        assert!(matches!(
            callee_zones(&number("+14155550100"), Some("Mars/Olympus")),
            Err(ZoneError::Unknown(_))
        ));
    }

    #[test]
    fn an_attempt_ends_as_the_platform_and_the_bookings_say() {
        assert_eq!(
            outcome_of(Some("customer-did-not-answer"), None, false),
            CallOutcome::NoAnswer
        );
        assert_eq!(
            outcome_of(Some("customer-busy"), None, false),
            CallOutcome::Busy
        );
        assert_eq!(
            outcome_of(Some("voicemail"), None, false),
            CallOutcome::Voicemail
        );
        assert_eq!(
            outcome_of(Some("twilio-reported-customer-misdialed"), None, false),
            CallOutcome::WrongNumber
        );
        assert_eq!(
            outcome_of(Some("twilio-failed-to-connect-call"), None, false),
            CallOutcome::Failed
        );
        assert_eq!(
            outcome_of(Some("customer-ended-call"), Some("not_interested"), false),
            CallOutcome::NotInterested
        );
        // The agent saying "booked" without a booking is only an answered call.
        assert_eq!(
            outcome_of(Some("assistant-ended-call"), Some("booked"), false),
            CallOutcome::Answered
        );
        assert_eq!(
            outcome_of(Some("customer-ended-call"), Some("nonsense"), false),
            CallOutcome::Answered
        );
        assert_eq!(
            outcome_of(Some("customer-ended-call"), None, true),
            CallOutcome::Booked
        );
        assert!(CallOutcome::NoAnswer.retries() && CallOutcome::Busy.retries());
        assert!(!CallOutcome::Voicemail.retries());
        assert_eq!(CallOutcome::Booked.lead_status(), LeadStatus::Booked);
        assert_eq!(CallOutcome::Voicemail.lead_status(), LeadStatus::Contacted);
    }

    #[test]
    fn the_opening_line_fills_the_script() {
        assert_eq!(
            opening_line(
                "Hi {name}, {clinic} here about flu shots.",
                "Ada",
                "Bayside"
            ),
            "Hi Ada, Bayside here about flu shots."
        );
        assert_eq!(
            opening_line("", "", "Bayside"),
            "Hello, this is the assistant of Bayside. Do you have a minute?"
        );
    }
}
