//! Contacts, campaigns and the do-not-call list: CRUD, search, roles, conflicts, isolation.

use crate::support::*;
use serde_json::{json, Value};
use uuid::Uuid;

fn ids(r: &Response) -> Vec<String> {
    r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn contacts_are_created_read_updated_searched_and_deleted() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let staff = app.token(a.staff, Some(a.org));

    let created = app
        .post("/api/v1/contacts", &staff, &json!({"name": "  Zelda Fitz ", "phone": "+1 (415) 555-0199", "email": "zelda@example.com"}))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["name"], "Zelda Fitz");
    assert_eq!(created.body["phone"], "+14155550199");
    let id = created.body["id"].as_str().expect("id").to_owned();

    let got = app.get_as(&format!("/api/v1/contacts/{id}"), &staff).await;
    assert_eq!(got.body, created.body);

    let found = app.get_as("/api/v1/contacts?q=zel", &staff).await;
    assert_eq!(ids(&found), vec![id.clone()]);
    let by_phone = app.get_as("/api/v1/contacts?q=555-0199", &staff).await;
    assert_eq!(ids(&by_phone), vec![id.clone()]);
    let none = app.get_as("/api/v1/contacts?q=%25", &staff).await;
    assert!(
        ids(&none).is_empty(),
        "a % in the search is a character, not a wildcard"
    );

    let patched = app
        .patch(
            &format!("/api/v1/contacts/{id}"),
            &staff,
            &json!({"notes": "Allergic to latex", "email": null}),
        )
        .await;
    assert_eq!(patched.status, 200, "{:?}", patched.body);
    assert_eq!(
        (
            patched.body["notes"].as_str(),
            patched.body["email"].as_str()
        ),
        (Some("Allergic to latex"), None)
    );
    assert_eq!(
        patched.body["phone"], "+14155550199",
        "absent fields are kept"
    );

    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}"), &staff)
            .await
            .status,
        204
    );
    assert_eq!(
        app.get_as(&format!("/api/v1/contacts/{id}"), &staff)
            .await
            .status,
        404
    );
    assert_eq!(
        app.delete(&format!("/api/v1/contacts/{id}"), &staff)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn contacts_page_through_every_row_once() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    for i in 0..7 {
        let r = app
            .post(
                "/api/v1/contacts",
                &token,
                &json!({"name": format!("Patient {i}")}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let mut seen = Vec::new();
    let mut url = "/api/v1/contacts?limit=4".to_owned();
    loop {
        let r = app.get_as(&url, &token).await;
        seen.extend(ids(&r));
        match r.body["next_cursor"].as_str() {
            Some(c) => url = format!("/api/v1/contacts?limit=4&cursor={c}"),
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(
        (seen.len(), unique.len()),
        (10, 10),
        "3 demo contacts + 7 new"
    );
}

#[tokio::test]
async fn a_duplicate_phone_is_409_within_a_clinic_but_fine_across_clinics() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let body = json!({"name": "Dup", "phone": "+14155550777"});
    let a_token = app.token(a.owner, Some(a.org));
    assert_eq!(
        app.post("/api/v1/contacts", &a_token, &body).await.status,
        201
    );
    let again = app.post("/api/v1/contacts", &a_token, &body).await;
    assert_eq!((again.status.as_u16(), again.code()), (409, "phone_taken"));
    assert_eq!(
        app.post("/api/v1/contacts", &app.token(b.owner, Some(b.org)), &body)
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn another_clinics_contact_cannot_be_read_changed_or_deleted_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_list = app
        .get_as("/api/v1/contacts", &app.token(a.owner, Some(a.org)))
        .await;
    let a_contact = ids(&a_list)[0].clone();
    let b_token = app.token(b.owner, Some(b.org));
    let before = app.data_snapshot(a.org).await;

    let path = format!("/api/v1/contacts/{a_contact}");
    let missing = app
        .get_as(&format!("/api/v1/contacts/{}", Uuid::new_v4()), &b_token)
        .await;
    for r in [
        app.get_as(&path, &b_token).await,
        app.patch(&path, &b_token, &json!({"name": "Hijacked"}))
            .await,
        app.delete(&path, &b_token).await,
    ] {
        assert_eq!(r.status, 404);
        assert_eq!(r.body, missing.body);
    }
    assert_eq!(app.data_snapshot(a.org).await, before);
    // Recorded for the clinic that owns the contact, never for the one that asked.
    assert_eq!(app.probe_events(&a).await.len(), 3);
    assert_eq!(
        app.security_events(&b).await,
        Vec::<serde_json::Value>::new()
    );
}

#[tokio::test]
async fn campaigns_are_managed_by_admins_and_read_by_staff() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));
    let body = json!({"name": "Recall", "message": "Time for your check-up"});

    let denied = app.post("/api/v1/campaigns", &staff, &body).await;
    assert_eq!((denied.status.as_u16(), denied.code()), (403, "forbidden"));
    let created = app.post("/api/v1/campaigns", &owner, &body).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["status"], "draft");
    let id = created.body["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/campaigns/{id}");

    assert_eq!(app.get_as(&path, &staff).await.status, 200);
    assert_eq!(
        ids(&app.get_as("/api/v1/campaigns", &staff).await),
        vec![id.clone()]
    );
    assert_eq!(
        app.patch(&path, &staff, &json!({"status": "active"}))
            .await
            .status,
        403
    );
    let bad = app
        .patch(&path, &owner, &json!({"status": "exploded"}))
        .await;
    assert_eq!(
        (bad.status.as_u16(), bad.body["error"]["field"].as_str()),
        (422, Some("status"))
    );
    let active = app
        .patch(
            &path,
            &owner,
            &json!({"status": "active", "scheduled_at": "2026-12-01T09:00:00+01:00"}),
        )
        .await;
    assert_eq!(active.body["status"], "active");
    assert_eq!(
        active.body["scheduled_at"], "2026-12-01T08:00:00Z",
        "timestamps come back in UTC"
    );
    assert_eq!(app.delete(&path, &staff).await.status, 403);
    assert_eq!(app.delete(&path, &owner).await.status, 204);
}

#[tokio::test]
async fn the_dnc_list_normalises_numbers_and_answers_checks() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let staff = app.token(a.staff, Some(a.org));
    let added = app
        .post(
            "/api/v1/dnc",
            &staff,
            &json!({"phone": "+1 415-555-0142", "reason": "asked"}),
        )
        .await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(added.body["phone"], "+14155550142");
    let dup = app
        .post("/api/v1/dnc", &staff, &json!({"phone": "+14155550142"}))
        .await;
    assert_eq!((dup.status.as_u16(), dup.code()), (409, "already_listed"));

    let check = |token: String, phone: &'static str| {
        let app = &app;
        async move {
            app.get_as(&format!("/api/v1/dnc/check?phone={phone}"), &token)
                .await
        }
    };
    let listed = check(staff.clone(), "%2B1%20(415)%20555-0142").await;
    assert_eq!(
        listed.body,
        json!({"phone": "+14155550142", "listed": true})
    );
    let other_clinic = check(app.token(b.owner, Some(b.org)), "%2B14155550142").await;
    assert_eq!(
        other_clinic.body["listed"], false,
        "Clinic B's list is its own"
    );
    let bad = check(staff.clone(), "12345").await;
    assert_eq!(
        (bad.status.as_u16(), bad.body["error"]["field"].as_str()),
        (422, Some("phone"))
    );

    let id = added.body["id"].as_str().expect("id");
    assert_eq!(
        app.delete(&format!("/api/v1/dnc/{id}"), &staff)
            .await
            .status,
        403,
        "staff cannot unlist"
    );
    assert_eq!(
        app.delete(
            &format!("/api/v1/dnc/{id}"),
            &app.token(a.owner, Some(a.org))
        )
        .await
        .status,
        204
    );
    assert_eq!(check(staff, "%2B14155550142").await.body["listed"], false);
}

#[tokio::test]
async fn bad_bodies_get_clean_4xx_and_write_nothing() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let before = app.snapshot(a.org).await;

    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            json!({"name": "X", "org_id": Uuid::new_v4()}),
            422,
            "validation_failed",
            Some("org_id"),
        ),
        (json!({"name": 42}), 422, "validation_failed", Some("name")),
        (
            json!({"name": "X", "phone": "555-0100"}),
            422,
            "validation_failed",
            Some("phone"),
        ),
        (
            json!({"name": "X", "email": "not-an-email"}),
            422,
            "validation_failed",
            Some("email"),
        ),
        (json!({"name": ""}), 422, "validation_failed", Some("name")),
        (
            json!({"phone": "+14155550100"}),
            422,
            "validation_failed",
            Some("body"),
        ),
        (json!([1, 2]), 422, "validation_failed", Some("body")),
    ];
    for (body, status, code, field) in cases {
        let r = app.post("/api/v1/contacts", &token, &body).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (status, code),
            "{body}: {:?}",
            r.body
        );
        assert_eq!(r.body["error"]["field"].as_str(), field, "{body}");
    }

    let url = format!("{}/api/v1/contacts", app.base);
    let raw = |body: Vec<u8>, content_type: &'static str| {
        let (client, url, token) = (app.client.clone(), url.clone(), token.clone());
        async move {
            let r = client
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .expect("send");
            let status = r.status().as_u16();
            let body: Value = r.json().await.expect("a JSON error body");
            (
                status,
                body["error"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        }
    };
    assert_eq!(
        raw(b"{\"name\": ".to_vec(), "application/json").await,
        (400, "invalid_json".into())
    );
    assert_eq!(
        raw(b"{\"name\": \"X\"} trailing".to_vec(), "application/json").await,
        (400, "invalid_json".into())
    );
    assert_eq!(
        raw(b"name=X".to_vec(), "application/x-www-form-urlencoded").await,
        (415, "unsupported_media_type".into())
    );
    let huge = format!(
        "{{\"name\": \"X\", \"notes\": \"{}\"}}",
        "a".repeat(voxanne_http::BODY_LIMIT + 10)
    );
    assert_eq!(
        raw(huge.into_bytes(), "application/json").await,
        (413, "payload_too_large".into())
    );
    let long_notes = json!({"name": "X", "notes": "a".repeat(10_001)});
    assert_eq!(
        app.post("/api/v1/contacts", &token, &long_notes).await.body["error"]["field"],
        "notes"
    );

    for path in [
        "/api/v1/contacts/not-a-uuid",
        "/api/v1/contacts/123",
        "/api/v1/campaigns/%00",
    ] {
        let r = app.patch(path, &token, &json!({"name": "Y"})).await;
        assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"), "{path}");
    }
    assert_eq!(
        app.snapshot(a.org).await,
        before,
        "no failed request wrote anything"
    );
}

#[tokio::test]
async fn a_deleted_contact_leaves_its_calls_appointments_messages_and_leads_without_it() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let staff = app.token(a.staff, Some(a.org));
    let created = app
        .post(
            "/api/v1/contacts",
            &staff,
            &json!({"name": "Ida Referred", "phone": "+14155550177"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id: Uuid = created.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    // Every kind of row that refers to a contact (the schema's foreign keys to contacts).
    let mut admin = app.t.admin().await;
    sqlx::query(
        "WITH c AS (INSERT INTO calls (org_id, direction, from_number, to_number, status, started_at, contact_id)
                    VALUES ($1, 'inbound', '+14155550177', '+14155550100', 'completed', now(), $2) RETURNING id)
         INSERT INTO appointments (org_id, contact_id, call_id, starts_at, ends_at, resource)
         SELECT $1, $2, id, now() + interval '9 days', now() + interval '9 days 30 minutes', 'ref-test' FROM c",
    )
    .bind(a.org.as_uuid())
    .bind(id)
    .execute(&mut admin)
    .await
    .expect("a call and an appointment of the contact");
    for sql in [
        "INSERT INTO inbox_messages (org_id, channel, kind, from_number, body, contact_id)
         VALUES ($1, 'sms', 'message', '+14155550177', '\\x00'::bytea || convert_to('Thanks', 'UTF8'), $2)",
        "INSERT INTO leads (org_id, phone, name, time_zone, consent_source, contact_id)
         VALUES ($1, '+14155550177', 'Ida Referred', 'America/Chicago', 'web form', $2)",
    ] {
        sqlx::query(sql)
            .bind(a.org.as_uuid())
            .bind(id)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let deleted = app.delete(&format!("/api/v1/contacts/{id}"), &staff).await;
    assert_eq!(deleted.status, 204, "{:?}", deleted.body);
    let kept: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT 'calls', count(*), count(contact_id) FROM calls WHERE org_id = $1 AND from_number = '+14155550177'
         UNION ALL SELECT 'appointments', count(*), count(contact_id) FROM appointments WHERE org_id = $1 AND resource = 'ref-test'
         UNION ALL SELECT 'inbox_messages', count(*), count(contact_id) FROM inbox_messages WHERE org_id = $1 AND from_number = '+14155550177'
         UNION ALL SELECT 'leads', count(*), count(contact_id) FROM leads WHERE org_id = $1 AND phone = '+14155550177'",
    )
    .bind(a.org.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("what is left");
    for (table, rows, linked) in kept {
        assert_eq!((rows, linked), (1, 0), "{table}: kept, without the contact");
    }
}
