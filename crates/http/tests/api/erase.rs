//! Erasing a patient through the API: every row of the clinic that named the patient, their
//! number or their calls is gone (recordings from storage too), nothing else of the clinic
//! changed but the charges' link to the calls, the other clinic not at all, the agent no longer
//! knows the number, and only the access log says an erasure happened.

use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use uuid::Uuid;
use voxanne_domain::PhoneNumber;

const PHONE: &str = "+14155550777";

/// The rows of a snapshot as `table row-json` lines.
fn lines(snapshot: &[(String, Vec<Value>)]) -> BTreeSet<String> {
    snapshot
        .iter()
        .flat_map(|(table, rows)| rows.iter().map(move |r| format!("{table} {r}")))
        .collect()
}

async fn exec(app: &TestApp, sql: &str, binds: &[Uuid]) -> Uuid {
    let mut admin = app.t.admin().await;
    let mut q = sqlx::query_scalar::<_, Uuid>(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.fetch_one(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The demo clinics, with a row in every tenant table.
async fn filled(app: &TestApp) -> [voxanne_db::demo::DemoClinic; 2] {
    let clinics = app.clinics().await;
    for c in &clinics {
        let mut tx = app.t.db.tenant(c.org, c.owner).await.expect("tx");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    clinics
}

#[tokio::test]
async fn erasing_a_patient_removes_exactly_their_data_and_the_agent_forgets_the_number() {
    let app = TestApp::spawn().await;
    let [a, b] = filled(&app).await;
    let owner = app.token(a.owner, Some(a.org));
    let created = app
        .post(
            "/api/v1/contacts",
            &owner,
            &json!({"name": "Erin Erased", "phone": PHONE, "notes": "Allergic to latex"}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let contact: Uuid = created.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    let org = a.org.as_uuid();

    // Their data, everywhere it can be: a call with a transcript line and a stored recording,
    // a call from their number not linked to them, an appointment with its SMS, a text they
    // sent, a lead of their number in a campaign with a campaign call, a charge for the call.
    let call = exec(
        &app,
        "INSERT INTO calls (org_id, contact_id, direction, status, from_number, to_number,
                            started_at, recording_status, recording_path, transcript)
         VALUES ($1, $2, 'inbound', 'completed', '+14155550777', '+14155550100', now(),
                 'stored', $1::text || '/recordings/erase-me.wav', '\\x00'::bytea || convert_to('My knee hurts.', 'UTF8'))
         RETURNING id",
        &[org, contact],
    )
    .await;
    let file = app
        .storage
        .path()
        .join(format!("{org}/recordings/erase-me.wav"));
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, b"RIFF....WAVE").expect("write");
    exec(
        &app,
        "INSERT INTO call_transcript_lines (org_id, call_id, role, text)
         VALUES ($1, $2, 'user', '\\x00'::bytea || convert_to('My knee hurts.', 'UTF8')) RETURNING call_id",
        &[org, call],
    )
    .await;
    let unlinked = exec(
        &app,
        "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at)
         VALUES ($1, 'inbound', 'missed', '+14155550777', '+14155550100', now()) RETURNING id",
        &[org],
    )
    .await;
    let appointment = exec(
        &app,
        "INSERT INTO appointments (org_id, contact_id, call_id, resource, starts_at, ends_at)
         VALUES ($1, $2, $3, 'erase-test', now() + interval '20 days',
                 now() + interval '20 days 30 minutes') RETURNING id",
        &[org, contact, call],
    )
    .await;
    let sms = exec(
        &app,
        "INSERT INTO sms_confirmation_logs (org_id, appointment_id, to_number, body, status)
         VALUES ($1, $2, '+14155550777', '\\x00'::bytea || convert_to('See you on the 21st', 'UTF8'), 'sent') RETURNING id",
        &[org, appointment],
    )
    .await;
    exec(
        &app,
        "INSERT INTO inbox_messages (org_id, channel, kind, from_number, body, reply_to_sms_id)
         VALUES ($1, 'sms', 'message', '+14155550777', '\\x00'::bytea || convert_to('Can I come earlier?', 'UTF8'), $2) RETURNING id",
        &[org, sms],
    )
    .await;
    let lead = exec(
        &app,
        "INSERT INTO leads (org_id, phone, name, consent_source)
         VALUES ($1, '+14155550777', 'Erin E.', 'web form') RETURNING id",
        &[org],
    )
    .await;
    let target = exec(
        &app,
        "INSERT INTO campaign_targets (org_id, campaign_id, lead_id, phone, name, time_zones)
         SELECT $1, id, $2, '+14155550777', 'Erin E.', ARRAY['America/Chicago']
           FROM campaigns WHERE org_id = $1 LIMIT 1 RETURNING id",
        &[org, lead],
    )
    .await;
    exec(
        &app,
        "INSERT INTO cold_call_logs (org_id, target_id, campaign_id, lead_id, attempt, to_number,
                                     from_number, provider_call_id, status, outcome, ended_reason)
         SELECT org_id, id, campaign_id, lead_id, 1, phone, '+14155550100', 'vapi-erase', 'ended',
                'voicemail', 'voicemail'
           FROM campaign_targets WHERE org_id = $1 AND id = $2 RETURNING id",
        &[org, target],
    )
    .await;
    exec(
        &app,
        "INSERT INTO credit_transactions (org_id, call_id, amount_cents, reason)
         VALUES ($1, $2, -15, 'call') RETURNING id",
        &[org, call],
    )
    .await;
    // The number asked not to be texted: that trail stays.
    let dnc = app
        .post(
            "/api/v1/dnc",
            &owner,
            &json!({"phone": PHONE, "reason": "Asked"}),
        )
        .await;
    assert_eq!(dnc.status, 201, "{:?}", dnc.body);

    let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tx");
    let phone = PhoneNumber::parse(PHONE).expect("phone");
    assert!(tx
        .find_contact_by_phone(&phone)
        .await
        .expect("lookup")
        .is_some());
    drop(tx);
    let before = app.data_snapshot(a.org).await;
    let other_before = app.snapshot(b.org).await;

    let staff = app.token(a.staff, Some(a.org));
    let path = format!("/api/v1/contacts/{contact}/erase");
    let r = app.post(&path, &staff, &json!({})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    let r = app
        .post(&path, &app.token(b.owner, Some(b.org)), &json!({}))
        .await;
    assert_eq!(r.status, 404, "another clinic's admin: {:?}", r.body);

    // Held, it is refused and nothing changes.
    let hold = app
        .post(
            "/api/v1/legal-holds",
            &owner,
            &json!({"call_id": unlinked, "reason": "Claim 9"}),
        )
        .await;
    assert_eq!(hold.status, 201, "{:?}", hold.body);
    let r = app.post(&path, &owner, &json!({})).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(r.body["error"]["code"], "legal_hold");
    assert!(file.exists());
    let hold_id = hold.body["id"].as_str().expect("id");
    let released = app
        .delete(&format!("/api/v1/legal-holds/{hold_id}"), &owner)
        .await;
    assert_eq!(released.status, 204);
    assert_eq!(app.data_snapshot(a.org).await, before);

    let records_before = app.access_records(a.org).await;
    let erased = app.post(&path, &owner, &json!({})).await;
    assert_eq!(erased.status, 200, "{:?}", erased.body);
    assert_eq!(
        erased.body,
        json!({"contact_id": contact, "calls": 2, "recordings": 1, "appointments": 1, "sms": 1,
               "messages": 1, "leads": 1, "campaign_targets": 1, "campaign_calls": 1})
    );
    assert!(!file.exists(), "the recording is still in storage");

    // The other clinic: unchanged.
    assert_eq!(app.snapshot(b.org).await, other_before);
    // This clinic: what went named the patient; what is left does not, but for the
    // do-not-call entry and consent trail of the number; the only change is the charge's link.
    let (before, after) = (lines(&before), lines(&app.data_snapshot(a.org).await));
    let markers: Vec<String> = [contact, call, unlinked, appointment, sms, lead, target]
        .iter()
        .map(Uuid::to_string)
        .chain([PHONE.to_owned(), "Erin".to_owned()])
        .collect();
    let names = |row: &str| markers.iter().any(|m| row.contains(m.as_str()));
    let gone: Vec<&String> = before.difference(&after).collect();
    let new: Vec<&String> = after.difference(&before).collect();
    assert!(gone.len() >= 10, "{gone:?}");
    for row in &gone {
        assert!(names(row), "erased a row that was not the patient's: {row}");
    }
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(
        new[0].starts_with("credit_transactions ") && new[0].contains("\"call_id\":null"),
        "{new:?}"
    );
    for row in &after {
        let kept = row.starts_with("dnc_list ") || row.starts_with("consent_records ");
        assert!(kept || !names(row), "still names the patient: {row}");
    }

    // The agent's lookup no longer knows the number, and the contact is gone.
    let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tx");
    assert!(tx
        .find_contact_by_phone(&phone)
        .await
        .expect("lookup")
        .is_none());
    drop(tx);
    assert_eq!(
        app.get_as(&format!("/api/v1/contacts/{contact}"), &owner)
            .await
            .status,
        404
    );
    // The access log: one record that it happened, naming only the id.
    let mut admin = app.t.admin().await;
    let records: Vec<(String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT action, subject_kind, subject_id FROM access_log
          WHERE org_id = $1 AND via = 'POST /api/v1/contacts/{id}/erase'",
    )
    .bind(org)
    .fetch_all(&mut admin)
    .await
    .expect("records");
    assert_eq!(
        records,
        [("erase".to_owned(), "contact".to_owned(), Some(contact))]
    );
    assert!(app.access_records(a.org).await > records_before);

    // Erasing again: there is nothing left to erase.
    let again = app.post(&path, &owner, &json!({})).await;
    assert_eq!(again.status, 404, "{:?}", again.body);
}

/// The entries of a zip archive, by name.
fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip archive");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("read");
            (entry.name().expect("a name").to_string(), data)
        })
        .collect()
}

#[tokio::test]
async fn a_patients_export_holds_their_data_and_nobody_elses_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let [a, b] = filled(&app).await;
    let owner = app.token(a.owner, Some(a.org));
    let org = a.org.as_uuid();
    let mut ids = Vec::new();
    for (name, phone) in [("Pat Export", PHONE), ("Other Person", "+14155550778")] {
        let r = app
            .post(
                "/api/v1/contacts",
                &owner,
                &json!({"name": name, "phone": phone}),
            )
            .await;
        assert_eq!(r.status, 201, "{:?}", r.body);
        ids.push(
            r.body["id"]
                .as_str()
                .expect("id")
                .parse::<Uuid>()
                .expect("uuid"),
        );
    }
    let (contact, other) = (ids[0], ids[1]);
    let mut calls = Vec::new();
    for who in [contact, other] {
        let call = exec(
            &app,
            "INSERT INTO calls (org_id, contact_id, direction, status, from_number, to_number,
                                started_at, recording_status, recording_path, transcript)
             SELECT $1, $2, 'inbound', 'completed', phone, '+14155550100', now(), 'stored',
                    $1::text || '/recordings/' || $3::text || '.wav',
                    '\\x00'::bytea || convert_to('Transcript of ' || name, 'UTF8')
               FROM contacts WHERE id = $2
             RETURNING id",
            &[org, who, Uuid::new_v4()],
        )
        .await;
        let key: String = {
            let mut admin = app.t.admin().await;
            sqlx::query_scalar("SELECT recording_path FROM calls WHERE id = $1")
                .bind(call)
                .fetch_one(&mut admin)
                .await
                .expect("path")
        };
        let file = app.storage.path().join(&key);
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        // Stored as the worker stores it: encrypted for the clinic (the archive holds the
        // audio).
        let object = voxanne_db::envelope::seal_object(
            &voxanne_testkit::keyring(),
            voxanne_domain::OrgId::from_uuid(org),
            &key,
            format!("RIFF {key}").as_bytes(),
        )
        .expect("seal");
        std::fs::write(&file, object).expect("write");
        calls.push((call, key));
    }
    exec(
        &app,
        "INSERT INTO inbox_messages (org_id, channel, kind, from_number, body, contact_id)
         VALUES ($1, 'sms', 'message', '+14155550777', '\\x00'::bytea || convert_to('Please send my records', 'UTF8'), $2) RETURNING id",
        &[org, contact],
    )
    .await;
    let before = app.data_snapshot(a.org).await;
    let other_before = app.snapshot(b.org).await;

    let path = format!("/api/v1/contacts/{contact}/export");
    let staff = app.token(a.staff, Some(a.org));
    assert_eq!(app.get_as(&path, &staff).await.status, 403);
    let theirs = app.get_as(&path, &app.token(b.owner, Some(b.org))).await;
    assert_eq!(theirs.status, 404, "{:?}", theirs.body);

    let r = app
        .client
        .get(format!("{}{path}", app.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let length: usize = r.headers()["content-length"]
        .to_str()
        .expect("length")
        .parse()
        .expect("a number");
    let bytes = r.bytes().await.expect("body");
    assert_eq!(bytes.len(), length);
    let entries = unzip(&bytes);

    let json = |name: &str| -> Value {
        serde_json::from_slice(entries.get(name).unwrap_or_else(|| panic!("no {name}")))
            .expect("json")
    };
    assert_eq!(json("manifest.json")["contact_id"], json!(contact));
    let contacts = json("contacts.json");
    assert_eq!(contacts.as_array().map(Vec::len), Some(1));
    assert_eq!(contacts[0]["name"], "Pat Export");
    let exported_calls = json("calls.json");
    assert_eq!(exported_calls.as_array().map(Vec::len), Some(1));
    assert_eq!(exported_calls[0]["transcript"], "Transcript of Pat Export");
    assert_eq!(
        json("inbox_messages.json")[0]["body"],
        "Please send my records"
    );
    let recording = calls[0].1.rsplit('/').next().expect("name");
    assert_eq!(
        entries
            .get(&format!("recordings/{recording}"))
            .map(Vec::as_slice),
        Some(format!("RIFF {}", calls[0].1).as_bytes())
    );
    assert!(
        json("access_log.json")
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["subject_id"] == json!(contact)),
        "the access records about the patient"
    );
    // Nobody else's data: not the other patient's, nor the other clinic's.
    let foreign = [
        other.to_string(),
        "+14155550778".to_owned(),
        "Other Person".to_owned(),
        calls[1].0.to_string(),
        b.org.to_string(),
    ];
    for (name, data) in &entries {
        let text = String::from_utf8_lossy(data);
        for f in &foreign {
            assert!(!text.contains(f.as_str()), "{name} holds {f}");
        }
    }

    // Nothing changed, but for the access log, which has the export.
    assert_eq!(app.data_snapshot(a.org).await, before);
    assert_eq!(app.snapshot(b.org).await, other_before);
    let mut admin = app.t.admin().await;
    let records: Vec<(String, Option<Uuid>)> = sqlx::query_as(
        "SELECT action, subject_id FROM access_log
          WHERE org_id = $1 AND via = 'GET /api/v1/contacts/{id}/export'",
    )
    .bind(org)
    .fetch_all(&mut admin)
    .await
    .expect("records");
    assert_eq!(records, [("export".to_owned(), Some(contact))]);
}
