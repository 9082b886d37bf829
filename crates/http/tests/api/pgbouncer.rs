//! The API behind a real pgbouncer in transaction mode: two clinics' requests, interleaved,
//! share two server connections, and each clinic still sees only its own data.

use crate::support::*;
use serde_json::{json, Value};
use std::sync::Arc;

const A_SECRET: &str = "whsec-clinic-a-0123456789";

fn data(r: &Response) -> Vec<Value> {
    r.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clinics_interleaved_behind_the_pooler_each_see_only_their_own_data() {
    let app = Arc::new(TestApp::spawn_behind_pgbouncer().await);
    let [a, b] = app.clinics().await;
    let ready = app.get("/readyz", None, &[]).await;
    assert_eq!(ready.status, 200, "{:?}", ready.body);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24usize {
        let (app, me) = (app.clone(), if i % 2 == 0 { a.clone() } else { b.clone() });
        tasks.spawn(async move {
            let token = app.token(me.owner, Some(me.org));
            for _ in 0..4 {
                let me_now = app.get_as("/api/v1/me", &token).await;
                assert_eq!(me_now.status, 200, "{:?}", me_now.body);
                assert_eq!(
                    me_now.body["active_org"]["id"],
                    json!(me.org),
                    "{:?}",
                    me_now.body
                );
                let orgs = me_now.body["orgs"].as_array().cloned().unwrap_or_default();
                assert_eq!(orgs.len(), 1, "{:?}", me_now.body);
                let calls = app.get_as("/api/v1/calls?limit=100", &token).await;
                assert_eq!(calls.status, 200, "{:?}", calls.body);
                let calls = data(&calls);
                assert!(!calls.is_empty());
                assert!(
                    calls.iter().all(|c| c["org_id"] == json!(me.org)),
                    "{} got another clinic's calls: {calls:?}",
                    me.name
                );
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("every request saw its own clinic only");
    }

    // Another clinic's call is as absent as a missing one, through the pooler too.
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    let a_calls = app.get_as("/api/v1/calls", &a_token).await;
    let id = data(&a_calls)[0]["id"].as_str().expect("id").to_owned();
    let theirs = app.get_as(&format!("/api/v1/calls/{id}"), &b_token).await;
    let missing = app
        .get_as(&format!("/api/v1/calls/{}", uuid::Uuid::new_v4()), &b_token)
        .await;
    assert_eq!((theirs.status.as_u16(), &theirs.body), (404, &missing.body));
    assert_eq!(
        app.get_as(&format!("/api/v1/calls/{id}"), &a_token)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn behind_the_pooler_one_slot_booked_at_once_by_twenty_requests_has_one_winner_and_webhooks_find_their_clinic(
) {
    let app = Arc::new(TestApp::spawn_behind_pgbouncer().await);
    let [a, b] = app.clinics().await;
    let token = app.token(a.staff, Some(a.org));
    // 2031-01-06 is a Monday; 18:00Z is 10:00 at Clinic A (America/Los_Angeles).
    let slot = json!({"starts_at": "2031-01-06T18:00:00Z", "ends_at": "2031-01-06T18:30:00Z"});
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, token, slot, barrier) =
            (app.clone(), token.clone(), slot.clone(), barrier.clone());
        tasks.spawn(async move {
            barrier.wait().await;
            let r = app.post("/api/v1/appointments", &token, &slot).await;
            (r.status.as_u16(), r.code().to_owned())
        });
    }
    let mut results = Vec::new();
    while let Some(done) = tasks.join_next().await {
        results.push(done.expect("task"));
    }
    let won = results.iter().filter(|(s, _)| *s == 201).count();
    let taken = results
        .iter()
        .filter(|(s, c)| *s == 409 && c == "slot_taken")
        .count();
    assert_eq!((won, taken), (1, 19), "{results:?}");

    // A signed webhook finds its clinic by the called number (a cross-org lookup).
    app.set_vapi_secret(&a, A_SECRET).await;
    let body = json!({"message": {"type": "status-update", "status": "in-progress",
        "call": {"id": "vapi-pooled-1", "type": "inboundPhoneCall"},
        "phoneNumber": {"number": a.number}, "customer": {"number": "+14155559876"}}})
    .to_string()
    .into_bytes();
    let r = app
        .post_vapi(&body, Some((A_SECRET, chrono::Utc::now().timestamp())))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut admin = app.t.admin().await;
    let landed: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT org_id FROM calls WHERE provider_call_id = 'vapi-pooled-1'")
            .fetch_all(&mut admin)
            .await
            .expect("the webhook's call");
    assert_eq!(landed, vec![a.org.as_uuid()]);
    assert_ne!(a.org, b.org);
}
