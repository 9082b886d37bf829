//! The access log from the outside, generated from the OpenAPI document: every operation is
//! classified here as patient data or not (an operation added later and classified nowhere
//! fails the test), and every patient-data operation, called by the clinic's owner, must leave
//! an access record of the clinic naming the owner, the route, the client's address and the
//! request id, written in the request's own transaction.

use crate::support::openapi::*;
use crate::support::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use voxanne_db::demo::DemoClinic;

/// Operations that read or change patient data (contacts, calls, transcripts, recordings,
/// appointments and holds, inbox and SMS bodies, consent, leads, campaign audiences and their
/// calls), as `METHOD path` of the document.
const PATIENT_DATA: &[&str] = &[
    "get /api/v1/appointment-holds",
    "post /api/v1/appointment-holds",
    "delete /api/v1/appointment-holds/{id}",
    "post /api/v1/appointment-holds/{id}/confirm",
    "get /api/v1/appointments",
    "post /api/v1/appointments",
    "get /api/v1/appointments/{id}",
    "patch /api/v1/appointments/{id}",
    "post /api/v1/appointments/{id}/cancel",
    "get /api/v1/calls",
    "get /api/v1/calls/{id}",
    "get /api/v1/calls/{id}/recording",
    "get /api/v1/live",
    "get /api/v1/campaigns/{id}/calls",
    "get /api/v1/campaigns/{id}/targets",
    "post /api/v1/campaigns/{id}/targets",
    "get /api/v1/contacts",
    "post /api/v1/contacts",
    "get /api/v1/contacts/{id}",
    "patch /api/v1/contacts/{id}",
    "delete /api/v1/contacts/{id}",
    "post /api/v1/contacts/{id}/erase",
    "get /api/v1/contacts/{id}/export",
    "get /api/v1/leads",
    "post /api/v1/leads/import",
    "get /api/v1/leads/{id}",
    "patch /api/v1/leads/{id}",
    "delete /api/v1/leads/{id}",
    "post /api/v1/leads/{id}/convert",
    "get /api/v1/consent-records",
    "get /api/v1/inbox",
    "get /api/v1/inbox/{id}",
    "patch /api/v1/inbox/{id}",
    "get /api/v1/sms-confirmations",
    "get /api/v1/sms-confirmations/{id}",
    "get /api/v1/legal-holds",
    "post /api/v1/legal-holds",
    "delete /api/v1/legal-holds/{id}",
    // Whose records were read is itself recorded.
    "get /api/v1/access-log",
    "get /api/v1/access-log/export",
];

/// Path prefixes and operations that hold no patient data: the clinic's settings, staff,
/// scheduling, calendars, numbers, integrations, knowledge base, the do-not-call list (numbers
/// that asked not to be called, no more), accounts, the security log, health and the document.
/// The providers' webhooks act on patient data as the system (no member), and their records
/// are checked by the webhook tests.
const NOT_PATIENT_DATA: &[&str] = &[
    "/api/v1/agent-configuration",
    "/api/v1/availability",
    "/auth/",
    "/api/v1/calendar-connections",
    "/api/v1/campaigns",
    "/api/v1/closures",
    "/api/v1/dnc",
    "/api/v1/integrations",
    "/api/v1/invitations",
    "/api/v1/knowledge-base/",
    "/api/v1/locations",
    "/api/v1/me",
    "/api/v1/members",
    "/api/v1/messaging-settings",
    "/api/v1/openapi.json",
    "/api/v1/organization",
    "/api/v1/organizations",
    "/api/v1/phone-numbers",
    "/api/v1/practitioners",
    // The settings, and what was purged (ids, no patient data).
    "/api/v1/retention",
    "/api/v1/security-events",
    "/api/v1/services",
    "/healthz",
    "/readyz",
    "/oauth/",
    "/webhooks/",
];

fn classified(key: &str, path: &str) -> Option<bool> {
    if PATIENT_DATA.contains(&key) {
        return Some(true);
    }
    let prefix = NOT_PATIENT_DATA.iter().any(|p| {
        if p.ends_with('/') {
            path.starts_with(p)
        } else {
            path == *p || path.starts_with(&format!("{p}/"))
        }
    });
    prefix.then_some(false)
}

/// The access records of `org` for `via`, as the superuser reads them.
async fn records(app: &TestApp, org: voxanne_domain::OrgId, via: &str) -> Vec<Value> {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar(
        "SELECT to_jsonb(l) FROM access_log l WHERE org_id = $1 AND via = $2 ORDER BY at, id",
    )
    .bind(org.as_uuid())
    .bind(via)
    .fetch_all(&mut admin)
    .await
    .expect("access records")
}

/// The order that lets every operation find its object: reads, then writes, then deletes.
fn rank(method: &str) -> u8 {
    match method {
        "get" => 0,
        "delete" => 2,
        _ => 1,
    }
}

#[tokio::test]
async fn every_patient_data_route_leaves_an_access_record_and_every_route_is_classified() {
    let app = TestApp::spawn().await;
    let [a, _b] = app.clinics().await;
    {
        let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tx");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    live_call(&app, &a).await;
    let doc = app.get("/api/v1/openapi.json", None, &[]).await.body;

    let mut unclassified = BTreeSet::new();
    let mut patient_ops = Vec::new();
    for op in operations(&doc) {
        let key = format!("{} {}", op.method, op.path);
        match classified(&key, &op.path) {
            None => {
                unclassified.insert(key);
            }
            Some(true) => patient_ops.push(op),
            Some(false) => {}
        }
    }
    assert!(
        unclassified.is_empty(),
        "classify these operations in access_log.rs (patient data or not): {unclassified:?}"
    );
    let documented: BTreeSet<String> = operations(&doc)
        .iter()
        .map(|op| format!("{} {}", op.method, op.path))
        .collect();
    for key in PATIENT_DATA {
        assert!(documented.contains(*key), "{key} is not in the document");
    }
    patient_ops.sort_by_key(|op| rank(op.method));

    let ids = first_ids(&app, &doc, &a).await;
    store_recording(
        &app,
        &a,
        &ids[&("/api/v1/calls".to_owned(), "id".to_owned())],
    )
    .await;
    let token = app.token(a.owner, Some(a.org));
    let mut checked = 0;
    for op in &patient_ops {
        // The first object of the collection now (an earlier operation may have deleted or
        // confirmed the one seen at the start).
        let mut path = op.path.clone();
        for param in uuid_params(&op.op) {
            let list = collection(&op.path);
            let r = app.get_as(&format!("{list}?limit=100"), &token).await;
            let id = r.body["data"]
                .as_array()
                .and_then(|items| items.iter().find_map(|i| i[param.as_str()].as_str()))
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    panic!("{list} has no object left for {} {}", op.method, op.path)
                });
            path = path.replace(&format!("{{{param}}}"), &id);
        }
        let body = example_body(&doc, &op.op).map(|mut body| {
            // Every reference of the example points at the clinic's own object.
            if let Some(fields) = body.as_object_mut() {
                for (field, value) in fields.iter_mut() {
                    if let Some(id) = holder(&ids, field).and_then(|list| {
                        ids.iter()
                            .find(|((l, _), _)| *l == list)
                            .map(|(_, id)| id.clone())
                    }) {
                        *value = json!(id);
                    }
                }
            }
            body
        });
        let via = format!("{} {}", op.method.to_uppercase(), op.path);
        let before = records(&app, a.org, &via).await.len();
        let request_id = format!("access-log-test-{checked}");
        let status = if !answers_json(&op.op) {
            // Server-sent events (the first read is committed before the stream begins) and
            // a recording's bytes: the status is enough.
            let r = app
                .client
                .get(format!("{}{path}", app.base))
                .bearer_auth(&token)
                .header("x-request-id", &request_id)
                .send()
                .await
                .expect("request");
            r.status().as_u16()
        } else {
            let r = app
                .send(
                    &op.method.to_uppercase(),
                    &path,
                    &token,
                    body.as_ref(),
                    &[("x-request-id", &request_id)],
                )
                .await;
            assert!(
                r.status.is_success(),
                "{via} answered {} to the clinic's owner: {:?}",
                r.status,
                r.body
            );
            r.status.as_u16()
        };
        assert!((200..300).contains(&status), "{via} answered {status}");
        let after = records(&app, a.org, &via).await;
        assert!(
            after.len() > before,
            "{via} read or changed patient data and left no access record"
        );
        let mine: Vec<&Value> = after[before..].iter().collect();
        for record in &mine {
            assert_eq!(record["actor_kind"], "user", "{via}: {record}");
            assert_eq!(record["actor_id"], json!(a.owner.to_string()), "{via}");
            assert_eq!(record["request_id"], json!(request_id), "{via}");
            assert_eq!(record["client_addr"], "127.0.0.1", "{via}: {record}");
        }
        let expected: &[&str] = match op.method {
            "get" => &["read", "list", "export"],
            "delete" => &["delete"],
            _ => &["create", "update", "delete", "erase"],
        };
        assert!(
            mine.iter()
                .any(|r| expected.contains(&r["action"].as_str().unwrap_or(""))),
            "{via} was not recorded as one of {expected:?}: {mine:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, PATIENT_DATA.len());
}

/// The collection whose objects a `<kind>_id` field names (`contact_id` → `/contacts`).
fn holder(ids: &BTreeMap<(String, String), String>, field: &str) -> Option<String> {
    let kind = field.strip_suffix("_id")?;
    if kind == "org" {
        return None;
    }
    ids.keys()
        .map(|(list, _)| list)
        .find(|c| c.rsplit('/').next() == Some(&format!("{kind}s")))
        .cloned()
}

/// Whether the operation answers 200 with JSON (not server-sent events, not bytes).
fn answers_json(op: &Value) -> bool {
    op["responses"]["200"]["content"]
        .as_object()
        .is_none_or(|c| c.contains_key("application/json"))
}

/// A stored recording of the clinic's call `id`.
async fn store_recording(app: &TestApp, clinic: &DemoClinic, id: &str) {
    let key = format!("{}/recordings/{id}.wav", clinic.org);
    let file = app.storage.path().join(&key);
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, b"RIFF....WAVE").expect("write");
    let mut admin = app.t.admin().await;
    sqlx::query(
        "UPDATE calls SET recording_status = 'stored', recording_path = $2 WHERE id = $1::uuid",
    )
    .bind(id)
    .bind(&key)
    .execute(&mut admin)
    .await
    .expect("a stored recording");
}

/// A call in progress at the clinic, for the live view to show.
async fn live_call(app: &TestApp, clinic: &DemoClinic) {
    let mut tx = app.t.db.tenant(clinic.org, clinic.owner).await.expect("tx");
    tx.insert_call(&voxanne_db::calls::NewCall {
        contact_id: None,
        direction: voxanne_domain::CallDirection::Inbound,
        status: voxanne_domain::CallStatus::InProgress,
        from_number: voxanne_domain::PhoneNumber::parse("+15550001111").expect("number"),
        to_number: voxanne_domain::PhoneNumber::parse("+15550002222").expect("number"),
        started_at: chrono::Utc::now(),
        ended_at: None,
        recording_status: voxanne_domain::RecordingStatus::None,
        recording_url: None,
        transcript: None,
        summary: None,
    })
    .await
    .expect("a live call");
    tx.commit().await.expect("commit");
}

/// A request that fails leaves nothing in the log, and another clinic's log is untouched by
/// a clinic's reads.
#[tokio::test]
async fn a_refused_or_failed_request_leaves_no_record_and_a_read_stays_in_its_clinic() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let count = |org: voxanne_domain::OrgId| {
        let app = &app;
        async move {
            let mut admin = app.t.admin().await;
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM access_log WHERE org_id = $1")
                .bind(org.as_uuid())
                .fetch_one(&mut admin)
                .await
                .expect("count")
        }
    };
    let (a0, b0) = (count(a.org).await, count(b.org).await);
    let a_token = app.token(a.owner, Some(a.org));
    let r = app.get_as("/api/v1/calls?limit=5", &a_token).await;
    assert_eq!(r.status, 200);
    let listed: Vec<String> = r.body["data"]
        .as_array()
        .expect("calls")
        .iter()
        .filter_map(|c| c["contact_id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(count(a.org).await, a0 + 1, "one record for one page");
    assert_eq!(count(b.org).await, b0, "a read of A wrote to B's log");
    let page = records(&app, a.org, "GET /api/v1/calls").await;
    let record = page.last().expect("the page's record");
    assert_eq!(record["action"], "list");
    assert_eq!(record["subject_kind"], "call");
    let mut patients: Vec<String> = record["patients"]
        .as_array()
        .map(|p| {
            p.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut expected = listed.clone();
    expected.sort();
    expected.dedup();
    patients.sort();
    assert_eq!(patients, expected, "the page's record names its contacts");

    // Refused (another clinic's id) and failed (a bad body): nothing written.
    let b_call = {
        let b_token = app.token(b.owner, Some(b.org));
        let r = app.get_as("/api/v1/calls?limit=1", &b_token).await;
        r.body["data"][0]["id"]
            .as_str()
            .expect("a call of B")
            .to_owned()
    };
    let a1 = count(a.org).await;
    let r = app
        .get_as(&format!("/api/v1/calls/{b_call}"), &a_token)
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post("/api/v1/contacts", &a_token, &json!({"name": ""}))
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(
        count(a.org).await,
        a1,
        "a refused or failed request left a record"
    );
}

/// A read whose access record cannot be written is not shown: the answer is 503, without the
/// data. A change writes its record in its own transaction and is not held up.
#[tokio::test]
async fn a_read_is_not_shown_when_its_record_cannot_be_written() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let page = app.get_as("/api/v1/calls?limit=1", &token).await;
    let call = page.body["data"][0]["id"]
        .as_str()
        .expect("a call")
        .to_owned();
    let shown = app.get_as(&format!("/api/v1/calls/{call}"), &token).await;
    assert_eq!(shown.status, 200);
    let from = shown.body["from_number"]
        .as_str()
        .expect("the caller's number")
        .to_owned();

    let mut admin = app.t.admin().await;
    sqlx::raw_sql("REVOKE EXECUTE ON FUNCTION app.write_access_records FROM voxanne_app")
        .execute(&mut admin)
        .await
        .expect("revoke");
    for path in [format!("/api/v1/calls/{call}"), "/api/v1/calls".to_owned()] {
        let r = app.get_as(&path, &token).await;
        assert_eq!(r.status, 503, "{path}: {:?}", r.body);
        assert_eq!(r.body["error"]["code"], json!("unavailable"), "{path}");
        assert!(
            !r.body.to_string().contains(&from),
            "{path} showed the call without its record: {:?}",
            r.body
        );
    }
    let created = app
        .post(
            "/api/v1/contacts",
            &token,
            &json!({"name": "Written anyway"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM access_log WHERE subject_id = $1::uuid AND action = 'create'",
    )
    .bind(&id)
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!(recorded, 1, "the change's record");

    sqlx::raw_sql("GRANT EXECUTE ON FUNCTION app.write_access_records TO voxanne_app")
        .execute(&mut admin)
        .await
        .expect("grant");
    let r = app.get_as(&format!("/api/v1/calls/{call}"), &token).await;
    assert_eq!(r.status, 200);
}

/// The admins' view: filters by patient, user and time, pages, the CSV export of the whole
/// selection, staff refused, and never another clinic's record.
#[tokio::test]
async fn admins_read_and_export_their_clinics_log_by_patient_user_and_time() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));
    // The staff member reads one contact; the owner lists calls; B reads its own.
    let contacts = app.get_as("/api/v1/contacts?limit=1", &staff).await;
    let contact = contacts.body["data"][0]["id"]
        .as_str()
        .expect("a contact")
        .to_owned();
    let r = app
        .get_as(&format!("/api/v1/contacts/{contact}"), &staff)
        .await;
    assert_eq!(r.status, 200);
    let r = app.get_as("/api/v1/calls?limit=5", &owner).await;
    assert_eq!(r.status, 200);
    let r = app
        .get_as("/api/v1/calls", &app.token(b.owner, Some(b.org)))
        .await;
    assert_eq!(r.status, 200);

    let r = app.get_as("/api/v1/access-log", &staff).await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    let all = app.get_as("/api/v1/access-log?limit=100", &owner).await;
    assert_eq!(all.status, 200, "{:?}", all.body);
    let all = all.body["data"].as_array().cloned().expect("records");
    assert!(!all.is_empty());
    let b_calls = records(&app, b.org, "GET /api/v1/calls").await;
    let b_ids: BTreeSet<&str> = b_calls.iter().filter_map(|r| r["id"].as_str()).collect();
    assert!(
        all.iter()
            .all(|r| !b_ids.contains(r["id"].as_str().unwrap_or(""))),
        "B's record in A's log"
    );

    let by_staff = app
        .get_as(&format!("/api/v1/access-log?user={}", a.staff), &owner)
        .await;
    let by_staff = by_staff.body["data"].as_array().cloned().expect("records");
    assert!(by_staff.len() >= 2, "{by_staff:?}");
    assert!(by_staff
        .iter()
        .all(|r| r["actor_id"] == json!(a.staff.to_string())));

    let of_patient = app
        .get_as(&format!("/api/v1/access-log?patient={contact}"), &owner)
        .await;
    let of_patient = of_patient.body["data"]
        .as_array()
        .cloned()
        .expect("records");
    assert!(
        of_patient.iter().any(|r| r["subject_id"] == json!(contact)
            && r["action"] == "read"
            && r["via"] == "GET /api/v1/contacts/{id}"),
        "{of_patient:?}"
    );
    assert!(of_patient.iter().all(|r| r["subject_id"] == json!(contact)
        || r["patients"]
            .as_array()
            .is_some_and(|p| p.contains(&json!(contact)))));

    let future = app
        .get_as("/api/v1/access-log?from=2999-01-01", &owner)
        .await;
    assert_eq!(future.status, 200);
    assert_eq!(future.body["data"], json!([]));
    let bad = app.get_as("/api/v1/access-log?patient=nope", &owner).await;
    assert_eq!(
        (bad.status.as_u16(), bad.code()),
        (422, "validation_failed"),
        "{:?}",
        bad.body
    );

    // Pages: two records at a time cover what one page of 100 showed (and the reads of the
    // log since, which are newer).
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let url = match &cursor {
            Some(c) => format!("/api/v1/access-log?limit=2&cursor={c}"),
            None => "/api/v1/access-log?limit=2".to_owned(),
        };
        let page = app.get_as(&url, &owner).await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        seen.extend(page.body["data"].as_array().cloned().expect("records"));
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let seen_ids: BTreeSet<String> = seen
        .iter()
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect();
    for r in &all {
        assert!(
            seen_ids.contains(r["id"].as_str().expect("id")),
            "paging lost {r}"
        );
    }

    // The export: a header, then every record of the selection.
    let export = app
        .client
        .get(format!(
            "{}/api/v1/access-log/export?user={}",
            app.base, a.staff
        ))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("export");
    assert_eq!(export.status(), 200);
    assert!(export.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/csv"));
    let text = export.text().await.expect("csv");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(&headers[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), by_staff.len(), "{text}");
    let actor = headers
        .iter()
        .position(|h| h == "actor_id")
        .expect("actor_id");
    assert!(rows.iter().all(|r| r[actor] == a.staff.to_string()));
    let r = app
        .client
        .get(format!("{}/api/v1/access-log/export", app.base))
        .bearer_auth(&staff)
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), 403);

    // An export longer than a page (500 records) streams every one of them.
    // (As the superuser: Citus runs an INSERT … SELECT as a COPY, which row level security
    // refuses for the application.)
    let mut admin = app.t.admin().await;
    sqlx::query(
        "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via)
         SELECT $1, 'system', 'call', 'read', 'job' FROM generate_series(1, 1100)",
    )
    .bind(a.org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("records");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log WHERE org_id = $1")
        .bind(a.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("count");
    let text = app
        .client
        .get(format!("{}/api/v1/access-log/export", app.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    let lines = csv::Reader::from_reader(text.as_bytes()).records().count();
    assert_eq!(lines as i64, total, "the export lost records");
}
