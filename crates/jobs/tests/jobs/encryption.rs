//! The encryption job: text stored before values were encrypted, and values an older key
//! encrypted, are encrypted again with the current key, clinic by clinic, a bounded step at a
//! time; the text stays what it was, a pass resumes where it stopped, and a clinic done is not
//! claimed again until the key changes.

use object_store::memory::InMemory;
use object_store::ObjectStore;
use sqlx::PgConnection;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;
use voxanne_db::contacts::{Contact, ContactFields};
use voxanne_db::crypto::{stored_key_id, Keyring};
use voxanne_db::demo;
use voxanne_db::encrypted::FIELDS;
use voxanne_db::Db;
use voxanne_domain::OrgId;
use voxanne_jobs::{EncryptionConfig, EncryptionJob, EncryptionOutcome, Job, Metrics, Schedule};
use voxanne_testkit::{keyring, TestDb, ENCRYPTION_KEYS_OLD};

/// A key made current after `test2` (32 bytes of 3).
const TEST3: &str = "test3:AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=";

/// A keyring of `current` and the `old` keys (comma-separated).
fn ring(current: &str, old: Option<&str>) -> Arc<Keyring> {
    let old = old.map(|o| secrecy::SecretString::from(o.to_owned()));
    Arc::new(
        Keyring::from_config(
            &secrecy::SecretString::from(current.to_owned()),
            old.as_ref(),
        )
        .expect("keyring"),
    )
}

/// Every non-empty stored value of every encrypted column, by (column, row): the key that
/// encrypted it (`None`: stored as plaintext) and its text.
async fn values(admin: &mut PgConnection) -> BTreeMap<(String, Uuid), (Option<String>, String)> {
    let keyring = keyring();
    let mut all = BTreeMap::new();
    for f in FIELDS {
        let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(&format!(
            "SELECT org_id, id, {} FROM {} WHERE {} IS NOT NULL AND {} <> '\\x00'",
            f.column, f.table, f.column, f.column
        ))
        .fetch_all(&mut *admin)
        .await
        .expect("stored values");
        for (org, id, bytes) in rows {
            let text = keyring
                .open_stored(&bytes, &f.aad(OrgId::from_uuid(org), id))
                .expect("every value opens");
            let text = String::from_utf8(text.to_vec()).expect("text");
            let key = stored_key_id(&bytes).map(str::to_owned);
            all.insert((format!("{}.{}", f.table, f.column), id), (key, text));
        }
    }
    all
}

/// Rows of every encrypted column's table, per clinic: what one pass looks at.
async fn rows_per_clinic(admin: &mut PgConnection) -> BTreeMap<Uuid, usize> {
    let mut all = BTreeMap::new();
    for f in FIELDS {
        let counts: Vec<(Uuid, i64)> = sqlx::query_as(&format!(
            "SELECT org_id, count(*) FROM {} GROUP BY org_id",
            f.table
        ))
        .fetch_all(&mut *admin)
        .await
        .expect("counts");
        for (org, n) in counts {
            *all.entry(org).or_default() += usize::try_from(n).expect("count");
        }
    }
    all
}

async fn notes_of(admin: &mut PgConnection, contact: Uuid) -> Vec<u8> {
    sqlx::query_scalar("SELECT notes FROM contacts WHERE id = $1")
        .bind(contact)
        .fetch_one(admin)
        .await
        .expect("notes")
}

fn job(t: &TestDb, step: u32, steps: u32) -> EncryptionJob {
    job_on(&t.db, Arc::new(InMemory::new()), step, steps, 10)
}

fn job_on(
    db: &Db,
    store: Arc<dyn ObjectStore>,
    step: u32,
    steps: u32,
    recordings_step: u32,
) -> EncryptionJob {
    EncryptionJob::new(
        db.clone(),
        store,
        EncryptionConfig {
            schedule: Schedule {
                batch: 4,
                ..Schedule::default()
            },
            step,
            steps,
            recordings_step,
        },
        Arc::new(Metrics::default()),
    )
}

/// Claims until none is left; the outcomes, in order.
async fn drain(job: &EncryptionJob) -> Vec<(Uuid, EncryptionOutcome)> {
    let mut all = Vec::new();
    for _ in 0..500 {
        let batch = job.claim().await.expect("claim");
        if batch.is_empty() {
            return all;
        }
        for claim in batch {
            let outcome = job.process(&claim).await.expect("encrypt");
            all.push((claim.org_id.as_uuid(), outcome));
        }
    }
    let last = &all[all.len().saturating_sub(4)..];
    panic!(
        "the encryption job never ran out of clinics: {} claims, the last {last:?}",
        all.len()
    );
}

#[tokio::test]
async fn old_plaintext_and_an_older_keys_values_are_encrypted_with_the_current_key() {
    let t = TestDb::new().await;
    let clinics = demo::seed(&t.db).await.expect("seed");
    // Rows as an older version stored them: plaintext (the test kit writes them so).
    for c in &clinics {
        let mut tx = t.db.tenant(c.org, c.owner).await.expect("tenant");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    let mut admin = t.admin().await;
    sqlx::query(
        "UPDATE calls SET transcript = '\\x00'::bytea || convert_to('Asked about a filling.', 'UTF8')
          WHERE transcript IS NOT NULL AND org_id = $1",
    )
    .bind(clinics[1].org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("plaintext transcripts");
    // Values from before a rotation: written by a server whose current key was `test1`.
    let old_keyring = ring(ENCRYPTION_KEYS_OLD, None);
    let old_db = t.db.clone().with_keyring(old_keyring.clone());
    let mut tx = old_db
        .tenant(clinics[0].org, clinics[0].owner)
        .await
        .expect("tenant");
    let old = tx
        .insert_contact(&ContactFields {
            name: "Olga Older".into(),
            phone: None,
            email: None,
            notes: Some("Noted before the rotation".into()),
        })
        .await
        .expect("contact");
    // And the clinic's secrets: a Twilio account and a calendar's tokens.
    let secrets: voxanne_db::integrations::Secrets = [(
        "auth_token".to_owned(),
        secrecy::SecretString::from("twilio-secret"),
    )]
    .into_iter()
    .collect();
    tx.put_integration(
        &old_keyring,
        voxanne_domain::IntegrationProvider::Twilio,
        &serde_json::Map::new(),
        Some(&secrets),
    )
    .await
    .expect("integration");
    let calendar = tx
        .insert_calendar_connection(
            &old_keyring,
            &voxanne_db::calendar_connections::NewCalendarConnection {
                provider: voxanne_domain::CalendarProvider::Google,
                account_email: "front@clinic.example".into(),
                access_token: secrecy::SecretString::from("ya29.old"),
                refresh_token: Some(secrecy::SecretString::from("1//old-refresh")),
                token_expires_at: None,
            },
        )
        .await
        .expect("calendar");
    tx.commit().await.expect("commit");

    let before = values(&mut admin).await;
    let keys = |k: Option<&str>| {
        before
            .values()
            .filter(|(key, _)| key.as_deref() == k)
            .count()
    };
    let (plain, older) = (keys(None), keys(Some("test1")));
    assert!(
        plain >= 6 && older == 1 && keys(Some("test2")) > 0,
        "{before:?}"
    );

    let gauge = |text: String| {
        text.lines()
            .find_map(|l| l.strip_prefix("voxanne_clinics_awaiting_encryption "))
            .map(str::to_owned)
    };
    let metrics = Metrics::default();
    let rendered = metrics.render(&t.db).await.expect("metrics");
    assert_eq!(gauge(rendered), Some("2".to_owned()));

    // Steps of 3 rows, 2 steps a claim: every clinic takes several claims.
    let job = job(&t, 3, 2);
    let outcomes = drain(&job).await;
    let rendered = metrics.render(&t.db).await.expect("metrics");
    assert_eq!(gauge(rendered), Some("0".to_owned()));
    let after = values(&mut admin).await;
    assert!(
        after
            .values()
            .all(|(key, _)| key.as_deref() == Some("test2")),
        "{after:?}"
    );
    let texts = |m: &BTreeMap<(String, Uuid), (Option<String>, String)>| {
        m.iter()
            .map(|(k, (_, text))| (k.clone(), text.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        texts(&after),
        texts(&before),
        "the texts are what they were"
    );
    let encrypted: usize = outcomes.iter().map(|(_, o)| o.encrypted).sum();
    assert_eq!(encrypted, plain + older);

    // Each clinic: several bounded claims, the last one done, and every row looked at once
    // (a claim goes on where the one before it stopped).
    let rows = rows_per_clinic(&mut admin).await;
    for c in &clinics {
        let org = c.org.as_uuid();
        let mine: Vec<&EncryptionOutcome> = outcomes
            .iter()
            .filter(|(o, _)| *o == org)
            .map(|(_, o)| o)
            .collect();
        assert!(mine.len() > 2, "{mine:?}");
        assert!(
            mine.iter().all(|o| !o.abandoned && o.looked <= 6),
            "{mine:?}"
        );
        assert_eq!(mine.iter().filter(|o| o.done).count(), 1, "{mine:?}");
        assert!(mine.last().expect("claims").done);
        let looked: usize = mine.iter().map(|o| o.looked).sum();
        assert_eq!(looked, rows[&org], "{mine:?}");
    }
    let with: Vec<Option<String>> =
        sqlx::query_scalar("SELECT encrypted_with FROM organizations ORDER BY id")
            .fetch_all(&mut admin)
            .await
            .expect("state");
    assert_eq!(with, vec![Some("test2".to_owned()); clinics.len()]);
    // Done: nothing is claimed until the key changes.
    assert!(drain(&job).await.is_empty());

    // The secrets too, at the end of the clinic's pass.
    let secrets_done: usize = outcomes.iter().map(|(_, o)| o.secrets).sum();
    assert_eq!(secrets_done, 2);
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT key_id FROM integration_settings WHERE secrets_enc IS NOT NULL
         UNION ALL SELECT key_id FROM calendar_connections",
    )
    .fetch_all(&mut admin)
    .await
    .expect("key ids");
    assert!(
        keys.len() >= 3 && keys.iter().all(|k| k == "test2"),
        "{keys:?}"
    );

    // The clinic reads what it wrote before the rotation with the current key only.
    let current_only = ring(voxanne_testkit::ENCRYPTION_KEY, None);
    let db = t.db.clone().with_keyring(current_only.clone());
    let mut tx = db
        .tenant(clinics[0].org, clinics[0].owner)
        .await
        .expect("tenant");
    let read = tx
        .find::<Contact>(old.id)
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(read.notes.as_deref(), Some("Noted before the rotation"));
    let twilio = tx
        .get_integration(voxanne_domain::IntegrationProvider::Twilio)
        .await
        .expect("read")
        .expect("integration");
    let opened = twilio
        .open_secrets(&current_only, clinics[0].org)
        .expect("secrets");
    assert_eq!(
        opened
            .get("auth_token")
            .map(secrecy::ExposeSecret::expose_secret),
        Some("twilio-secret")
    );
    let tokens = tx
        .calendar_tokens(&current_only, calendar.id.as_uuid())
        .await
        .expect("read")
        .expect("tokens");
    assert_eq!(
        tokens
            .refresh_token
            .as_ref()
            .map(secrecy::ExposeSecret::expose_secret),
        Some("1//old-refresh")
    );
}

#[tokio::test]
async fn a_new_key_starts_a_new_pass_after_which_the_older_keys_can_be_retired() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let job = job(&t, 500, 20);
    drain(&job).await;

    // The key is rotated: `test3` is current, `test2` and `test1` still read.
    let older = format!("{},{ENCRYPTION_KEYS_OLD}", voxanne_testkit::ENCRYPTION_KEY);
    let db = t.db.clone().with_keyring(ring(TEST3, Some(&older)));
    let job = job_on(&db, Arc::new(InMemory::new()), 500, 20, 10);
    let claims = job.claim().await.expect("claim");
    assert_eq!(claims.len(), 2, "every clinic again: {claims:?}");
    assert!(claims.iter().all(|c| c.field == 0 && c.after.is_none()));
    // A value written with the new key is left as it is.
    let mut tx = db.tenant(a.org, a.owner).await.expect("tenant");
    let fresh = tx
        .insert_contact(&ContactFields {
            name: "Nia New".into(),
            phone: None,
            email: None,
            notes: Some("Written after the rotation".into()),
        })
        .await
        .expect("contact");
    tx.commit().await.expect("commit");
    let mut admin = t.admin().await;
    let written = notes_of(&mut admin, fresh.id.as_uuid()).await;
    for claim in &claims {
        let outcome = job.process(claim).await.expect("encrypt");
        assert!(outcome.done && outcome.encrypted > 0, "{outcome:?}");
    }
    let notes = notes_of(&mut admin, fresh.id.as_uuid()).await;
    assert_eq!(notes, written, "not rewritten");
    assert_eq!(stored_key_id(&notes), Some("test3"));
    let mut tx = db.tenant(a.org, a.owner).await.expect("tenant");
    let read = tx
        .find::<Contact>(fresh.id)
        .await
        .expect("read")
        .expect("contact");
    assert_eq!(read.notes.as_deref(), Some("Written after the rotation"));
    drop(tx);
    // Every value is now the new key's: a server that no longer has the older keys reads all.
    let only_new = ring(TEST3, None);
    for (column, org_id, id, bytes) in {
        let mut all = Vec::new();
        for f in FIELDS {
            let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(&format!(
                "SELECT org_id, id, {} FROM {} WHERE {} IS NOT NULL AND {} <> '\\x00'",
                f.column, f.table, f.column, f.column
            ))
            .fetch_all(&mut admin)
            .await
            .expect("values");
            all.extend(rows.into_iter().map(|(o, i, b)| (f, o, i, b)));
        }
        all
    } {
        assert!(
            only_new
                .open_stored(&bytes, &column.aad(OrgId::from_uuid(org_id), id))
                .is_ok(),
            "{column:?} {id}"
        );
    }
}
