//! The retention purge: exactly what is past each clinic's retention goes (objects from
//! storage first, then the rows), nothing a legal hold covers, nothing of another clinic; a
//! second run finds nothing, a purge cut off half way resumes, and a claim does a bounded
//! amount of work.

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sqlx::PgConnection;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::retention::{HoldTarget, RetentionPolicy};
use voxanne_db::{demo, DbError};
use voxanne_domain::{CallId, ContactId};
use voxanne_jobs::{Job, Metrics, PurgeOutcome, RetentionConfig, RetentionJob, Schedule};
use voxanne_testkit::TestDb;

struct Setup {
    t: TestDb,
    _dir: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
}

async fn setup() -> (Setup, [demo::DemoClinic; 2]) {
    let t = TestDb::new().await;
    let clinics = demo::seed(&t.db).await.expect("seed");
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
    (
        Setup {
            t,
            _dir: dir,
            store,
        },
        clinics,
    )
}

fn job(s: &Setup, step: u32, steps: u32) -> RetentionJob {
    RetentionJob::new(
        s.t.db.clone(),
        s.store.clone(),
        RetentionConfig {
            schedule: Schedule {
                batch: 4,
                ..Schedule::default()
            },
            step,
            steps,
            every: Duration::from_secs(3600),
        },
        Arc::new(Metrics::default()),
    )
}

/// Runs claims until none is due; the outcomes, in order.
async fn drain(job: &RetentionJob) -> Vec<(Uuid, PurgeOutcome)> {
    let mut all = Vec::new();
    for _ in 0..50 {
        // Claim and process as a round does, with a failure failing the test (a round logs
        // it and goes on).
        let batch = job.claim().await.expect("claim");
        if batch.is_empty() {
            return all;
        }
        for claim in batch {
            let outcome = job.process(&claim).await.expect("purge");
            all.push((claim.org_id.as_uuid(), outcome));
        }
    }
    panic!("the purge never ran out of due work: {all:?}");
}

/// Makes every clinic due again (as if an hour had passed).
async fn due_again(admin: &mut PgConnection) {
    sqlx::query("UPDATE organizations SET purge_due_at = '-infinity', purge_lease_until = NULL")
        .execute(admin)
        .await
        .expect("due");
}

async fn contact(admin: &mut PgConnection, org: Uuid, name: &str, phone: &str) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO contacts (org_id, name, phone) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(org)
    .bind(name)
    .bind(phone)
    .fetch_one(admin)
    .await
    .expect("contact")
}

/// A completed call `days` ago with a transcript, a summary, a live transcript line and a
/// recording in `status`; a stored one's object is put in the store unless `object` is false.
async fn call(
    s: &Setup,
    admin: &mut PgConnection,
    org: Uuid,
    contact: Option<Uuid>,
    days: i32,
    status: &str,
    object: bool,
) -> Uuid {
    let id = Uuid::new_v4();
    let path = format!("{org}/recordings/{id}.mp3");
    sqlx::query(
        "INSERT INTO calls (org_id, id, contact_id, direction, status, from_number, to_number,
                            started_at, ended_at, recording_status, recording_path, transcript,
                            summary)
         VALUES ($1, $2, $3, 'inbound', 'completed', '+14155550123', '+14155550100',
                 now() - make_interval(days => $4), now() - make_interval(days => $4),
                 $5, CASE WHEN $5 = 'stored' THEN $6 END,
                 '\\x00'::bytea || convert_to('I would like to book a cleaning.', 'UTF8'),
                 '\\x00'::bytea || convert_to('Booked a cleaning.', 'UTF8'))",
    )
    .bind(org)
    .bind(id)
    .bind(contact)
    .bind(days)
    .bind(status)
    .bind(&path)
    .execute(&mut *admin)
    .await
    .expect("call");
    sqlx::query(
        "INSERT INTO call_transcript_lines (org_id, call_id, role, text)
         VALUES ($1, $2, 'user', '\\x00'::bytea || convert_to('My tooth hurts.', 'UTF8'))",
    )
    .bind(org)
    .bind(id)
    .execute(&mut *admin)
    .await
    .expect("line");
    if status == "stored" && object {
        s.store
            .put(&Path::from(path), PutPayload::from_static(b"ID3 audio"))
            .await
            .expect("object");
    }
    id
}

/// A sent SMS (or one in `status`) `days` ago, about an appointment of `contact` if given.
async fn sms(
    admin: &mut PgConnection,
    org: Uuid,
    contact: Option<Uuid>,
    days: i32,
    status: &str,
) -> Uuid {
    let appointment: Option<Uuid> = match contact {
        Some(contact) => Some(
            sqlx::query_scalar(
                "INSERT INTO appointments (org_id, contact_id, resource, starts_at, ends_at)
                 VALUES ($1, $2, $4, now() - make_interval(days => $3),
                         now() - make_interval(days => $3) + interval '30 minutes')
                 RETURNING id",
            )
            .bind(org)
            .bind(contact)
            .bind(days)
            // A resource of its own: appointments of one resource may not overlap.
            .bind(Uuid::new_v4().to_string())
            .fetch_one(&mut *admin)
            .await
            .expect("appointment"),
        ),
        None => None,
    };
    sqlx::query_scalar(
        "INSERT INTO sms_confirmation_logs (org_id, appointment_id, to_number, body, status,
                                            created_at)
         VALUES ($1, $2, '+14155550123', '\\x00'::bytea || convert_to('Your cleaning is on Tuesday at 10:00.', 'UTF8'), $3,
                 now() - make_interval(days => $4))
         RETURNING id",
    )
    .bind(org)
    .bind(appointment)
    .bind(status)
    .bind(days)
    .fetch_one(admin)
    .await
    .expect("sms")
}

async fn inbox(admin: &mut PgConnection, org: Uuid, contact: Uuid, days: i32) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO inbox_messages (org_id, channel, kind, from_number, body, caller_name,
                                     reply, contact_id, created_at)
         VALUES ($1, 'sms', 'message', '+14155550123', '\\x00'::bytea || convert_to('Can I move my root canal?', 'UTF8'), 'Ann',
                 '\\x00'::bytea || convert_to('We will call you back.', 'UTF8'), $2, now() - make_interval(days => $3))
         RETURNING id",
    )
    .bind(org)
    .bind(contact)
    .bind(days)
    .fetch_one(admin)
    .await
    .expect("inbox")
}

/// What is left of a call: (recording status, path, transcript, summary, live lines);
/// `None` when it is gone.
type CallState = (String, Option<String>, Option<String>, Option<String>, i64);

async fn call_state(admin: &mut PgConnection, id: Uuid) -> Option<CallState> {
    sqlx::query_as(
        "SELECT c.recording_status, c.recording_path,
                convert_from(substring(c.transcript FROM 2), 'UTF8'),
                convert_from(substring(c.summary FROM 2), 'UTF8'),
                (SELECT count(*) FROM call_transcript_lines l
                  WHERE l.org_id = c.org_id AND l.call_id = c.id)
           FROM calls c WHERE c.id = $1",
    )
    .bind(id)
    .fetch_optional(admin)
    .await
    .expect("call state")
}

async fn object_exists(s: &Setup, org: Uuid, call: Uuid) -> bool {
    let path = Path::from(format!("{org}/recordings/{call}.mp3"));
    match s.store.head(&path).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(e) => panic!("head: {e}"),
    }
}

async fn sms_body(admin: &mut PgConnection, id: Uuid) -> String {
    sqlx::query_scalar(
        "SELECT convert_from(substring(body FROM 2), 'UTF8') FROM sms_confirmation_logs WHERE id = $1",
    )
        .bind(id)
        .fetch_one(admin)
        .await
        .expect("sms body")
}

async fn inbox_state(
    admin: &mut PgConnection,
    id: Uuid,
) -> (String, Option<String>, Option<String>) {
    sqlx::query_as(
        "SELECT convert_from(substring(body FROM 2), 'UTF8'), caller_name,
                convert_from(substring(reply FROM 2), 'UTF8')
           FROM inbox_messages WHERE id = $1",
    )
    .bind(id)
    .fetch_one(admin)
    .await
    .expect("inbox state")
}

/// Everything a clinic holds that the purge could touch, as text, and its objects in storage.
async fn snapshot(s: &Setup, admin: &mut PgConnection, org: Uuid) -> Vec<String> {
    let mut rows = Vec::new();
    for table in [
        "calls",
        "call_transcript_lines",
        "sms_confirmation_logs",
        "inbox_messages",
        "appointments",
        "contacts",
        "legal_holds",
        "retention_purges",
    ] {
        // Dynamic: the table names above.
        let sql = format!(
            "SELECT '{table} ' || row_to_json(t)::text FROM {table} t WHERE org_id = $1
              ORDER BY 1"
        );
        let table_rows: Vec<String> = sqlx::query_scalar(&sql)
            .bind(org)
            .fetch_all(&mut *admin)
            .await
            .expect("snapshot");
        rows.extend(table_rows);
    }
    let mut objects: Vec<String> = futures_util::TryStreamExt::try_collect::<Vec<_>>(
        s.store.list(Some(&Path::from(org.to_string()))),
    )
    .await
    .expect("list")
    .into_iter()
    .map(|o| format!("object {}", o.location))
    .collect();
    objects.sort();
    rows.extend(objects);
    rows
}

async fn purges(admin: &mut PgConnection, org: Uuid) -> Vec<(String, i32)> {
    sqlx::query_as(
        "SELECT kind, sum(items)::int FROM retention_purges WHERE org_id = $1
          GROUP BY kind ORDER BY kind",
    )
    .bind(org)
    .fetch_all(admin)
    .await
    .expect("purges")
}

const SHORT: RetentionPolicy = RetentionPolicy {
    recordings_days: 30,
    transcripts_days: 60,
    sms_days: 30,
    calls_days: 365,
    access_log_days: 2190,
};

#[tokio::test]
async fn the_purge_removes_exactly_what_is_due_and_nothing_held_or_of_another_clinic() {
    let (s, [a, b]) = setup().await;
    let (org, other) = (a.org.as_uuid(), b.org.as_uuid());
    let mut admin = s.t.admin().await;
    let mut tx = s.t.db.tenant(a.org, a.owner).await.expect("tx");
    tx.set_retention_policy(&SHORT).await.expect("policy");
    tx.commit().await.expect("commit");

    let held_patient = contact(&mut admin, org, "Hal Held", "+14155550901").await;
    let patient = contact(&mut admin, org, "Fay Free", "+14155550902").await;
    let p = Some(patient);
    let old = call(&s, &mut admin, org, p, 400, "stored", true).await;
    let mid = call(&s, &mut admin, org, p, 100, "stored", true).await;
    let recent = call(&s, &mut admin, org, p, 40, "stored", true).await;
    let new = call(&s, &mut admin, org, p, 5, "stored", true).await;
    // Its object already gone (a purge cut off after deleting it): counts as removed.
    let gone = call(&s, &mut admin, org, p, 50, "stored", false).await;
    // Its recording still in the pipeline: the call waits, its transcript does not.
    let in_flight = call(&s, &mut admin, org, p, 400, "queued", false).await;
    let held_call = call(&s, &mut admin, org, p, 400, "stored", true).await;
    let of_held = call(&s, &mut admin, org, Some(held_patient), 400, "stored", true).await;
    // What names the oldest call and keeps its history without it.
    let booked: Uuid = sqlx::query_scalar(
        "INSERT INTO appointments (org_id, contact_id, call_id, resource, starts_at, ends_at)
         VALUES ($1, $2, $3, 'purge-test', now() - interval '399 days',
                 now() - interval '399 days' + interval '30 minutes')
         RETURNING id",
    )
    .bind(org)
    .bind(patient)
    .bind(old)
    .fetch_one(&mut admin)
    .await
    .expect("appointment");
    sqlx::query(
        "INSERT INTO credit_transactions (org_id, call_id, amount_cents, reason)
         VALUES ($1, $2, -12, 'call') RETURNING 1",
    )
    .bind(org)
    .bind(old)
    .execute(&mut admin)
    .await
    .expect("credit");
    let sent = sms(&mut admin, org, p, 40, "delivered").await;
    let queued = sms(&mut admin, org, p, 40, "queued").await;
    let fresh = sms(&mut admin, org, p, 5, "sent").await;
    let held_sms = sms(&mut admin, org, Some(held_patient), 40, "sent").await;
    let no_patient = sms(&mut admin, org, None, 40, "failed").await;
    let message = inbox(&mut admin, org, patient, 40).await;
    let held_message = inbox(&mut admin, org, held_patient, 40).await;

    let mut tx = s.t.db.tenant(a.org, a.owner).await.expect("tx");
    let hold = tx
        .place_legal_hold(HoldTarget::Call(CallId::from_uuid(held_call)), "Claim 42")
        .await
        .expect("hold")
        .expect("the call is the clinic's");
    tx.place_legal_hold(
        HoldTarget::Contact(ContactId::from_uuid(held_patient)),
        "Litigation",
    )
    .await
    .expect("hold")
    .expect("the contact is the clinic's");
    tx.commit().await.expect("commit");

    // The other clinic: the same data, at ages its (default) retention keeps.
    let b_patient = contact(&mut admin, other, "Bo Other", "+14155550903").await;
    for days in [100, 200, 300] {
        call(&s, &mut admin, other, Some(b_patient), days, "stored", true).await;
        sms(&mut admin, other, Some(b_patient), days, "delivered").await;
        inbox(&mut admin, other, b_patient, days).await;
    }
    let before = snapshot(&s, &mut admin, other).await;

    let job = job(&s, 200, 5);
    let outcomes = drain(&job).await;
    let mine: Vec<&PurgeOutcome> = outcomes
        .iter()
        .filter(|(o, _)| *o == org)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(mine.len(), 1, "{outcomes:?}");
    assert_eq!(
        (
            mine[0].recordings,
            mine[0].transcripts,
            mine[0].sms_bodies,
            mine[0].calls
        ),
        // old, mid, recent, gone; old, mid, in_flight; sent, no_patient, message; old.
        (4, 3, 3, 1),
        "{:?}",
        mine[0]
    );
    assert!(!mine[0].more && !mine[0].abandoned);

    let text = |s: &str| Some(s.to_owned());
    let transcript = text("I would like to book a cleaning.");
    let summary = text("Booked a cleaning.");
    assert_eq!(
        call_state(&mut admin, old).await,
        None,
        "past every retention"
    );
    let kept: (Option<Uuid>, i64) = sqlx::query_as(
        "SELECT (SELECT call_id FROM appointments WHERE id = $1),
                (SELECT count(*) FROM credit_transactions WHERE org_id = $2 AND amount_cents = -12
                    AND call_id IS NULL)",
    )
    .bind(booked)
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .expect("kept");
    assert_eq!(
        kept,
        (None, 1),
        "the appointment and the charge keep their history"
    );
    assert_eq!(
        call_state(&mut admin, mid).await,
        Some(("purged".into(), None, None, None, 0))
    );
    assert_eq!(
        call_state(&mut admin, recent).await,
        Some((
            "purged".into(),
            None,
            transcript.clone(),
            summary.clone(),
            1
        ))
    );
    assert_eq!(
        call_state(&mut admin, gone).await,
        Some((
            "purged".into(),
            None,
            transcript.clone(),
            summary.clone(),
            1
        ))
    );
    assert_eq!(
        call_state(&mut admin, in_flight).await,
        Some(("queued".into(), None, None, None, 0))
    );
    for kept in [new, held_call, of_held] {
        let state = call_state(&mut admin, kept).await.expect("kept");
        assert_eq!(
            (state.0.as_str(), &state.2, &state.3, state.4),
            ("stored", &transcript, &summary, 1),
            "{kept}"
        );
        assert!(object_exists(&s, org, kept).await, "{kept}");
    }
    for purged in [old, mid, recent] {
        assert!(!object_exists(&s, org, purged).await, "{purged}");
    }
    let body = "Your cleaning is on Tuesday at 10:00.";
    assert_eq!(sms_body(&mut admin, sent).await, "");
    assert_eq!(sms_body(&mut admin, no_patient).await, "");
    for kept in [queued, fresh, held_sms] {
        assert_eq!(sms_body(&mut admin, kept).await, body, "{kept}");
    }
    assert_eq!(
        inbox_state(&mut admin, message).await,
        (String::new(), None, None)
    );
    assert_eq!(
        inbox_state(&mut admin, held_message).await,
        (
            "Can I move my root canal?".to_owned(),
            text("Ann"),
            text("We will call you back.")
        )
    );
    assert_eq!(
        purges(&mut admin, org).await,
        [
            ("call".to_owned(), 1),
            ("recording".to_owned(), 4),
            ("sms_body".to_owned(), 3),
            ("transcript".to_owned(), 3)
        ]
    );
    // An access record per purged row, by the job.
    let records: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT subject_kind, action, count(*) FROM access_log
          WHERE org_id = $1 AND via = 'job:retention' AND actor_kind = 'system'
          GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(org)
    .fetch_all(&mut admin)
    .await
    .expect("records");
    let records: Vec<(&str, &str, i64)> = records
        .iter()
        .map(|(s, a, n)| (s.as_str(), a.as_str(), *n))
        .collect();
    assert_eq!(
        records,
        [
            ("call", "delete", 1),
            ("inbox_message", "update", 1),
            ("recording", "delete", 4),
            ("sms", "update", 2),
            ("transcript", "update", 3)
        ]
    );
    assert_eq!(
        snapshot(&s, &mut admin, other).await,
        before,
        "the other clinic changed"
    );
    assert!(purges(&mut admin, other).await.is_empty());

    // A second run finds nothing: no row, object or record changes.
    let after = snapshot(&s, &mut admin, org).await;
    due_again(&mut admin).await;
    let again = drain(&job).await;
    assert!(
        again.iter().all(|(_, o)| *o == PurgeOutcome::default()),
        "{again:?}"
    );
    assert_eq!(snapshot(&s, &mut admin, org).await, after);

    // Released, the held call goes at the next run (it is past every retention).
    let mut tx = s.t.db.tenant(a.org, a.owner).await.expect("tx");
    assert!(tx.release_legal_hold(hold.id).await.expect("release"));
    tx.commit().await.expect("commit");
    due_again(&mut admin).await;
    drain(&job).await;
    assert_eq!(call_state(&mut admin, held_call).await, None);
    assert!(!object_exists(&s, org, held_call).await);
    assert!(
        call_state(&mut admin, of_held).await.is_some(),
        "still held"
    );
    assert_eq!(snapshot(&s, &mut admin, other).await, before);
}

#[tokio::test]
async fn a_claim_does_a_bounded_amount_and_the_clinic_is_due_again_until_done() {
    let (s, [a, _]) = setup().await;
    let org = a.org.as_uuid();
    let mut admin = s.t.admin().await;
    let mut tx = s.t.db.tenant(a.org, a.owner).await.expect("tx");
    tx.set_retention_policy(&SHORT).await.expect("policy");
    tx.commit().await.expect("commit");
    let mut calls = Vec::new();
    for _ in 0..7 {
        calls.push(call(&s, &mut admin, org, None, 100, "stored", true).await);
    }
    let job = job(&s, 2, 1);
    let outcomes: Vec<PurgeOutcome> = drain(&job)
        .await
        .into_iter()
        .filter(|(o, _)| *o == org)
        .map(|(_, o)| o)
        .collect();
    // 7 recordings and 7 transcripts, 2 of each per claim.
    let recordings: Vec<usize> = outcomes.iter().map(|o| o.recordings).collect();
    assert_eq!(recordings, [2, 2, 2, 1], "{outcomes:?}");
    let transcripts: Vec<usize> = outcomes.iter().map(|o| o.transcripts).collect();
    assert_eq!(transcripts, [2, 2, 2, 1], "{outcomes:?}");
    let more: Vec<bool> = outcomes.iter().map(|o| o.more).collect();
    assert_eq!(more, [true, true, true, false]);
    for id in calls {
        assert_eq!(
            call_state(&mut admin, id).await,
            Some(("purged".into(), None, None, None, 0))
        );
    }
    let due_in: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM purge_due_at - now())::float8 FROM organizations WHERE id = $1",
    )
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .expect("due");
    assert!(due_in > 3000.0, "due again in {due_in} s");
}

#[tokio::test]
async fn a_hold_placed_during_a_purge_step_waits_for_it_and_a_hold_cannot_name_another_clinics_call(
) {
    let (s, [a, b]) = setup().await;
    let mut admin = s.t.admin().await;
    let theirs = call(&s, &mut admin, b.org.as_uuid(), None, 400, "none", false).await;
    let mine = call(&s, &mut admin, a.org.as_uuid(), None, 400, "none", false).await;

    let mut tx = s.t.db.tenant(a.org, a.owner).await.expect("tx");
    let forged = tx
        .place_legal_hold(HoldTarget::Call(CallId::from_uuid(theirs)), "Forged")
        .await
        .expect("no error");
    assert!(forged.is_none(), "a hold on another clinic's call");
    drop(tx);

    // A purge step in flight holds the clinic's purge lock.
    let mut step = s.t.db.job_tenant(a.org).await.expect("step");
    step.lock_purge().await.expect("lock");
    let db = s.t.db.clone();
    let (org, owner) = (a.org, a.owner);
    let placing = tokio::spawn(async move {
        let mut tx = db.tenant(org, owner).await.expect("tx");
        let hold = tx
            .place_legal_hold(HoldTarget::Call(CallId::from_uuid(mine)), "Claim 7")
            .await?;
        tx.commit().await?;
        Ok::<_, DbError>(hold)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!placing.is_finished(), "the hold did not wait for the step");
    step.commit().await.expect("step commit");
    let hold = tokio::time::timeout(Duration::from_secs(10), placing)
        .await
        .expect("placed after the step")
        .expect("no panic")
        .expect("placed");
    assert!(hold.is_some());

    // A second hold on the same call is refused.
    let mut tx = s.t.db.tenant(a.org, a.owner).await.expect("tx");
    let second = tx
        .place_legal_hold(HoldTarget::Call(CallId::from_uuid(mine)), "Again")
        .await;
    assert!(
        matches!(second, Err(DbError::Constraint { .. })),
        "{second:?}"
    );
}

/// `n` access records of `org` from seven years ago, a second apart (as the superuser, with
/// the trigger that stamps a new record's time turned off), unsealed.
async fn old_records(admin: &mut PgConnection, org: Uuid, n: i32) {
    // (On Citus, a trigger of a distributed table is changed only with this set.)
    sqlx::query("SET citus.enable_unsafe_triggers = on")
        .execute(&mut *admin)
        .await
        .expect("set");
    sqlx::query("ALTER TABLE access_log DISABLE TRIGGER access_log_new_record")
        .execute(&mut *admin)
        .await
        .expect("disable");
    sqlx::query(
        "INSERT INTO access_log (org_id, at, actor_kind, subject_kind, action, via)
         SELECT $1, now() - interval '7 years' + g * interval '1 second', 'system', 'call',
                'read', 'test'
           FROM generate_series(1, $2) g
         RETURNING 1",
    )
    .bind(org)
    .bind(n)
    .execute(&mut *admin)
    .await
    .expect("old records");
    sqlx::query("ALTER TABLE access_log ENABLE TRIGGER access_log_new_record")
        .execute(&mut *admin)
        .await
        .expect("enable");
}

async fn broken_chains(admin: &mut PgConnection) -> Vec<(Uuid, i64, String)> {
    sqlx::query_as("SELECT org_id, seq, problem FROM app.broken_access_chains() ORDER BY 1")
        .fetch_all(admin)
        .await
        .expect("chains")
}

async fn old_left(admin: &mut PgConnection, org: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM access_log WHERE org_id = $1 AND at < now() - interval '6 years'",
    )
    .bind(org)
    .fetch_one(admin)
    .await
    .expect("count")
}

#[tokio::test]
async fn the_access_logs_oldest_records_go_and_its_chain_still_verifies_from_a_checkpoint() {
    let (s, [a, b]) = setup().await;
    let (org, other) = (a.org.as_uuid(), b.org.as_uuid());
    let mut admin = s.t.admin().await;
    old_records(&mut admin, org, 12).await;
    old_records(&mut admin, other, 12).await;
    // The other clinic keeps its log longer than seven years.
    let mut tx = s.t.db.tenant(b.org, b.owner).await.expect("tx");
    tx.set_retention_policy(&RetentionPolicy {
        access_log_days: 3000,
        ..voxanne_db::retention::DEFAULTS
    })
    .await
    .expect("policy");
    tx.commit().await.expect("commit");
    let sealer = voxanne_jobs::AccessLogSealer::new(
        s.t.db.clone(),
        voxanne_jobs::SealConfig {
            every: Duration::from_millis(50),
            orgs: 10,
            batch: 1000,
        },
    );
    sealer.drain().await.expect("seal");
    assert!(broken_chains(&mut admin).await.is_empty());
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .expect("count");

    let outcomes: Vec<usize> = drain(&job(&s, 5, 1))
        .await
        .into_iter()
        .filter(|(o, _)| *o == org)
        .map(|(_, o)| o.access_records)
        .collect();
    assert_eq!(outcomes, [5, 5, 2], "a bounded amount per claim");
    assert_eq!(old_left(&mut admin, org).await, 0);
    assert_eq!(
        old_left(&mut admin, other).await,
        12,
        "the other clinic's went too"
    );
    assert_eq!(
        broken_chains(&mut admin).await,
        [],
        "the chain does not verify after the purge"
    );
    let checkpoint: (i64, i64) = sqlx::query_as(
        "SELECT count(*), max(through_seq) FROM access_log_checkpoints WHERE org_id = $1",
    )
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .expect("checkpoints");
    assert_eq!(checkpoint, (3, 12));
    assert_eq!(
        purges(&mut admin, org).await,
        [("access_log".to_owned(), 12)]
    );
    assert!(purges(&mut admin, other).await.is_empty());
    // What was left, and the purge's own record of it.
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log WHERE org_id = $1")
        .bind(org)
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(
        left,
        total - 12 + 3,
        "the newer records and one per step remain"
    );

    // The application can neither write a checkpoint nor purge outside a clinic's transaction.
    let mut tx = s.t.db.job_tenant(a.org).await.expect("tx");
    let forged = sqlx::query(
        "INSERT INTO access_log_checkpoints (org_id, through_seq, hash)
         VALUES ($1, 99, sha256('x'))",
    )
    .bind(org)
    .execute(tx.conn())
    .await;
    let code = |e: &sqlx::Error| {
        e.as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned())
    };
    assert_eq!(
        forged.as_ref().err().and_then(code).as_deref(),
        Some("42501"),
        "{forged:?}"
    );
    drop(tx);
    let mut app = s.t.app_conn().await;
    let outside = sqlx::query("SELECT app.purge_access_log(10, 'forged')")
        .execute(&mut app)
        .await;
    assert_eq!(
        outside.as_ref().err().and_then(code).as_deref(),
        Some("42501"),
        "{outside:?}"
    );

    // A superuser removing the checkpoint (or the first record left) breaks the chain.
    sqlx::query("DELETE FROM access_log_checkpoints WHERE org_id = $1")
        .bind(org)
        .execute(&mut admin)
        .await
        .expect("tamper");
    let broken = broken_chains(&mut admin).await;
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert_eq!(
        (broken[0].0, broken[0].1, broken[0].2.as_str()),
        (org, 13, "a record is missing before it")
    );
}
