//! `GET /api/v1/calls` and `GET /api/v1/calls/{id}`: filters, keyset pagination, detail, and
//! isolation between clinics.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use uuid::Uuid;

fn data(r: &Response) -> &Vec<Value> {
    r.body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {:?}", r.body))
}

/// Every page of `path` (which must already carry a `?`), following next_cursor.
async fn all_pages(app: &TestApp, path: &str, token: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("{path}&cursor={c}"),
            None => path.to_owned(),
        };
        let r = app.get_as(&url, token).await;
        assert_eq!(r.status, 200, "{url}: {:?}", r.body);
        pages += 1;
        items.extend(data(&r).iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (items, pages),
        }
        assert!(pages < 100, "pagination does not end");
    }
}

#[tokio::test]
async fn a_clinic_lists_all_of_its_calls_newest_first_and_none_of_the_others() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    for clinic in [&a, &b] {
        let r = app
            .get_as("/api/v1/calls", &app.token(clinic.owner, Some(clinic.org)))
            .await;
        assert_eq!(r.status, 200);
        let calls = data(&r);
        assert_eq!(calls.len(), 8, "the demo seeds 8 calls per clinic");
        assert!(calls.iter().all(|c| c["org_id"] == json!(clinic.org)));
        let started: Vec<&str> = calls
            .iter()
            .map(|c| c["started_at"].as_str().unwrap_or(""))
            .collect();
        let mut sorted = started.clone();
        sorted.sort_by(|x, y| y.cmp(x));
        assert_eq!(started, sorted, "newest first");
        assert_eq!(r.body["next_cursor"], json!(null));
        // A list carries what a list shows; the call itself has its transcript.
        assert!(
            calls.iter().all(|c| c.get("transcript").is_none()),
            "{calls:?}"
        );
        let with = calls
            .iter()
            .find(|c| c["summary"].is_string())
            .expect("a call with a summary");
        let one = app
            .get_as(
                &format!("/api/v1/calls/{}", with["id"].as_str().expect("id")),
                &app.token(clinic.owner, Some(clinic.org)),
            )
            .await;
        assert!(one.body["transcript"].is_string(), "{:?}", one.body);
    }
}

#[tokio::test]
async fn keyset_pages_cover_every_call_once_in_order() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let whole = app.get_as("/api/v1/calls?limit=100", &token).await;
    let (paged, pages) = all_pages(&app, "/api/v1/calls?limit=3", &token).await;
    assert_eq!(pages, 3);
    assert_eq!(&paged, data(&whole));
    let ids: HashSet<&str> = paged.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!(ids.len(), paged.len(), "no call twice");

    // Calls with the same start time still page stably (the id breaks the tie).
    let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tx");
    for _ in 0..5 {
        sqlx::query(
            "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at)
             VALUES ($1, 'inbound', 'missed', '+14155550001', '+14155550100', '2026-01-01T00:00:00Z')",
        )
        .bind(a.org.as_uuid())
        .execute(tx.conn())
        .await
        .expect("insert");
    }
    tx.commit().await.expect("commit");
    let (paged, _) = all_pages(&app, "/api/v1/calls?limit=2", &token).await;
    let ids: HashSet<&str> = paged.iter().filter_map(|c| c["id"].as_str()).collect();
    assert_eq!((paged.len(), ids.len()), (13, 13));
}

#[tokio::test]
async fn filters_by_direction_status_and_date_range() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let all = app.get_as("/api/v1/calls", &token).await;
    let all = data(&all);

    for (query, keep) in [
        (
            "direction=inbound",
            Box::new(|c: &Value| c["direction"] == "inbound") as Box<dyn Fn(&Value) -> bool>,
        ),
        (
            "direction=outbound",
            Box::new(|c: &Value| c["direction"] == "outbound"),
        ),
        (
            "status=completed",
            Box::new(|c: &Value| c["status"] == "completed"),
        ),
        (
            "direction=inbound&status=missed",
            Box::new(|c: &Value| c["direction"] == "inbound" && c["status"] == "missed"),
        ),
    ] {
        let r = app.get_as(&format!("/api/v1/calls?{query}"), &token).await;
        let expected: Vec<&Value> = all.iter().filter(|c| keep(c)).collect();
        assert!(
            !expected.is_empty(),
            "{query}: the fixture should have such calls"
        );
        assert_eq!(data(&r).iter().collect::<Vec<_>>(), expected, "{query}");
    }

    // from is inclusive, to exclusive: the window around the 3rd and 4th newest calls.
    let newest_third = all[2]["started_at"].as_str().expect("ts");
    let newest_first = all[0]["started_at"].as_str().expect("ts");
    let r = app
        .get_as(
            &format!("/api/v1/calls?from={newest_third}&to={newest_first}").replace('+', "%2B"),
            &token,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(data(&r).iter().collect::<Vec<_>>(), vec![&all[1], &all[2]]);

    // Dates: a day far in the past has nothing; a range around today has them all.
    let r = app
        .get_as("/api/v1/calls?from=2001-01-01&to=2001-01-31", &token)
        .await;
    assert!(data(&r).is_empty());
    let r = app
        .get_as("/api/v1/calls?from=2000-01-01&to=2999-12-31", &token)
        .await;
    assert_eq!(data(&r).len(), all.len());
}

#[tokio::test]
async fn bad_parameters_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    for (query, field) in [
        ("direction=sideways", "direction"),
        ("status=exploded", "status"),
        ("from=yesterday", "from"),
        ("to=2026-13-45", "to"),
        ("from=2026-02-01&to=2026-01-01", "to"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("cursor=bm90IGEgY3Vyc29y", "cursor"),
        ("cursor=%25%25", "cursor"),
    ] {
        let r = app.get_as(&format!("/api/v1/calls?{query}"), &token).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (422, "validation_failed"),
            "{query}: {:?}",
            r.body
        );
        assert_eq!(r.body["error"]["field"], field, "{query}");
    }
}

#[tokio::test]
async fn an_org_id_in_the_query_string_changes_nothing() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let token = app.token(b.owner, Some(b.org));
    let plain = app.get_as("/api/v1/calls", &token).await;
    for query in [
        format!("org_id={}", a.org),
        format!("org_id={}&orgId={}&organization_id={}", a.org, a.org, a.org),
    ] {
        let r = app.get_as(&format!("/api/v1/calls?{query}"), &token).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, plain.body, "{query}");
    }
    let me = app
        .get_as(&format!("/api/v1/me?org_id={}", a.org), &token)
        .await;
    assert_eq!(me.body["active_org"]["id"], json!(b.org));
}

#[tokio::test]
async fn a_call_of_another_clinic_is_exactly_as_absent_as_a_missing_one() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    let a_calls = app.get_as("/api/v1/calls", &a_token).await;
    let a_call = data(&a_calls)[0].clone();
    let id = a_call["id"].as_str().expect("id");

    let own = app.get_as(&format!("/api/v1/calls/{id}"), &a_token).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body, a_call);

    let theirs = app.get_as(&format!("/api/v1/calls/{id}"), &b_token).await;
    let missing = app
        .get_as(&format!("/api/v1/calls/{}", Uuid::new_v4()), &b_token)
        .await;
    let malformed = app.get_as("/api/v1/calls/not-a-uuid", &b_token).await;
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.body, missing.body);
    assert_eq!(malformed.status, 404);
    assert_eq!(malformed.body, missing.body);
}

#[tokio::test]
async fn a_stored_recording_streams_to_its_clinic_only() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.staff, Some(a.org));
    let calls = app.get_as("/api/v1/calls", &a_token).await;
    let id = data(&calls)[0]["id"].as_str().expect("id").to_owned();
    let key = format!("{}/recordings/{id}.wav", a.org);
    let audio: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let file = app.storage.path().join(&key);
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, &audio).expect("write");

    let url = format!("{}/api/v1/calls/{id}/recording", app.base);
    let none = app
        .get_as(&format!("/api/v1/calls/{id}/recording"), &a_token)
        .await;
    assert_eq!(
        (none.status.as_u16(), none.code()),
        (404, "no_recording"),
        "not stored yet"
    );

    let mut admin = app.t.admin().await;
    sqlx::query(
        "UPDATE calls SET recording_status = 'stored', recording_path = $2 WHERE id = $1::uuid",
    )
    .bind(&id)
    .bind(&key)
    .execute(&mut admin)
    .await
    .expect("mark stored");
    let response = app
        .client
        .get(&url)
        .bearer_auth(&a_token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), audio);

    let b_token = app.token(b.owner, Some(b.org));
    let theirs = app
        .get_as(&format!("/api/v1/calls/{id}/recording"), &b_token)
        .await;
    assert_eq!((theirs.status.as_u16(), theirs.code()), (404, "not_found"));

    std::fs::remove_file(&file).expect("rm");
    let gone = app
        .get_as(&format!("/api/v1/calls/{id}/recording"), &a_token)
        .await;
    assert_eq!(
        (gone.status.as_u16(), gone.code()),
        (404, "no_recording"),
        "a missing object is no recording, not a 500"
    );
}

#[tokio::test]
async fn calls_and_appointments_filter_by_contact_and_call_within_the_clinic() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let all = data(&app.get_as("/api/v1/calls?limit=100", &token).await).clone();
    let contact = all[0]["contact_id"]
        .as_str()
        .expect("a contact's call")
        .to_owned();
    let theirs = data(
        &app.get_as(
            &format!("/api/v1/calls?limit=100&contact_id={contact}"),
            &token,
        )
        .await,
    )
    .clone();
    let want: Vec<&Value> = all
        .iter()
        .filter(|c| c["contact_id"] == contact.as_str())
        .collect();
    assert_eq!(theirs.iter().collect::<Vec<_>>(), want);
    assert!(theirs.len() < all.len(), "the filter narrows");

    // The appointments of a contact, and of the call that made one.
    let appointments = data(&app.get_as("/api/v1/appointments?limit=100", &token).await).clone();
    let booked = appointments
        .iter()
        .find(|x| x["contact_id"].is_string())
        .expect("a contact's appointment");
    let of_contact = data(
        &app.get_as(
            &format!(
                "/api/v1/appointments?contact_id={}",
                booked["contact_id"].as_str().expect("id")
            ),
            &token,
        )
        .await,
    )
    .clone();
    assert!(of_contact
        .iter()
        .all(|x| x["contact_id"] == booked["contact_id"]));
    assert!(of_contact.iter().any(|x| x["id"] == booked["id"]));
    if let Some(call) = booked["call_id"].as_str() {
        let of_call = data(
            &app.get_as(&format!("/api/v1/appointments?call_id={call}"), &token)
                .await,
        )
        .clone();
        assert!(of_call.iter().all(|x| x["call_id"] == call));
    }

    // Another clinic's contact filters to nothing; a malformed id is named.
    let r = app
        .get_as(
            &format!("/api/v1/calls?contact_id={contact}"),
            &app.token(b.owner, Some(b.org)),
        )
        .await;
    assert_eq!(data(&r).len(), 0);
    let r = app.get_as("/api/v1/calls?contact_id=nope", &token).await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].clone()),
        (422, json!("contact_id"))
    );
    let r = app
        .get_as("/api/v1/appointments?call_id=nope", &token)
        .await;
    assert_eq!(r.body["error"]["field"], "call_id");
}
