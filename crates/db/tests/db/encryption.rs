//! Patient text encrypted at rest (encrypted.rs, migrations/0033): what the application writes
//! is stored encrypted for its place and reads back as written; a value moved to another row or
//! another clinic does not open; without a keyring nothing is written or shown.

use chrono::{Duration, DurationRound, Utc};
use sqlx::PgConnection;
use std::sync::Arc;
use uuid::Uuid;
use voxanne_db::appointments::{Appointment, SlotRequest};
use voxanne_db::call_events::CallEvent;
use voxanne_db::calls::Call;
use voxanne_db::contacts::{Contact, ContactFields};
use voxanne_db::crypto::{stored_key_id, CryptoError, Keyring};
use voxanne_db::encrypted::FIELDS;
use voxanne_db::messages::{InboundText, InboxMessage};
use voxanne_db::outreach::{Lead, LeadInput, LeadPatch};
use voxanne_db::sms_confirmations::SmsConfirmation;
use voxanne_db::{demo, Db, DbError};
use voxanne_domain::{CallDirection, CallStatus, PhoneNumber};
use voxanne_testkit::TestDb;

/// In every text this test writes: found in no stored byte.
const MARK: &str = "Zebra-7731";
const PATIENT: &str = "+14155550901";

fn phone(text: &str) -> PhoneNumber {
    PhoneNumber::parse(text).expect("phone")
}

fn event(transcript: Option<String>, status: CallStatus, to: &str) -> CallEvent {
    CallEvent {
        provider: "vapi",
        provider_call_id: "call-marked".into(),
        direction: CallDirection::Inbound,
        status,
        is_final_report: transcript.is_some(),
        from_number: PATIENT.into(),
        to_number: to.into(),
        started_at: None,
        ended_at: None,
        duration_seconds: None,
        summary: transcript.as_ref().map(|_| format!("{MARK} summary")),
        transcript,
        ended_reason: None,
        recording_url: None,
    }
}

/// Every stored value of every encrypted column: (table.column, org, row, stored bytes).
async fn stored(admin: &mut PgConnection) -> Vec<(String, Uuid, Uuid, Vec<u8>)> {
    let mut all = Vec::new();
    for f in FIELDS {
        let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT org_id, id, {} FROM {} WHERE {} IS NOT NULL",
            f.column, f.table, f.column
        ))
        .fetch_all(&mut *admin)
        .await
        .expect("stored values");
        for (org, id, bytes) in rows {
            all.push((format!("{}.{}", f.table, f.column), org, id, bytes));
        }
    }
    all.sort();
    all
}

#[tokio::test]
async fn patient_text_is_stored_encrypted_for_its_place_and_reads_back_as_written() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant");
    let contact = tx
        .insert_contact(&ContactFields {
            name: "Ann Marker".into(),
            phone: Some(phone(PATIENT)),
            email: None,
            notes: Some(format!("{MARK} allergic to latex")),
        })
        .await
        .expect("contact");
    // A call in progress with a live line, then its end-of-call report.
    tx.apply_call_event(&event(None, CallStatus::InProgress, a.number))
        .await
        .expect("call");
    tx.add_transcript_line(
        "vapi",
        "call-marked",
        "user",
        &format!("{MARK} my knee hurts"),
    )
    .await
    .expect("line")
    .expect("the call");
    let live = tx.live_calls().await.expect("live");
    let line = live
        .iter()
        .flat_map(|c| &c.lines)
        .find(|l| l.text.contains(MARK));
    assert_eq!(
        line.map(|l| l.text.as_str()),
        Some(format!("{MARK} my knee hurts").as_str())
    );
    let call = tx
        .apply_call_event(&event(
            Some(format!("{MARK} transcript")),
            CallStatus::Completed,
            a.number,
        ))
        .await
        .expect("report");
    let start = (Utc::now() + Duration::days(3))
        .duration_trunc(Duration::hours(1))
        .expect("hour");
    let appointment = tx
        .insert_appointment(
            &SlotRequest {
                contact_id: Some(contact.id),
                call_id: Some(call.into()),
                resource: "encryption-test".into(),
                service_id: None,
                starts_at: start,
                ends_at: start + Duration::minutes(30),
            },
            Some(&format!("{MARK} bring the x-rays")),
        )
        .await
        .expect("appointment");
    tx.take_message(
        Some(call.into()),
        PATIENT,
        Some(a.number),
        Some("Ann"),
        &format!("{MARK} please call me back"),
        true,
    )
    .await
    .expect("message");
    let confirmed = tx
        .receive_text(&InboundText {
            provider_message_id: "SMmarked1",
            from: PATIENT,
            to: a.number,
            body: "HELP",
            provider_intent: None,
        })
        .await
        .expect("help");
    let reply = confirmed.reply.clone().expect("HELP is answered");
    tx.receive_text(&InboundText {
        provider_message_id: "SMmarked2",
        from: PATIENT,
        to: a.number,
        body: &format!("{MARK} can I bring my dog?"),
        provider_intent: None,
    })
    .await
    .expect("message");
    let (lead, _) = tx
        .import_lead(&LeadInput {
            phone: phone("+14155550902"),
            name: "Lee Marker".into(),
            email: None,
            time_zone: None,
            consent_source: None,
        })
        .await
        .expect("lead");
    tx.update_lead(
        lead.id,
        &LeadPatch {
            notes: Some(format!("{MARK} prefers mornings")),
            ..LeadPatch::default()
        },
    )
    .await
    .expect("lead notes");
    tx.commit().await.expect("commit");

    // Stored: not one byte of the text, every value of this clinic's new rows encrypted with
    // the current key (the demo clinics' own rows too: the seed writes through the same code).
    let mut admin = t.admin().await;
    let all = stored(&mut admin).await;
    let mut columns = std::collections::BTreeSet::new();
    for (column, org, id, bytes) in &all {
        assert!(
            !bytes.windows(MARK.len()).any(|w| w == MARK.as_bytes()),
            "{column} of {id} holds the text"
        );
        if *org == a.org.as_uuid() {
            assert_eq!(stored_key_id(bytes), Some("test2"), "{column} of {id}");
            columns.insert(column.clone());
        }
    }
    let every: std::collections::BTreeSet<String> = FIELDS
        .iter()
        .map(|f| format!("{}.{}", f.table, f.column))
        .collect();
    assert_eq!(
        columns, every,
        "a value of every encrypted column was written"
    );
    let marked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM calls WHERE position(convert_to($1, 'UTF8') IN transcript) > 0",
    )
    .bind(MARK)
    .fetch_one(&mut admin)
    .await
    .expect("search");
    assert_eq!(marked, 0);

    // Read back through the clinic's transaction: the text as written.
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant");
    let c = tx
        .find::<Contact>(contact.id)
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(c.notes, Some(format!("{MARK} allergic to latex")));
    let c = tx
        .find::<Call>(call.into())
        .await
        .expect("read")
        .expect("call");
    assert_eq!(c.transcript, Some(format!("{MARK} transcript")));
    assert_eq!(c.summary, Some(format!("{MARK} summary")));
    let ap = tx
        .find::<Appointment>(appointment.id)
        .await
        .expect("read")
        .expect("appointment");
    assert_eq!(ap.notes, Some(format!("{MARK} bring the x-rays")));
    let inbox = tx.list_inbox(false, None, 50).await.expect("inbox");
    let bodies: Vec<&str> = inbox
        .iter()
        .map(|m: &InboxMessage| m.body.as_str())
        .collect();
    assert!(
        bodies.contains(&format!("{MARK} please call me back").as_str()),
        "{bodies:?}"
    );
    assert!(
        bodies.contains(&format!("{MARK} can I bring my dog?").as_str()),
        "{bodies:?}"
    );
    let answered = inbox
        .iter()
        .find(|m| m.id == confirmed.message_id)
        .expect("the HELP text");
    assert_eq!(answered.reply.as_deref(), Some(reply.as_str()));
    let sms: Vec<SmsConfirmation> = tx.list_sms_confirmations(None, 50).await.expect("sms");
    let confirmation = sms
        .iter()
        .find(|s| s.appointment_id == Some(appointment.id))
        .expect("the booking's confirmation");
    assert!(
        confirmation.body.contains("confirm"),
        "{}",
        confirmation.body
    );
    let l = tx.find::<Lead>(lead.id).await.expect("read").expect("lead");
    assert_eq!(l.notes, format!("{MARK} prefers mornings"));
    // A retried report seals nothing anew: the stored bytes stay as they are.
    let before = stored(&mut admin).await;
    tx.apply_call_event(&event(
        Some(format!("{MARK} transcript")),
        CallStatus::Completed,
        a.number,
    ))
    .await
    .expect("retried report");
    tx.commit().await.expect("commit");
    assert!(
        stored(&mut admin).await == before,
        "a retried report changed stored bytes"
    );
}

#[tokio::test]
async fn a_value_moved_to_another_row_or_clinic_does_not_open_and_without_keys_nothing_is_shown() {
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seed");
    let notes = |name: &str| ContactFields {
        name: name.into(),
        phone: None,
        email: None,
        notes: Some(format!("{name}'s diagnosis")),
    };
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant");
    let source = tx.insert_contact(&notes("Ann")).await.expect("contact");
    let sibling = tx.insert_contact(&notes("Ben")).await.expect("contact");
    tx.commit().await.expect("commit");
    let mut tx = t.db.tenant(b.org, b.owner).await.expect("tenant");
    let other = tx.insert_contact(&notes("Cai")).await.expect("contact");
    tx.commit().await.expect("commit");

    // A bug, or someone with the database, copies Ann's encrypted notes over Ben's (same
    // clinic) and over Cai's (another clinic).
    let mut admin = t.admin().await;
    let ann: Vec<u8> = sqlx::query_scalar("SELECT notes FROM contacts WHERE id = $1")
        .bind(source.id.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("Ann's notes");
    for target in [sibling.id, other.id] {
        sqlx::query("UPDATE contacts SET notes = $1 WHERE id = $2")
            .bind(&ann)
            .bind(target.as_uuid())
            .execute(&mut admin)
            .await
            .expect("copy");
    }
    // And Ann's whole row, id and all, into the other clinic (a row's key is the clinic and
    // the id, so the same id can be another clinic's row).
    sqlx::query("INSERT INTO contacts (org_id, id, name, notes) VALUES ($1, $2, 'Ann', $3)")
        .bind(b.org.as_uuid())
        .bind(source.id.as_uuid())
        .bind(&ann)
        .execute(&mut admin)
        .await
        .expect("copy the row");
    let undecryptable = |r: Result<Option<Contact>, DbError>| {
        matches!(r, Err(DbError::Crypto(CryptoError::Undecryptable)))
    };
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant");
    assert!(undecryptable(tx.find::<Contact>(sibling.id).await));
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant");
    let ann = tx
        .find::<Contact>(source.id)
        .await
        .expect("read")
        .expect("Ann");
    assert_eq!(ann.notes.as_deref(), Some("Ann's diagnosis"));
    drop(tx);
    let mut tx = t.db.tenant(b.org, b.owner).await.expect("tenant");
    assert!(undecryptable(tx.find::<Contact>(other.id).await));
    let mut tx = t.db.tenant(b.org, b.owner).await.expect("tenant");
    assert!(undecryptable(tx.find::<Contact>(source.id).await));
    drop(tx);

    // With another key (a wrong or lost key), nothing opens either.
    let wrong = Keyring::from_config(&Keyring::generate_key_text("test2"), None).expect("keyring");
    let db = t.db.clone().with_keyring(Arc::new(wrong));
    let mut tx = db.tenant(a.org, a.owner).await.expect("tenant");
    assert!(undecryptable(tx.find::<Contact>(source.id).await));
    drop(tx);

    // Without a keyring, patient text is neither written nor shown.
    let bare = Db::connect(t.app_options(), 2).await.expect("pool");
    let mut tx = bare.tenant(a.org, a.owner).await.expect("tenant");
    assert!(matches!(
        tx.find::<Contact>(source.id).await,
        Err(DbError::Crypto(CryptoError::NoKeyring))
    ));
    drop(tx);
    let mut tx = bare.tenant(a.org, a.owner).await.expect("tenant");
    assert!(matches!(
        tx.insert_contact(&notes("Dee")).await,
        Err(DbError::Crypto(CryptoError::NoKeyring))
    ));
}
