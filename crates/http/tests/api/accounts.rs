//! Built-in accounts through real HTTP, as a browser uses them: the session cookie (HttpOnly,
//! SameSite=Lax), its CSRF token on every write, password resets by the mailed link,
//! invitations (single use, expiring, bound to their clinic and address), throttled sign-in,
//! and a session that acts in another clinic only where its account is a member.

use crate::support::*;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{json, Value};
use voxanne_db::demo::DemoClinic;

/// A browser: its cookie, and the CSRF token its pages learnt from `/auth/session`.
#[derive(Clone, Default)]
struct Browser {
    cookie: Option<String>,
    csrf: Option<String>,
}

struct Answer {
    status: u16,
    body: Value,
    set_cookie: Option<String>,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }
}

impl Browser {
    /// `method path` with this browser's cookie, its CSRF token when `csrf`, `X-Org-Id` when
    /// `org`, and a JSON body.
    async fn send(
        &mut self,
        app: &TestApp,
        method: &str,
        path: &str,
        org: Option<&DemoClinic>,
        csrf: bool,
        body: Option<Value>,
    ) -> Answer {
        let mut request = app.client.request(
            method.parse().expect("method"),
            format!("{}{path}", app.base),
        );
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, format!("voxanne_session={cookie}"));
        }
        if let (true, Some(token)) = (csrf, &self.csrf) {
            request = request.header("X-CSRF-Token", token);
        }
        if let Some(org) = org {
            request = request.header("X-Org-Id", org.org.to_string());
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        crate::support::declared::check(method, path, status);
        let set_cookie = response
            .headers()
            .get(SET_COOKIE)
            .map(|v| v.to_str().expect("ascii").to_owned());
        let text = response.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
        };
        if let Some(set) = &set_cookie {
            let value = set
                .strip_prefix("voxanne_session=")
                .and_then(|v| v.split(';').next())
                .unwrap_or("");
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        if let Some(token) = body["csrf_token"].as_str() {
            self.csrf = Some(token.to_owned());
        }
        Answer {
            status,
            body,
            set_cookie,
        }
    }

    async fn post(&mut self, app: &TestApp, path: &str, body: Value) -> Answer {
        self.send(app, "POST", path, None, true, Some(body)).await
    }
}

/// The token in the newest mailed link to `to` (after `#`).
fn mailed_token(app: &TestApp, to: &str) -> String {
    let mails = app.accounts.mailer.outbox_mails();
    let mail = mails
        .iter()
        .find(|m| m.to == to)
        .unwrap_or_else(|| panic!("no mail to {to}: {mails:?}"));
    let link = mail
        .body
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("a link");
    link.split_once('#').expect("a fragment").1.to_owned()
}

const OWNER_A: &str = "owner@clinic-a.example";

/// The clinic the browser's session acts in.
async fn active_org(browser: &mut Browser, app: &TestApp) -> Value {
    browser
        .send(app, "GET", "/auth/session", None, false, None)
        .await
        .body["active_org"]
        .clone()
}

/// Gives clinic A's owner the password `password`, through a reset link as a user would.
async fn set_password(app: &TestApp, email: &str, password: &str) {
    let mut browser = Browser::default();
    let r = browser
        .post(app, "/auth/password-reset", json!({"email": email}))
        .await;
    assert_eq!(r.status, 202, "{:?}", r.body);
    let token = mailed_token(app, email);
    let r = browser
        .post(
            app,
            "/auth/password-reset/confirm",
            json!({"token": token, "password": password}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

#[tokio::test]
async fn a_session_reads_and_writes_with_its_csrf_token_in_its_own_clinics_only() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let mut browser = Browser::default();

    // The demo accounts have no password: nothing signs in, and an unknown address answers
    // the same.
    let wrong = browser
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": OWNER_A, "password": "anything at all"}),
        )
        .await;
    let unknown = browser
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": "nobody@nowhere.example", "password": "anything at all"}),
        )
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_credentials"));
    assert_eq!((wrong.status, &wrong.body), (unknown.status, &unknown.body));

    set_password(&app, OWNER_A, "correct horse battery staple").await;
    let r = browser
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": " Owner@Clinic-A.example ", "password": "correct horse battery staple"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let cookie = r.set_cookie.expect("a session cookie");
    for part in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain http in development: {cookie}"
    );
    assert_eq!(r.body["email"], OWNER_A);
    assert_eq!(r.body["orgs"][0]["org_id"], a.org.to_string());

    // Reads in A; the calls are A's.
    let calls = browser
        .send(&app, "GET", "/api/v1/calls", Some(&a), false, None)
        .await;
    assert_eq!(calls.status, 200, "{:?}", calls.body);
    let bearer = app
        .get_as("/api/v1/calls", &app.token(a.owner, Some(a.org)))
        .await;
    assert_eq!(
        calls.body, bearer.body,
        "the same answer as the API's token"
    );
    // B's clinic in the switcher: refused, nothing of anyone's data.
    let r = browser
        .send(&app, "GET", "/api/v1/calls", Some(&b), false, None)
        .await;
    assert_eq!((r.status, r.code()), (403, "not_a_member"), "{:?}", r.body);
    assert!(r.body.get("data").is_none());

    // The switcher: only a clinic of the account's; the session's clinic is then the one a
    // request without X-Org-Id acts in.
    assert_eq!(
        active_org(&mut browser, &app).await,
        json!(a.org.to_string())
    );
    let r = browser
        .post(
            &app,
            "/auth/session/org",
            json!({"org_id": b.org.to_string()}),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "not_a_member"));
    let r = browser
        .send(&app, "GET", "/api/v1/calls", None, false, None)
        .await;
    assert_eq!(r.body, bearer.body, "still A's, and only A's");
    let r = browser
        .send(
            &app,
            "POST",
            "/auth/session/org",
            None,
            false,
            Some(json!({"org_id": a.org.to_string()})),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));

    // A write without the CSRF token, or with another session's, is refused and writes
    // nothing; with it, it is the API's write.
    let before = app.data_snapshot(a.org).await;
    let contact = json!({"name": "Csrf Test", "phone": "+1 415 555 0188"});
    let r = browser
        .send(
            &app,
            "POST",
            "/api/v1/contacts",
            Some(&a),
            false,
            Some(contact.clone()),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));
    let mut forged = browser.clone();
    forged.csrf = Some(voxanne_http::accounts::csrf_token("another session"));
    let r = forged
        .send(
            &app,
            "POST",
            "/api/v1/contacts",
            Some(&a),
            true,
            Some(contact.clone()),
        )
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));
    assert_eq!(app.data_snapshot(a.org).await, before, "nothing written");
    let r = browser
        .send(
            &app,
            "POST",
            "/api/v1/contacts",
            Some(&a),
            true,
            Some(contact),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);

    // Signing out needs the token too, and ends the session for good.
    let r = browser
        .send(&app, "POST", "/auth/sign-out", None, false, None)
        .await;
    assert_eq!((r.status, r.code()), (403, "csrf_failed"));
    let stale = browser.clone();
    let r = browser.post(&app, "/auth/sign-out", json!({})).await;
    assert_eq!(r.status, 204);
    assert!(r.set_cookie.expect("cleared").contains("Max-Age=0"));
    let mut stale = stale;
    let r = stale
        .send(&app, "GET", "/api/v1/calls", Some(&a), false, None)
        .await;
    assert_eq!((r.status, r.code()), (401, "invalid_session"));
    let r = stale
        .send(&app, "GET", "/auth/session", None, false, None)
        .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_reset_link_works_once_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let _ = app.clinics().await;
    set_password(&app, OWNER_A, "first password here").await;
    let mut first = Browser::default();
    let r = first
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": OWNER_A, "password": "first password here"}),
        )
        .await;
    assert_eq!(r.status, 200);

    // An unknown address gets the same answer, and no mail.
    let mut anyone = Browser::default();
    let mails = app.accounts.mailer.outbox_mails().len();
    let r = anyone
        .post(
            &app,
            "/auth/password-reset",
            json!({"email": "nobody@x.example"}),
        )
        .await;
    assert_eq!(r.status, 202);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(app.accounts.mailer.outbox_mails().len(), mails);

    let r = anyone
        .post(&app, "/auth/password-reset", json!({"email": OWNER_A}))
        .await;
    assert_eq!(r.status, 202);
    let mut token = String::new();
    for _ in 0..50 {
        if app.accounts.mailer.outbox_mails().len() > mails {
            token = mailed_token(&app, OWNER_A);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!token.is_empty(), "the reset mail was sent");
    let r = anyone
        .post(
            &app,
            "/auth/password-reset/confirm",
            json!({"token": token, "password": "short"}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["error"]["field"].as_str()),
        (422, Some("password"))
    );
    let r = anyone
        .post(
            &app,
            "/auth/password-reset/confirm",
            json!({"token": token, "password": "second password here"}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = anyone
        .post(
            &app,
            "/auth/password-reset/confirm",
            json!({"token": token, "password": "third password here"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (410, "link_invalid"), "used once");

    // The session opened before the reset is over; the old password no longer works.
    let r = first
        .send(&app, "GET", "/auth/session", None, false, None)
        .await;
    assert_eq!((r.status, r.code()), (401, "invalid_session"));
    let r = anyone
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": OWNER_A, "password": "first password here"}),
        )
        .await;
    assert_eq!(r.status, 401);
    let r = anyone
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": OWNER_A, "password": "second password here"}),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn sign_in_failures_are_throttled_per_address() {
    let app = TestApp::spawn().await;
    let _ = app.clinics().await;
    set_password(&app, OWNER_A, "the right password").await;
    let mut browser = Browser::default();
    for _ in 0..10 {
        let r = browser
            .post(
                &app,
                "/auth/sign-in",
                json!({"email": OWNER_A, "password": "a wrong guess!"}),
            )
            .await;
        assert_eq!(r.status, 401);
    }
    // Past ten failures a minute, even the right password waits.
    let r = browser
        .post(
            &app,
            "/auth/sign-in",
            json!({"email": OWNER_A, "password": "the right password"}),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (429, "too_many_sign_ins"),
        "{:?}",
        r.body
    );
}

#[tokio::test]
async fn an_invitation_is_taken_once_by_its_address_into_its_clinic_only() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner_a = app.token(a.owner, Some(a.org));

    // Staff cannot invite; an admin of A invites sam.
    let r = app
        .post(
            "/api/v1/invitations",
            &app.token(a.staff, Some(a.org)),
            &json!({"email": "sam@example.org", "role": "staff"}),
        )
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .post(
            "/api/v1/invitations",
            &owner_a,
            &json!({"email": "Sam@Example.org", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["email"], "sam@example.org");
    let link = r.body["link"].as_str().expect("link").to_owned();
    let token = mailed_token(&app, "sam@example.org");
    assert!(link.ends_with(&format!("#{token}")), "{link}");
    let r = app.get_as("/api/v1/invitations", &owner_a).await;
    assert!(
        r.body["data"][0].get("link").is_none(),
        "the link is not stored"
    );

    let mut sam = Browser::default();
    let r = sam
        .post(&app, "/auth/invitation", json!({"token": token}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        (
            r.body["org_name"].clone(),
            r.body["role"].clone(),
            r.body["usable"].clone()
        ),
        (json!("Clinic A"), json!("admin"), json!(true))
    );
    // Forged: another secret, or the same invitation said to be B's.
    let (org, rest) = token.split_once('.').expect("org.");
    let (id, secret) = rest.split_once('.').expect("id.secret");
    assert_eq!(org, a.org.to_string());
    for forged in [
        format!("{org}.{id}.{}", voxanne_http::accounts::new_secret()),
        format!("{}.{id}.{secret}", b.org),
        "not-a-token".to_owned(),
    ] {
        let r = sam
            .post(
                &app,
                "/auth/invitation/accept",
                json!({"token": forged, "display_name": "Sam", "password": "sam's long password"}),
            )
            .await;
        assert_eq!((r.status, r.code()), (410, "link_invalid"), "{forged}");
    }

    // Taken with a new account: signed in, a member of A only, as the invited role.
    let r = sam
        .post(
            &app,
            "/auth/invitation/accept",
            json!({"token": token, "display_name": "Sam Lee", "password": "sam's long password"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["email"], "sam@example.org");
    let orgs = r.body["orgs"].as_array().expect("orgs");
    assert_eq!(orgs.len(), 1);
    assert_eq!(
        (orgs[0]["org_id"].clone(), orgs[0]["role"].clone()),
        (json!(a.org.to_string()), json!("admin"))
    );
    let r = sam
        .send(&app, "GET", "/api/v1/members", Some(&a), false, None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = sam
        .send(&app, "GET", "/api/v1/calls", Some(&b), false, None)
        .await;
    assert_eq!(r.status, 403);
    // The link works once.
    let mut again = Browser::default();
    let r = again
        .post(
            &app,
            "/auth/invitation/accept",
            json!({"token": token, "display_name": "Eve", "password": "eve's long password"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (410, "link_invalid"));
    let r = app.get_as("/api/v1/invitations", &owner_a).await;
    assert!(r.body["data"][0]["accepted_at"].is_string(), "{:?}", r.body);

    // B invites A's owner, who has an account: a new account is refused; signed in (demo
    // one-click), the owner joins B as staff, and now acts in both.
    let r = app
        .post(
            "/api/v1/invitations",
            &app.token(b.owner, Some(b.org)),
            &json!({"email": OWNER_A, "role": "staff"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let token_b = mailed_token(&app, OWNER_A);
    let r = again
        .post(
            &app,
            "/auth/invitation/accept",
            json!({"token": token_b, "display_name": "Imposter", "password": "a long password!"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (409, "account_exists"));
    // Another signed-in account (A's staff) cannot take it: it was sent to another address.
    let mut staff_a = Browser::default();
    let r = staff_a
        .post(&app, "/auth/demo", json!({"user_id": a.staff.to_string()}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = staff_a
        .post(&app, "/auth/invitation/accept", json!({"token": token_b}))
        .await;
    assert_eq!((r.status, r.code()), (410, "link_invalid"));
    let mut owner = Browser::default();
    owner
        .post(&app, "/auth/demo", json!({"user_id": a.owner.to_string()}))
        .await;
    let r = owner
        .send(
            &app,
            "POST",
            "/auth/invitation/accept",
            None,
            false,
            Some(json!({"token": token_b})),
        )
        .await;
    assert_eq!(
        (r.status, r.code()),
        (403, "csrf_failed"),
        "a session's write"
    );
    let r = owner
        .post(&app, "/auth/invitation/accept", json!({"token": token_b}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        r.body,
        json!({"org_id": b.org.to_string(), "role": "staff"})
    );
    let r = owner
        .send(&app, "GET", "/auth/session", None, false, None)
        .await;
    assert_eq!(r.body["orgs"].as_array().expect("orgs").len(), 2);
    let r = owner
        .send(&app, "GET", "/api/v1/me", Some(&b), false, None)
        .await;
    assert_eq!(r.body["role"], "staff");

    // Member lists name the members' accounts, each clinic its own members only.
    let emails = |body: &Value| -> Vec<String> {
        body["data"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["email"].as_str().map(str::to_owned))
            .collect()
    };
    let in_a = emails(&app.get_as("/api/v1/members", &owner_a).await.body);
    assert!(in_a.contains(&"sam@example.org".to_owned()), "{in_a:?}");
    assert!(in_a.contains(&OWNER_A.to_owned()), "{in_a:?}");
    let in_b = emails(
        &app.get_as("/api/v1/members", &app.token(b.owner, Some(b.org)))
            .await
            .body,
    );
    assert!(!in_b.contains(&"sam@example.org".to_owned()), "{in_b:?}");
    assert!(
        !in_b.contains(&"staff@clinic-a.example".to_owned()),
        "{in_b:?}"
    );
    assert!(
        in_b.contains(&OWNER_A.to_owned()),
        "A's owner joined B: {in_b:?}"
    );
}

#[tokio::test]
async fn an_expired_invitation_links_nothing_and_demo_sign_in_is_for_demo_users_only() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let r = app
        .post(
            "/api/v1/invitations",
            &app.token(a.owner, Some(a.org)),
            &json!({"email": "late@example.org", "role": "staff"}),
        )
        .await;
    assert_eq!(r.status, 201);
    let token = mailed_token(&app, "late@example.org");
    let mut admin = app.t.admin().await;
    sqlx::query("UPDATE invitations SET expires_at = now() - interval '1 second'")
        .execute(&mut admin)
        .await
        .expect("expire");
    let mut late = Browser::default();
    let r = late
        .post(&app, "/auth/invitation", json!({"token": token}))
        .await;
    assert_eq!(r.body["usable"], false);
    let r = late
        .post(
            &app,
            "/auth/invitation/accept",
            json!({"token": token, "display_name": "Late", "password": "a long password!"}),
        )
        .await;
    assert_eq!((r.status, r.code()), (410, "link_invalid"));
    let accounts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM accounts WHERE email = 'late@example.org'")
            .fetch_one(&mut admin)
            .await
            .expect("accounts");
    assert_eq!(accounts, 0, "no account made for nothing");

    let r = late
        .post(
            &app,
            "/auth/demo",
            json!({"user_id": uuid::Uuid::new_v4().to_string()}),
        )
        .await;
    assert_eq!(r.status, 404);
    assert!(late.cookie.is_none());
}

/// A mail server on loopback speaking SMTP (RFC 5321) as far as a client sending one mail
/// needs: greeting, EHLO, MAIL FROM, RCPT TO, DATA, QUIT. It hands over what it received.
async fn smtp_sink() -> (String, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (done, received) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (socket, _) = listener.accept().await.expect("accept");
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let mut transcript = String::new();
        write
            .write_all(b"220 sink.test ESMTP\r\n")
            .await
            .expect("greet");
        let mut in_data = false;
        while let Ok(Some(line)) = lines.next_line().await {
            transcript.push_str(&line);
            transcript.push('\n');
            if in_data {
                if line == "." {
                    in_data = false;
                    write
                        .write_all(b"250 2.0.0 queued\r\n")
                        .await
                        .expect("queued");
                }
                continue;
            }
            let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
            let reply: &[u8] = match verb.as_str() {
                "EHLO" => b"250-sink.test\r\n250 8BITMIME\r\n",
                "HELO" | "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 2.0.0 ok\r\n",
                "DATA" => {
                    in_data = true;
                    b"354 end with .\r\n"
                }
                "QUIT" => {
                    write.write_all(b"221 2.0.0 bye\r\n").await.expect("bye");
                    break;
                }
                _ => b"502 5.5.2 not implemented\r\n",
            };
            write.write_all(reply).await.expect("reply");
        }
        let _ = done.send(transcript);
    });
    (format!("smtp://127.0.0.1:{port}"), received)
}

#[tokio::test]
async fn with_an_smtp_url_mail_goes_out_by_smtp() {
    let (url, received) = smtp_sink().await;
    let mailer = voxanne_http::accounts::Mailer::smtp(&url, "Voxanne <no-reply@clinic.example>")
        .expect("mailer");
    mailer
        .send(voxanne_http::accounts::Mail {
            to: "sam@example.org".into(),
            subject: "You are invited to Clinic A on Voxanne".into(),
            body: "Accept here: https://voxanne.example/invitation#token".into(),
        })
        .await
        .expect("sent");
    let transcript = tokio::time::timeout(std::time::Duration::from_secs(10), received)
        .await
        .expect("the sink finished")
        .expect("transcript");
    assert!(
        transcript.contains("MAIL FROM:<no-reply@clinic.example>"),
        "{transcript}"
    );
    assert!(
        transcript.contains("RCPT TO:<sam@example.org>"),
        "{transcript}"
    );
    assert!(transcript.contains("Subject: You are invited to Clinic A on Voxanne"));
    assert!(transcript.contains("https://voxanne.example/invitation#token"));
    assert!(mailer.outbox_mails().is_empty(), "nothing kept");
    // STARTTLS and TLS-on-connect servers are understood too (nothing is sent here).
    for url in [
        "smtp://user:pass@mail.example:587?tls=required",
        "smtps://user:pass@mail.example",
    ] {
        voxanne_http::accounts::Mailer::smtp(url, "no-reply@clinic.example")
            .unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    assert!(voxanne_http::accounts::Mailer::smtp("http://mail.example", "a@b.example").is_err());
}
