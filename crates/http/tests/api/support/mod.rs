//! `TestApp`: the real server on 127.0.0.1:0, on a fresh database, with helpers that read like
//! the acceptance criteria.
#![allow(dead_code)] // each test binary uses a different part of it

pub mod browser;
pub mod client;
pub mod declared;
pub mod fake_twilio;
pub mod fake_vapi;
pub mod openapi;
pub mod recordings;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_db::demo::{self, DemoClinic};
use voxanne_domain::{OrgId, UserId};
use voxanne_http::auth::{mint_hs256, AuthConfig, DevToken, JwksSource, JwtVerifier};
use voxanne_http::calendar_oauth::CalendarOAuth;
use voxanne_http::limits::Limits;
use voxanne_http::security_log::SecurityLog;
use voxanne_http::{AppState, ServerConfig};
use voxanne_testkit::TestDb;

pub const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
pub const AUDIENCE: &str = "authenticated";
/// The test server's encryption keys: `test2` is current, `test1` is an older key it still
/// reads (as after a rotation).
pub use voxanne_testkit::{ENCRYPTION_KEY, ENCRYPTION_KEYS_OLD};
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub struct TestApp {
    pub base: String,
    /// The operators' listener (`/metrics`).
    pub metrics_base: String,
    /// The server's security log: `flush` it before reading what it recorded.
    pub security: Arc<SecurityLog>,
    pub t: TestDb,
    /// The recordings storage (a real directory).
    pub storage: tempfile::TempDir,
    pub client: reqwest::Client,
    /// The server's account settings (its development outbox holds the mail it sent).
    pub accounts: Arc<voxanne_http::accounts::AccountSettings>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub struct Response {
    pub status: StatusCode,
    pub body: Value,
}

impl Response {
    /// The stable error code of a JSON error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(None).await
    }

    /// The server's log on the test's output when RUST_LOG is set (e.g. `RUST_LOG=error`):
    /// what a 500's request id points at.
    fn log_when_asked() {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
    }

    pub async fn spawn_with(jwks: Option<JwksSource>) -> Self {
        Self::log_when_asked();
        Self::spawn_on(jwks, None).await
    }

    /// With the recordings in `store` instead of a local temp dir.
    pub async fn spawn_on(
        jwks: Option<JwksSource>,
        store: Option<Arc<dyn object_store::ObjectStore>>,
    ) -> Self {
        Self::spawn_configured(jwks, store, ServerConfig::default(), Limits::default()).await
    }

    /// With the edge's limits set to `server`.
    pub async fn spawn_with_server(server: ServerConfig) -> Self {
        Self::spawn_configured(None, None, server, Limits::default()).await
    }

    /// With the rate limits set to `limits`.
    pub async fn spawn_with_limits(limits: Limits) -> Self {
        Self::spawn_configured(None, None, ServerConfig::default(), limits).await
    }

    pub async fn spawn_configured(
        jwks: Option<JwksSource>,
        store: Option<Arc<dyn object_store::ObjectStore>>,
        server: ServerConfig,
        limits: Limits,
    ) -> Self {
        Self::spawn_on_db(TestDb::new().await, jwks, store, server, limits).await
    }

    /// With the application's pool going through the test pgbouncer in transaction mode.
    pub async fn spawn_behind_pgbouncer() -> Self {
        Self::spawn_on_db(
            TestDb::behind_pgbouncer().await,
            None,
            None,
            ServerConfig::default(),
            Limits::default(),
        )
        .await
    }

    async fn spawn_on_db(
        t: TestDb,
        jwks: Option<JwksSource>,
        store: Option<Arc<dyn object_store::ObjectStore>>,
        server: ServerConfig,
        limits: Limits,
    ) -> Self {
        Self::spawn_full(t, jwks, store, server, limits, None, None).await
    }

    /// With the calendar providers `calendar` makes from this server's own address (its
    /// public URL, where the providers send the browser back).
    pub async fn spawn_with_calendar(
        calendar: impl FnOnce(url::Url) -> CalendarOAuth + Send + 'static,
    ) -> Self {
        Self::spawn_full(
            TestDb::new().await,
            None,
            None,
            ServerConfig::default(),
            Limits::default(),
            None,
            Some(Box::new(calendar)),
        )
        .await
    }

    /// With Vapi's REST API at `api_url` (a fake on loopback).
    pub async fn spawn_with_vapi_api(api_url: &str) -> Self {
        Self::spawn_full(
            TestDb::new().await,
            None,
            None,
            ServerConfig::default(),
            Limits::default(),
            Some(api_url.to_owned()),
            None,
        )
        .await
    }

    async fn spawn_full(
        t: TestDb,
        jwks: Option<JwksSource>,
        store: Option<Arc<dyn object_store::ObjectStore>>,
        server: ServerConfig,
        limits: Limits,
        vapi_api: Option<String>,
        calendar: Option<Box<dyn FnOnce(url::Url) -> CalendarOAuth + Send>>,
    ) -> Self {
        let auth = JwtVerifier::new(AuthConfig {
            hs256_secret: Some(SecretString::from(SECRET)),
            jwks,
            audience: AUDIENCE.into(),
        })
        .await
        .expect("verifier");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let storage = tempfile::tempdir().expect("storage dir");
        let recordings: Arc<dyn object_store::ObjectStore> = match store {
            Some(store) => store,
            None => Arc::new(
                object_store::local::LocalFileSystem::new_with_prefix(storage.path())
                    .expect("storage"),
            ),
        };
        let (security, _) = SecurityLog::start(t.db.clone());
        // The demo clinics' users sign in with one click, as in demo mode.
        let mut settings =
            voxanne_http::accounts::AccountSettings::development(base.parse().expect("url"));
        settings.demo_users = voxanne_db::demo::clinics()
            .iter()
            .flat_map(|c| {
                [("owner", c.owner), ("staff", c.staff)].map(|(role, user)| {
                    voxanne_http::accounts::DemoUser {
                        label: format!("{} {role}", c.name),
                        user_id: user,
                        org_id: c.org,
                    }
                })
            })
            .collect();
        let accounts = Arc::new(settings);
        let state = AppState {
            db: t.db.clone(),
            auth: Arc::new(auth),
            recordings: recordings.clone(),
            keyring: Arc::new(keyring()),
            metrics: Arc::default(),
            security: security.clone(),
            limits: Arc::new(limits),
            // Vapi reaches this server at its own address; Vapi's API is a fake when a test
            // gives one.
            vapi: Arc::new(voxanne_http::vapi::VapiSettings::new(
                Some(base.parse().expect("url")),
                vapi_api
                    .as_deref()
                    .unwrap_or(voxanne_http::vapi::DEFAULT_API_URL)
                    .parse()
                    .expect("url"),
            )),
            calendar: Arc::new(match calendar {
                Some(make) => make(base.parse().expect("url")),
                None => CalendarOAuth::new(Some(base.parse().expect("url")), None, None),
            }),
            accounts: accounts.clone(),
            live: Arc::default(),
        };
        let metrics_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let metrics_base = format!("http://{}", metrics_listener.local_addr().expect("addr"));
        tokio::spawn(voxanne_http::server::run(
            metrics_listener,
            voxanne_http::metrics_router(state.clone()),
            ServerConfig::default(),
            std::future::pending(),
        ));
        tokio::spawn(voxanne_http::serve(listener, state, server, async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Self {
            base,
            metrics_base,
            security,
            t,
            storage,
            client,
            accounts,
            _shutdown: tx,
        }
    }

    /// The server's address, for raw sockets.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("the server's address")
    }

    /// Seeds the two demo clinics ("Clinic A", "Clinic B").
    pub async fn clinics(&self) -> [DemoClinic; 2] {
        demo::seed(&self.t.db)
            .await
            .expect("seeding the demo clinics")
    }

    pub fn token(&self, user: UserId, org: Option<OrgId>) -> String {
        token_for(user, org)
    }

    /// GET with a bearer token (if any) and extra headers.
    pub async fn get(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        declared::check("GET", path, status.as_u16());
        let csv = is_csv(&response);
        let text = response.text().await.expect("body");
        let body = if csv && status.is_success() {
            // An export: its text (errors are JSON still).
            Value::String(text)
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{path}: body is not JSON: {text}"))
        };
        Response { status, body }
    }

    pub async fn get_as(&self, path: &str, token: &str) -> Response {
        self.get(path, Some(token), &[]).await
    }

    /// Any method, with a JSON body (if any), a bearer token and extra headers.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Response {
        let method_name = method;
        let method: reqwest::Method = method.parse().expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        declared::check(method_name, path, status.as_u16());
        let csv = is_csv(&response);
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else if csv && status.is_success() {
            Value::String(text)
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{path}: body is not JSON: {text}"))
        };
        Response { status, body }
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send("POST", path, token, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send("PUT", path, token, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> Response {
        self.send("PATCH", path, token, Some(body), &[]).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Response {
        self.send("DELETE", path, token, None, &[]).await
    }

    /// How many access records `org` has.
    pub async fn access_records(&self, org: OrgId) -> i64 {
        let mut admin = self.t.admin().await;
        sqlx::query_scalar("SELECT count(*) FROM access_log WHERE org_id = $1")
            .bind(org.as_uuid())
            .fetch_one(&mut admin)
            .await
            .expect("access records")
    }

    /// [`TestApp::snapshot`] without the security log: the clinic's data, which a probe of
    /// its ids must not change (while its security log records the probe).
    pub async fn data_snapshot(&self, org: OrgId) -> Vec<(String, Vec<Value>)> {
        let mut all = self.snapshot(org).await;
        all.retain(|(table, _)| table != "security_events");
        all
    }

    /// `clinic`'s security events (newest first), once the security log has written
    /// everything reported so far.
    pub async fn security_events(&self, clinic: &DemoClinic) -> Vec<Value> {
        self.security.flush().await;
        let r = self
            .get_as(
                "/api/v1/security-events?limit=100",
                &self.token(clinic.owner, Some(clinic.org)),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["data"].as_array().cloned().unwrap_or_default()
    }

    /// The `cross_tenant_probe` events of `clinic`: its ids that another clinic asked for.
    pub async fn probe_events(&self, clinic: &DemoClinic) -> Vec<Value> {
        self.security_events(clinic)
            .await
            .into_iter()
            .filter(|e| e["kind"] == "cross_tenant_probe")
            .collect()
    }

    /// The operators' log of cross-clinic findings (read as the superuser: no clinic can).
    pub async fn operator_log(&self) -> Vec<(Uuid, Uuid, String)> {
        self.security.flush().await;
        let mut admin = self.t.admin().await;
        sqlx::query_as(
            "SELECT prober_org, target_org, target_table FROM app.operator_security_log
              ORDER BY created_at",
        )
        .fetch_all(&mut admin)
        .await
        .expect("the operators' log")
    }

    /// Gives `clinic` a Vapi HMAC credential on Vapi's defaults with `secret`, through the
    /// API, as its owner (what [`TestApp::post_vapi`] signs for).
    pub async fn set_vapi_secret(&self, clinic: &DemoClinic, secret: &str) {
        self.set_vapi_auth(clinic, json!({"type": "hmac"}), secret)
            .await;
    }

    /// Sets how `clinic`'s Vapi credential authenticates (`server_auth`) and its secret.
    pub async fn set_vapi_auth(&self, clinic: &DemoClinic, server_auth: Value, secret: &str) {
        let r = self
            .put(
                "/api/v1/integrations/vapi",
                &self.token(clinic.owner, Some(clinic.org)),
                &json!({"config": {"server_auth": server_auth}, "secrets": {"webhook_secret": secret}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }

    /// POSTs `body` to the Vapi webhook as the platform does with an HMAC credential on
    /// Vapi's defaults, signed with `secret` at `timestamp` (None: unsigned).
    pub async fn post_vapi(&self, body: &[u8], signed: Option<(&str, i64)>) -> Response {
        let headers = signed
            .map(|(secret, ts)| vapi_hmac_headers(secret, ts, body))
            .unwrap_or_default();
        self.post_vapi_with(body, &headers).await
    }

    /// POSTs `body` to the Vapi webhook with exactly these authentication headers.
    pub async fn post_vapi_with(&self, body: &[u8], headers: &[(String, String)]) -> Response {
        let mut request = self
            .client
            .post(format!("{}/webhooks/voice/vapi", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        declared::check("POST", "/webhooks/voice/vapi", status.as_u16());
        let body = response.json().await.unwrap_or(Value::Null);
        Response { status, body }
    }

    /// Every row of every tenant table that belongs to `org`, as JSON, read by the superuser:
    /// compare before and after to prove that nothing of a clinic changed. Not its access log,
    /// where the test's own reads are recorded ([`TestApp::access_records`] counts it).
    pub async fn snapshot(&self, org: OrgId) -> Vec<(String, Vec<Value>)> {
        let mut admin = self.t.admin().await;
        let mut out = Vec::new();
        for (table, column) in voxanne_testkit::tenant_tables(&mut admin).await {
            if table == "access_log" {
                continue;
            }
            let mut rows: Vec<Value> = sqlx::query_scalar(&format!(
                "SELECT to_jsonb(t) FROM {table} t WHERE {column} = $1 ORDER BY to_jsonb(t)::text"
            ))
            .bind(org.as_uuid())
            .fetch_all(&mut admin)
            .await
            .expect("snapshot");
            // The text the clinic wrote, not its ciphertext (each write seals anew).
            for row in &mut rows {
                voxanne_testkit::open_patient_text(&table, row);
            }
            out.push((table, rows));
        }
        out
    }
}

/// Whether a response is CSV (the access log's export).
fn is_csv(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/csv"))
}

/// The headers Vapi sends with an HMAC credential on its defaults, written here from Vapi's
/// documentation rather than from the server's code (docs.vapi.ai/server-url/server-authentication;
/// `HMACAuthenticationPlan` in Vapi's API: `algorithm` sha256, `timestampHeader` `x-timestamp`,
/// `signatureHeader` `x-signature`, `payloadFormat` `{timestamp}.{body}`, `signatureEncoding`
/// hex): the hex HMAC-SHA256 of `"{timestamp}.{raw body}"` keyed with the secret.
pub fn vapi_hmac_headers(secret: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    vec![
        ("x-timestamp".to_owned(), timestamp.to_string()),
        (
            "x-signature".to_owned(),
            hex::encode(mac.finalize().into_bytes()),
        ),
    ]
}

/// Serves the API on `db` (not a `TestDb`), with the test secrets; returns the base URL.
pub async fn serve_db(db: voxanne_db::Db) -> String {
    let auth = JwtVerifier::new(AuthConfig {
        hs256_secret: Some(SecretString::from(SECRET)),
        jwks: None,
        audience: AUDIENCE.into(),
    })
    .await
    .expect("verifier");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let storage = std::env::temp_dir();
    let (security, _) = SecurityLog::start(db.clone());
    let state = AppState {
        security,
        limits: Arc::default(),
        db,
        auth: Arc::new(auth),
        recordings: Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(storage).expect("storage"),
        ),
        keyring: Arc::new(keyring()),
        metrics: Arc::default(),
        vapi: Arc::default(),
        calendar: Arc::default(),
        accounts: Arc::new(voxanne_http::accounts::AccountSettings::development(
            base.parse().expect("url"),
        )),
        live: Arc::default(),
    };
    tokio::spawn(voxanne_http::serve(
        listener,
        state,
        ServerConfig::default(),
        std::future::pending(),
    ));
    base
}

/// A token for `user` acting in `org`, signed with the test secret.
pub fn token_for(user: UserId, org: Option<OrgId>) -> String {
    mint_hs256(
        &SecretString::from(SECRET),
        AUDIENCE,
        &DevToken {
            user,
            org,
            role: None,
            ttl: Duration::from_secs(600),
        },
    )
    .expect("token")
}

pub fn keyring() -> Keyring {
    Keyring::from_config(
        &SecretString::from(ENCRYPTION_KEY),
        Some(&SecretString::from(ENCRYPTION_KEYS_OLD)),
    )
    .expect("test keyring")
}

/// A keyring from before the rotation: `test1` is its current key.
pub fn keyring_before_rotation() -> Keyring {
    Keyring::from_config(&SecretString::from(ENCRYPTION_KEYS_OLD), None).expect("old keyring")
}

/// A token with arbitrary claims, signed with `key` under `alg` (and `kid`).
pub fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("signing")
}

/// Supabase-shaped claims for `user`, valid for ten minutes.
pub fn claims(user: UserId, org: Option<OrgId>) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({ "sub": user, "aud": AUDIENCE, "exp": now + 600, "iat": now, "role": "authenticated" });
    if let Some(org) = org {
        c["app_metadata"] = json!({ "org_id": org });
    }
    c
}

pub fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).expect("fixture")
}

/// Serves the fixture JWKS document over real HTTP on loopback, as an identity provider would.
pub async fn jwks_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().expect("addr")
    );
    let body = String::from_utf8(fixture("jwks.json")).expect("utf8");
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || async move { ([("content-type", "application/json")], body) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A Vapi server message from `tests/fixtures/vapi/{name}.json` (transcribed from Vapi's
/// documented shapes; see the README there), its `__PLACEHOLDERS__` filled in. The value of
/// `__ARGUMENTS_OBJECT__` is JSON, put in as it is (an object, or a string).
pub fn vapi_fixture(name: &str, fill: &[(&str, Value)]) -> Vec<u8> {
    let mut text = String::from_utf8(fixture(&format!("vapi/{name}.json"))).expect("utf-8");
    for (placeholder, value) in fill {
        let quoted = format!("\"{placeholder}\"");
        text = text.replace(&quoted, &value.to_string());
    }
    assert!(
        !text.contains("\"__"),
        "a placeholder left in {name}: {text}"
    );
    // Sent compact, as a platform sends it.
    serde_json::from_str::<Value>(&text)
        .expect("a fixture is JSON")
        .to_string()
        .into_bytes()
}

/// The jobs' schedule in the tests: a batch of 20, a minute's lease, quick polls, three
/// attempts, retries after a few milliseconds.
pub fn quick_schedule() -> voxanne_jobs::Schedule {
    voxanne_jobs::Schedule {
        batch: 20,
        lease: std::time::Duration::from_secs(60),
        idle_poll: std::time::Duration::from_millis(20),
        max_attempts: 3,
        backoff_base: std::time::Duration::from_millis(1),
        backoff_max: std::time::Duration::from_millis(5),
    }
}
