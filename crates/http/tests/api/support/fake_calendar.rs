//! A fake of Google's and Microsoft's OAuth 2.0 endpoints: a real HTTP server on loopback
//! that speaks their documented wire format (`tests/fixtures/calendar`, with the sources).
//!
//! - The authorization endpoints (`/google/authorize`, `/ms/oauth2/v2.0/authorize`) stand for
//!   the consent page: they check `response_type=code`, the client id and
//!   `code_challenge_method=S256`, remember the challenge and the redirect URI with a fresh
//!   code, and redirect (302) to `redirect_uri?code=…&state=…`, or `?error=access_denied&state=…`
//!   when the fake is told the person declines.
//! - The token endpoints (`/google/token`, `/ms/oauth2/v2.0/token`) take RFC 6749 section
//!   4.1.3's form with the client's credentials in the body and PKCE's `code_verifier`, and
//!   answer the documented token JSON, or 400 `invalid_grant` (the documented error body) for
//!   an unknown or used code, a redirect URI that differs from the authorization request's, or
//!   a verifier whose BASE64URL(SHA256) is not the challenge (RFC 7636 section 4.6), as the
//!   real ones do.
//! - Google's userinfo and Microsoft Graph's `/v1.0/me` answer the account for the issued
//!   access token; Google's `/revoke` takes `token=`.

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub const GOOGLE_CLIENT_ID: &str = "1234567890-abc.apps.googleusercontent.com";
pub const GOOGLE_CLIENT_SECRET: &str = "GOCSPX-google-test-secret";
pub const MICROSOFT_CLIENT_ID: &str = "2d4d11a2-f814-46a7-890a-274a72a7309e";
pub const MICROSOFT_CLIENT_SECRET: &str = "ms~test~secret";
pub const GOOGLE_EMAIL: &str = "frontdesk@clinic-a.example";
pub const MICROSOFT_EMAIL: &str = "reception@clinic-a.example";

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&super::fixture(&format!("calendar/{name}"))).expect("fixture JSON")
}

pub fn google_token() -> Value {
    fixture("google-token.json")
}

pub fn microsoft_token() -> Value {
    fixture("microsoft-token.json")
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Provider {
    Google,
    Microsoft,
}

struct Grant {
    provider: Provider,
    challenge: String,
    redirect_uri: String,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, Grant>,
    issued: u32,
    /// The next consent is declined (`error=access_denied`).
    decline: bool,
    /// Token requests received: (provider, form).
    token_requests: Vec<HashMap<String, String>>,
    revoked: Vec<String>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Inner>>);

#[derive(Clone)]
pub struct FakeCalendar {
    pub base: String,
    state: Fake,
}

impl FakeCalendar {
    pub async fn start() -> Self {
        let state = Fake::default();
        let app = Router::new()
            .route("/google/authorize", get(authorize_google))
            .route("/ms/oauth2/v2.0/authorize", get(authorize_microsoft))
            .route("/google/token", post(token_google))
            .route("/ms/oauth2/v2.0/token", post(token_microsoft))
            .route("/google/userinfo", get(userinfo))
            .route("/graph/v1.0/me", get(graph_me))
            .route("/google/revoke", post(revoke))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    /// The server's providers, pointed at this fake.
    pub fn settings(
        &self,
        public_url: url::Url,
        google: bool,
        microsoft: bool,
    ) -> voxanne_http::calendar_oauth::CalendarOAuth {
        use voxanne_http::calendar_oauth::{CalendarOAuth, ProviderApp};
        let u = |p: &str| url::Url::parse(&format!("{}{p}", self.base)).expect("url");
        CalendarOAuth::new(
            Some(public_url),
            google.then(|| ProviderApp {
                client_id: GOOGLE_CLIENT_ID.into(),
                client_secret: GOOGLE_CLIENT_SECRET.into(),
                auth_url: u("/google/authorize"),
                token_url: u("/google/token"),
                account_url: u("/google/userinfo"),
                revoke_url: Some(u("/google/revoke")),
            }),
            microsoft.then(|| ProviderApp {
                client_id: MICROSOFT_CLIENT_ID.into(),
                client_secret: MICROSOFT_CLIENT_SECRET.into(),
                auth_url: u("/ms/oauth2/v2.0/authorize"),
                token_url: u("/ms/oauth2/v2.0/token"),
                account_url: u("/graph/v1.0/me"),
                revoke_url: None,
            }),
        )
    }

    /// The next consent is declined.
    pub fn decline_next(&self) {
        self.state.0.lock().expect("lock").decline = true;
    }

    /// Forgets every issued code, as an expired one would be.
    pub fn expire_codes(&self) {
        self.state.0.lock().expect("lock").codes.clear();
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.0.lock().expect("lock").token_requests.clone()
    }

    pub fn revoked(&self) -> Vec<String> {
        self.state.0.lock().expect("lock").revoked.clone()
    }
}

fn oauth_error(status: StatusCode, body: Value) -> Response {
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

fn authorize(fake: &Fake, provider: Provider, q: &HashMap<String, String>) -> Response {
    let client_id = match provider {
        Provider::Google => GOOGLE_CLIENT_ID,
        Provider::Microsoft => MICROSOFT_CLIENT_ID,
    };
    let ok = q.get("response_type").map(String::as_str) == Some("code")
        && q.get("client_id").map(String::as_str) == Some(client_id)
        && q.get("code_challenge_method").map(String::as_str) == Some("S256")
        && q.get("code_challenge").is_some_and(|c| c.len() == 43)
        && q.contains_key("redirect_uri")
        && q.contains_key("scope");
    if !ok {
        return (StatusCode::BAD_REQUEST, "invalid authorization request").into_response();
    }
    let redirect_uri = q["redirect_uri"].clone();
    let state = q.get("state").cloned().unwrap_or_default();
    let mut inner = fake.0.lock().expect("lock");
    let mut target = url::Url::parse(&redirect_uri).expect("redirect uri");
    if std::mem::take(&mut inner.decline) {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_description", "The user denied access")
            .append_pair("state", &state);
    } else {
        inner.issued += 1;
        let code = format!("4/0Ab-code-{}", inner.issued);
        inner.codes.insert(
            code.clone(),
            Grant {
                provider,
                challenge: q["code_challenge"].clone(),
                redirect_uri,
            },
        );
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", &state);
    }
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

async fn authorize_google(
    State(fake): State<Fake>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    authorize(&fake, Provider::Google, &q)
}

async fn authorize_microsoft(
    State(fake): State<Fake>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    authorize(&fake, Provider::Microsoft, &q)
}

fn token(fake: &Fake, provider: Provider, form: HashMap<String, String>) -> Response {
    let (client_id, secret, success, refused) = match provider {
        Provider::Google => (
            GOOGLE_CLIENT_ID,
            GOOGLE_CLIENT_SECRET,
            "google-token.json",
            "google-invalid-grant.json",
        ),
        Provider::Microsoft => (
            MICROSOFT_CLIENT_ID,
            MICROSOFT_CLIENT_SECRET,
            "microsoft-token.json",
            "microsoft-invalid-grant.json",
        ),
    };
    let mut inner = fake.0.lock().expect("lock");
    inner.token_requests.push(form.clone());
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(client_id) || field("client_secret") != Some(secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "Unauthorized"}),
        );
    }
    if field("grant_type") != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
        );
    }
    // A code is used once, whatever the outcome.
    let grant = field("code").and_then(|c| inner.codes.remove(c));
    let verified = grant.as_ref().is_some_and(|g| {
        g.provider == provider
            && field("redirect_uri") == Some(g.redirect_uri.as_str())
            && field("code_verifier").is_some_and(|v| {
                URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes())) == g.challenge
            })
    });
    if !verified {
        return oauth_error(StatusCode::BAD_REQUEST, fixture(refused));
    }
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(fixture(success)),
    )
        .into_response()
}

async fn token_google(
    State(fake): State<Fake>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    token(&fake, Provider::Google, form)
}

async fn token_microsoft(
    State(fake): State<Fake>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    token(&fake, Provider::Microsoft, form)
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

async fn userinfo(headers: HeaderMap) -> Response {
    if bearer(&headers).as_deref() != google_token()["access_token"].as_str() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({"sub": "110169484474386276334", "email": GOOGLE_EMAIL, "email_verified": true}))
        .into_response()
}

async fn graph_me(headers: HeaderMap) -> Response {
    if bearer(&headers).as_deref() != microsoft_token()["access_token"].as_str() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "displayName": "Reception", "mail": MICROSOFT_EMAIL,
        "userPrincipalName": "reception@clinica.onmicrosoft.com",
        "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    }))
    .into_response()
}

async fn revoke(State(fake): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    match form.get("token") {
        Some(token) => {
            fake.0.lock().expect("lock").revoked.push(token.clone());
            StatusCode::OK.into_response()
        }
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Bad Request"}),
        ),
    }
}
