//! Onboarding a clinic's Vapi account in one step, against a fake of Vapi's REST API that
//! speaks its documented shapes (support/fake_vapi.rs). The proof that the result works is
//! Vapi's side of it: a webhook signed with the secret the fake now holds for the credential,
//! as Vapi would sign it, is accepted for the clinic.

use crate::support::fake_vapi::{twilio_number, FakeVapi, KEY};
use crate::support::*;
use serde_json::{json, Value};

const NEW_NUMBER: &str = "+14155550123";

async fn world() -> (
    TestApp,
    FakeVapi,
    voxanne_db::demo::DemoClinic,
    voxanne_db::demo::DemoClinic,
) {
    let [a_number, b_number] = ["+14155550100", "+442079460100"];
    let fake = FakeVapi::spawn(vec![
        twilio_number("pn-a", a_number),
        twilio_number("pn-new", NEW_NUMBER),
        twilio_number("pn-b", b_number),
        json!({"id": "pn-sip", "orgId": "4b7d2c3e-8f1a-4e6b-9c2d-1a2b3c4d5e6f", "provider": "vapi",
               "sipUri": "sip:front-desk@sip.vapi.ai", "status": "active",
               "createdAt": "2026-11-01T09:00:00.000Z", "updatedAt": "2026-11-01T09:00:00.000Z"}),
    ])
    .await;
    let app = TestApp::spawn_with_vapi_api(&fake.base).await;
    let [a, b] = app.clinics().await;
    assert_eq!((a.number, b.number), (a_number, b_number));
    (app, fake, a, b)
}

fn actions(report: &Value) -> Vec<(String, String)> {
    report["numbers"]
        .as_array()
        .expect("numbers")
        .iter()
        .map(|n| {
            (
                n["vapi_id"].as_str().unwrap_or_default().to_owned(),
                n["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

#[tokio::test]
async fn one_step_points_the_clinics_numbers_here_with_a_credential_vapi_can_use() {
    let (app, fake, a, b) = world().await;
    let owner = app.token(a.owner, Some(a.org));
    let r = app
        .put(
            "/api/v1/integrations/vapi",
            &owner,
            &json!({"config": {"server_auth": {"type": "hmac"}}, "secrets": {"api_key": KEY}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let before_b = app.snapshot(b.org).await;

    let r = app
        .post("/api/v1/integrations/vapi/sync", &owner, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let url = format!("{}/webhooks/voice/vapi", app.base);
    assert_eq!(r.body["server_url"], url);
    assert_eq!(r.body["credential"]["action"], "created");
    assert_eq!(r.body["webhook_secret_generated"], true);
    assert_eq!(
        actions(&r.body),
        vec![
            pair("pn-a", "linked"),
            pair("pn-new", "registered"),
            pair("pn-b", "taken"),
            pair("pn-sip", "not_e164"),
        ]
    );
    let credential_id = r.body["credential"]["id"].as_str().expect("id").to_owned();

    // At Vapi: one custom credential, an HMAC plan with the clinic's settings.
    let credentials = fake.credentials();
    assert_eq!(credentials.len(), 1);
    let plan = &credentials[0]["authenticationPlan"];
    assert_eq!(credentials[0]["provider"], "custom-credential");
    assert_eq!(
        (
            plan["type"].as_str(),
            plan["algorithm"].as_str(),
            plan["signatureHeader"].as_str()
        ),
        (Some("hmac"), Some("sha256"), Some("x-signature"))
    );
    let secret = plan["secretKey"].as_str().expect("secret").to_owned();
    assert!(secret.len() >= 32, "a generated secret: {secret}");
    // The clinic's numbers point here with it, with no fixed assistant; B's is untouched.
    let numbers = fake.numbers();
    let number = |id: &str| {
        numbers
            .iter()
            .find(|n| n["id"] == id)
            .expect("number")
            .clone()
    };
    for id in ["pn-a", "pn-new"] {
        let n = number(id);
        assert_eq!(
            n["server"],
            json!({"url": url, "credentialId": credential_id}),
            "{id}"
        );
        assert_eq!(
            n["assistantId"],
            Value::Null,
            "{id}: Vapi asks for the assistant"
        );
    }
    assert!(
        number("pn-b").get("server").is_none(),
        "another clinic's number is left alone"
    );
    assert_eq!(
        app.snapshot(b.org).await,
        before_b,
        "nothing of clinic B changed"
    );

    // Voxanne: the new number is clinic A's, the credential id is kept, the secret masked.
    let owned = app.get_as("/api/v1/phone-numbers?limit=100", &owner).await;
    assert!(
        owned.body["data"]
            .as_array()
            .expect("numbers")
            .iter()
            .any(|n| n["number"] == NEW_NUMBER),
        "{:?}",
        owned.body
    );
    let stored = app.get_as("/api/v1/integrations/vapi", &owner).await;
    assert_eq!(
        stored.body["config"]["credential_id"],
        credential_id.as_str()
    );
    assert!(stored.body["secrets"]["webhook_secret"]
        .as_str()
        .expect("masked")
        .starts_with("••••"));

    // Vapi's side works: a call to the new number, signed with what Vapi holds, is clinic A's.
    let as_vapi = |fixture: &str| {
        let body = vapi_fixture(
            fixture,
            &[
                ("__CALL_ID__", json!("vapi-after-sync")),
                ("__CLINIC_NUMBER__", json!(NEW_NUMBER)),
                ("__CALLER__", json!("+14155557777")),
            ],
        );
        let headers = vapi_hmac_headers(&secret, chrono::Utc::now().timestamp(), &body);
        let app = &app;
        async move { app.post_vapi_with(&body, &headers).await }
    };
    let r = as_vapi("status-update").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // And the assistant now points its tools back here with that credential.
    let r = as_vapi("assistant-request").await;
    assert_eq!(
        r.body["assistant"]["server"]["credentialId"],
        credential_id.as_str()
    );

    // Again: nothing that is right changes.
    let patches_before = fake
        .seen()
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.starts_with("/phone-number"))
        .count();
    let r = app
        .post("/api/v1/integrations/vapi/sync", &owner, &json!({}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["credential"],
        json!({"id": credential_id, "action": "updated"})
    );
    assert_eq!(r.body["webhook_secret_generated"], false);
    assert_eq!(
        actions(&r.body),
        vec![
            pair("pn-a", "unchanged"),
            pair("pn-new", "unchanged"),
            pair("pn-b", "taken"),
            pair("pn-sip", "not_e164"),
        ]
    );
    let patches_after = fake
        .seen()
        .iter()
        .filter(|s| s.method == "PATCH" && s.path.starts_with("/phone-number"))
        .count();
    assert_eq!(patches_after, patches_before, "no number was touched");
    assert_eq!(fake.credentials().len(), 1);
    assert_eq!(
        fake.credentials()[0]["authenticationPlan"]["secretKey"],
        secret.as_str(),
        "the same secret"
    );

    // A credential deleted in Vapi's dashboard is made again and the numbers follow it.
    fake.delete_credentials();
    let r = app
        .post("/api/v1/integrations/vapi/sync", &owner, &json!({}))
        .await;
    assert_eq!(r.body["credential"]["action"], "created", "{:?}", r.body);
    let new_id = r.body["credential"]["id"].as_str().expect("id");
    assert_ne!(new_id, credential_id);
    assert_eq!(actions(&r.body)[0], pair("pn-a", "linked"));
    assert_eq!(number_server(&fake, "pn-a")["credentialId"], new_id);
}

fn number_server(fake: &FakeVapi, id: &str) -> Value {
    fake.numbers()
        .into_iter()
        .find(|n| n["id"] == id)
        .map(|n| n["server"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn what_vapi_refuses_and_what_is_missing_are_clear_errors_that_change_nothing() {
    let (app, fake, a, _) = world().await;
    let owner = app.token(a.owner, Some(a.org));
    let empty = json!({});
    let sync = || app.post("/api/v1/integrations/vapi/sync", &owner, &empty);

    let mut admin = app.t.admin().await;
    sqlx::query("DELETE FROM integration_settings WHERE org_id = $1 AND provider = 'vapi'")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("no vapi integration");
    let r = sync().await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (409, "vapi_not_configured"),
        "{:?}",
        r.body
    );

    let put = |secrets: Value| {
        let app = &app;
        let owner = owner.clone();
        async move {
            app.put(
                "/api/v1/integrations/vapi",
                &owner,
                &json!({"config": {}, "secrets": secrets}),
            )
            .await
        }
    };
    assert_eq!(
        put(json!({"webhook_secret": "whsec-clinic-a-0123456789"}))
            .await
            .status,
        200
    );
    let r = sync().await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (409, "vapi_api_key_missing"),
        "{:?}",
        r.body
    );

    assert_eq!(
        put(json!({"webhook_secret": "whsec-clinic-a-0123456789", "api_key": "wrong-key"}))
            .await
            .status,
        200
    );
    let r = sync().await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (422, "vapi_key_refused"),
        "{:?}",
        r.body
    );
    assert!(r.body["error"]["message"]
        .as_str()
        .expect("message")
        .contains("Invalid Key"));

    assert_eq!(
        put(json!({"webhook_secret": "whsec-clinic-a-0123456789", "api_key": KEY}))
            .await
            .status,
        200
    );
    fake.limit(1);
    let response = app
        .client
        .post(format!("{}/api/v1/integrations/vapi/sync", app.base))
        .bearer_auth(&owner)
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "vapi_rate_limited");

    let staff = app.token(a.staff, Some(a.org));
    let r = app
        .post("/api/v1/integrations/vapi/sync", &staff, &json!({}))
        .await;
    assert_eq!(r.status, 403);

    // Nothing was pointed anywhere by the refused runs; the next one works.
    assert!(fake.numbers().iter().all(|n| n.get("server").is_none()));
    let r = sync().await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["webhook_secret_generated"], false,
        "the clinic's own secret is used"
    );
    assert_eq!(
        fake.credentials()[0]["authenticationPlan"],
        json!({"type": "bearer", "token": "whsec-clinic-a-0123456789", "headerName": "X-Vapi-Secret", "bearerPrefixEnabled": false})
    );
}
