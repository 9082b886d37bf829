//! Security events: what is recorded, for which clinic, and who may read them.

mod support;

use serde_json::{json, Value};
use support::*;
use uuid::Uuid;

async fn events(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get_as("/api/v1/security-events?limit=100", token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn asking_for_another_clinics_id_is_recorded_in_the_askers_clinic_a_missing_id_is_not() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    let a_calls = app.get_as("/api/v1/calls", &a_token).await;
    let a_call = a_calls.body["data"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    assert_eq!(
        app.get_as(&format!("/api/v1/calls/{}", Uuid::new_v4()), &b_token)
            .await
            .status,
        404
    );
    assert!(
        events(&app, &b_token).await.is_empty(),
        "a missing id is not an attack"
    );

    let probe = app
        .get_as(&format!("/api/v1/calls/{a_call}"), &b_token)
        .await;
    assert_eq!(probe.status, 404);
    let recorded = events(&app, &b_token).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["kind"], "cross_tenant_reference");
    assert_eq!(recorded[0]["actor_user_id"], json!(b.owner));
    assert_eq!(recorded[0]["target"], json!(a_call));
    assert_eq!(
        recorded[0]["route"],
        json!(format!("GET /api/v1/calls/{a_call}"))
    );
    assert!(
        events(&app, &a_token).await.is_empty(),
        "Clinic A sees nothing of Clinic B's events"
    );
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
