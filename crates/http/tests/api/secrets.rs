//! Secrets at rest: calendar tokens and provider credentials are encrypted before they reach
//! the database, never come back in a response, survive a key rotation, fail cleanly when
//! damaged; only admins change them; another clinic cannot touch them. And the agent
//! configuration, which is validated field by field.

use crate::support::*;
use serde_json::{json, Value};
use uuid::Uuid;
use voxanne_db::calendar_connections::token_aad;
use voxanne_db::crypto::CryptoError;
use voxanne_db::integrations::secrets_aad;
use voxanne_db::DbError;
use voxanne_domain::{IntegrationProvider, OrgId};

const ACCESS: &str = "ya29.ACCESS-plaintext-token-0001";
const REFRESH: &str = "1//REFRESH-plaintext-token-0002";
const AUTH_TOKEN: &str = "twilio-AUTH-plaintext-secret-0003";
const API_KEY_SECRET: &str = "twilio-APIKEY-plaintext-secret-0004";

/// Every request of a test, so that every response body can be searched for a plaintext.
struct Session<'a> {
    app: &'a TestApp,
    seen: Vec<String>,
}

impl<'a> Session<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            seen: Vec::new(),
        }
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Response {
        let r = self
            .app
            .send(method, &format!("/api/v1{path}"), token, body, &[])
            .await;
        self.seen
            .push(format!("{method} {path} -> {} {}", r.status, r.body));
        r
    }

    async fn get(&mut self, path: &str, token: &str) -> Response {
        self.send("GET", path, token, None).await
    }

    async fn post(&mut self, path: &str, token: &str, body: &Value) -> Response {
        self.send("POST", path, token, Some(body)).await
    }

    async fn put(&mut self, path: &str, token: &str, body: &Value) -> Response {
        self.send("PUT", path, token, Some(body)).await
    }

    async fn delete(&mut self, path: &str, token: &str) -> Response {
        self.send("DELETE", path, token, None).await
    }

    /// No response of the session contained any of `secrets`.
    fn assert_never_shown(&self, secrets: &[&str]) {
        assert!(self.seen.len() > 1, "the session made requests");
        for body in &self.seen {
            for secret in secrets {
                assert!(!body.contains(secret), "a response shows a secret: {body}");
            }
        }
    }
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// No row of any tenant table of `org` holds a plaintext, as text or as hex (bytea).
async fn assert_nowhere_in_the_database(app: &TestApp, org: OrgId, secrets: &[&str]) {
    let everything = serde_json::to_string(&app.snapshot(org).await).expect("json");
    for secret in secrets {
        assert!(!everything.contains(secret), "{secret} is stored in clear");
        assert!(
            !everything.contains(&hex(secret)),
            "{secret} is stored in clear (bytea)"
        );
    }
}

fn link_body(email: &str) -> Value {
    json!({
        "provider": "google",
        "account_email": email,
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "token_expires_at": "2030-01-01T10:00:00Z"
    })
}

fn twilio_body() -> Value {
    json!({
        "config": {"account_sid": "AC0123", "from_number": "+14155550100"},
        "secrets": {"auth_token": AUTH_TOKEN, "api_key_secret": API_KEY_SECRET}
    })
}

type RawTokens = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);

async fn raw_tokens(app: &TestApp, id: &str) -> Option<RawTokens> {
    let mut admin = app.t.admin().await;
    sqlx::query_as(
        "SELECT access_token_enc, refresh_token_enc, key_id FROM calendar_connections WHERE id = $1",
    )
    .bind(Uuid::parse_str(id).expect("uuid"))
    .fetch_optional(&mut admin)
    .await
    .expect("raw tokens")
}

async fn raw_secrets(
    app: &TestApp,
    org: OrgId,
    provider: &str,
) -> (Option<Vec<u8>>, Option<String>, Value) {
    let mut admin = app.t.admin().await;
    sqlx::query_as(
        "SELECT secrets_enc, key_id, config FROM integration_settings WHERE org_id = $1 AND provider = $2",
    )
    .bind(org.as_uuid())
    .bind(provider)
    .fetch_one(&mut admin)
    .await
    .expect("raw secrets")
}

#[tokio::test]
async fn calendar_tokens_are_encrypted_at_rest_and_never_returned() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));
    let mut s = Session::new(&app);

    let created = s
        .post(
            "/calendar-connections",
            &owner,
            &link_body("Desk@Clinic.example"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["has_access_token"], true);
    assert_eq!(created.body["has_refresh_token"], true);
    assert_eq!(created.body["account_email"], "desk@clinic.example");
    let id = created.body["id"].as_str().expect("id").to_owned();
    let listed = s.get("/calendar-connections", &staff).await;
    assert_eq!(listed.body["data"][0]["id"], json!(id));
    assert_eq!(
        s.get(&format!("/calendar-connections/{id}"), &staff)
            .await
            .status,
        200
    );

    let (access, refresh, key_id) = raw_tokens(&app, &id).await.expect("row");
    let (access, refresh) = (access.expect("access"), refresh.expect("refresh"));
    assert!(!contains(&access, ACCESS) && !contains(&refresh, REFRESH));
    assert_eq!(
        key_id.as_deref(),
        Some("test2"),
        "sealed with the current key"
    );
    assert_nowhere_in_the_database(&app, a.org, &[ACCESS, REFRESH]).await;

    // The stored bytes are the tokens, sealed for this row.
    let ring = keyring();
    let opened = ring
        .open(
            "test2",
            &access,
            &token_aad(
                "access_token_enc",
                a.org,
                Uuid::parse_str(&id).expect("uuid"),
            ),
        )
        .expect("opens");
    assert_eq!(opened.as_slice(), ACCESS.as_bytes());
    let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tenant");
    let tokens = tx
        .calendar_tokens(&ring, Uuid::parse_str(&id).expect("uuid"))
        .await
        .expect("tokens")
        .expect("row");
    use secrecy::ExposeSecret;
    assert_eq!(
        tokens.access_token.as_ref().map(|t| t.expose_secret()),
        Some(ACCESS)
    );
    assert_eq!(
        tokens.refresh_token.as_ref().map(|t| t.expose_secret()),
        Some(REFRESH)
    );
    drop(tx);

    s.assert_never_shown(&[ACCESS, REFRESH]);
}

#[tokio::test]
async fn integration_secrets_are_encrypted_masked_on_read_and_kept_when_omitted() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));
    let mut s = Session::new(&app);

    let put = s.put("/integrations/twilio", &owner, &twilio_body()).await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.body["configured"], true);
    assert_eq!(put.body["config"]["account_sid"], "AC0123");
    assert_eq!(put.body["secrets"]["auth_token"], "••••0003");
    assert_eq!(put.body["secrets"]["api_key_secret"], "••••0004");
    assert_eq!(put.body["secrets_error"], Value::Null);
    let got = s.get("/integrations/twilio", &staff).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["secrets"], put.body["secrets"]);
    let list = s.get("/integrations", &staff).await;
    let providers: Vec<&str> = list.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|p| p["provider"].as_str())
        .collect();
    assert_eq!(providers, ["twilio", "vonage", "vapi", "retell"]);
    assert_eq!(list.body["data"][0]["secrets"], put.body["secrets"]);
    assert_eq!(list.body["data"][1]["configured"], false);

    let (bytes, key_id, config) = raw_secrets(&app, a.org, "twilio").await;
    let bytes = bytes.expect("sealed");
    assert!(!contains(&bytes, AUTH_TOKEN) && !contains(&bytes, API_KEY_SECRET));
    assert_eq!(key_id.as_deref(), Some("test2"));
    assert_eq!(
        config,
        json!({"account_sid": "AC0123", "from_number": "+14155550100"})
    );
    assert_nowhere_in_the_database(&app, a.org, &[AUTH_TOKEN, API_KEY_SECRET]).await;

    // Omitting `secrets` keeps them, byte for byte; config is replaced.
    let config_only = json!({"config": {"account_sid": "AC9999"}});
    let kept = s.put("/integrations/twilio", &owner, &config_only).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(kept.body["secrets"], put.body["secrets"]);
    assert_eq!(kept.body["config"], json!({"account_sid": "AC9999"}));
    assert_eq!(
        raw_secrets(&app, a.org, "twilio").await.0,
        Some(bytes.clone())
    );

    // Sending `secrets` replaces the whole set.
    let replaced = s
        .put(
            "/integrations/twilio",
            &owner,
            &json!({"config": {}, "secrets": {"auth_token": "short"}}),
        )
        .await;
    assert_eq!(replaced.body["secrets"], json!({"auth_token": "••••"}));
    assert_ne!(raw_secrets(&app, a.org, "twilio").await.0, Some(bytes));

    s.assert_never_shown(&[AUTH_TOKEN, API_KEY_SECRET, "short"]);
}

#[tokio::test]
async fn values_sealed_under_an_old_key_are_still_readable_after_rotation() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let mut s = Session::new(&app);
    let before = keyring_before_rotation();

    // Written before the rotation, under `test1` (now only in the old-keys list).
    let sealed = before
        .seal(
            json!({"auth_token": AUTH_TOKEN}).to_string().as_bytes(),
            &secrets_aad(a.org, IntegrationProvider::Vonage),
        )
        .expect("seal");
    assert_eq!(sealed.key_id, "test1");
    let connection = Uuid::new_v4();
    let token = before
        .seal(
            ACCESS.as_bytes(),
            &token_aad("access_token_enc", a.org, connection),
        )
        .expect("seal");
    let mut admin = app.t.admin().await;
    sqlx::query(
        "INSERT INTO integration_settings (org_id, provider, config, secrets_enc, key_id)
         VALUES ($1, 'vonage', '{}', $2, $3)",
    )
    .bind(a.org.as_uuid())
    .bind(&sealed.bytes)
    .bind(&sealed.key_id)
    .execute(&mut admin)
    .await
    .expect("old integration");
    sqlx::query(
        "INSERT INTO calendar_connections (org_id, id, provider, account_email, access_token_enc, key_id)
         VALUES ($1, $2, 'microsoft', 'old@clinic.example', $3, $4)",
    )
    .bind(a.org.as_uuid())
    .bind(connection)
    .bind(&token.bytes)
    .bind(&token.key_id)
    .execute(&mut admin)
    .await
    .expect("old connection");

    let got = s.get("/integrations/vonage", &owner).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["secrets"], json!({"auth_token": "••••0003"}));
    assert_eq!(got.body["secrets_error"], Value::Null);
    let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tenant");
    let tokens = tx
        .calendar_tokens(&keyring(), connection)
        .await
        .expect("the old key still opens it")
        .expect("row");
    use secrecy::ExposeSecret;
    assert_eq!(
        tokens.access_token.as_ref().map(|t| t.expose_secret()),
        Some(ACCESS)
    );
    assert!(tokens.refresh_token.is_none());
    drop(tx);

    // New writes use the current key.
    let put = s
        .put(
            "/integrations/vonage",
            &owner,
            &json!({"config": {}, "secrets": {"api_secret": AUTH_TOKEN}}),
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(
        raw_secrets(&app, a.org, "vonage").await.1.as_deref(),
        Some("test2")
    );

    s.assert_never_shown(&[AUTH_TOKEN, ACCESS]);
}

#[tokio::test]
async fn damaged_moved_or_unknown_key_ciphertexts_fail_cleanly() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let mut s = Session::new(&app);
    assert_eq!(
        s.put("/integrations/twilio", &owner, &twilio_body())
            .await
            .status,
        200
    );
    let mut admin = app.t.admin().await;

    // One flipped bit: the GET still answers, says the secrets cannot be read, shows none.
    sqlx::query(
        "UPDATE integration_settings SET secrets_enc = set_byte(secrets_enc, 20, get_byte(secrets_enc, 20) # 1)
          WHERE org_id = $1 AND provider = 'twilio'",
    )
    .bind(a.org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("tamper");
    for path in ["/integrations/twilio", "/integrations"] {
        let r = s.get(path, &owner).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let view = if path == "/integrations" {
            &r.body["data"][0]
        } else {
            &r.body
        };
        assert_eq!(view["secrets"], json!({}), "{path}");
        assert!(view["secrets_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot be decrypted")));
    }

    // A key id that is not configured: the same clean answer.
    sqlx::query("UPDATE integration_settings SET key_id = 'retired' WHERE org_id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("unknown key");
    let r = s.get("/integrations/twilio", &owner).await;
    assert_eq!(r.status, 200);
    assert!(r.body["secrets_error"].is_string());

    // An admin recovers by writing new secrets.
    let fixed = s.put("/integrations/twilio", &owner, &twilio_body()).await;
    assert_eq!(fixed.body["secrets_error"], Value::Null);
    assert_eq!(fixed.body["secrets"]["auth_token"], "••••0003");

    // Clinic A's sealed token copied into a row of Clinic B does not open there.
    let created = s
        .post(
            "/calendar-connections",
            &owner,
            &link_body("a@clinic.example"),
        )
        .await;
    let a_id = Uuid::parse_str(created.body["id"].as_str().expect("id")).expect("uuid");
    let b_id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO calendar_connections (org_id, id, provider, account_email, access_token_enc, key_id)
         SELECT $2, $3, provider, account_email, access_token_enc, key_id
           FROM calendar_connections WHERE id = $1",
    )
    .bind(a_id)
    .bind(b.org.as_uuid())
    .bind(b_id)
    .execute(&mut admin)
    .await
    .expect("copy");
    let mut tx = app.t.db.tenant(b.org, b.owner).await.expect("tenant");
    let moved = tx.calendar_tokens(&keyring(), b_id).await;
    assert!(
        matches!(moved, Err(DbError::Crypto(CryptoError::Undecryptable))),
        "{moved:?}"
    );
    drop(tx);
    // And listing it answers normally: the list never decrypts.
    let b_owner = app.token(b.owner, Some(b.org));
    assert_eq!(s.get("/calendar-connections", &b_owner).await.status, 200);

    s.assert_never_shown(&[AUTH_TOKEN, API_KEY_SECRET, ACCESS, REFRESH]);
}

#[tokio::test]
async fn staff_cannot_link_unlink_or_change_integrations_or_the_agent() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));
    let mut s = Session::new(&app);
    let created = s
        .post(
            "/calendar-connections",
            &owner,
            &link_body("desk@clinic.example"),
        )
        .await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let before = app.snapshot(a.org).await;

    let link = s
        .post(
            "/calendar-connections",
            &staff,
            &link_body("other@clinic.example"),
        )
        .await;
    assert_eq!((link.status.as_u16(), link.code()), (403, "forbidden"));
    let unlink = s
        .delete(&format!("/calendar-connections/{id}"), &staff)
        .await;
    assert_eq!(unlink.status, 403);
    let put = s.put("/integrations/twilio", &staff, &twilio_body()).await;
    assert_eq!((put.status.as_u16(), put.code()), (403, "forbidden"));
    assert_eq!(
        put.body["error"]["message"],
        "staff cannot change integrations"
    );
    let agent = s
        .put(
            "/agent-configuration",
            &staff,
            &json!({"greeting": "Hi", "voice": "openai:alloy", "opening_hours": {}, "time_zone": "UTC"}),
        )
        .await;
    assert_eq!(agent.status, 403);
    assert_eq!(app.snapshot(a.org).await, before, "nothing changed");

    // Reading is open to staff.
    for path in [
        "/calendar-connections",
        &format!("/calendar-connections/{id}"),
        "/integrations",
        "/integrations/twilio",
        "/agent-configuration",
    ] {
        assert_eq!(s.get(path, &staff).await.status, 200, "{path}");
    }
    s.assert_never_shown(&[ACCESS, REFRESH, AUTH_TOKEN, API_KEY_SECRET]);
}

#[tokio::test]
async fn another_clinic_cannot_read_unlink_or_overwrite_a_clinics_secrets() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_owner = app.token(a.owner, Some(a.org));
    let b_owner = app.token(b.owner, Some(b.org));
    let mut s = Session::new(&app);
    let created = s
        .post(
            "/calendar-connections",
            &a_owner,
            &link_body("desk@clinic.example"),
        )
        .await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        s.put("/integrations/twilio", &a_owner, &twilio_body())
            .await
            .status,
        200
    );
    let agent = json!({"greeting": "Clinic A", "voice": "openai:alloy", "opening_hours": {"mon": [["09:00", "17:00"]]}, "time_zone": "Europe/London"});
    assert_eq!(
        s.put("/agent-configuration", &a_owner, &agent).await.status,
        200
    );
    let before = app.data_snapshot(a.org).await;

    assert_eq!(
        s.get(&format!("/calendar-connections/{id}"), &b_owner)
            .await
            .status,
        404
    );
    assert_eq!(
        s.delete(&format!("/calendar-connections/{id}"), &b_owner)
            .await
            .status,
        404
    );
    let b_list = s.get("/calendar-connections", &b_owner).await;
    assert_eq!(b_list.body["data"], json!([]));
    let b_twilio = s.get("/integrations/twilio", &b_owner).await;
    assert_eq!(b_twilio.body["configured"], false);
    assert_eq!(b_twilio.body["secrets"], json!({}));
    assert_ne!(
        s.get("/agent-configuration", &b_owner).await.body["greeting"],
        "Clinic A"
    );
    // B writing "the same" things writes B's own rows.
    assert_eq!(
        s.post(
            "/calendar-connections",
            &b_owner,
            &link_body("desk@clinic.example")
        )
        .await
        .status,
        201
    );
    let b_put = s
        .put("/integrations/twilio", &b_owner, &json!({"config": {"account_sid": "B"}, "secrets": {"auth_token": "clinic-b-secret-0000"}}))
        .await;
    assert_eq!(b_put.status, 200);
    assert_eq!(
        s.put(
            "/agent-configuration",
            &b_owner,
            &json!({"greeting": "B", "voice": "vapi:Rohan", "opening_hours": {}, "time_zone": "UTC"})
        )
        .await
        .status,
        200
    );

    assert_eq!(
        app.data_snapshot(a.org).await,
        before,
        "Clinic A's rows are unchanged"
    );
    let a_twilio = s.get("/integrations/twilio", &a_owner).await;
    assert_eq!(a_twilio.body["config"]["account_sid"], "AC0123");
    assert_eq!(a_twilio.body["secrets"]["auth_token"], "••••0003");
    // B's probes are recorded for A, whose connection it is; B's own log shows nothing.
    assert_eq!(app.probe_events(&a).await.len(), 2);
    assert!(app.security_events(&b).await.is_empty());
    s.assert_never_shown(&[
        ACCESS,
        REFRESH,
        AUTH_TOKEN,
        API_KEY_SECRET,
        "clinic-b-secret-0000",
    ]);
}

#[tokio::test]
async fn unlinking_deletes_the_connection_with_its_tokens() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let mut s = Session::new(&app);
    let created = s
        .post(
            "/calendar-connections",
            &owner,
            &link_body("desk@clinic.example"),
        )
        .await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let path = format!("/calendar-connections/{id}");

    let r = s.delete(&path, &owner).await;
    assert_eq!(r.status, 204);
    assert!(raw_tokens(&app, &id).await.is_none());
    assert_eq!(s.get(&path, &owner).await.status, 404);
    assert_eq!(s.delete(&path, &owner).await.status, 404);
    s.assert_never_shown(&[ACCESS, REFRESH]);
}

#[tokio::test]
async fn linking_an_account_twice_is_a_conflict_and_lists_page() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let mut s = Session::new(&app);
    for email in [
        "one@clinic.example",
        "two@clinic.example",
        "three@clinic.example",
    ] {
        assert_eq!(
            s.post("/calendar-connections", &owner, &link_body(email))
                .await
                .status,
            201
        );
    }
    let again = s
        .post(
            "/calendar-connections",
            &owner,
            &link_body("TWO@clinic.example"),
        )
        .await;
    assert_eq!(
        (again.status.as_u16(), again.code()),
        (409, "calendar_already_linked")
    );

    let first = s.get("/calendar-connections?limit=2", &owner).await;
    assert_eq!(first.body["data"].as_array().map(Vec::len), Some(2));
    let cursor = first.body["next_cursor"].as_str().expect("more").to_owned();
    let second = s
        .get(
            &format!("/calendar-connections?limit=2&cursor={cursor}"),
            &owner,
        )
        .await;
    assert_eq!(second.body["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(second.body["next_cursor"], Value::Null);
    s.assert_never_shown(&[ACCESS, REFRESH]);
}

#[tokio::test]
async fn an_unknown_provider_is_not_found() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    assert_eq!(
        app.get_as("/api/v1/integrations/stripe", &owner)
            .await
            .status,
        404
    );
    let r = app
        .put("/api/v1/integrations/stripe", &owner, &twilio_body())
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"));
}

async fn assert_invalid(
    s: &mut Session<'_>,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
    field: &str,
) {
    let r = s.send(method, path, token, Some(&body)).await;
    assert_eq!(r.status, 422, "{body}: {}", r.body);
    assert_eq!(r.body["error"]["field"], field, "{body}: {}", r.body);
}

#[tokio::test]
async fn invalid_bodies_are_422_naming_the_field() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let mut s = Session::new(&app);
    let before = app.snapshot(a.org).await;
    let agent = json!({"greeting": "Hello", "voice": "openai:alloy", "opening_hours": {"mon": [["09:00", "17:00"]]}, "time_zone": "Europe/London", "transfer_number": "+442079460958"});
    let with = |field: &str, value: Value| {
        let mut body = agent.clone();
        body[field] = value;
        body
    };
    let p = "/agent-configuration";
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with("transfer_number", json!("020 7946 0958")),
        "transfer_number",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with("time_zone", json!("Mars/Olympus")),
        "time_zone",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with("opening_hours", json!({"mon": [["17:00", "09:00"]]})),
        "opening_hours",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with(
            "opening_hours",
            json!({"mon": [["09:00", "13:00"], ["12:00", "17:00"]]}),
        ),
        "opening_hours",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with("opening_hours", json!({"monday": [["09:00", "17:00"]]})),
        "opening_hours",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with("opening_hours", json!({"mon": [["9am", "5pm"]]})),
        "opening_hours",
    )
    .await;
    assert_invalid(&mut s, "PUT", p, &owner, with("voice", json!(" ")), "voice").await;
    // Voices Vapi would refuse at the call: retired, unknown, or of no provider it has.
    for voice in ["Kylie", "alloy", "openai:rachel", "acme:x", "11labs:a b"] {
        assert_invalid(
            &mut s,
            "PUT",
            p,
            &owner,
            with("voice", json!(voice)),
            "voice",
        )
        .await;
    }
    assert_invalid(
        &mut s,
        "PUT",
        p,
        &owner,
        with("org_id", json!(Uuid::new_v4())),
        "org_id",
    )
    .await;

    let mut link = link_body("desk@clinic.example");
    link["org_id"] = json!(Uuid::new_v4());
    assert_invalid(
        &mut s,
        "POST",
        "/calendar-connections",
        &owner,
        link,
        "org_id",
    )
    .await;
    let mut link = link_body("desk@clinic.example");
    link["provider"] = json!("yahoo");
    assert_invalid(
        &mut s,
        "POST",
        "/calendar-connections",
        &owner,
        link,
        "provider",
    )
    .await;
    assert_invalid(
        &mut s,
        "POST",
        "/calendar-connections",
        &owner,
        link_body("not-an-email"),
        "account_email",
    )
    .await;
    let mut link = link_body("desk@clinic.example");
    link["access_token"] = json!("");
    assert_invalid(
        &mut s,
        "POST",
        "/calendar-connections",
        &owner,
        link,
        "access_token",
    )
    .await;

    let i = "/integrations/twilio";
    let mut put = twilio_body();
    put["org_id"] = json!(Uuid::new_v4());
    assert_invalid(&mut s, "PUT", i, &owner, put, "org_id").await;
    assert_invalid(
        &mut s,
        "PUT",
        i,
        &owner,
        json!({"config": {"auth_token": AUTH_TOKEN}}),
        "config.auth_token",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        i,
        &owner,
        json!({"config": {}, "secrets": {"auth_token": ""}}),
        "secrets.auth_token",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        i,
        &owner,
        json!({"config": {}, "secrets": {"auth_token": 42}}),
        "secrets.auth_token",
    )
    .await;
    assert_invalid(
        &mut s,
        "PUT",
        i,
        &owner,
        json!({"secrets": {"auth_token": AUTH_TOKEN}}),
        "body",
    )
    .await;

    assert_eq!(app.snapshot(a.org).await, before, "nothing was written");
    s.assert_never_shown(&[AUTH_TOKEN, ACCESS, REFRESH]);
}

#[tokio::test]
async fn the_agent_configuration_has_defaults_and_one_row_per_clinic() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));

    // The demo seeds a configuration: remove it to see the defaults.
    let mut admin = app.t.admin().await;
    sqlx::query("DELETE FROM agent_configurations WHERE org_id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("delete");
    let defaults = app.get_as("/api/v1/agent-configuration", &staff).await;
    assert_eq!(defaults.status, 200);
    assert_eq!(defaults.body["time_zone"], "UTC");
    assert_eq!(defaults.body["voice"], "vapi:Elliot");
    assert_eq!(defaults.body["updated_at"], Value::Null);
    assert_eq!(defaults.body["opening_hours"]["sun"], json!([]));

    let body = json!({
        "greeting": "Thank you for calling",
        "voice": "openai:alloy",
        "opening_hours": {"mon": [["13:30", "17:00"], ["09:00", "12:30"]], "sat": []},
        "time_zone": "America/New_York",
        "transfer_number": "+1 (415) 555-0100"
    });
    let saved = app.put("/api/v1/agent-configuration", &owner, &body).await;
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!(saved.body["transfer_number"], "+14155550100");
    assert_eq!(
        saved.body["opening_hours"]["mon"],
        json!([["09:00", "12:30"], ["13:30", "17:00"]])
    );
    assert!(saved.body["updated_at"].is_string());
    let read = app.get_as("/api/v1/agent-configuration", &staff).await;
    assert_eq!(read.body, saved.body);

    let mut again = body.clone();
    again["transfer_number"] = Value::Null;
    again["time_zone"] = json!("Europe/Berlin");
    let replaced = app.put("/api/v1/agent-configuration", &owner, &again).await;
    assert_eq!(replaced.body["transfer_number"], Value::Null);
    assert_eq!(replaced.body["time_zone"], "Europe/Berlin");
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM agent_configurations WHERE org_id = $1")
            .bind(a.org.as_uuid())
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(rows, 1);
}
