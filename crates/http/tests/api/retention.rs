//! Retention through the API: the settings and their floors, legal holds, and what the purge
//! removed, as a clinic's admin sees them, with the purge job run against the same database
//! and storage.

use crate::support::*;
use serde_json::{json, Value};
use std::sync::Arc;
use voxanne_jobs::{Job, Metrics, RetentionConfig, RetentionJob};

fn retention(recordings: i32, transcripts: i32, sms: i32, calls: i32, log: i32) -> Value {
    json!({"recordings_days": recordings, "transcripts_days": transcripts, "sms_days": sms,
           "calls_days": calls, "access_log_days": log})
}

#[tokio::test]
async fn the_settings_have_defaults_floors_and_only_admins_change_them() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));

    let got = app.get_as("/api/v1/retention", &staff).await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    let mut defaults = retention(365, 2190, 365, 2190, 2190);
    defaults["floors"] = retention(30, 30, 30, 365, 2190);
    assert_eq!(got.body, defaults);

    let short = retention(30, 60, 30, 365, 2190);
    let refused = app.put("/api/v1/retention", &staff, &short).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);

    for (body, field) in [
        (retention(29, 60, 30, 365, 2190), "recordings_days"),
        (retention(30, 60, 30, 364, 2190), "calls_days"),
        (retention(30, 60, 30, 365, 2189), "access_log_days"),
        (retention(30, 60, 7, 365, 2190), "sms_days"),
        (retention(30, 400, 30, 365, 2190), "transcripts_days"),
        (retention(30, 60, 30, 365, 36501), "access_log_days"),
    ] {
        let r = app.put("/api/v1/retention", &owner, &body).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], "validation_failed");
        assert_eq!(r.body["error"]["field"], field, "{body}");
    }
    let mut unknown = short.clone();
    unknown["voicemail_days"] = json!(30);
    let r = app.put("/api/v1/retention", &owner, &unknown).await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = app
        .put("/api/v1/retention", &owner, &json!({"recordings_days": 30}))
        .await;
    assert_eq!(r.status, 422, "every setting is given: {:?}", r.body);

    let set = app.put("/api/v1/retention", &owner, &short).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let got = app.get_as("/api/v1/retention", &staff).await;
    assert_eq!(got.body["recordings_days"], 30);
    assert_eq!(got.body["transcripts_days"], 60);
    // The other clinic keeps its own.
    let theirs = app
        .get_as("/api/v1/retention", &app.token(b.owner, Some(b.org)))
        .await;
    assert_eq!(theirs.body["recordings_days"], 365);
}

#[tokio::test]
async fn legal_holds_are_placed_listed_and_released_by_admins_and_keep_a_contact() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));
    let first = |r: &Response| r.body["data"][0]["id"].as_str().expect("an id").to_owned();
    let call = first(&app.get_as("/api/v1/calls", &owner).await);
    let contact = first(&app.get_as("/api/v1/contacts", &owner).await);
    let b_owner = app.token(b.owner, Some(b.org));
    let their_call = first(&app.get_as("/api/v1/calls", &b_owner).await);

    let hold = json!({"call_id": call, "reason": "Insurance claim 2291"});
    let r = app.post("/api/v1/legal-holds", &staff, &hold).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let placed = app.post("/api/v1/legal-holds", &owner, &hold).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["call_id"], json!(call));
    assert_eq!(placed.body["placed_by"], json!(a.owner.to_string()));
    let again = app.post("/api/v1/legal-holds", &owner, &hold).await;
    assert_eq!(again.status, 409, "{:?}", again.body);
    assert_eq!(again.body["error"]["code"], "already_held");

    for (body, field) in [
        (
            json!({"call_id": their_call, "reason": "Forged"}),
            "call_id",
        ),
        (
            json!({"call_id": call, "contact_id": contact, "reason": "Both"}),
            "contact_id",
        ),
        (json!({"reason": "Neither"}), "contact_id"),
        (json!({"contact_id": contact, "reason": "  "}), "reason"),
        (
            json!({"contact_id": contact, "reason": "Two\nlines"}),
            "reason",
        ),
        (
            json!({"contact_id": contact, "reason": "x".repeat(501)}),
            "reason",
        ),
    ] {
        let r = app.post("/api/v1/legal-holds", &owner, &body).await;
        assert_eq!(r.status, 422, "{body}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], field, "{body}: {:?}", r.body);
    }
    let r = app
        .post(
            "/api/v1/legal-holds",
            &owner,
            &json!({"contact_id": "not-a-uuid", "reason": "Typo"}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let theirs = app.get_as("/api/v1/legal-holds", &b_owner).await;
    assert_eq!(theirs.status, 200);
    assert!(
        theirs.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|h| h["call_id"] != json!(their_call)),
        "the forged hold was placed: {:?}",
        theirs.body
    );

    // A held patient cannot be deleted.
    let on_patient = app
        .post(
            "/api/v1/legal-holds",
            &owner,
            &json!({"contact_id": contact, "reason": "Litigation"}),
        )
        .await;
    assert_eq!(on_patient.status, 201, "{:?}", on_patient.body);
    let r = app
        .delete(&format!("/api/v1/contacts/{contact}"), &owner)
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "legal_hold");

    let listed = app.get_as("/api/v1/legal-holds", &owner).await;
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    let ids: Vec<&str> = listed.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    let patient_hold = on_patient.body["id"].as_str().expect("id");
    let call_hold = placed.body["id"].as_str().expect("id");
    assert_eq!(ids, [patient_hold, call_hold], "newest first");
    assert_eq!(app.get_as("/api/v1/legal-holds", &staff).await.status, 403);

    // Another clinic cannot release it; its admin can, once.
    let r = app
        .delete(&format!("/api/v1/legal-holds/{patient_hold}"), &b_owner)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = app
        .delete(&format!("/api/v1/legal-holds/{patient_hold}"), &staff)
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app
        .delete(&format!("/api/v1/legal-holds/{patient_hold}"), &owner)
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = app
        .delete(&format!("/api/v1/legal-holds/{patient_hold}"), &owner)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    let r = app
        .delete(&format!("/api/v1/contacts/{contact}"), &owner)
        .await;
    assert_eq!(r.status, 204, "released, the contact can go: {:?}", r.body);
}

#[tokio::test]
async fn after_a_purge_the_api_shows_what_went_and_the_recording_is_gone() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let set = app
        .put(
            "/api/v1/retention",
            &owner,
            &retention(30, 60, 30, 365, 2190),
        )
        .await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    let calls = app.get_as("/api/v1/calls?limit=100", &owner).await;
    let call = calls.body["data"][0]["id"]
        .as_str()
        .expect("a call")
        .to_owned();
    // The call was 45 days ago, and its recording is stored.
    let key = format!("{}/recordings/{call}.wav", a.org);
    let file = app.storage.path().join(&key);
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, b"RIFF....WAVE").expect("write");
    let mut admin = app.t.admin().await;
    sqlx::query(
        "UPDATE calls SET recording_status = 'stored', recording_path = $2,
                          started_at = now() - interval '45 days',
                          ended_at = now() - interval '45 days'
          WHERE id = $1::uuid",
    )
    .bind(&call)
    .bind(&key)
    .execute(&mut admin)
    .await
    .expect("an old call");
    let r = app
        .client
        .get(format!("{}/api/v1/calls/{call}/recording", app.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);

    let store: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(app.storage.path()).expect("store"),
    );
    let job = RetentionJob::new(
        app.t.db.clone(),
        store,
        RetentionConfig::default(),
        Arc::new(Metrics::default()),
    );
    while !job.run_once().await.expect("purge").is_empty() {}

    assert!(!file.exists(), "the recording is still in storage");
    let got = app.get_as(&format!("/api/v1/calls/{call}"), &owner).await;
    assert_eq!(got.body["recording_status"], "purged", "{:?}", got.body);
    let r = app
        .get_as(&format!("/api/v1/calls/{call}/recording"), &owner)
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "no_recording");

    let purges = app.get_as("/api/v1/retention/purges", &owner).await;
    assert_eq!(purges.status, 200, "{:?}", purges.body);
    let kinds: Vec<(&str, Vec<&str>)> = purges.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap_or(""),
                p["subject_ids"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("recording", vec![call.as_str()])),
        "{kinds:?}"
    );
    let staff = app.token(a.staff, Some(a.org));
    assert_eq!(
        app.get_as("/api/v1/retention/purges", &staff).await.status,
        403
    );
    let theirs = app
        .get_as("/api/v1/retention/purges", &app.token(b.owner, Some(b.org)))
        .await;
    assert_eq!(theirs.body["data"], json!([]), "{:?}", theirs.body);
}
