//! The calendar clients against the loopback fake of Google and Microsoft
//! (`voxanne_testkit::fake_calendar`), over real HTTP.

mod errors;
mod events;
mod free_busy;
mod refresh;
mod watch;

use chrono::{DateTime, Utc};
use uuid::Uuid;
use voxanne_calendar::{CalendarOAuth, CalendarProvider, CalendarRef, EventWrite, PRIMARY};
use voxanne_testkit::fake_calendar::{Account, FakeCalendar};

pub use CalendarProvider::{Google, Microsoft};

/// The fake and the client pointed at it.
pub async fn setup() -> (FakeCalendar, CalendarOAuth) {
    let fake = FakeCalendar::start().await;
    let client = fake.client();
    (fake, client)
}

/// `10:00` on the day the tests book.
pub fn at(hh_mm: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&format!("2026-03-02T{hh_mm}:00Z"))
        .expect("time")
        .with_timezone(&Utc)
}

/// The account's primary calendar.
pub fn primary(account: &Account) -> CalendarRef<'_> {
    CalendarRef {
        provider: account.provider,
        calendar_id: PRIMARY,
        account_email: &account.email,
    }
}

/// A new appointment from `start` to `end`.
pub fn appointment(start: &str, end: &str) -> EventWrite {
    EventWrite {
        appointment_id: Uuid::new_v4(),
        existing_event_id: None,
        summary: "Check-up: Ada Lovelace".into(),
        description: "Booked by phone by Voxanne".into(),
        start: at(start),
        end: at(end),
        time_zone: "Europe/Paris".into(),
    }
}

/// The (method, path) of the fake's requests under `prefix`.
pub fn calls(fake: &FakeCalendar, prefix: &str) -> Vec<(String, String)> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.starts_with(prefix))
        .map(|r| (r.method, r.path))
        .collect()
}
