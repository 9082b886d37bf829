//! A fake of Google's and Microsoft's OAuth 2.0 endpoints, Google Calendar API v3 and
//! Microsoft Graph v1.0 calendars: a real HTTP server on loopback that speaks their documented
//! wire format (`fixtures/calendar`, with the sources in its README).
//!
//! OAuth:
//! - The authorization endpoints (`/google/authorize`, `/ms/oauth2/v2.0/authorize`) stand for
//!   the consent page: they check `response_type=code`, the client id and
//!   `code_challenge_method=S256`, remember the challenge and the redirect URI with a fresh
//!   code, and redirect (302) to `redirect_uri?code=…&state=…`, or `?error=access_denied&state=…`
//!   when the fake is told the person declines.
//! - The token endpoints (`/google/token`, `/ms/oauth2/v2.0/token`) take RFC 6749 section
//!   4.1.3's form with the client's credentials in the body and PKCE's `code_verifier`, and
//!   answer the documented token JSON (the default account's tokens), or 400 `invalid_grant`
//!   for an unknown or used code, a redirect URI that differs from the authorization
//!   request's, or a verifier whose BASE64URL(SHA256) is not the challenge (RFC 7636 section
//!   4.6). `grant_type=refresh_token` (RFC 6749 section 6) answers a fresh access token (and,
//!   from Microsoft, a rotated refresh token), or `invalid_grant` for a refresh token it does
//!   not know or whose grant was revoked.
//! - Google's userinfo and Graph's `/v1.0/me` answer the account of the access token; Google's
//!   `/revoke` takes `token=` and revokes the grant.
//!
//! Calendars (under [`FakeCalendar::google_api`] and [`FakeCalendar::graph`]): each access
//! token belongs to one account and reaches only that account's calendars; an expired one is
//! answered the provider's documented 401. Google: `freeBusy`, `events` insert (a client id is
//! checked against the documented alphabet; a duplicate is 409), get, patch, update, delete (the
//! event stays, `cancelled`; deleting it again is 410), `events/watch`, `channels/stop`. Graph:
//! `getSchedule`, events create (`transactionId` answers the event made before), get, patch,
//! delete, `subscriptions` (created only after the notification URL answers Graph's
//! validation request), patch, delete. Times are UTC only (Graph's `timeZone` must be `UTC`).
//!
//! Test hooks: accounts, seeded busy events, staff moving or deleting events, expiring access
//! tokens, revoking grants, injected failures (`fail_next`), a delay, being down, the log of
//! requests received. A watched calendar's changes are notified as the providers do.

// The helpers' errors are the answers themselves; a test fake need not box them.
#![allow(clippy::result_large_err)]

use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Duration as Span, NaiveDateTime, SecondsFormat, Utc};
use secrecy::SecretString;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use uuid::Uuid;
use voxanne_calendar::{CalendarOAuth, CalendarProvider, ProviderApp};

pub const GOOGLE_CLIENT_ID: &str = "1234567890-abc.apps.googleusercontent.com";
pub const GOOGLE_CLIENT_SECRET: &str = "GOCSPX-google-test-secret";
pub const MICROSOFT_CLIENT_ID: &str = "2d4d11a2-f814-46a7-890a-274a72a7309e";
pub const MICROSOFT_CLIENT_SECRET: &str = "ms~test~secret";
/// The account a Google consent links (its tokens are `google-token.json`'s).
pub const GOOGLE_EMAIL: &str = "frontdesk@clinic-a.example";
/// The account a Microsoft consent links (its tokens are `microsoft-token.json`'s).
pub const MICROSOFT_EMAIL: &str = "reception@clinic-a.example";

/// The fixtures' directory.
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/calendar");

/// A fixture of `fixtures/calendar`, parsed.
pub fn fixture(name: &str) -> Value {
    let bytes = std::fs::read(format!("{FIXTURES}/{name}")).expect("calendar fixture");
    serde_json::from_slice(&bytes).expect("fixture JSON")
}

/// Google's documented answer to a code exchange (the fake's answer, as it is).
pub fn google_token() -> Value {
    fixture("google-token.json")
}

/// Microsoft's documented answer to a code exchange (the fake's answer, as it is).
pub fn microsoft_token() -> Value {
    fixture("microsoft-token.json")
}

type Provider = CalendarProvider;

/// A linked account as a test holds it: its address and its current tokens.
#[derive(Clone, Debug)]
pub struct Account {
    pub provider: CalendarProvider,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
}

impl Account {
    /// The access token, as the client takes it.
    pub fn access(&self) -> SecretString {
        SecretString::from(self.access_token.as_str())
    }

    /// The refresh token, as the client takes it.
    pub fn refresh(&self) -> SecretString {
        SecretString::from(self.refresh_token.as_str())
    }
}

/// An event as the fake keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeEvent {
    pub id: String,
    /// `primary` or the calendar's id.
    pub calendar: String,
    pub summary: String,
    pub description: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub time_zone: String,
    /// Google's `confirmed` or `cancelled` (Graph deletes outright).
    pub status: String,
    /// Graph's `showAs` (Google: `free` is `transparency: transparent`).
    pub show_as: String,
    pub transaction_id: Option<String>,
    /// Google's private extended properties.
    pub private: Map<String, Value>,
    pub sequence: u32,
    pub updated: DateTime<Utc>,
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The path (no query).
    pub path: String,
    /// The account of the bearer token, if it had a known one.
    pub account: Option<String>,
    /// The `Prefer` header.
    pub prefer: Option<String>,
}

/// A push channel (Google) or subscription (Graph) the fake holds.
#[derive(Clone, Debug)]
pub struct FakeWatch {
    pub provider: CalendarProvider,
    pub account: String,
    pub id: String,
    pub resource_id: String,
    pub address: String,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

struct Grant {
    provider: Provider,
    challenge: String,
    redirect_uri: String,
}

struct AccountData {
    provider: Provider,
    email: String,
    calendars: BTreeSet<String>,
    events: Vec<FakeEvent>,
}

struct Fault {
    status: u16,
    retry_after: Option<String>,
}

#[derive(Default)]
struct Inner {
    codes: HashMap<String, Grant>,
    issued: u32,
    /// The next consent is declined (`error=access_denied`).
    decline: bool,
    /// Token requests received (forms).
    token_requests: Vec<HashMap<String, String>>,
    revoked: Vec<String>,
    accounts: Vec<AccountData>,
    /// Access token → (account, expired).
    access: HashMap<String, (usize, bool)>,
    /// Refresh token → account, while its grant stands.
    refresh: HashMap<String, usize>,
    requests: Vec<Logged>,
    faults: VecDeque<Fault>,
    delay: Duration,
    down: bool,
    watches: Vec<(usize, FakeWatch)>,
    counter: u64,
}

impl Inner {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn account_index(&mut self, provider: Provider, email: &str) -> usize {
        if let Some(i) = self
            .accounts
            .iter()
            .position(|a| a.provider == provider && a.email == email)
        {
            return i;
        }
        self.accounts.push(AccountData {
            provider,
            email: email.to_owned(),
            calendars: BTreeSet::from(["primary".to_owned()]),
            events: Vec::new(),
        });
        self.accounts.len() - 1
    }

    fn index_of(&self, account: &Account) -> usize {
        self.accounts
            .iter()
            .position(|a| a.provider == account.provider && a.email == account.email)
            .expect("an account of this fake")
    }

    fn issue_access(&mut self, account: usize) -> String {
        let n = self.next();
        let token = match self.accounts[account].provider {
            Provider::Google => format!("ya29.a0-fake-access-{n}"),
            Provider::Microsoft => format!("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.fake-access-{n}"),
        };
        self.access.insert(token.clone(), (account, false));
        token
    }

    fn issue_refresh(&mut self, account: usize) -> String {
        let n = self.next();
        let token = match self.accounts[account].provider {
            Provider::Google => format!("1//04-fake-refresh-{n}"),
            Provider::Microsoft => format!("M.C507_BAY.0.U.-fake-refresh-{n}"),
        };
        self.refresh.insert(token.clone(), account);
        token
    }

    fn revoke_grant(&mut self, account: usize) {
        self.refresh.retain(|_, a| *a != account);
        for (a, expired) in self.access.values_mut() {
            if *a == account {
                *expired = true;
            }
        }
    }
}

#[derive(Clone)]
struct Fake {
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

impl Fake {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("lock")
    }
}

/// The fake providers. Cloning shares the same server.
#[derive(Clone)]
pub struct FakeCalendar {
    pub base: String,
    state: Fake,
}

impl FakeCalendar {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Fake {
            inner: Arc::default(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        };
        {
            // The accounts a consent links: their tokens are the documented examples.
            let mut inner = state.lock();
            for (provider, email, token) in [
                (Provider::Google, GOOGLE_EMAIL, google_token()),
                (Provider::Microsoft, MICROSOFT_EMAIL, microsoft_token()),
            ] {
                let i = inner.account_index(provider, email);
                let access = token["access_token"].as_str().expect("access").to_owned();
                let refresh = token["refresh_token"].as_str().expect("refresh").to_owned();
                inner.access.insert(access, (i, false));
                inner.refresh.insert(refresh, i);
            }
        }
        let google = Router::new()
            .route("/calendar/v3/freeBusy", post(google_free_busy))
            .route("/calendar/v3/calendars/{cal}/events", post(google_insert))
            .route(
                "/calendar/v3/calendars/{cal}/events/watch",
                post(google_watch),
            )
            .route(
                "/calendar/v3/calendars/{cal}/events/{id}",
                get(google_get)
                    .patch(google_patch)
                    .put(google_update)
                    .delete(google_delete),
            )
            .route("/calendar/v3/channels/stop", post(google_stop));
        let graph = Router::new()
            .route("/v1.0/me", get(graph_me))
            .route(
                "/v1.0/me/calendar/getSchedule",
                post(graph_schedule_primary),
            )
            .route("/v1.0/me/calendars/{cal}/getSchedule", post(graph_schedule))
            .route("/v1.0/me/calendar/events", post(graph_create_primary))
            .route("/v1.0/me/calendars/{cal}/events", post(graph_create))
            .route(
                "/v1.0/me/events/{id}",
                get(graph_get).patch(graph_patch).delete(graph_delete),
            )
            .route("/v1.0/subscriptions", post(graph_subscribe))
            .route(
                "/v1.0/subscriptions/{id}",
                axum::routing::patch(graph_renew).delete(graph_unsubscribe),
            );
        let app = Router::new()
            .route("/google/authorize", get(authorize_google))
            .route("/ms/oauth2/v2.0/authorize", get(authorize_microsoft))
            .route("/google/token", post(token_google))
            .route("/ms/oauth2/v2.0/token", post(token_microsoft))
            .route("/google/userinfo", get(userinfo))
            .route("/google/revoke", post(revoke))
            .nest("/google-api", google)
            .nest("/graph", graph)
            .layer(middleware::from_fn_with_state(state.clone(), faults))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    fn url(&self, path: &str) -> url::Url {
        url::Url::parse(&format!("{}{path}", self.base)).expect("url")
    }

    /// The Google Calendar API's base on this fake (`ProviderApp::api_url`).
    pub fn google_api(&self) -> url::Url {
        self.url("/google-api")
    }

    /// Microsoft Graph's base on this fake (`ProviderApp::api_url`).
    pub fn graph(&self) -> url::Url {
        self.url("/graph")
    }

    /// The server's providers, pointed at this fake.
    pub fn settings(&self, public_url: url::Url, google: bool, microsoft: bool) -> CalendarOAuth {
        CalendarOAuth::new(
            Some(public_url),
            google.then(|| self.google_app()),
            microsoft.then(|| self.microsoft_app()),
        )
    }

    /// Both providers, pointed at this fake, without a public URL (as a worker has them).
    pub fn client(&self) -> CalendarOAuth {
        CalendarOAuth::new(None, Some(self.google_app()), Some(self.microsoft_app()))
    }

    /// Google's application on this fake.
    pub fn google_app(&self) -> ProviderApp {
        ProviderApp {
            client_id: GOOGLE_CLIENT_ID.into(),
            client_secret: GOOGLE_CLIENT_SECRET.into(),
            auth_url: self.url("/google/authorize"),
            token_url: self.url("/google/token"),
            account_url: self.url("/google/userinfo"),
            revoke_url: Some(self.url("/google/revoke")),
            api_url: self.google_api(),
        }
    }

    /// Microsoft's application on this fake.
    pub fn microsoft_app(&self) -> ProviderApp {
        ProviderApp {
            client_id: MICROSOFT_CLIENT_ID.into(),
            client_secret: MICROSOFT_CLIENT_SECRET.into(),
            auth_url: self.url("/ms/oauth2/v2.0/authorize"),
            token_url: self.url("/ms/oauth2/v2.0/token"),
            account_url: self.url("/graph/v1.0/me"),
            revoke_url: None,
            api_url: self.graph(),
        }
    }

    /// The next consent is declined.
    pub fn decline_next(&self) {
        self.state.lock().decline = true;
    }

    /// Forgets every issued code, as an expired one would be.
    pub fn expire_codes(&self) {
        self.state.lock().codes.clear();
    }

    pub fn token_requests(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().token_requests.clone()
    }

    /// The tokens `/google/revoke` was given.
    pub fn revoked(&self) -> Vec<String> {
        self.state.lock().revoked.clone()
    }

    /// An account of `provider` at `email` (made if new), with a fresh access and refresh
    /// token, as if it had just been linked.
    pub fn account(&self, provider: CalendarProvider, email: &str) -> Account {
        let mut inner = self.state.lock();
        let i = inner.account_index(provider, email);
        Account {
            provider,
            email: email.to_owned(),
            access_token: inner.issue_access(i),
            refresh_token: inner.issue_refresh(i),
        }
    }

    /// Gives the account a calendar besides its primary one.
    pub fn add_calendar(&self, account: &Account, calendar_id: &str) {
        let mut inner = self.state.lock();
        let i = inner.index_of(account);
        inner.accounts[i].calendars.insert(calendar_id.to_owned());
    }

    /// Staff book `start`..`end` in the account's primary calendar, shown as busy.
    pub fn seed_busy(&self, account: &Account, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
        self.seed_event(account, "primary", start, end, "busy")
    }

    /// Staff book an event, shown as `show_as` (`free`, `tentative`, `busy`, `oof`,
    /// `workingElsewhere`). Returns its id.
    pub fn seed_event(
        &self,
        account: &Account,
        calendar: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        show_as: &str,
    ) -> String {
        let mut inner = self.state.lock();
        let i = inner.index_of(account);
        let id = new_event_id(&mut inner, account.provider);
        inner.accounts[i].events.push(FakeEvent {
            id: id.clone(),
            calendar: calendar.to_owned(),
            summary: "Staff booking".into(),
            description: String::new(),
            start,
            end,
            time_zone: "UTC".into(),
            status: "confirmed".into(),
            show_as: show_as.to_owned(),
            transaction_id: None,
            private: Map::new(),
            sequence: 0,
            updated: Utc::now(),
        });
        id
    }

    /// Staff move an event in the provider's own app.
    pub fn staff_move(
        &self,
        account: &Account,
        event_id: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) {
        let i = {
            let mut inner = self.state.lock();
            let i = inner.index_of(account);
            let event = inner.accounts[i]
                .events
                .iter_mut()
                .find(|e| e.id == event_id)
                .expect("an event of the account");
            event.start = start;
            event.end = end;
            event.sequence += 1;
            event.updated = Utc::now();
            i
        };
        notify(&self.state, i, event_id, "updated");
    }

    /// Staff delete an event in the provider's own app (Google keeps it as cancelled).
    pub fn staff_delete(&self, account: &Account, event_id: &str) {
        let i = {
            let mut inner = self.state.lock();
            let i = inner.index_of(account);
            let events = &mut inner.accounts[i].events;
            match account.provider {
                Provider::Google => {
                    let event = events
                        .iter_mut()
                        .find(|e| e.id == event_id)
                        .expect("an event of the account");
                    event.status = "cancelled".into();
                }
                Provider::Microsoft => events.retain(|e| e.id != event_id),
            }
            i
        };
        notify(&self.state, i, event_id, "deleted");
    }

    /// The account's events, cancelled ones included.
    pub fn events(&self, account: &Account) -> Vec<FakeEvent> {
        let inner = self.state.lock();
        inner.accounts[inner.index_of(account)].events.clone()
    }

    /// Every access token issued to the account so far is expired.
    pub fn expire_access_tokens(&self, account: &Account) {
        let mut inner = self.state.lock();
        let i = inner.index_of(account);
        for (a, expired) in inner.access.values_mut() {
            if *a == i {
                *expired = true;
            }
        }
    }

    /// The account withdraws its consent: its refresh tokens are refused (`invalid_grant`)
    /// and its access tokens expire.
    pub fn revoke_grant(&self, account: &Account) {
        let mut inner = self.state.lock();
        let i = inner.index_of(account);
        inner.revoke_grant(i);
    }

    /// The next `n` requests are answered `status` (with the provider's documented body for
    /// 403 rate limit, 429 and 503) and, if given, `Retry-After`.
    pub fn fail_next(&self, n: usize, status: u16, retry_after: Option<&str>) {
        let mut inner = self.state.lock();
        for _ in 0..n {
            inner.faults.push_back(Fault {
                status,
                retry_after: retry_after.map(str::to_owned),
            });
        }
    }

    /// Every request waits `delay` before it is answered.
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().delay = delay;
    }

    /// While down, every request is answered 503.
    pub fn set_down(&self, down: bool) {
        self.state.lock().down = down;
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().requests.clone()
    }

    /// The channels and subscriptions that stand.
    pub fn watches(&self) -> Vec<FakeWatch> {
        self.state
            .lock()
            .watches
            .iter()
            .map(|(_, w)| w.clone())
            .collect()
    }
}

fn new_event_id(inner: &mut Inner, provider: Provider) -> String {
    let n = inner.next();
    match provider {
        // Google's own ids are base32hex too.
        Provider::Google => format!("{:x}{n:04}", Uuid::new_v4().simple()),
        Provider::Microsoft => format!("AAMkAGI2TG93AAAAAA{n}AAA="),
    }
}

fn provider_of(path: &str) -> Provider {
    if path.starts_with("/google") {
        Provider::Google
    } else {
        Provider::Microsoft
    }
}

/// The provider's documented error body for `status`.
fn error_body(provider: Provider, status: u16) -> Value {
    let name = match (provider, status) {
        (Provider::Google, 401) => "google-error-401.json",
        (Provider::Google, 403) => "google-error-403-rate-limit.json",
        (Provider::Google, 404) => "google-error-404.json",
        (Provider::Google, 409) => "google-error-409.json",
        (Provider::Google, 410) => "google-error-410.json",
        (Provider::Google, 429) => "google-error-429.json",
        (Provider::Google, 503) => "google-error-503.json",
        (Provider::Microsoft, 401) => "microsoft-error-401.json",
        (Provider::Microsoft, 404) => "microsoft-error-404.json",
        (Provider::Microsoft, 429) => "microsoft-error-429.json",
        (Provider::Microsoft, 503) => "microsoft-error-503.json",
        (Provider::Google, _) => {
            return json!({"error": {"code": status, "message": "Backend Error",
                "errors": [{"domain": "global", "reason": "backendError", "message": "Backend Error"}]}})
        }
        (Provider::Microsoft, _) => {
            return json!({"error": {"code": "generalException", "message": "An unspecified error has occurred."}})
        }
    };
    fixture(name)
}

fn api_error(provider: Provider, status: u16) -> Response {
    let mut response = (
        StatusCode::from_u16(status).expect("status"),
        Json(error_body(provider, status)),
    )
        .into_response();
    if status == 401 {
        let challenge = match provider {
            Provider::Google => {
                "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\""
            }
            Provider::Microsoft => "Bearer realm=\"\", error=\"invalid_token\"",
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static(challenge),
        );
    }
    response
}

fn bad_request(provider: Provider, message: &str) -> Response {
    let body = match provider {
        Provider::Google => json!({"error": {"errors": [{"domain": "global", "reason": "invalid",
            "message": message}], "code": 400, "message": message}}),
        Provider::Microsoft => json!({"error": {"code": "BadRequest", "message": message}}),
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::to_owned)
}

/// The log, the delay, being down and the injected failures, before any route.
async fn faults(State(fake): State<Fake>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let provider = provider_of(&path);
    let (delay, fault) = {
        let mut inner = fake.lock();
        let account = bearer(request.headers())
            .and_then(|t| inner.access.get(&t).map(|(a, _)| *a))
            .map(|a| inner.accounts[a].email.clone());
        inner.requests.push(Logged {
            method: request.method().to_string(),
            path: path.clone(),
            account,
            prefer: request
                .headers()
                .get("prefer")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        let fault = if inner.down {
            Some(Fault {
                status: 503,
                retry_after: None,
            })
        } else {
            inner.faults.pop_front()
        };
        (inner.delay, fault)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match fault {
        Some(fault) => {
            let mut response = api_error(provider, fault.status);
            if let Some(wait) = fault.retry_after {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from_str(&wait).expect("retry-after"),
                );
            }
            response
        }
        None => next.run(request).await,
    }
}

/// The account of the request's access token, or the provider's 401.
fn authed(fake: &Fake, headers: &HeaderMap, provider: Provider) -> Result<usize, Response> {
    let inner = fake.lock();
    bearer(headers)
        .and_then(|t| inner.access.get(&t).copied())
        .filter(|(a, expired)| !expired && inner.accounts[*a].provider == provider)
        .map(|(a, _)| a)
        .ok_or_else(|| api_error(provider, 401))
}

// ---- OAuth ----

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
    let mut inner = fake.lock();
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
    let (client_id, secret, success, refreshed, refused) = match provider {
        Provider::Google => (
            GOOGLE_CLIENT_ID,
            GOOGLE_CLIENT_SECRET,
            "google-token.json",
            "google-refresh.json",
            "google-invalid-grant.json",
        ),
        Provider::Microsoft => (
            MICROSOFT_CLIENT_ID,
            MICROSOFT_CLIENT_SECRET,
            "microsoft-token.json",
            "microsoft-refresh.json",
            "microsoft-invalid-grant.json",
        ),
    };
    let mut inner = fake.lock();
    inner.token_requests.push(form.clone());
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("client_id") != Some(client_id) || field("client_secret") != Some(secret) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "Unauthorized"}),
        );
    }
    let ok = |body: Value| {
        (
            StatusCode::OK,
            [(header::CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response()
    };
    match field("grant_type") {
        Some("authorization_code") => {
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
            ok(fixture(success))
        }
        Some("refresh_token") => {
            let account = field("refresh_token")
                .and_then(|t| inner.refresh.get(t).copied())
                .filter(|a| inner.accounts[*a].provider == provider);
            let Some(account) = account else {
                return oauth_error(StatusCode::BAD_REQUEST, fixture(refused));
            };
            let mut body = fixture(refreshed);
            body["access_token"] = json!(inner.issue_access(account));
            // Microsoft rotates the refresh token (the old one stays valid until it expires);
            // Google keeps it and answers none.
            if provider == Provider::Microsoft {
                body["refresh_token"] = json!(inner.issue_refresh(account));
            }
            ok(body)
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type"}),
        ),
    }
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

async fn userinfo(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    let account = match authed(&fake, &headers, Provider::Google) {
        Ok(a) => a,
        Err(_) => return StatusCode::UNAUTHORIZED.into_response(),
    };
    let email = fake.lock().accounts[account].email.clone();
    Json(json!({"sub": "110169484474386276334", "email": email, "email_verified": true}))
        .into_response()
}

async fn graph_me(State(fake): State<Fake>, headers: HeaderMap) -> Response {
    let account = match authed(&fake, &headers, Provider::Microsoft) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let email = fake.lock().accounts[account].email.clone();
    Json(json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
        "displayName": "Reception", "mail": email,
        "userPrincipalName": "reception@clinica.onmicrosoft.com",
        "id": "87d349ed-44d7-43e1-9a83-5f2406dee5bd"
    }))
    .into_response()
}

async fn revoke(State(fake): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    match form.get("token") {
        Some(token) => {
            let mut inner = fake.lock();
            inner.revoked.push(token.clone());
            let account = inner
                .refresh
                .get(token)
                .copied()
                .or_else(|| inner.access.get(token).map(|(a, _)| *a));
            if let Some(account) = account {
                inner.revoke_grant(account);
            }
            StatusCode::OK.into_response()
        }
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_request", "error_description": "Bad Request"}),
        ),
    }
}

// ---- Google Calendar API v3 ----

const G: Provider = Provider::Google;

fn google_time(value: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value["dateTime"].as_str()?)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn millis(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `primary` and the account's address are its primary calendar.
fn google_calendar(account: &AccountData, id: &str) -> Option<String> {
    if id == "primary" || id.eq_ignore_ascii_case(&account.email) {
        Some("primary".into())
    } else {
        account.calendars.contains(id).then(|| id.to_owned())
    }
}

fn google_event_json(e: &FakeEvent, email: &str) -> Value {
    let mut v = fixture("google-event.json");
    v["id"] = json!(e.id);
    v["etag"] = json!(format!(
        "\"{}{:03}\"",
        e.updated.timestamp_micros(),
        e.sequence
    ));
    v["status"] = json!(e.status);
    v["htmlLink"] = json!(format!(
        "https://www.google.com/calendar/event?eid={}",
        URL_SAFE_NO_PAD.encode(format!("{} {email}", e.id))
    ));
    v["updated"] = json!(millis(e.updated));
    v["summary"] = json!(e.summary);
    v["description"] = json!(e.description);
    v["creator"] = json!({"email": email, "self": true});
    v["organizer"] = json!({"email": email, "self": true});
    v["start"] = json!({"dateTime": e.start.to_rfc3339_opts(SecondsFormat::Secs, true), "timeZone": e.time_zone});
    v["end"] = json!({"dateTime": e.end.to_rfc3339_opts(SecondsFormat::Secs, true), "timeZone": e.time_zone});
    v["iCalUID"] = json!(format!("{}@google.com", e.id));
    v["sequence"] = json!(e.sequence);
    if e.show_as == "free" {
        v["transparency"] = json!("transparent");
    }
    match v.as_object_mut() {
        Some(o) if e.private.is_empty() => {
            o.remove("extendedProperties");
        }
        _ => v["extendedProperties"] = json!({"private": e.private}),
    }
    v
}

/// Google's alphabet for a client-chosen event id (base32hex, RFC 2938 section 3.1.2).
fn valid_google_id(id: &str) -> bool {
    (5..=1024).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'v').contains(&b))
}

/// Intervals merged where they overlap or touch.
fn merged(mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)>) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    spans.sort();
    let mut out: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    for (s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

async fn google_free_busy(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let account = match authed(&fake, &headers, G) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let (Some(min), Some(max)) = (parse(&body["timeMin"]), parse(&body["timeMax"])) else {
        return bad_request(G, "Missing timeMin or timeMax.");
    };
    if max <= min {
        return bad_request(G, "The specified time range is empty.");
    }
    let inner = fake.lock();
    let data = &inner.accounts[account];
    let mut calendars = Map::new();
    for item in body["items"].as_array().into_iter().flatten() {
        let Some(id) = item["id"].as_str() else {
            continue;
        };
        let entry = match google_calendar(data, id) {
            Some(cal) => {
                let spans = data
                    .events
                    .iter()
                    .filter(|e| e.calendar == cal && e.status != "cancelled" && e.show_as != "free")
                    .filter(|e| e.start < max && e.end > min)
                    .map(|e| (e.start.max(min), e.end.min(max)))
                    .collect();
                json!({"busy": merged(spans).into_iter().map(|(s, e)| json!({
                    "start": s.to_rfc3339_opts(SecondsFormat::Secs, true),
                    "end": e.to_rfc3339_opts(SecondsFormat::Secs, true)})).collect::<Vec<_>>()})
            }
            None => fixture("google-freebusy-not-found.json")["calendars"]
                ["no-such-calendar@group.calendar.google.com"]
                .clone(),
        };
        calendars.insert(id.to_owned(), entry);
    }
    let mut answer = fixture("google-freebusy.json");
    answer["timeMin"] = json!(millis(min));
    answer["timeMax"] = json!(millis(max));
    answer["calendars"] = Value::Object(calendars);
    Json(answer).into_response()
}

/// The token's account and the calendar of the path, or the provider's 401 or 404.
fn google_target(fake: &Fake, headers: &HeaderMap, cal: &str) -> Result<(usize, String), Response> {
    let account = authed(fake, headers, G)?;
    let inner = fake.lock();
    google_calendar(&inner.accounts[account], cal)
        .map(|c| (account, c))
        .ok_or_else(|| api_error(G, 404))
}

fn apply_google(event: &mut FakeEvent, body: &Value, replace: bool) -> Result<(), Response> {
    if replace || body.get("summary").is_some() {
        event.summary = body["summary"].as_str().unwrap_or_default().to_owned();
    }
    if replace || body.get("description").is_some() {
        event.description = body["description"].as_str().unwrap_or_default().to_owned();
    }
    for (field, slot) in [("start", &mut event.start), ("end", &mut event.end)] {
        if replace || body.get(field).is_some() {
            *slot = google_time(&body[field])
                .ok_or_else(|| bad_request(G, &format!("Missing {field} time.")))?;
        }
    }
    if let Some(zone) = body["start"]["timeZone"].as_str() {
        event.time_zone = zone.to_owned();
    }
    if replace || body.get("status").is_some() {
        event.status = body["status"].as_str().unwrap_or("confirmed").to_owned();
    }
    if replace || body.get("transparency").is_some() {
        event.show_as = if body["transparency"].as_str() == Some("transparent") {
            "free".into()
        } else {
            "busy".into()
        };
    }
    if let Some(private) = body["extendedProperties"]["private"].as_object() {
        if replace {
            event.private = private.clone();
        } else {
            event.private.extend(private.clone());
        }
    } else if replace {
        event.private.clear();
    }
    if event.end <= event.start {
        return Err(bad_request(G, "The specified time range is empty."));
    }
    Ok(())
}

async fn google_insert(
    State(fake): State<Fake>,
    Path(cal): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (account, cal) = match google_target(&fake, &headers, &cal) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let (i, event_id) = {
        let mut inner = fake.lock();
        let id = match body["id"].as_str() {
            Some(id) if !valid_google_id(id) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(fixture("google-error-400-invalid-id.json")),
                )
                    .into_response()
            }
            Some(id) => id.to_owned(),
            None => new_event_id(&mut inner, G),
        };
        // Ids are unique in the calendar, a cancelled event's too.
        if inner.accounts[account]
            .events
            .iter()
            .any(|e| e.calendar == cal && e.id == id)
        {
            return api_error(G, 409);
        }
        let mut event = FakeEvent {
            id: id.clone(),
            calendar: cal,
            summary: String::new(),
            description: String::new(),
            start: Utc::now(),
            end: Utc::now(),
            time_zone: "UTC".into(),
            status: "confirmed".into(),
            show_as: "busy".into(),
            transaction_id: None,
            private: Map::new(),
            sequence: 0,
            updated: Utc::now(),
        };
        if let Err(e) = apply_google(&mut event, &body, true) {
            return e;
        }
        inner.accounts[account].events.push(event);
        (account, id)
    };
    notify(&fake, i, &event_id, "created");
    google_event_answer(&fake, account, &event_id)
}

fn google_event_answer(fake: &Fake, account: usize, id: &str) -> Response {
    let inner = fake.lock();
    let data = &inner.accounts[account];
    match data.events.iter().find(|e| e.id == id) {
        Some(e) => Json(google_event_json(e, &data.email)).into_response(),
        None => api_error(G, 404),
    }
}

async fn google_get(
    State(fake): State<Fake>,
    Path((cal, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (account, cal) = match google_target(&fake, &headers, &cal) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let inner = fake.lock();
    let data = &inner.accounts[account];
    match data.events.iter().find(|e| e.calendar == cal && e.id == id) {
        Some(e) => Json(google_event_json(e, &data.email)).into_response(),
        None => api_error(G, 404),
    }
}

async fn google_change(
    fake: Fake,
    cal: String,
    id: String,
    headers: HeaderMap,
    body: Value,
    replace: bool,
) -> Response {
    let (account, cal) = match google_target(&fake, &headers, &cal) {
        Ok(t) => t,
        Err(e) => return e,
    };
    {
        let mut inner = fake.lock();
        let Some(event) = inner.accounts[account]
            .events
            .iter_mut()
            .find(|e| e.calendar == cal && e.id == id)
        else {
            return api_error(G, 404);
        };
        let mut changed = event.clone();
        if let Err(e) = apply_google(&mut changed, &body, replace) {
            return e;
        }
        changed.sequence += 1;
        changed.updated = Utc::now();
        *event = changed;
    }
    notify(&fake, account, &id, "updated");
    google_event_answer(&fake, account, &id)
}

async fn google_patch(
    State(fake): State<Fake>,
    Path((cal, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    google_change(fake, cal, id, headers, body, false).await
}

async fn google_update(
    State(fake): State<Fake>,
    Path((cal, id)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    google_change(fake, cal, id, headers, body, true).await
}

async fn google_delete(
    State(fake): State<Fake>,
    Path((cal, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let (account, cal) = match google_target(&fake, &headers, &cal) {
        Ok(t) => t,
        Err(e) => return e,
    };
    {
        let mut inner = fake.lock();
        let Some(event) = inner.accounts[account]
            .events
            .iter_mut()
            .find(|e| e.calendar == cal && e.id == id)
        else {
            return api_error(G, 404);
        };
        if event.status == "cancelled" {
            return api_error(G, 410);
        }
        event.status = "cancelled".into();
        event.sequence += 1;
        event.updated = Utc::now();
    }
    notify(&fake, account, &id, "deleted");
    StatusCode::NO_CONTENT.into_response()
}

async fn google_watch(
    State(fake): State<Fake>,
    Path(cal): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (account, cal) = match google_target(&fake, &headers, &cal) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let (Some(id), Some("web_hook"), Some(address)) = (
        body["id"].as_str(),
        body["type"].as_str(),
        body["address"].as_str(),
    ) else {
        return bad_request(G, "A channel needs an id, type web_hook and an address.");
    };
    let expires_at = body["expiration"]
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| body["expiration"].as_i64())
        .and_then(DateTime::from_timestamp_millis)
        // Google's default when none is asked: a week.
        .unwrap_or_else(|| Utc::now() + Span::days(7));
    let watch = {
        let mut inner = fake.lock();
        if inner.watches.iter().any(|(_, w)| w.id == id) {
            return api_error(G, 409);
        }
        let email = inner.accounts[account].email.clone();
        let watch = FakeWatch {
            provider: G,
            account: email.clone(),
            id: id.to_owned(),
            // One resource id per watched calendar.
            resource_id: URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{email}/{cal}")))[..27]
                .to_owned(),
            address: address.to_owned(),
            token: body["token"].as_str().unwrap_or_default().to_owned(),
            expires_at,
        };
        inner.watches.push((account, watch.clone()));
        watch
    };
    // Google announces a new channel with a `sync` message.
    send_google_push(&fake, &watch, "sync", 1);
    let mut answer = fixture("google-channel.json");
    answer["id"] = json!(watch.id);
    answer["resourceId"] = json!(watch.resource_id);
    answer["resourceUri"] = json!(format!(
        "https://www.googleapis.com/calendar/v3/calendars/{cal}/events?alt=json"
    ));
    answer["token"] = json!(watch.token);
    answer["expiration"] = json!(expires_at.timestamp_millis().to_string());
    Json(answer).into_response()
}

async fn google_stop(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let account = match authed(&fake, &headers, G) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut inner = fake.lock();
    let before = inner.watches.len();
    inner.watches.retain(|(a, w)| {
        !(*a == account
            && w.provider == G
            && Some(w.id.as_str()) == body["id"].as_str()
            && Some(w.resource_id.as_str()) == body["resourceId"].as_str())
    });
    if inner.watches.len() == before {
        return api_error(G, 404);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn send_google_push(fake: &Fake, watch: &FakeWatch, state: &str, number: u64) {
    let template = fixture("google-push-headers.json");
    let headers = [
        ("X-Goog-Channel-ID", watch.id.clone()),
        ("X-Goog-Channel-Token", watch.token.clone()),
        (
            "X-Goog-Channel-Expiration",
            watch.expires_at.to_rfc2822().replace("+0000", "GMT"),
        ),
        ("X-Goog-Resource-ID", watch.resource_id.clone()),
        (
            "X-Goog-Resource-URI",
            template["X-Goog-Resource-URI"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        ("X-Goog-Resource-State", state.to_owned()),
        ("X-Goog-Message-Number", number.to_string()),
    ];
    let mut request = fake.http.post(&watch.address);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    tokio::spawn(async move {
        let _ = request.send().await;
    });
}

/// Tells the account's watches that `event_id` changed, as each provider does.
fn notify(fake: &Fake, account: usize, event_id: &str, change: &str) {
    let watches: Vec<(FakeWatch, u64)> = {
        let mut inner = fake.lock();
        let now = Utc::now();
        let matching: Vec<FakeWatch> = inner
            .watches
            .iter()
            .filter(|(a, w)| *a == account && w.expires_at > now)
            .map(|(_, w)| w.clone())
            .collect();
        matching.into_iter().map(|w| (w, inner.next())).collect()
    };
    for (watch, n) in watches {
        match watch.provider {
            Provider::Google => send_google_push(fake, &watch, "exists", n + 1),
            Provider::Microsoft => {
                let mut body = fixture("microsoft-notification.json");
                let item = &mut body["value"][0];
                item["id"] = json!(format!("fake-notification-{n}"));
                item["subscriptionId"] = json!(watch.id);
                item["subscriptionExpirationDateTime"] = json!(millis(watch.expires_at));
                item["clientState"] = json!(watch.token);
                item["changeType"] = json!(change);
                let resource = format!("Users/{}/Events/{event_id}", watch.account);
                item["resource"] = json!(resource);
                item["resourceData"]["@odata.id"] = json!(resource);
                item["resourceData"]["id"] = json!(event_id);
                let request = fake.http.post(&watch.address).json(&body);
                tokio::spawn(async move {
                    let _ = request.send().await;
                });
            }
        }
    }
}

// ---- Microsoft Graph v1.0 ----

const M: Provider = Provider::Microsoft;

/// A `dateTimeTimeZone` in UTC (the fake speaks no other zone).
fn graph_time(value: &Value) -> Option<DateTime<Utc>> {
    if value["timeZone"].as_str() != Some("UTC") {
        return None;
    }
    NaiveDateTime::parse_from_str(value["dateTime"].as_str()?, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// Graph's seven fractional digits.
fn graph_stamp(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

fn graph_at(t: DateTime<Utc>) -> Value {
    json!({"dateTime": graph_stamp(t), "timeZone": "UTC"})
}

fn graph_event_json(e: &FakeEvent, email: &str) -> Value {
    let mut v = fixture("microsoft-event.json");
    let stamp = |t: DateTime<Utc>| format!("{}Z", graph_stamp(t));
    let change_key = URL_SAFE_NO_PAD.encode(format!("{}:{}", e.id, e.sequence));
    v["@odata.context"] = json!(format!(
        "https://graph.microsoft.com/v1.0/$metadata#users('{}')/calendar/events/$entity",
        email.replace('@', "%40")
    ));
    v["@odata.etag"] = json!(format!("W/\"{change_key}\""));
    v["id"] = json!(e.id);
    v["lastModifiedDateTime"] = json!(stamp(e.updated));
    v["changeKey"] = json!(change_key);
    v["transactionId"] = json!(e.transaction_id);
    v["subject"] = json!(e.summary);
    v["bodyPreview"] = json!(e.description.chars().take(255).collect::<String>());
    v["body"] = json!({"contentType": "text", "content": e.description});
    v["start"] = graph_at(e.start);
    v["end"] = graph_at(e.end);
    v["showAs"] = json!(e.show_as);
    v["isCancelled"] = json!(false);
    v["webLink"] = json!(format!(
        "https://outlook.office365.com/owa/?itemid={}&exvsurl=1&path=/calendar/item",
        e.id.replace('=', "%3D")
    ));
    v["organizer"]["emailAddress"] = json!({"name": "Reception", "address": email});
    v
}

async fn graph_schedule_primary(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    graph_schedule_of(fake, "primary".into(), headers, body)
}

async fn graph_schedule(
    State(fake): State<Fake>,
    Path(cal): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    graph_schedule_of(fake, cal, headers, body)
}

fn graph_schedule_of(fake: Fake, cal: String, headers: HeaderMap, body: Value) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let (Some(from), Some(to)) = (graph_time(&body["startTime"]), graph_time(&body["endTime"]))
    else {
        return bad_request(M, "startTime and endTime must be dateTimeTimeZone in UTC.");
    };
    let interval = body["availabilityViewInterval"]
        .as_i64()
        .or_else(|| body["availabilityViewInterval"].as_str()?.parse().ok())
        .unwrap_or(30);
    if !(5..=1440).contains(&interval) || to <= from {
        return bad_request(M, "Invalid availabilityViewInterval or time range.");
    }
    let inner = fake.lock();
    let data = &inner.accounts[account];
    if !data.calendars.contains(&cal) {
        return api_error(M, 404);
    }
    let template = fixture("microsoft-schedule.json")["value"][0].clone();
    let mut value = Vec::new();
    for address in body["schedules"].as_array().into_iter().flatten() {
        let Some(address) = address.as_str() else {
            continue;
        };
        if !address.eq_ignore_ascii_case(&data.email) {
            // The fake knows only the token's own mailbox.
            value.push(json!({"scheduleId": address, "availabilityView": "",
                "error": {"message": "The mailbox could not be found.", "responseCode": "ErrorMailRecipientNotFound"}}));
            continue;
        }
        let items: Vec<&FakeEvent> = data
            .events
            .iter()
            .filter(|e| e.calendar == cal && e.status != "cancelled")
            .filter(|e| e.start < to && e.end > from)
            .collect();
        let code = |show_as: &str| match show_as {
            "tentative" => 1,
            "busy" => 2,
            "oof" => 3,
            _ => 0,
        };
        let mut view = String::new();
        let mut slot = from;
        while slot < to {
            let end = slot + Span::minutes(interval);
            let worst = items
                .iter()
                .filter(|e| e.start < end && e.end > slot)
                .map(|e| code(&e.show_as))
                .max()
                .unwrap_or(0);
            view.push(char::from(b'0' + worst));
            slot = end;
        }
        let mut schedule = template.clone();
        schedule["scheduleId"] = json!(address);
        schedule["availabilityView"] = json!(view);
        schedule["scheduleItems"] = items
            .iter()
            .map(|e| {
                let mut item = template["scheduleItems"][0].clone();
                item["status"] = json!(e.show_as);
                item["subject"] = json!(e.summary);
                item["start"] = graph_at(e.start);
                item["end"] = graph_at(e.end);
                item
            })
            .collect();
        value.push(schedule);
    }
    let mut answer = fixture("microsoft-schedule.json");
    answer["value"] = Value::Array(value);
    Json(answer).into_response()
}

fn apply_graph(event: &mut FakeEvent, body: &Value) -> Result<(), Response> {
    if let Some(subject) = body["subject"].as_str() {
        event.summary = subject.to_owned();
    }
    if let Some(content) = body["body"]["content"].as_str() {
        event.description = content.to_owned();
    }
    for (field, slot) in [("start", &mut event.start), ("end", &mut event.end)] {
        if body.get(field).is_some() {
            *slot = graph_time(&body[field]).ok_or_else(|| {
                bad_request(M, &format!("{field} must be a dateTimeTimeZone in UTC."))
            })?;
        }
    }
    if let Some(show_as) = body["showAs"].as_str() {
        event.show_as = show_as.to_owned();
    }
    if event.end <= event.start {
        return Err(bad_request(M, "The end must be after the start."));
    }
    Ok(())
}

async fn graph_create_primary(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    graph_create_in(fake, "primary".into(), headers, body)
}

async fn graph_create(
    State(fake): State<Fake>,
    Path(cal): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    graph_create_in(fake, cal, headers, body)
}

fn graph_create_in(fake: Fake, cal: String, headers: HeaderMap, body: Value) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let transaction = body["transactionId"].as_str().map(str::to_owned);
    let (id, created) = {
        let mut inner = fake.lock();
        if !inner.accounts[account].calendars.contains(&cal) {
            return api_error(M, 404);
        }
        // A retried create with the same transactionId: the event made the first time.
        let existing = transaction.as_ref().and_then(|t| {
            inner.accounts[account]
                .events
                .iter()
                .find(|e| e.transaction_id.as_ref() == Some(t))
                .map(|e| e.id.clone())
        });
        match existing {
            Some(id) => (id, false),
            None => {
                let id = new_event_id(&mut inner, M);
                let mut event = FakeEvent {
                    id: id.clone(),
                    calendar: cal,
                    summary: String::new(),
                    description: String::new(),
                    start: DateTime::<Utc>::MIN_UTC,
                    end: DateTime::<Utc>::MIN_UTC,
                    time_zone: "UTC".into(),
                    status: "confirmed".into(),
                    show_as: "busy".into(),
                    transaction_id: transaction,
                    private: Map::new(),
                    sequence: 0,
                    updated: Utc::now(),
                };
                if body.get("start").is_none() || body.get("end").is_none() {
                    return bad_request(M, "An event needs a start and an end.");
                }
                if let Err(e) = apply_graph(&mut event, &body) {
                    return e;
                }
                inner.accounts[account].events.push(event);
                (id, true)
            }
        }
    };
    if created {
        notify(&fake, account, &id, "created");
    }
    graph_event_answer(&fake, account, &id, StatusCode::CREATED)
}

fn graph_event_answer(fake: &Fake, account: usize, id: &str, status: StatusCode) -> Response {
    let inner = fake.lock();
    let data = &inner.accounts[account];
    match data.events.iter().find(|e| e.id == id) {
        Some(e) => (status, Json(graph_event_json(e, &data.email))).into_response(),
        None => api_error(M, 404),
    }
}

async fn graph_get(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    match authed(&fake, &headers, M) {
        Ok(account) => graph_event_answer(&fake, account, &id, StatusCode::OK),
        Err(e) => e,
    }
}

async fn graph_patch(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    {
        let mut inner = fake.lock();
        let Some(event) = inner.accounts[account]
            .events
            .iter_mut()
            .find(|e| e.id == id)
        else {
            return api_error(M, 404);
        };
        let mut changed = event.clone();
        if let Err(e) = apply_graph(&mut changed, &body) {
            return e;
        }
        changed.sequence += 1;
        changed.updated = Utc::now();
        *event = changed;
    }
    notify(&fake, account, &id, "updated");
    graph_event_answer(&fake, account, &id, StatusCode::OK)
}

async fn graph_delete(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    {
        let mut inner = fake.lock();
        let events = &mut inner.accounts[account].events;
        let before = events.len();
        events.retain(|e| e.id != id);
        if events.len() == before {
            return api_error(M, 404);
        }
    }
    notify(&fake, account, &id, "deleted");
    StatusCode::NO_CONTENT.into_response()
}

/// Graph's longest subscription on Outlook events: 10,080 minutes.
const GRAPH_MAX_SUBSCRIPTION: Span = Span::minutes(10_080);

async fn graph_subscribe(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let parse = |v: &Value| {
        v.as_str()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
    };
    let (Some(change), Some(address), Some(resource), Some(expires_at)) = (
        body["changeType"].as_str(),
        body["notificationUrl"].as_str(),
        body["resource"].as_str(),
        parse(&body["expirationDateTime"]),
    ) else {
        return bad_request(
            M,
            "changeType, notificationUrl, resource and expirationDateTime are required.",
        );
    };
    let now = Utc::now();
    if expires_at <= now || expires_at > now + GRAPH_MAX_SUBSCRIPTION {
        return bad_request(
            M,
            "Subscription expiration can only be 10070 minutes in the future.",
        );
    }
    if !(resource == "me/events"
        || resource
            .strip_prefix("me/calendars/")
            .and_then(|r| r.strip_suffix("/events"))
            .is_some_and(|c| fake.lock().accounts[account].calendars.contains(c)))
    {
        return bad_request(M, "Unsupported resource.");
    }
    // Graph's validation request: the endpoint must echo the token, as text/plain, in 10 s.
    let validation = format!("fake-validation-{}", Uuid::new_v4().simple());
    let mut target = match url::Url::parse(address) {
        Ok(u) => u,
        Err(_) => return bad_request(M, "Invalid notificationUrl."),
    };
    target
        .query_pairs_mut()
        .append_pair("validationToken", &validation);
    let answered = fake
        .http
        .post(target)
        .header(header::CONTENT_TYPE, "text/plain")
        .send()
        .await;
    let valid = match answered {
        Ok(r) if r.status() == StatusCode::OK => {
            let plain = r
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain"));
            plain && r.text().await.is_ok_and(|t| t == validation)
        }
        _ => false,
    };
    if !valid {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": {"code": "ValidationError",
            "message": "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."}})))
            .into_response();
    }
    let watch = {
        let mut inner = fake.lock();
        let watch = FakeWatch {
            provider: M,
            account: inner.accounts[account].email.clone(),
            id: Uuid::new_v4().to_string(),
            resource_id: resource.to_owned(),
            address: address.to_owned(),
            token: body["clientState"].as_str().unwrap_or_default().to_owned(),
            expires_at,
        };
        inner.watches.push((account, watch.clone()));
        watch
    };
    let mut answer = fixture("microsoft-subscription.json");
    answer["id"] = json!(watch.id);
    answer["resource"] = json!(resource);
    answer["changeType"] = json!(change);
    answer["clientState"] = body["clientState"].clone();
    answer["notificationUrl"] = json!(address);
    answer["expirationDateTime"] = json!(millis(expires_at));
    (StatusCode::CREATED, Json(answer)).into_response()
}

fn subscription_json(watch: &FakeWatch) -> Value {
    let mut answer = fixture("microsoft-subscription.json");
    answer["id"] = json!(watch.id);
    answer["resource"] = json!(watch.resource_id);
    answer["clientState"] = json!(watch.token);
    answer["notificationUrl"] = json!(watch.address);
    answer["expirationDateTime"] = json!(millis(watch.expires_at));
    answer
}

async fn graph_renew(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let Some(expires_at) = body["expirationDateTime"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .filter(|t| *t > Utc::now() && *t <= Utc::now() + GRAPH_MAX_SUBSCRIPTION)
    else {
        return bad_request(M, "Invalid expirationDateTime.");
    };
    let mut inner = fake.lock();
    match inner
        .watches
        .iter_mut()
        .find(|(a, w)| *a == account && w.provider == M && w.id == id)
    {
        Some((_, watch)) => {
            watch.expires_at = expires_at;
            Json(subscription_json(watch)).into_response()
        }
        None => api_error(M, 404),
    }
}

async fn graph_unsubscribe(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let account = match authed(&fake, &headers, M) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let mut inner = fake.lock();
    let before = inner.watches.len();
    inner
        .watches
        .retain(|(a, w)| !(*a == account && w.provider == M && w.id == id));
    if inner.watches.len() == before {
        return api_error(M, 404);
    }
    StatusCode::NO_CONTENT.into_response()
}
