//! Connecting a calendar with OAuth 2.0 (authorization code + PKCE), end to end over real
//! HTTP: the server, the browser's part played by this test (following the consent URL to the
//! provider and its redirect back, with the cookie), and a loopback fake of Google's and
//! Microsoft's endpoints that checks PKCE and the redirect URI as they do.

use crate::support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header;
use serde_json::{json, Value};
use std::collections::HashMap;
use voxanne_db::demo::DemoClinic;
use voxanne_testkit::fake_calendar::{self, FakeCalendar};

struct Started {
    status: u16,
    body: Value,
    /// The `voxanne_oauth` cookie's value, and the whole `Set-Cookie`.
    cookie: Option<(String, String)>,
}

async fn start(app: &TestApp, token: &str, provider: &str) -> Started {
    let path = "/api/v1/calendar-connections/oauth/start";
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .json(&json!({"provider": provider}))
        .send()
        .await
        .expect("start");
    let status = response.status().as_u16();
    declared::check("POST", path, status);
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            let value = v
                .split(';')
                .next()
                .and_then(|p| p.strip_prefix("voxanne_oauth="))
                .expect("the voxanne_oauth cookie")
                .to_owned();
            (value, v.to_owned())
        });
    let body = response.json().await.expect("JSON");
    Started {
        status,
        body,
        cookie,
    }
}

fn query(url: &str) -> HashMap<String, String> {
    url::Url::parse(url)
        .expect("url")
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The browser at the provider's consent page: follows the authorization URL to the fake,
/// which redirects back; answers the redirect's target (the callback URL).
async fn consent(authorization_url: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client.get(authorization_url).send().await.expect("consent");
    assert_eq!(response.status(), 302, "the fake's consent page redirects");
    response.headers()[header::LOCATION]
        .to_str()
        .expect("location")
        .to_owned()
}

struct Page {
    status: u16,
    text: String,
    set_cookie: Option<String>,
}

/// The browser back at the callback, with `cookie` (or none).
async fn callback(app: &TestApp, url: &str, cookie: Option<&str>) -> Page {
    assert!(
        url.starts_with(&app.base),
        "{url} is this server's callback"
    );
    let mut request = app.client.get(url);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, format!("voxanne_oauth={cookie}"));
    }
    let response = request.send().await.expect("callback");
    let status = response.status().as_u16();
    declared::check("GET", "/oauth/callback", status);
    let set_cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .map(|v| v.to_str().expect("ascii").to_owned());
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    Page {
        status,
        text: response.text().await.expect("body"),
        set_cookie,
    }
}

async fn setup() -> (TestApp, FakeCalendar, [DemoClinic; 2]) {
    let fake = FakeCalendar::start().await;
    let fake_settings = fake.clone();
    let app =
        TestApp::spawn_with_calendar(move |public| fake_settings.settings(public, true, true))
            .await;
    let clinics = app.clinics().await;
    (app, fake, clinics)
}

async fn connections(app: &TestApp, clinic: &DemoClinic) -> Vec<Value> {
    let r = app
        .get_as(
            "/api/v1/calendar-connections",
            &app.token(clinic.owner, Some(clinic.org)),
        )
        .await;
    assert_eq!(r.status, 200);
    r.body["data"].as_array().expect("data").clone()
}

/// The stored token columns of every connection of the database, as the superuser sees them.
async fn stored_tokens(app: &TestApp) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut admin = app.t.admin().await;
    sqlx::query_as("SELECT access_token_enc, refresh_token_enc FROM calendar_connections")
        .fetch_all(&mut admin)
        .await
        .expect("tokens")
}

async fn oauth_states(app: &TestApp) -> i64 {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar("SELECT count(*) FROM calendar_oauth_states")
        .fetch_one(&mut admin)
        .await
        .expect("count")
}

async fn refusals(app: &TestApp, clinic: &DemoClinic) -> Vec<String> {
    app.security_events(clinic)
        .await
        .into_iter()
        .filter(|e| e["kind"] == "calendar_oauth_refused")
        .map(|e| {
            e["detail"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_google_calendar_is_linked_end_to_end_with_pkce_and_its_tokens_sealed() {
    let (app, fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    assert_eq!(started.status, 200, "{}", started.body);
    let (cookie, set_cookie) = started.cookie.expect("a cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(set_cookie.contains("Path=/oauth/callback"), "{set_cookie}");
    let url = started.body["authorization_url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("{}/google/authorize?", fake.base)),
        "{url}"
    );
    let q = query(url);
    assert_eq!(q["client_id"], fake_calendar::GOOGLE_CLIENT_ID);
    assert_eq!(q["redirect_uri"], format!("{}/oauth/callback", app.base));
    assert_eq!(q["response_type"], "code");
    assert_eq!(
        q["scope"],
        "https://www.googleapis.com/auth/calendar openid email"
    );
    assert_eq!(q["access_type"], "offline");
    assert_eq!(q["prompt"], "consent");
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(!q["state"].is_empty());
    assert!(started.body["expires_at"].is_string());

    let back = consent(url).await;
    let page = callback(&app, &back, Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("linked"), "{}", page.text);
    assert!(
        page.set_cookie.is_some_and(|c| c.contains("Max-Age=0")),
        "the callback clears the cookie"
    );

    // The token endpoint got the verifier and the same redirect URI, client in the body.
    let requests = fake.token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["grant_type"], "authorization_code");
    assert_eq!(requests[0]["redirect_uri"], q["redirect_uri"]);
    assert!(requests[0].contains_key("code_verifier"));

    let listed = connections(&app, &a).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["provider"], "google");
    assert_eq!(listed[0]["account_email"], fake_calendar::GOOGLE_EMAIL);
    assert_eq!(listed[0]["has_access_token"], true);
    assert_eq!(listed[0]["has_refresh_token"], true);
    assert!(listed[0]["token_expires_at"].is_string());
    let text = serde_json::to_string(&listed).expect("json");
    let token = fake_calendar::google_token();
    let access = token["access_token"].as_str().expect("access");
    let refresh = token["refresh_token"].as_str().expect("refresh");
    assert!(!text.contains(access) && !text.contains(refresh));
    // Sealed at rest: neither token's bytes are in the columns.
    let stored = stored_tokens(&app).await;
    assert_eq!(stored.len(), 1);
    let (access_enc, refresh_enc) = &stored[0];
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!contains(access_enc, access));
    assert!(!contains(refresh_enc.as_deref().expect("refresh"), refresh));
    assert_eq!(oauth_states(&app).await, 0, "the state is used up");
}

#[tokio::test]
async fn a_microsoft_calendar_is_linked_with_its_scopes_and_graph_address() {
    let (app, fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "microsoft").await;
    assert_eq!(started.status, 200, "{}", started.body);
    let url = started.body["authorization_url"].as_str().expect("url");
    assert!(url.starts_with(&format!("{}/ms/oauth2/v2.0/authorize?", fake.base)));
    let q = query(url);
    assert_eq!(
        q["scope"],
        "offline_access Calendars.ReadWrite User.Read openid email"
    );
    let back = consent(url).await;
    let page = callback(&app, &back, Some(&started.cookie.expect("cookie").0)).await;
    assert_eq!(page.status, 200, "{}", page.text);
    let listed = connections(&app, &a).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["provider"], "microsoft");
    assert_eq!(listed[0]["account_email"], fake_calendar::MICROSOFT_EMAIL);
}

#[tokio::test]
async fn linking_the_same_account_again_updates_its_connection() {
    let (app, _fake, [a, _]) = setup().await;
    for _ in 0..2 {
        let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
        let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
        let page = callback(&app, &back, Some(&started.cookie.expect("cookie").0)).await;
        assert_eq!(page.status, 200, "{}", page.text);
    }
    assert_eq!(connections(&app, &a).await.len(), 1);
}

/// Flips one bit of the state's MAC.
fn forge(url: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("url");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                let mut bytes = URL_SAFE_NO_PAD.decode(v.as_bytes()).expect("state");
                let last = bytes.len() - 1;
                bytes[last] ^= 1;
                URL_SAFE_NO_PAD.encode(bytes)
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}

#[tokio::test]
async fn a_forged_state_links_nothing_and_is_refused_before_any_lookup() {
    let (app, fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    let page = callback(
        &app,
        &forge(&back),
        Some(&started.cookie.expect("cookie").0),
    )
    .await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(page.text.contains("not linked"));
    assert!(connections(&app, &a).await.is_empty());
    assert!(fake.token_requests().is_empty(), "no code was exchanged");
    assert_eq!(
        oauth_states(&app).await,
        1,
        "the real state was not looked up"
    );
}

#[tokio::test]
async fn a_replayed_callback_links_nothing_the_second_time_and_is_recorded() {
    let (app, fake, [a, _]) = setup().await;
    let token = app.token(a.owner, Some(a.org));
    let started = start(&app, &token, "google").await;
    let cookie = started.cookie.expect("cookie").0;
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    assert_eq!(callback(&app, &back, Some(&cookie)).await.status, 200);
    let id = connections(&app, &a).await[0]["id"].clone();
    // Unlinked, then the same callback again: nothing comes back.
    let r = app
        .delete(
            &format!("/api/v1/calendar-connections/{}", id.as_str().expect("id")),
            &token,
        )
        .await;
    assert_eq!(r.status, 204);
    let again = callback(&app, &back, Some(&cookie)).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert!(connections(&app, &a).await.is_empty());
    assert_eq!(
        fake.token_requests().len(),
        1,
        "the code was not sent again"
    );
    assert_eq!(refusals(&app, &a).await, ["state_replayed"]);
}

#[tokio::test]
async fn a_state_of_clinic_a_cannot_be_finished_into_clinic_b() {
    let (app, fake, [a, b]) = setup().await;
    let a_started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    let b_started = start(&app, &app.token(b.owner, Some(b.org)), "google").await;
    let a_back = consent(a_started.body["authorization_url"].as_str().expect("url")).await;
    // B's admin's browser (B's cookie) finishing A's state: refused, nothing anywhere.
    let page = callback(&app, &a_back, Some(&b_started.cookie.expect("cookie").0)).await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(connections(&app, &a).await.is_empty());
    assert!(connections(&app, &b).await.is_empty());
    assert!(fake.token_requests().is_empty());
    assert_eq!(refusals(&app, &a).await, ["browser_mismatch"]);
    assert!(refusals(&app, &b).await.is_empty());

    // A's state with its org swapped for B's: the MAC no longer holds.
    let a2 = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    let back = consent(a2.body["authorization_url"].as_str().expect("url")).await;
    let mut parsed = url::Url::parse(&back).expect("url");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                let mut bytes = URL_SAFE_NO_PAD.decode(v.as_bytes()).expect("state");
                bytes[..16].copy_from_slice(b.org.as_uuid().as_bytes());
                URL_SAFE_NO_PAD.encode(bytes)
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    let page = callback(&app, parsed.as_str(), Some(&a2.cookie.expect("cookie").0)).await;
    assert_eq!(page.status, 400);
    assert!(connections(&app, &b).await.is_empty());
    assert!(connections(&app, &a).await.is_empty());
}

#[tokio::test]
async fn a_callback_without_the_starting_browsers_cookie_links_nothing() {
    let (app, fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    let page = callback(&app, &back, None).await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(connections(&app, &a).await.is_empty());
    assert!(fake.token_requests().is_empty());
    assert_eq!(refusals(&app, &a).await, ["browser_mismatch"]);

    let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    let page = callback(&app, &back, Some("another-browsers-value")).await;
    assert_eq!(page.status, 400);
    assert!(connections(&app, &a).await.is_empty());
}

#[tokio::test]
async fn an_expired_state_links_nothing() {
    let (app, fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    let mut admin = app.t.admin().await;
    sqlx::query("UPDATE calendar_oauth_states SET expires_at = now() - interval '1 second'")
        .execute(&mut admin)
        .await
        .expect("expire");
    let page = callback(&app, &back, Some(&started.cookie.expect("cookie").0)).await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(connections(&app, &a).await.is_empty());
    assert!(fake.token_requests().is_empty());
}

#[tokio::test]
async fn consent_declined_at_the_provider_links_nothing() {
    let (app, fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "google").await;
    fake.decline_next();
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    assert_eq!(query(&back)["error"], "access_denied");
    let page = callback(&app, &back, Some(&started.cookie.expect("cookie").0)).await;
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(page.text.contains("not granted"), "{}", page.text);
    assert!(connections(&app, &a).await.is_empty());
    assert!(fake.token_requests().is_empty());
    assert_eq!(oauth_states(&app).await, 0, "the declined state is used up");
}

#[tokio::test]
async fn a_code_the_token_endpoint_refuses_with_invalid_grant_links_nothing() {
    let (app, fake, [a, _]) = setup().await;
    for provider in ["google", "microsoft"] {
        let started = start(&app, &app.token(a.owner, Some(a.org)), provider).await;
        let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
        fake.expire_codes();
        let page = callback(&app, &back, Some(&started.cookie.expect("cookie").0)).await;
        assert_eq!(page.status, 400, "{provider}: {}", page.text);
        assert!(page.text.contains("did not accept"), "{}", page.text);
    }
    assert_eq!(fake.token_requests().len(), 2);
    assert!(connections(&app, &a).await.is_empty());
}

#[tokio::test]
async fn staff_cannot_start_linking_a_calendar() {
    let (app, _fake, [a, _]) = setup().await;
    let started = start(&app, &app.token(a.staff, Some(a.org)), "google").await;
    assert_eq!(started.status, 403, "{}", started.body);
    assert!(started.cookie.is_none());
    assert_eq!(oauth_states(&app).await, 0);
}

#[tokio::test]
async fn a_provider_without_a_client_id_is_a_clear_conflict() {
    let fake = FakeCalendar::start().await;
    let only_google = fake.clone();
    let app =
        TestApp::spawn_with_calendar(move |public| only_google.settings(public, true, false)).await;
    let [a, _] = app.clinics().await;
    let started = start(&app, &app.token(a.owner, Some(a.org)), "microsoft").await;
    assert_eq!(started.status, 409, "{}", started.body);
    assert_eq!(
        started.body["error"]["code"],
        "calendar_provider_not_configured"
    );
    assert!(started.cookie.is_none());
}

#[tokio::test]
async fn unlinking_a_google_calendar_revokes_its_token_at_google() {
    let (app, fake, [a, _]) = setup().await;
    let token = app.token(a.owner, Some(a.org));
    let started = start(&app, &token, "google").await;
    let back = consent(started.body["authorization_url"].as_str().expect("url")).await;
    assert_eq!(
        callback(&app, &back, Some(&started.cookie.expect("cookie").0))
            .await
            .status,
        200
    );
    let id = connections(&app, &a).await[0]["id"].clone();
    let r = app
        .delete(
            &format!("/api/v1/calendar-connections/{}", id.as_str().expect("id")),
            &token,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        fake.revoked(),
        [fake_calendar::google_token()["refresh_token"]
            .as_str()
            .expect("refresh")]
    );
    assert!(connections(&app, &a).await.is_empty());
}
