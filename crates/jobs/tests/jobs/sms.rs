//! Claiming SMS confirmations: fair across clinics, one statement, active clinics only, and a
//! claim taken over after its lease ran out leaves its first holder powerless. (Sending, end
//! to end through the API and a fake provider, is in crates/http/tests/api/sms.rs.)

use std::collections::HashSet;
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::recordings::AfterFailure;
use voxanne_db::system::{claim_sms, requeue_stale_sms};
use voxanne_domain::{OrgId, SmsStatus};
use voxanne_testkit::TestDb;

const LEASE: Duration = Duration::from_secs(300);

/// Creates `n` active orgs (as the superuser) and returns their ids.
async fn orgs(t: &TestDb, n: i32) -> Vec<Uuid> {
    let mut admin = t.admin().await;
    sqlx::query_scalar(
        "INSERT INTO organizations (name) SELECT 'Clinic ' || g FROM generate_series(1, $1) g RETURNING id",
    )
    .bind(n)
    .fetch_all(&mut admin)
    .await
    .expect("orgs")
}

/// Queues `n` messages for `org`, created `age_minutes` ago. Returns their ids, oldest first.
async fn queue(t: &TestDb, org: Uuid, n: i32, age_minutes: i32) -> Vec<Uuid> {
    let mut admin = t.admin().await;
    sqlx::query_scalar(
        "INSERT INTO sms_confirmation_logs (org_id, to_number, body, created_at)
         SELECT $1, '+1415555' || lpad(g::text, 4, '0'), '\\x00'::bytea || convert_to('See you soon', 'UTF8'),
                now() - make_interval(mins => $3) + g * interval '1 millisecond'
           FROM generate_series(1, $2) g
         RETURNING id",
    )
    .bind(org)
    .bind(n)
    .bind(age_minutes)
    .fetch_all(&mut admin)
    .await
    .expect("queue")
}

async fn row(t: &TestDb, id: Uuid) -> (String, i32, Option<String>) {
    let mut admin = t.admin().await;
    sqlx::query_as(
        "SELECT status, attempts, provider_message_id FROM sms_confirmation_logs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut admin)
    .await
    .expect("row")
}

#[tokio::test]
async fn a_backlog_of_one_clinic_does_not_starve_another_clinics_single_message() {
    let t = TestDb::new().await;
    let all = orgs(&t, 3).await;
    // The big clinic's backlog is older than anything else: FIFO would serve it first for
    // 25 batches.
    queue(&t, all[0], 500, 60).await;
    let single = queue(&t, all[1], 1, 1).await[0];
    let also = queue(&t, all[2], 1, 1).await[0];
    let batch = claim_sms(&t.db, 20, LEASE).await.expect("claim");
    assert_eq!(batch.len(), 20);
    let ids: HashSet<Uuid> = batch.iter().map(|j| j.sms_id.as_uuid()).collect();
    assert!(
        ids.contains(&single) && ids.contains(&also),
        "the single messages wait behind the backlog"
    );
    assert_eq!(
        batch
            .iter()
            .filter(|j| j.org_id.as_uuid() == all[0])
            .count(),
        18,
        "the rest of the batch is the backlog's"
    );
    assert!(batch.iter().all(|j| j.attempt == 1));
    assert_eq!(row(&t, single).await.0, "sending");
    let again = claim_sms(&t.db, 20, LEASE).await.expect("claim");
    assert!(
        again.iter().all(|j| !ids.contains(&j.sms_id.as_uuid())),
        "a claimed message is not claimed twice"
    );
}

#[tokio::test]
async fn suspended_clinics_and_messages_in_backoff_are_not_claimed() {
    let t = TestDb::new().await;
    let all = orgs(&t, 3).await;
    let (active, suspended, waiting) = (all[0], all[1], all[2]);
    let mine = queue(&t, active, 1, 1).await;
    queue(&t, suspended, 1, 1).await;
    let later = queue(&t, waiting, 1, 1).await;
    let mut admin = t.admin().await;
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(suspended)
        .execute(&mut admin)
        .await
        .expect("suspend");
    sqlx::query(
        "UPDATE sms_confirmation_logs SET next_attempt_at = now() + interval '1 hour' WHERE id = $1",
    )
    .bind(later[0])
    .execute(&mut admin)
    .await
    .expect("backoff");
    let batch = claim_sms(&t.db, 20, LEASE).await.expect("claim");
    let ids: Vec<Uuid> = batch.iter().map(|j| j.sms_id.as_uuid()).collect();
    assert_eq!(ids, mine);
}

#[tokio::test]
async fn the_sms_functions_are_owned_by_the_system_role_with_a_fixed_search_path_and_the_claim_is_one_query(
) {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    for function in [
        "app.claim_sms(integer, interval)",
        "app.requeue_stale_sms()",
        "app.sms_queue_depth()",
    ] {
        let (lang, owner, definer, body, config): (String, String, bool, String, Vec<String>) =
            sqlx::query_as(
                "SELECT l.lanname::text, pg_get_userbyid(p.proowner)::text, p.prosecdef, p.prosrc,
                        coalesce(p.proconfig, '{}')
                   FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                  WHERE p.oid = $1::regprocedure",
            )
            .bind(function)
            .fetch_one(&mut admin)
            .await
            .expect("function");
        let claim = function.starts_with("app.claim_sms");
        assert_eq!(
            (lang.as_str(), owner.as_str(), definer),
            (
                if claim { "plpgsql" } else { "sql" },
                "voxanne_system",
                true
            ),
            "{function}"
        );
        assert_eq!(
            config,
            ["search_path=pg_catalog, pg_temp"],
            "{function}: search_path"
        );
        if claim {
            // One query claims the batch, after the queue's turn lock (migrations/0027).
            assert_eq!(
                body.matches("RETURN QUERY").count(),
                1,
                "{function}: {body}"
            );
        } else {
            assert_eq!(
                body.trim().trim_end_matches(';').matches(';').count(),
                0,
                "{function}: more than one statement"
            );
        }
    }
}

#[tokio::test]
async fn a_claim_taken_over_after_its_lease_ran_out_leaves_the_first_holder_powerless() {
    let t = TestDb::new().await;
    let org = orgs(&t, 1).await[0];
    let id = queue(&t, org, 1, 1).await[0];
    let first = claim_sms(&t.db, 20, LEASE).await.expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(
        requeue_stale_sms(&t.db).await.expect("requeue"),
        0,
        "a live lease"
    );
    // The first worker hangs past its lease; the message goes to a second one.
    let mut admin = t.admin().await;
    sqlx::query(
        "UPDATE sms_confirmation_logs SET lease_until = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id)
    .execute(&mut admin)
    .await
    .expect("expire");
    assert_eq!(requeue_stale_sms(&t.db).await.expect("requeue"), 1);
    let second = claim_sms(&t.db, 20, LEASE).await.expect("claim");
    assert_eq!((second.len(), second[0].attempt), (1, 2));

    let mut tx =
        t.db.job_tenant(OrgId::from_uuid(org))
            .await
            .expect("tenant");
    let late = first[0].attempt;
    let sms = voxanne_domain::SmsId::from_uuid(id);
    assert!(!tx
        .sms_sent(
            sms,
            late,
            Some("SMlate"),
            SmsStatus::Sent,
            "+14155550100",
            None
        )
        .await
        .expect("sent"));
    assert!(!tx
        .sms_failed(sms, late, "late", AfterFailure::GiveUp)
        .await
        .expect("failed"));
    assert!(!tx
        .sms_suppressed(sms, late, "late")
        .await
        .expect("suppressed"));
    tx.commit().await.expect("commit");
    assert_eq!(row(&t, id).await, ("sending".to_owned(), 2, None));

    let mut tx =
        t.db.job_tenant(OrgId::from_uuid(org))
            .await
            .expect("tenant");
    assert!(tx
        .sms_sent(sms, 2, Some("SMnew"), SmsStatus::Sent, "+14155550100", None)
        .await
        .expect("sent"));
    tx.commit().await.expect("commit");
    assert_eq!(
        row(&t, id).await,
        ("sent".to_owned(), 2, Some("SMnew".to_owned()))
    );
}
