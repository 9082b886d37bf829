//! The scheduling model's API: admins make locations, services, practitioners (and who gives
//! what) and closures; staff read them; what is made is what availability and booking use;
//! a row in use is kept with a stable conflict code; another clinic's ids are refused as
//! probes wherever they appear (the attack matrix covers every route and `…_id` field;
//! this covers `service_ids`, which it cannot name).

use crate::support::*;
use serde_json::{json, Value};
use voxanne_db::demo::DemoClinic;

struct Made {
    location: String,
    cleaning: String,
    xray: String,
    lee: String,
}

fn id(r: &Response) -> String {
    r.body["id"].as_str().expect("an id").to_owned()
}

/// Through the API as clinic `c`'s owner: a location open Mondays 13:00-15:00, a 45-minute
/// cleaning with 15 minutes' buffer, a 20-minute X-ray, and Dr Lee at the location giving
/// both, with her own Monday hours 09:00-11:00. The clinic is open 09:00-17:00 UTC.
async fn make(app: &TestApp, c: &DemoClinic) -> Made {
    let owner = app.token(c.owner, Some(c.org));
    let r = app
        .put(
            "/api/v1/agent-configuration",
            &owner,
            &json!({"greeting": "Hello", "voice": "vapi:Elliot", "time_zone": "UTC",
                    "opening_hours": {"mon": [["09:00", "17:00"]]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .post(
            "/api/v1/locations",
            &owner,
            &json!({"name": "North", "address": "2 North Rd",
                    "opening_hours": {"mon": [["13:00", "15:00"]]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let location = id(&r);
    let r = app
        .post(
            "/api/v1/services",
            &owner,
            &json!({"name": "Cleaning", "duration_minutes": 45, "buffer_minutes": 15}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        (r.body["buffer_minutes"].clone(), r.body["active"].clone()),
        (json!(15), json!(true))
    );
    let cleaning = id(&r);
    let r = app
        .post(
            "/api/v1/services",
            &owner,
            &json!({"name": "X-ray", "duration_minutes": 20}),
        )
        .await;
    let xray = id(&r);
    let r = app
        .post(
            "/api/v1/practitioners",
            &owner,
            &json!({"name": "Dr Lee", "location_id": location, "service_ids": [cleaning, xray],
                    "opening_hours": {"mon": [["09:00", "11:00"]]}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["resource"], "dr-lee", "made from the name");
    let mut given: Vec<String> = r.body["service_ids"]
        .as_array()
        .expect("service_ids")
        .iter()
        .map(|s| s.as_str().expect("id").to_owned())
        .collect();
    given.sort();
    let mut want = vec![cleaning.clone(), xray.clone()];
    want.sort();
    assert_eq!(given, want);
    Made {
        location,
        cleaning,
        xray,
        lee: id(&r),
    }
}

fn starts(body: &Value) -> Vec<String> {
    body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| s["starts_at"].as_str().expect("start")[11..16].to_owned())
        .collect()
}

#[tokio::test]
async fn what_admins_make_is_what_availability_and_booking_use() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let m = make(&app, &a).await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));

    // Staff read everything.
    for path in [
        "/api/v1/locations",
        "/api/v1/services",
        "/api/v1/practitioners",
    ] {
        let r = app.get_as(path, &staff).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert!(!r.body["data"].as_array().expect("items").is_empty());
    }
    let r = app
        .get_as(&format!("/api/v1/practitioners/{}", m.lee), &staff)
        .await;
    assert_eq!(r.body["location_id"], m.location.as_str());

    let day = "from=2031-03-03&to=2031-03-03";
    let r = app
        .get_as(
            &format!("/api/v1/availability?{day}&service_id={}", m.cleaning),
            &staff,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(starts(&r.body), ["09:00", "10:00"], "her own hours");

    // Her own hours cleared: her location's.
    let r = app
        .patch(
            &format!("/api/v1/practitioners/{}", m.lee),
            &owner,
            &json!({"opening_hours": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["opening_hours"], Value::Null);
    let r = app
        .get_as(
            &format!("/api/v1/availability?{day}&service_id={}", m.cleaning),
            &staff,
        )
        .await;
    assert_eq!(starts(&r.body), ["13:00", "14:00"], "{:?}", r.body);
    // At no location: the clinic's.
    let r = app
        .patch(
            &format!("/api/v1/practitioners/{}", m.lee),
            &owner,
            &json!({"location_id": null}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .get_as(
            &format!("/api/v1/availability?{day}&service_id={}", m.cleaning),
            &staff,
        )
        .await;
    assert_eq!(starts(&r.body).len(), 8, "{:?}", r.body);

    // She stops doing X-rays: nobody does.
    let r = app
        .patch(
            &format!("/api/v1/practitioners/{}", m.lee),
            &owner,
            &json!({"service_ids": [m.cleaning]}),
        )
        .await;
    assert_eq!(r.body["service_ids"], json!([m.cleaning]));
    let r = app
        .get_as(
            &format!("/api/v1/availability?{day}&service_id={}", m.xray),
            &staff,
        )
        .await;
    assert_eq!(starts(&r.body), Vec::<String>::new(), "{:?}", r.body);

    // A closure made through the API takes her day away.
    let r = app
        .post(
            "/api/v1/closures",
            &owner,
            &json!({"practitioner_id": m.lee, "starts_on": "2031-03-03", "reason": "Course"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["ends_on"], "2031-03-03", "one day by default");
    let closure = id(&r);
    let r = app
        .get_as(
            &format!("/api/v1/availability?{day}&service_id={}", m.cleaning),
            &staff,
        )
        .await;
    assert_eq!(starts(&r.body), Vec::<String>::new());
    let r = app
        .delete(&format!("/api/v1/closures/{closure}"), &owner)
        .await;
    assert_eq!(r.status, 204);

    // Booked as the practitioner and the service: the service's length, her resource.
    let r = app
        .post(
            "/api/v1/appointments",
            &staff,
            &json!({"practitioner_id": m.lee, "service_id": m.cleaning,
                    "starts_at": "2031-03-03T09:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["resource"], "dr-lee");
    assert_eq!(r.body["service_id"], m.cleaning.as_str());
    assert_eq!(r.body["ends_at"], "2031-03-03T09:45:00Z");
    // A hold of a service keeps it into the appointment.
    let r = app
        .post(
            "/api/v1/appointment-holds",
            &staff,
            &json!({"resource": "dr-lee", "service_id": m.cleaning,
                    "starts_at": "2031-03-03T11:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["service_id"], m.cleaning.as_str());
    let r = app
        .post(
            &format!("/api/v1/appointment-holds/{}/confirm", id(&r)),
            &staff,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(
        (r.body["service_id"].clone(), r.body["ends_at"].clone()),
        (json!(m.cleaning), json!("2031-03-03T11:45:00Z"))
    );

    // What the body gets wrong is named.
    for (body, field) in [
        (
            json!({"practitioner_id": m.lee, "service_id": m.xray, "starts_at": "2031-03-03T12:00:00Z"}),
            "service_id",
        ),
        (
            json!({"practitioner_id": m.lee, "resource": "dr-lee", "starts_at": "2031-03-03T12:00:00Z",
                   "ends_at": "2031-03-03T12:30:00Z"}),
            "practitioner_id",
        ),
        (
            json!({"resource": "dr-lee", "starts_at": "2031-03-03T12:00:00Z"}),
            "ends_at",
        ),
    ] {
        let r = app.post("/api/v1/appointments", &staff, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.body["error"]["field"].as_str()),
            (422, Some(field)),
            "{body}: {:?}",
            r.body
        );
    }
}

#[tokio::test]
async fn staff_read_but_only_admins_change_the_model() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let m = make(&app, &a).await;
    let staff = app.token(a.staff, Some(a.org));
    let before = app.data_snapshot(a.org).await;
    let attempts = [
        (
            "POST",
            "/api/v1/locations".to_owned(),
            json!({"name": "South"}),
        ),
        (
            "PATCH",
            format!("/api/v1/locations/{}", m.location),
            json!({"name": "South"}),
        ),
        (
            "DELETE",
            format!("/api/v1/locations/{}", m.location),
            json!({}),
        ),
        (
            "POST",
            "/api/v1/services".to_owned(),
            json!({"name": "Filling", "duration_minutes": 30}),
        ),
        (
            "PATCH",
            format!("/api/v1/services/{}", m.xray),
            json!({"active": false}),
        ),
        ("DELETE", format!("/api/v1/services/{}", m.xray), json!({})),
        (
            "POST",
            "/api/v1/practitioners".to_owned(),
            json!({"name": "Dr New"}),
        ),
        (
            "PATCH",
            format!("/api/v1/practitioners/{}", m.lee),
            json!({"active": false}),
        ),
        (
            "DELETE",
            format!("/api/v1/practitioners/{}", m.lee),
            json!({}),
        ),
        (
            "POST",
            "/api/v1/closures".to_owned(),
            json!({"starts_on": "2031-01-01"}),
        ),
    ];
    for (method, path, body) in attempts {
        let r = app.send(method, &path, &staff, Some(&body), &[]).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "forbidden"),
            "{method} {path}: {:?}",
            r.body
        );
    }
    assert_eq!(
        app.data_snapshot(a.org).await,
        before,
        "staff changed nothing"
    );
}

#[tokio::test]
async fn rows_in_use_are_kept_with_a_conflict_code_and_names_stay_unique() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let m = make(&app, &a).await;
    let owner = app.token(a.owner, Some(a.org));
    let code = |r: &Response| (r.status.as_u16(), r.code().to_owned());

    let r = app
        .post("/api/v1/practitioners", &owner, &json!({"name": "Dr. Lee"}))
        .await;
    assert_eq!(
        code(&r),
        (409, "practitioner_exists".into()),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/services",
            &owner,
            &json!({"name": "Cleaning", "duration_minutes": 30}),
        )
        .await;
    assert_eq!(code(&r), (409, "name_taken".into()));
    let r = app
        .post("/api/v1/locations", &owner, &json!({"name": "North"}))
        .await;
    assert_eq!(code(&r), (409, "name_taken".into()));

    // Dr Lee is at North: it stays.
    let r = app
        .delete(&format!("/api/v1/locations/{}", m.location), &owner)
        .await;
    assert_eq!(code(&r), (409, "location_in_use".into()), "{:?}", r.body);
    // A cleaning is booked with her: she and the service stay.
    let staff = app.token(a.staff, Some(a.org));
    let r = app
        .post(
            "/api/v1/appointments",
            &staff,
            &json!({"practitioner_id": m.lee, "service_id": m.cleaning,
                    "starts_at": "2031-03-03T09:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let appointment = id(&r);
    let r = app
        .delete(&format!("/api/v1/practitioners/{}", m.lee), &owner)
        .await;
    assert_eq!(code(&r), (409, "practitioner_has_appointments".into()));
    let r = app
        .delete(&format!("/api/v1/services/{}", m.cleaning), &owner)
        .await;
    assert_eq!(code(&r), (409, "service_in_use".into()));
    // Deactivating is how a service in use goes: no more times for it.
    let r = app
        .patch(
            &format!("/api/v1/services/{}", m.cleaning),
            &owner,
            &json!({"active": false}),
        )
        .await;
    assert_eq!(r.body["active"], false);

    // Cancelled, her appointment no longer keeps her; her closures go with her.
    let r = app
        .post(
            "/api/v1/closures",
            &owner,
            &json!({"practitioner_id": m.lee, "starts_on": "2031-04-01", "ends_on": "2031-04-02"}),
        )
        .await;
    let closure = id(&r);
    let r = app
        .post(
            &format!("/api/v1/appointments/{appointment}/cancel"),
            &staff,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .delete(&format!("/api/v1/practitioners/{}", m.lee), &owner)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = app
        .get_as(&format!("/api/v1/closures/{closure}"), &owner)
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .delete(&format!("/api/v1/locations/{}", m.location), &owner)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // The cancelled appointment keeps its resource and service; the X-ray, never booked, goes.
    let r = app
        .get_as(&format!("/api/v1/appointments/{appointment}"), &owner)
        .await;
    assert_eq!(r.body["resource"], "dr-lee");
    let r = app
        .delete(&format!("/api/v1/services/{}", m.xray), &owner)
        .await;
    assert_eq!(r.status, 204);
}

#[tokio::test]
async fn bad_values_are_named_and_write_nothing() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let m = make(&app, &a).await;
    let owner = app.token(a.owner, Some(a.org));
    let before = app.data_snapshot(a.org).await;
    let cases = [
        (
            "/api/v1/services",
            json!({"name": "Quick", "duration_minutes": 3}),
            "duration_minutes",
        ),
        (
            "/api/v1/services",
            json!({"name": "Long", "duration_minutes": 30, "buffer_minutes": 241}),
            "buffer_minutes",
        ),
        (
            "/api/v1/services",
            json!({"name": "  ", "duration_minutes": 30}),
            "name",
        ),
        (
            "/api/v1/locations",
            json!({"name": "x".repeat(201)}),
            "name",
        ),
        (
            "/api/v1/practitioners",
            json!({"name": "Dr Kim", "resource": ""}),
            "resource",
        ),
        (
            "/api/v1/closures",
            json!({"starts_on": "2031-03-05", "ends_on": "2031-03-04"}),
            "ends_on",
        ),
        (
            "/api/v1/closures",
            json!({"starts_on": "2031-01-01", "ends_on": "2032-06-01"}),
            "ends_on",
        ),
    ];
    for (path, body, field) in cases {
        let r = app.post(path, &owner, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.body["error"]["field"].as_str()),
            (422, Some(field)),
            "{path} {body}: {:?}",
            r.body
        );
    }
    // Hours that do not parse, and an unknown field, are refused before anything is read.
    for body in [
        json!({"name": "Dr Kim", "opening_hours": {"mon": [["17:00", "09:00"]]}}),
        json!({"name": "Dr Kim", "opening_hours": {"someday": []}}),
        json!({"name": "Dr Kim", "colour": "blue"}),
    ] {
        let r = app.post("/api/v1/practitioners", &owner, &body).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
    }
    // A service id the clinic does not have: named, and the practitioner not half-made.
    let r = app
        .post(
            "/api/v1/practitioners",
            &owner,
            &json!({"name": "Dr Kim", "service_ids": [m.cleaning, uuid::Uuid::new_v4()]}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("service_ids")),
        "{:?}",
        r.body
    );
    assert_eq!(
        app.data_snapshot(a.org).await,
        before,
        "nothing was written"
    );
}

#[tokio::test]
async fn another_clinics_services_cannot_be_given_and_its_rows_read_as_missing() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let ma = make(&app, &a).await;
    let mb = make(&app, &b).await;
    let b_owner = app.token(b.owner, Some(b.org));
    let a_before = app.data_snapshot(a.org).await;
    let b_before = app.data_snapshot(b.org).await;
    let probes_before = app.probe_events(&a).await.len();

    // B gives its Dr Lee A's cleaning: refused, named, recorded for A.
    let r = app
        .patch(
            &format!("/api/v1/practitioners/{}", mb.lee),
            &b_owner,
            &json!({"service_ids": [mb.xray, ma.cleaning]}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("service_ids")),
        "{:?}",
        r.body
    );
    let r = app
        .post(
            "/api/v1/practitioners",
            &b_owner,
            &json!({"name": "Dr Two", "service_ids": [ma.xray]}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(
        app.probe_events(&a).await.len(),
        probes_before + 2,
        "each is recorded for the clinic whose ids they are"
    );
    // A's rows read like rows that do not exist, in B's lists too.
    let missing = app
        .get_as(
            &format!("/api/v1/services/{}", uuid::Uuid::new_v4()),
            &b_owner,
        )
        .await;
    let r = app
        .get_as(&format!("/api/v1/services/{}", ma.cleaning), &b_owner)
        .await;
    assert_eq!((r.status, r.body.clone()), (missing.status, missing.body));
    let r = app.get_as("/api/v1/practitioners", &b_owner).await;
    let ids: Vec<&str> = r.body["data"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| p["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [mb.lee.as_str()]);
    assert_eq!(app.data_snapshot(a.org).await, a_before);
    assert_eq!(
        app.data_snapshot(b.org).await,
        b_before,
        "B's Dr Lee unchanged"
    );
}
