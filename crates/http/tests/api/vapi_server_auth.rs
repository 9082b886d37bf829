//! A stock Vapi account reaches its clinic, whichever credential the clinic gave its server
//! URL. The headers here are written from Vapi's documentation, not by the server's code
//! (docs.vapi.ai/server-url/server-authentication; `BearerAuthenticationPlan` and
//! `HMACAuthenticationPlan` in Vapi's OpenAPI document), and the messages are Vapi's
//! documented shapes (tests/fixtures/vapi). For each mode: a whole call (assistant-request,
//! the booking through tool calls, the end-of-call report, the recording fetched), and every
//! way of getting it wrong refused alike (no credential, a wrong one, another clinic's; with
//! HMAC also a tampered body and a replay), with nothing written and nothing that tells a
//! clinic's number from an unknown one.

use crate::support::recordings::{call_state, config, drain, quiet_demo_queue, worker, Provider};
use crate::support::*;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use voxanne_db::demo::DemoClinic;

const A_SECRET: &str = "vapi-credential-clinic-a-0123456789";
const B_SECRET: &str = "vapi-credential-clinic-b-9876543210";
/// A Monday; the demo clinics open 09:00-17:00 local time on Mondays.
const MONDAY: &str = "2031-03-03";
const TEN_AM: &str = "2031-03-03T10:00:00-08:00";

/// The headers Vapi sends for `(secret, timestamp, url, body)`.
type Present = fn(&str, i64, &str, &[u8]) -> Vec<(String, String)>;

/// One of the ways Vapi presents a credential: the clinic's `server_auth`, and the headers
/// Vapi sends with it for `body` at `timestamp`.
struct Mode {
    server_auth: Value,
    present: Present,
    /// Whether the body and a timestamp are signed. With a token (X-Vapi-Secret, bearer) the
    /// token is the whole proof: it says who sends, not what; a body changed in flight is
    /// TLS's to stop, and a replay within the token's life is not detectable.
    signed: bool,
    /// Vapi's OAuth 2.0 credential: Vapi first trades the secret for a token here, and
    /// presents the token.
    oauth: bool,
}

fn pair(name: &str, value: String) -> (String, String) {
    (name.to_owned(), value)
}

/// `X-Vapi-Secret: <secret>`: the legacy inline `server.secret`, and a bearer credential
/// with that header and `bearerPrefixEnabled: false`.
fn x_vapi_secret() -> Mode {
    Mode {
        server_auth: json!({"type": "x-vapi-secret"}),
        present: |secret, _, _, _| vec![pair("X-Vapi-Secret", secret.to_owned())],
        signed: false,
        oauth: false,
    }
}

/// A bearer credential on Vapi's defaults: `Authorization: Bearer <token>`.
fn bearer() -> Mode {
    Mode {
        server_auth: json!({"type": "bearer"}),
        present: |secret, _, _, _| vec![pair("Authorization", format!("Bearer {secret}"))],
        signed: false,
        oauth: false,
    }
}

/// A bearer credential with the clinic's own header and no prefix.
fn bearer_own_header() -> Mode {
    Mode {
        server_auth: json!({"type": "bearer", "header_name": "X-Clinic-Token", "bearer_prefix": false}),
        present: |secret, _, _, _| vec![pair("X-Clinic-Token", secret.to_owned())],
        signed: false,
        oauth: false,
    }
}

/// An HMAC credential on Vapi's defaults (sha256, `x-timestamp`, `x-signature`,
/// `{timestamp}.{body}`, hex).
fn hmac_defaults() -> Mode {
    Mode {
        server_auth: json!({"type": "hmac"}),
        present: |secret, timestamp, _, body| vapi_hmac_headers(secret, timestamp, body),
        signed: true,
        oauth: false,
    }
}

/// An HMAC credential with every setting changed: sha512, base64, a prefix, the clinic's own
/// header names, and the method and URL signed too.
fn hmac_custom() -> Mode {
    Mode {
        server_auth: json!({"type": "hmac", "algorithm": "sha512", "signature_encoding": "base64",
            "signature_prefix": "v1=", "signature_header": "X-Vapi-Signature",
            "timestamp_header": "X-Vapi-Timestamp", "payload_format": "{method}\n{url}\n{timestamp}\n{body}"}),
        present: |secret, timestamp, url, body| {
            let mut mac = Hmac::<sha2::Sha512>::new_from_slice(secret.as_bytes()).expect("key");
            mac.update(format!("POST\n{url}\n{timestamp}\n").as_bytes());
            mac.update(body);
            let signature =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            vec![
                pair("X-Vapi-Timestamp", timestamp.to_string()),
                pair("X-Vapi-Signature", format!("v1={signature}")),
            ]
        },
        signed: true,
        oauth: false,
    }
}

/// Vapi's OAuth 2.0 credential with this server as its token endpoint: what Vapi sends once
/// it holds the token (`Authorization: Bearer <access_token>`, docs.vapi.ai server
/// authentication, "OAuth 2.0 Flow").
fn oauth2() -> Mode {
    Mode {
        server_auth: json!({"type": "oauth2"}),
        present: |token, _, _, _| vec![pair("Authorization", format!("Bearer {token}"))],
        signed: false,
        oauth: true,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

struct World {
    app: TestApp,
    a: DemoClinic,
    b: DemoClinic,
    mode: Mode,
}

impl World {
    async fn new(mode: Mode) -> Self {
        let app = TestApp::spawn().await;
        let [a, b] = app.clinics().await;
        app.set_vapi_auth(&a, mode.server_auth.clone(), A_SECRET)
            .await;
        app.set_vapi_auth(&b, mode.server_auth.clone(), B_SECRET)
            .await;
        World { app, a, b, mode }
    }

    /// The URL Vapi calls (and may sign).
    fn url(&self) -> String {
        format!("{}/webhooks/voice/vapi", self.app.base)
    }

    fn present(&self, secret: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
        (self.mode.present)(secret, timestamp, &self.url(), body)
    }

    /// What Vapi presents for `secret`: the secret, or with OAuth 2.0 the token it got for
    /// it from the token endpoint (a placeholder when the endpoint refused it).
    async fn credential(&self, secret: &str) -> String {
        if !self.mode.oauth {
            return secret.to_owned();
        }
        let org = if secret == B_SECRET {
            self.b.org
        } else {
            self.a.org
        };
        let (status, body) = token_request(
            &self.app,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &org.to_string()),
                ("client_secret", secret),
            ],
            None,
        )
        .await;
        match status {
            200 => body["access_token"].as_str().expect("token").to_owned(),
            _ => "no-token-was-issued".to_owned(),
        }
    }

    async fn send(&self, body: &[u8], secret: &str) -> Response {
        let credential = self.credential(secret).await;
        self.app
            .post_vapi_with(body, &self.present(&credential, now(), body))
            .await
    }

    fn message(&self, name: &str, call: &str, to: &str, more: &[(&str, Value)]) -> Vec<u8> {
        let mut fill = vec![
            ("__CALL_ID__", json!(call)),
            ("__CLINIC_NUMBER__", json!(to)),
            ("__CALLER__", json!("+14155557777")),
        ];
        fill.extend(more.iter().cloned());
        vapi_fixture(name, &fill)
    }

    async fn tool(&self, call: &str, id: &str, name: &str, arguments: Value) -> String {
        let body = self.message(
            "tool-calls",
            call,
            self.a.number,
            &[
                ("__TOOL_CALL_ID__", json!(id)),
                ("__TOOL__", json!(name)),
                ("__ARGUMENTS_OBJECT__", arguments),
            ],
        );
        let r = self.send(&body, A_SECRET).await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
        assert_eq!(r.body["results"][0]["toolCallId"], id, "{:?}", r.body);
        r.body["results"][0]["result"]
            .as_str()
            .expect("a result")
            .to_owned()
    }
}

fn without_security_events(s: Vec<(String, Vec<Value>)>) -> Vec<(String, Vec<Value>)> {
    s.into_iter()
        .filter(|(t, _)| t != "security_events")
        .collect()
}

/// The text after `marker` up to the next space, `)` or `;`.
fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let start = text.find(marker).expect("marker") + marker.len();
    let rest = &text[start..];
    rest[..rest.find([' ', ')', ';']).unwrap_or(rest.len())].trim_end_matches('.')
}

async fn a_whole_call_and_every_wrong_credential(mode: Mode) {
    let w = World::new(mode).await;
    let (app, a, b) = (&w.app, &w.a, &w.b);
    quiet_demo_queue(app).await;
    let provider = Provider::spawn().await;

    // Refusals first, on a message that would create a call.
    let before_a = without_security_events(app.snapshot(a.org).await);
    let before_b = app.snapshot(b.org).await;
    let body = w.message("status-update", "vapi-refused", a.number, &[]);
    let tampered = w.message("status-update", "vapi-refused-other", a.number, &[]);
    let good = w.present(&w.credential(A_SECRET).await, now(), &body);
    let mut refused = vec![
        ("no credential", app.post_vapi_with(&body, &[]).await),
        (
            "a wrong secret",
            w.send(&body, "not-the-clinic-secret-000").await,
        ),
        ("clinic B's secret", w.send(&body, B_SECRET).await),
    ];
    if w.mode.signed {
        refused.push((
            "a tampered body",
            app.post_vapi_with(&tampered, &good).await,
        ));
        let old = w.present(A_SECRET, now() - 3600, &body);
        refused.push((
            "a replay an hour later",
            app.post_vapi_with(&body, &old).await,
        ));
    }
    let unknown = w.message("status-update", "vapi-refused", "+15005550006", &[]);
    let unknown = app
        .post_vapi_with(
            &unknown,
            &w.present(&w.credential(A_SECRET).await, now(), &unknown),
        )
        .await;
    for (what, r) in &refused {
        assert_eq!(r.status, 401, "{what}: {:?}", r.body);
        assert_eq!(
            r.body, unknown.body,
            "{what}: the same answer as an unknown number"
        );
    }
    assert_eq!(unknown.code(), "invalid_signature");
    assert_eq!(
        without_security_events(app.snapshot(a.org).await),
        before_a,
        "nothing of clinic A written"
    );
    assert_eq!(
        app.snapshot(b.org).await,
        before_b,
        "nothing of clinic B written"
    );
    let events = app.security_events(a).await;
    let refusals = events
        .iter()
        .filter(|e| {
            e["kind"] == "invalid_webhook_signature" && e["route"] == "POST /webhooks/voice/vapi"
        })
        .count();
    assert_eq!(refusals, refused.len(), "{events:?}");

    // The whole call.
    let call = "vapi-call-whole";
    let r = w
        .send(
            &w.message("assistant-request", call, a.number, &[]),
            A_SECRET,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body["assistant"]["firstMessage"],
        "Thank you for calling Clinic A. How can I help?"
    );
    let r = w
        .send(&w.message("status-update", call, a.number, &[]), A_SECRET)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let free = w
        .tool(call, "t-1", "check_availability", json!({"date": MONDAY}))
        .await;
    assert!(free.contains(&format!("starts_at {TEN_AM}")), "{free}");
    // Arguments as Vapi's schema declares them: a JSON string.
    let held = w
        .tool(
            call,
            "t-2",
            "hold_slot",
            json!(json!({"starts_at": TEN_AM, "patient_name": "Jane Roe"}).to_string()),
        )
        .await;
    let hold_id = after(&held, "hold_id ").to_owned();
    let booked = w
        .tool(call, "t-3", "confirm_booking", json!({"hold_id": hold_id}))
        .await;
    assert!(
        booked.starts_with("Booked for Monday 3 March at 10:00."),
        "{booked}"
    );

    let recording = provider.url("ok", "whole-call");
    let report = w.message(
        "end-of-call-report",
        call,
        a.number,
        &[("__RECORDING_URL__", json!(recording))],
    );
    let r = w.send(&report, A_SECRET).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let call_id: uuid::Uuid = r.body["call_id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    drain(app, &worker(app, config())).await;

    let owner = app.token(a.owner, Some(a.org));
    let shown = app
        .get_as(&format!("/api/v1/calls/{call_id}"), &owner)
        .await;
    assert_eq!(shown.status, 200, "{:?}", shown.body);
    assert_eq!(shown.body["status"], "completed");
    assert_eq!(
        shown.body["duration_seconds"], 186,
        "endedAt - startedAt, rounded"
    );
    assert_eq!(
        shown.body["summary"],
        "The caller booked a cleaning for Monday."
    );
    assert_eq!(
        call_state(app, call_id).await.0,
        "stored",
        "the recording was fetched"
    );
    let appointments = app.get_as("/api/v1/appointments?limit=100", &owner).await;
    let booked: Vec<&Value> = appointments.body["data"]
        .as_array()
        .expect("appointments")
        .iter()
        .filter(|x| x["call_id"] == call_id.to_string())
        .collect();
    assert_eq!(booked.len(), 1, "{:?}", appointments.body);
    assert_eq!(app.snapshot(b.org).await, before_b, "clinic B untouched");
}

#[tokio::test]
async fn x_vapi_secret_carries_a_whole_call_and_refuses_every_wrong_credential() {
    a_whole_call_and_every_wrong_credential(x_vapi_secret()).await;
}

#[tokio::test]
async fn a_bearer_credential_carries_a_whole_call_and_refuses_every_wrong_credential() {
    a_whole_call_and_every_wrong_credential(bearer()).await;
}

#[tokio::test]
async fn a_bearer_credential_in_the_clinics_own_header_carries_a_whole_call() {
    a_whole_call_and_every_wrong_credential(bearer_own_header()).await;
}

#[tokio::test]
async fn an_hmac_credential_on_vapis_defaults_carries_a_whole_call_and_refuses_replays() {
    a_whole_call_and_every_wrong_credential(hmac_defaults()).await;
}

#[tokio::test]
async fn an_hmac_credential_with_every_setting_changed_carries_a_whole_call() {
    a_whole_call_and_every_wrong_credential(hmac_custom()).await;
}

#[tokio::test]
async fn an_oauth2_credential_with_this_server_as_token_endpoint_carries_a_whole_call() {
    a_whole_call_and_every_wrong_credential(oauth2()).await;
}

/// POSTs a form to the token endpoint (with HTTP Basic when `basic` is given): (status, body).
async fn token_request(
    app: &TestApp,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/oauth/vapi/token", app.base))
        .form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_token_endpoint_speaks_rfc_6749_and_tells_no_client_from_a_wrong_secret() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    app.set_vapi_auth(
        &a,
        json!({"type": "oauth2", "token_ttl_seconds": 600}),
        A_SECRET,
    )
    .await;
    // Clinic B authenticates with HMAC: no token is issued for it, even with its secret.
    app.set_vapi_auth(&b, json!({"type": "hmac"}), B_SECRET)
        .await;
    let (a_id, b_id) = (a.org.to_string(), b.org.to_string());
    let grant = ("grant_type", "client_credentials");

    let (status, body) = token_request(
        &app,
        &[
            grant,
            ("client_id", &a_id),
            ("client_secret", A_SECRET),
            ("scope", "webhooks"),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["token_type"].as_str(), body["expires_in"].as_i64()),
        (Some("Bearer"), Some(600))
    );
    // HTTP Basic (RFC 6749 section 2.3.1) works as well.
    let (status, basic) = token_request(&app, &[grant], Some((&a_id, A_SECRET))).await;
    assert_eq!(status, 200, "{basic}");

    let refusals = [
        token_request(
            &app,
            &[
                grant,
                ("client_id", &a_id),
                ("client_secret", "wrong-secret-0000000"),
            ],
            None,
        )
        .await,
        token_request(
            &app,
            &[grant, ("client_id", &a_id), ("client_secret", B_SECRET)],
            None,
        )
        .await,
        token_request(
            &app,
            &[grant, ("client_id", &b_id), ("client_secret", B_SECRET)],
            None,
        )
        .await,
        token_request(
            &app,
            &[
                grant,
                ("client_id", &uuid::Uuid::new_v4().to_string()),
                ("client_secret", A_SECRET),
            ],
            None,
        )
        .await,
        token_request(
            &app,
            &[
                grant,
                ("client_id", "not-a-uuid"),
                ("client_secret", A_SECRET),
            ],
            None,
        )
        .await,
        token_request(&app, &[grant], Some((&a_id, "wrong-secret-0000000"))).await,
    ];
    for (i, (status, body)) in refusals.iter().enumerate() {
        assert_eq!(
            (*status, body),
            (
                401,
                &json!({"error": "invalid_client", "error_description": "client authentication failed"})
            ),
            "refusal {i}"
        );
    }
    let (status, body) = token_request(
        &app,
        &[
            ("grant_type", "password"),
            ("client_id", &a_id),
            ("client_secret", A_SECRET),
        ],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = token_request(
        &app,
        &[("client_id", &a_id), ("client_secret", A_SECRET)],
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = token_request(
        &app,
        &[grant, ("client_secret", A_SECRET)],
        Some((&a_id, A_SECRET)),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "two ways at once"
    );

    // A token is clinic A's alone, and only as long as A stays in oauth2 mode with that secret.
    let token = body_token(&app, &a_id).await;
    let to = |number: &str| {
        vapi_fixture(
            "status-update",
            &[
                ("__CALL_ID__", json!("oauth-call")),
                ("__CLINIC_NUMBER__", json!(number)),
                ("__CALLER__", json!("+14155557777")),
            ],
        )
    };
    let bearer = vec![pair("Authorization", format!("Bearer {token}"))];
    assert_eq!(app.post_vapi_with(&to(a.number), &bearer).await.status, 200);
    assert_eq!(app.post_vapi_with(&to(b.number), &bearer).await.status, 401);
    app.set_vapi_auth(&a, json!({"type": "oauth2"}), "a-new-secret-for-clinic-a")
        .await;
    assert_eq!(
        app.post_vapi_with(&to(a.number), &bearer).await.status,
        401,
        "a new secret retires the tokens of the old one"
    );
}

async fn body_token(app: &TestApp, client_id: &str) -> String {
    let (status, body) = token_request(
        app,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", A_SECRET),
        ],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn one_clinics_mode_is_not_another_clinics() {
    // Clinic A takes X-Vapi-Secret, clinic B HMAC: A's header on B's number is refused, and
    // B's old HMAC-less secret header proves nothing.
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    app.set_vapi_auth(&a, json!({"type": "x-vapi-secret"}), A_SECRET)
        .await;
    app.set_vapi_auth(&b, json!({"type": "hmac"}), B_SECRET)
        .await;
    let to_b = vapi_fixture(
        "status-update",
        &[
            ("__CALL_ID__", json!("c-b")),
            ("__CLINIC_NUMBER__", json!(b.number)),
            ("__CALLER__", json!("+14155557777")),
        ],
    );
    let r = app
        .post_vapi_with(&to_b, &[pair("X-Vapi-Secret", B_SECRET.to_owned())])
        .await;
    assert_eq!(
        r.status, 401,
        "B's secret, but not as B's credential sends it"
    );
    let r = app
        .post_vapi_with(&to_b, &vapi_hmac_headers(B_SECRET, now(), &to_b))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn server_auth_settings_are_checked_when_they_are_saved() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    for (config, field) in [
        (json!({"type": "basic"}), "config.server_auth.type"),
        (
            json!({"type": "hmac", "algorithm": "md5"}),
            "config.server_auth.algorithm",
        ),
        (
            json!({"type": "hmac", "payload_format": "{timestamp}"}),
            "config.server_auth.payload_format",
        ),
        (
            json!({"type": "hmac", "replay_window_seconds": 86400}),
            "config.server_auth.replay_window_seconds",
        ),
        (
            json!({"type": "bearer", "header_name": "Content-Length"}),
            "config.server_auth.header_name",
        ),
        (
            json!({"type": "bearer", "token": "inline"}),
            "config.server_auth.token",
        ),
    ] {
        let r = app
            .put(
                "/api/v1/integrations/vapi",
                &owner,
                &json!({"config": {"server_auth": config}, "secrets": {"webhook_secret": A_SECRET}}),
            )
            .await;
        assert_eq!(
            (
                r.status.as_u16(),
                r.code(),
                r.body["error"]["field"].as_str()
            ),
            (422, "validation_failed", Some(field)),
            "{config}: {:?}",
            r.body
        );
    }
    let r = app
        .put(
            "/api/v1/integrations/vapi",
            &owner,
            &json!({"config": {}, "secrets": {"webhook_secret": "short"}}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"]["field"].as_str()),
        (422, Some("secrets.webhook_secret")),
        "{:?}",
        r.body
    );
    let r = app
        .put(
            "/api/v1/integrations/vapi",
            &owner,
            &json!({"config": {"server_auth": {"type": "hmac", "secret_is_base64": true}},
                    "secrets": {"webhook_secret": "not base64 at all!!"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    // Saved settings are shown as stored, the secret masked.
    let r = app
        .put(
            "/api/v1/integrations/vapi",
            &owner,
            &json!({"config": {"server_auth": {"type": "hmac", "algorithm": "sha512"}},
                    "secrets": {"webhook_secret": A_SECRET}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["config"]["server_auth"]["algorithm"], "sha512");
    assert_eq!(r.body["secrets"]["webhook_secret"], "••••6789");
}
