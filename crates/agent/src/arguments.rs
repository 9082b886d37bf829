//! A tool call's arguments, as the model wrote them: read leniently (a number may come as a
//! string, a time in the clinic's zone), and refused with a sentence the model can act on.

use crate::dispatch::{say, Refusal};
use crate::CallContext;
use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use uuid::Uuid;
use voxanne_domain::booking::{self, SlotRefusal};
use voxanne_domain::PhoneNumber;

/// The length of an appointment when the call does not say, in minutes.
const DEFAULT_MINUTES: i64 = 30;

/// A string argument, trimmed; absent, null and empty are all `None`.
pub(crate) fn text<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// `duration_minutes`, within the booking rule's slot lengths.
pub(crate) fn minutes(args: &Value) -> Result<Duration, Refusal> {
    let value = match args.get("duration_minutes") {
        None | Some(Value::Null) => return Ok(Duration::minutes(DEFAULT_MINUTES)),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    Ok(booking::slot_length(value.ok_or(SlotRefusal::Length)?)?)
}

/// An id argument, as the id type it names (`HoldId`, `AppointmentId`).
pub(crate) fn uuid_arg<T: From<Uuid>>(args: &Value, name: &str) -> Result<Option<T>, Refusal> {
    match text(args, name) {
        None => Ok(None),
        Some(t) => match Uuid::parse_str(t) {
            Ok(id) => Ok(Some(T::from(id))),
            Err(_) => say(format!("{name} must be the id I gave you earlier.")),
        },
    }
}

/// The number asked about, or the caller's.
pub(crate) fn phone_arg(args: &Value, call: &CallContext) -> Result<PhoneNumber, Refusal> {
    match text(args, "phone") {
        Some(p) => PhoneNumber::parse(p)
            .or_else(|_| say("That isn't a phone number I can read (use +country code).")),
        None => call
            .caller
            .clone()
            .ok_or_else(|| Refusal::Say("I can't see the caller's number.".into())),
    }
}

/// An instant from RFC 3339, or a local `YYYY-MM-DDTHH:MM[:SS]` in the clinic's zone.
pub(crate) fn parse_time(input: &str, tz: Tz) -> Result<DateTime<Utc>, Refusal> {
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(input, format) {
            return match tz.from_local_datetime(&local).earliest() {
                Some(t) => Ok(t.with_timezone(&Utc)),
                None => say("That time doesn't exist on that day (the clocks change)."),
            };
        }
    }
    say(format!(
        "I couldn't read the time {input:?}; use a time from check_availability."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speech::{machine, spoken};
    use serde_json::json;
    use voxanne_domain::HoldId;

    #[test]
    fn times_are_read_in_the_clinics_zone() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        let t = parse_time("2031-03-04T09:30", tz).expect("local");
        assert_eq!(t.to_rfc3339(), "2031-03-04T14:30:00+00:00");
        assert_eq!(parse_time(&machine(t, tz), tz).expect("round trip"), t);
        assert_eq!(spoken(t, tz), "Tuesday 4 March at 09:30");
        assert!(matches!(parse_time("tomorrow", tz), Err(Refusal::Say(_))));
        // 02:30 on the spring-forward day does not exist in New York.
        assert!(matches!(
            parse_time("2031-03-09T02:30", tz),
            Err(Refusal::Say(_))
        ));
    }

    #[test]
    fn arguments_are_checked() {
        assert_eq!(minutes(&json!({})).ok(), Some(Duration::minutes(30)));
        assert_eq!(
            minutes(&json!({"duration_minutes": "45"})).ok(),
            Some(Duration::minutes(45))
        );
        assert!(minutes(&json!({"duration_minutes": 4})).is_err());
        assert!(minutes(&json!({"duration_minutes": [1]})).is_err());
        assert!(matches!(
            minutes(&json!({"duration_minutes": 9999})),
            Err(Refusal::Say(s)) if s.starts_with("The length must be")
        ));
        assert!(uuid_arg::<HoldId>(&json!({"hold_id": "nope"}), "hold_id").is_err());
        assert_eq!(
            uuid_arg::<HoldId>(&json!({"hold_id": "  "}), "hold_id").ok(),
            Some(None)
        );
    }
}
