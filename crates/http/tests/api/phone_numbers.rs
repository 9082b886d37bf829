//! The clinic's phone numbers: admins manage them, and a number belongs to one clinic only.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn admins_add_list_and_remove_numbers_normalised_to_e164() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let added = app
        .post(
            "/api/v1/phone-numbers",
            &owner,
            &json!({"number": "+1 (415) 555-0133", "label": "Night line"}),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(added.body["number"], "+14155550133");
    let id = added.body["id"].as_str().expect("id").to_owned();

    let list = app.get_as("/api/v1/phone-numbers", &owner).await;
    let numbers: Vec<&str> = list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|n| n["number"].as_str())
        .collect();
    assert_eq!(
        numbers,
        ["+14155550133", a.number],
        "newest first, the demo number too"
    );

    assert_eq!(
        app.delete(&format!("/api/v1/phone-numbers/{id}"), &owner)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get_as(&format!("/api/v1/phone-numbers/{id}"), &owner)
            .await
            .status,
        404
    );
    // A removed number is free again, for any clinic (it left the global directory too).
    let [_, b] = app.clinics().await;
    let taken = app
        .post(
            "/api/v1/phone-numbers",
            &app.token(b.owner, Some(b.org)),
            &json!({"number": "+14155550133"}),
        )
        .await;
    assert_eq!(taken.status, 201, "{:?}", taken.body);
}

#[tokio::test]
async fn staff_cannot_see_or_change_the_numbers() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let staff = app.token(a.staff, Some(a.org));
    for r in [
        app.get_as("/api/v1/phone-numbers", &staff).await,
        app.post(
            "/api/v1/phone-numbers",
            &staff,
            &json!({"number": "+14155550134"}),
        )
        .await,
    ] {
        assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    }
}

#[tokio::test]
async fn another_clinics_number_is_a_409_that_does_not_say_whose() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let b_owner = app.token(b.owner, Some(b.org));
    let before = app.snapshot(a.org).await;

    let theirs = app
        .post(
            "/api/v1/phone-numbers",
            &b_owner,
            &json!({"number": a.number}),
        )
        .await;
    let own = app
        .post(
            "/api/v1/phone-numbers",
            &b_owner,
            &json!({"number": b.number}),
        )
        .await;
    assert_eq!(
        (theirs.status.as_u16(), theirs.code()),
        (409, "number_taken")
    );
    assert_eq!(
        theirs.body, own.body,
        "taken by clinic A answers exactly like taken by yourself"
    );
    let text = theirs.body.to_string();
    assert!(!text.contains(&a.org.to_string()) && !text.contains("Clinic A"));
    assert_eq!(app.snapshot(a.org).await, before);
}
