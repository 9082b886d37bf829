use crate::*;
use voxanne_calendar::{CalendarError, RemoteEvent};

#[tokio::test]
async fn google_upsert_twice_leaves_one_event_with_the_appointments_id() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    let write = appointment("10:00", "10:30");
    let id = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("insert");
    assert_eq!(id, write.appointment_id.simple().to_string());
    // The answer was lost: the caller does not know the id and writes again.
    let again = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("update after the 409");
    assert_eq!(again, id);
    let events = fake.events(&account);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].summary, "Check-up: Ada Lovelace");
    assert_eq!(events[0].start, at("10:00"));
    assert_eq!(events[0].time_zone, "Europe/Paris");
    assert_eq!(
        events[0].private["voxanneAppointment"],
        write.appointment_id.to_string()
    );
    let path = format!("/google-api/calendar/v3/calendars/primary/events/{id}");
    assert_eq!(
        calls(&fake, "/google-api"),
        [
            (
                "POST".to_owned(),
                "/google-api/calendar/v3/calendars/primary/events".to_owned()
            ),
            (
                "POST".to_owned(),
                "/google-api/calendar/v3/calendars/primary/events".to_owned()
            ),
            ("PUT".to_owned(), path)
        ]
    );
}

#[tokio::test]
async fn google_upsert_restores_an_event_staff_deleted() {
    let (fake, client) = setup().await;
    let account = fake.account(Google, "desk@clinic.example");
    let write = appointment("10:00", "10:30");
    let id = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("insert");
    fake.staff_delete(&account, &id);
    assert_eq!(fake.events(&account)[0].status, "cancelled");
    client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("update");
    assert_eq!(fake.events(&account)[0].status, "confirmed");
}

#[tokio::test]
async fn an_existing_event_is_patched_to_its_new_time() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        let mut write = appointment("10:00", "10:30");
        let id = client
            .upsert_event(&primary(&account), &account.access(), &write)
            .await
            .expect("create");
        write.existing_event_id = Some(id.clone());
        write.start = at("15:00");
        write.end = at("15:45");
        write.summary = "Check-up (moved)".into();
        let patched = client
            .upsert_event(&primary(&account), &account.access(), &write)
            .await
            .expect("patch");
        assert_eq!(patched, id, "{provider}");
        let events = fake.events(&account);
        assert_eq!(events.len(), 1, "{provider}");
        assert_eq!((events[0].start, events[0].end), (at("15:00"), at("15:45")));
        assert_eq!(events[0].summary, "Check-up (moved)");
        assert_eq!(
            fake.requests().pop().map(|r| r.method).as_deref(),
            Some("PATCH"),
            "{provider}"
        );
    }
}

#[tokio::test]
async fn a_retried_microsoft_create_is_one_event_by_its_transaction_id() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let write = appointment("10:00", "10:30");
    let id = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("create");
    let again = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("create again");
    assert_eq!(again, id);
    let events = fake.events(&account);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        events[0].transaction_id.as_deref(),
        Some(write.appointment_id.to_string().as_str())
    );
    assert_eq!(
        calls(&fake, "/graph"),
        [
            (
                "POST".to_owned(),
                "/graph/v1.0/me/calendar/events".to_owned()
            ),
            (
                "POST".to_owned(),
                "/graph/v1.0/me/calendar/events".to_owned()
            )
        ]
    );
}

#[tokio::test]
async fn patching_an_event_that_is_gone_is_not_found_so_the_caller_creates_it() {
    let (fake, client) = setup().await;
    let account = fake.account(Microsoft, "front@clinic.example");
    let mut write = appointment("10:00", "10:30");
    let id = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect("create");
    fake.staff_delete(&account, &id);
    write.existing_event_id = Some(id);
    let e = client
        .upsert_event(&primary(&account), &account.access(), &write)
        .await
        .expect_err("gone");
    assert!(matches!(e, CalendarError::NotFound { .. }), "{e:?}");
    assert!(e.permanent());
}

#[tokio::test]
async fn deleting_twice_is_fine_for_both_providers() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        let cal = primary(&account);
        let id = client
            .upsert_event(&cal, &account.access(), &appointment("10:00", "10:30"))
            .await
            .expect("create");
        client
            .delete_event(&cal, &account.access(), &id)
            .await
            .expect("delete");
        client
            .delete_event(&cal, &account.access(), &id)
            .await
            .expect("delete again (410 or 404)");
        let gone = client
            .get_event(&cal, &account.access(), &id)
            .await
            .expect("get");
        match provider {
            Google => assert!(
                gone.is_some_and(|e| e.cancelled),
                "Google keeps it cancelled"
            ),
            Microsoft => assert_eq!(gone, None),
        }
    }
}

#[tokio::test]
async fn get_event_sees_what_staff_did() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let account = fake.account(provider, "desk@clinic.example");
        let cal = primary(&account);
        let id = client
            .upsert_event(&cal, &account.access(), &appointment("10:00", "10:30"))
            .await
            .expect("create");
        fake.staff_move(&account, &id, at("11:00"), at("11:30"));
        let moved = client
            .get_event(&cal, &account.access(), &id)
            .await
            .expect("get");
        assert_eq!(
            moved,
            Some(RemoteEvent {
                id: id.clone(),
                start: at("11:00"),
                end: at("11:30"),
                cancelled: false
            }),
            "{provider}"
        );
        fake.staff_delete(&account, &id);
        let deleted = client
            .get_event(&cal, &account.access(), &id)
            .await
            .expect("get");
        match provider {
            Google => assert!(deleted.is_some_and(|e| e.cancelled)),
            Microsoft => assert_eq!(deleted, None),
        }
    }
}

#[tokio::test]
async fn two_accounts_never_see_each_others_events() {
    let (fake, client) = setup().await;
    for provider in [Google, Microsoft] {
        let a = fake.account(provider, "a@clinic-a.example");
        let b = fake.account(provider, "b@clinic-b.example");
        let id = client
            .upsert_event(&primary(&a), &a.access(), &appointment("10:00", "10:30"))
            .await
            .expect("create");
        fake.seed_busy(&a, at("12:00"), at("13:00"));
        let seen = client
            .get_event(&primary(&b), &b.access(), &id)
            .await
            .expect("get");
        assert_eq!(seen, None, "{provider}");
        let busy = client
            .free_busy(&primary(&b), &b.access(), at("09:00"), at("17:00"))
            .await
            .expect("free/busy");
        assert!(busy.is_empty(), "{provider}: {busy:?}");
        let mut write = appointment("14:00", "14:30");
        write.existing_event_id = Some(id.clone());
        let e = client
            .upsert_event(&primary(&b), &b.access(), &write)
            .await
            .expect_err("not b's");
        assert!(matches!(e, CalendarError::NotFound { .. }), "{e:?}");
        client
            .delete_event(&primary(&b), &b.access(), &id)
            .await
            .expect("nothing to delete");
        let events = fake.events(&a);
        assert_eq!(events.len(), 2, "{provider}");
        assert!(events.iter().all(|e| e.status == "confirmed"), "{events:?}");
        assert_eq!(events[0].start, at("10:00"));
        assert!(fake.events(&b).is_empty());
    }
}
