use crate::*;
use voxanne_calendar::{Busy, CalendarError};

fn busy(start: &str, end: &str) -> Busy {
    Busy {
        start: at(start),
        end: at(end),
    }
}

#[tokio::test]
async fn google_busy_times_are_the_staff_bookings_clipped_to_the_window() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    fake.seed_busy(&account, at("10:00"), at("11:00"));
    fake.seed_busy(&account, at("12:00"), at("14:00"));
    fake.seed_busy(&account, at("07:00"), at("08:00"));
    let got = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("13:00"),
        )
        .await
        .expect("free/busy");
    assert_eq!(got, [busy("10:00", "11:00"), busy("12:00", "13:00")]);
    assert_eq!(
        calls(&fake, "/google-api"),
        [(
            "POST".to_owned(),
            "/google-api/calendar/v3/freeBusy".to_owned()
        )]
    );
}

#[tokio::test]
async fn microsoft_counts_every_status_but_free_as_busy() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    for (start, end, status) in [
        ("10:00", "11:00", "busy"),
        ("11:00", "11:30", "tentative"),
        ("13:00", "14:00", "oof"),
        ("14:00", "15:00", "workingElsewhere"),
        ("15:00", "16:00", "free"),
    ] {
        fake.seed_event(&account, "primary", at(start), at(end), status);
    }
    let got = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("17:00"),
        )
        .await
        .expect("getSchedule");
    assert_eq!(
        got,
        [
            busy("10:00", "11:00"),
            busy("11:00", "11:30"),
            busy("13:00", "14:00"),
            busy("14:00", "15:00")
        ]
    );
    let request = fake.requests().pop().expect("a request");
    assert_eq!(request.path, "/graph/v1.0/me/calendar/getSchedule");
    assert_eq!(request.prefer.as_deref(), Some("outlook.timezone=\"UTC\""));
}

#[tokio::test]
async fn microsoft_items_that_overhang_the_window_are_clipped() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    fake.seed_busy(&account, at("08:00"), at("10:00"));
    fake.seed_busy(&account, at("11:30"), at("13:00"));
    let got = client
        .free_busy(
            &primary(&account),
            &account.access(),
            at("09:00"),
            at("12:00"),
        )
        .await
        .expect("getSchedule");
    assert_eq!(got, [busy("09:00", "10:00"), busy("11:30", "12:00")]);
}

#[tokio::test]
async fn another_calendar_of_the_account_is_read_by_its_id() {
    let (fake, client) = setup().await;
    for (provider, calendar) in [
        (Google, "surgery@group.calendar.google.com"),
        (Microsoft, "AAMkAGI2-surgery/calendar="),
    ] {
        let account = fake.account(provider, "desk@clinic.example");
        fake.add_calendar(&account, calendar);
        fake.seed_event(&account, calendar, at("10:00"), at("11:00"), "busy");
        let other = CalendarRef {
            calendar_id: calendar,
            ..primary(&account)
        };
        let got = client
            .free_busy(&other, &account.access(), at("09:00"), at("12:00"))
            .await
            .expect("free/busy");
        assert_eq!(got, [busy("10:00", "11:00")], "{provider}");
        let got = client
            .free_busy(
                &primary(&account),
                &account.access(),
                at("09:00"),
                at("12:00"),
            )
            .await
            .expect("free/busy");
        assert!(got.is_empty(), "{provider}: {got:?}");
    }
}

#[tokio::test]
async fn a_google_calendar_the_account_does_not_have_is_rejected() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    let unknown = CalendarRef {
        calendar_id: "nosuch@group.calendar.google.com",
        ..primary(&account)
    };
    let e = client
        .free_busy(&unknown, &account.access(), at("09:00"), at("12:00"))
        .await
        .expect_err("not found");
    assert!(
        matches!(&e, CalendarError::Rejected { status: 404, message, .. } if message.contains("notFound")),
        "{e:?}"
    );
}
