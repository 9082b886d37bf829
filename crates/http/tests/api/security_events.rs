//! Security events: what is recorded, for which clinic, and who may read them.

use crate::support::*;
use serde_json::{json, Value};
use uuid::Uuid;

async fn events(app: &TestApp, token: &str) -> Vec<Value> {
    app.security.flush().await;
    let r = app.get_as("/api/v1/security-events?limit=100", token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

/// Statements the application sent to this test's database, by text: the request path's
/// work (the security log's writer is left out). Top level only: what the database runs
/// inside its own functions and policies is not the application's choice.
async fn statements(app: &TestApp) -> std::collections::BTreeMap<String, i64> {
    app.security.flush().await;
    let mut admin = app.t.admin().await;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(&mut admin)
        .await
        .expect("pg_stat_statements (the test cluster preloads it)");
    sqlx::query_as::<_, (String, i64)>(
        "SELECT s.query, sum(s.calls)::bigint FROM pg_stat_statements s
           JOIN pg_roles r ON r.oid = s.userid
          WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND r.rolname = 'voxanne_app' AND s.toplevel
            AND s.query NOT LIKE '%classify_probes%' AND s.query NOT LIKE '%record_security_event%'
          GROUP BY s.query",
    )
    .fetch_all(&mut admin)
    .await
    .expect("pg_stat_statements")
    .into_iter()
    .collect()
}

fn delta(
    before: &std::collections::BTreeMap<String, i64>,
    after: &std::collections::BTreeMap<String, i64>,
) -> std::collections::BTreeMap<String, i64> {
    after
        .iter()
        .map(|(q, n)| (q.clone(), n - before.get(q).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 0)
        .collect()
}

#[tokio::test]
async fn a_foreign_id_and_a_random_id_get_the_same_answer_the_same_work_and_the_same_trace() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    let first = |body: &Value| body["data"][0]["id"].as_str().expect("id").to_owned();
    let a_call = first(&app.get_as("/api/v1/calls", &a_token).await.body);
    let a_contact = first(&app.get_as("/api/v1/contacts", &a_token).await.body);
    let b_before = app.snapshot(b.org).await;

    // Each request, once with clinic A's id and once with an id nobody has.
    let ask = |foreign: bool| {
        let (call, contact) = if foreign {
            (a_call.clone(), a_contact.clone())
        } else {
            (Uuid::new_v4().to_string(), Uuid::new_v4().to_string())
        };
        let (app, token) = (&app, b_token.clone());
        async move {
            let mut answers = Vec::new();
            for _ in 0..3 {
                let got = app.get_as(&format!("/api/v1/calls/{call}"), &token).await;
                answers.push((got.status.as_u16(), got.body));
                let patched = app
                    .patch(
                        &format!("/api/v1/contacts/{contact}"),
                        &token,
                        &json!({"name": "X"}),
                    )
                    .await;
                answers.push((patched.status.as_u16(), patched.body));
                let booked = app
                    .post(
                        "/api/v1/appointments",
                        &token,
                        &json!({"starts_at": "2031-03-03T18:00:00Z", "ends_at": "2031-03-03T18:30:00Z",
                                "contact_id": contact}),
                    )
                    .await;
                answers.push((booked.status.as_u16(), booked.body));
            }
            answers
        }
    };
    let s0 = statements(&app).await;
    let random = ask(false).await;
    let s1 = statements(&app).await;
    let b_after_random = app.snapshot(b.org).await;
    let foreign = ask(true).await;
    let s2 = statements(&app).await;

    assert_eq!(foreign, random, "the same status and body");
    let work = delta(&s0, &s1);
    assert!(work.len() >= 3, "the statements were counted: {work:?}");
    assert_eq!(delta(&s1, &s2), work, "the same statements, as often");
    assert_eq!(
        b_after_random, b_before,
        "a random id leaves the prober nothing"
    );
    assert_eq!(
        app.snapshot(b.org).await,
        b_before,
        "nor does a foreign one: the prober's clinic cannot tell them apart"
    );

    // The clinic whose ids were asked for finds it in its own log, without the prober's name.
    let probes = app.probe_events(&a).await;
    assert_eq!(probes.len(), 9, "{probes:?}");
    let targets: std::collections::BTreeSet<&str> =
        probes.iter().filter_map(|e| e["target"].as_str()).collect();
    assert_eq!(
        targets,
        [a_call.as_str(), a_contact.as_str()].into_iter().collect()
    );
    assert!(probes.iter().all(|e| e["actor_user_id"].is_null()));
    assert!(probes
        .iter()
        .any(|e| e["route"] == json!(format!("GET /api/v1/calls/{a_call}"))));
    // The operators see both clinics.
    let log = app.operator_log().await;
    assert_eq!(log.len(), 9);
    assert!(log
        .iter()
        .all(|(prober, target, _)| *prober == b.org.as_uuid() && *target == a.org.as_uuid()));
}

#[tokio::test]
async fn a_flood_of_security_events_is_capped_per_clinic_and_counted() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_org = a.org.to_string();
    let b_token = app.token(b.owner, Some(b.org));
    for _ in 0..100 {
        let r = app
            .get("/api/v1/calls", Some(&b_token), &[("x-org-id", &a_org)])
            .await;
        assert_eq!(r.status, 403);
    }
    let recorded = events(&app, &app.token(a.owner, Some(a.org))).await;
    assert_eq!(recorded.len(), 60, "at most 60 a minute");
    let mut admin = app.t.admin().await;
    let suppressed: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(suppressed), 0)::bigint FROM app.security_event_overflow WHERE org_id = $1",
    )
    .bind(a.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("overflow");
    assert_eq!(suppressed, 40);
}

#[tokio::test]
async fn a_denied_membership_and_a_bad_token_are_recorded_for_the_org_they_named() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_org = a.org.to_string();
    let b_token = app.token(b.owner, Some(b.org));
    assert_eq!(
        app.get("/api/v1/calls", Some(&b_token), &[("x-org-id", &a_org)])
            .await
            .status,
        403
    );
    assert_eq!(
        app.get("/api/v1/me", Some(&b_token), &[("x-org-id", &a_org)])
            .await
            .status,
        403
    );
    assert_eq!(
        app.get("/api/v1/calls", Some("not.a.jwt"), &[("x-org-id", &a_org)])
            .await
            .status,
        401
    );
    // An org that does not exist gets nothing (and nothing fails).
    let nowhere = Uuid::new_v4().to_string();
    assert_eq!(
        app.get("/api/v1/calls", Some(&b_token), &[("x-org-id", &nowhere)])
            .await
            .status,
        403
    );

    let recorded = events(&app, &app.token(a.owner, Some(a.org))).await;
    let kinds: Vec<&str> = recorded.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        ["invalid_token", "membership_denied", "membership_denied"]
    );
    assert_eq!(recorded[1]["actor_user_id"], json!(b.owner));
    assert_eq!(recorded[0]["actor_user_id"], json!(null));
    assert!(events(&app, &b_token).await.is_empty());
}

#[tokio::test]
async fn only_admins_read_security_events() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let r = app
        .get_as("/api/v1/security-events", &app.token(a.staff, Some(a.org)))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
}
