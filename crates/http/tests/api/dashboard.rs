//! The dashboard in a real browser (headless Chromium over WebDriver) against a real server
//! and database: sign in, see one's own clinic's calls and never another's, play a stored
//! recording, the one not-found page for another clinic's id, a write without the CSRF token
//! refused inside the browser, an invitation taken from its link, the access log an admin reads
//! (and staff cannot). Screenshots of each screen, at desktop and phone width, go to
//! `target/screenshots/`.

use crate::support::browser::Browser;
use crate::support::*;
use serde_json::{json, Value};

/// A short valid WAV (8 kHz, mono, 16-bit, a quarter second of a tone).
fn wav() -> Vec<u8> {
    let samples: Vec<i16> = (0..2000)
        .map(|i| ((i as f32 * 0.25).sin() * 8000.0) as i16)
        .collect();
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// Clinic `org`'s call with a stored recording: its id, with the recording's file in storage.
async fn stored_call(app: &TestApp, org: voxanne_domain::OrgId) -> String {
    let mut admin = app.t.admin().await;
    let id: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM calls WHERE org_id = $1 AND recording_status = 'stored' LIMIT 1",
    )
    .bind(org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("a stored call");
    let key = format!("{org}/recordings/{id}.wav");
    sqlx::query("UPDATE calls SET recording_path = $2 WHERE id = $1")
        .bind(id)
        .bind(&key)
        .execute(&mut admin)
        .await
        .expect("path");
    let file = app.storage.path().join(&key);
    std::fs::create_dir_all(file.parent().expect("dir")).expect("dirs");
    std::fs::write(file, wav()).expect("recording");
    id.to_string()
}

async fn sign_in_as(browser: &Browser, app: &TestApp, who: &str) {
    browser.open(&format!("{}/sign-in", app.base)).await;
    browser.click_button(&format!("Sign in as {who}")).await;
    browser.wait_text("main h1", "Today").await;
}

async fn sign_out(browser: &Browser) {
    browser.click_button("Sign out").await;
    browser.wait_text("main h1", "Sign in").await;
}

#[tokio::test]
async fn a_clinic_sees_its_own_calls_plays_a_recording_and_another_clinics_call_is_not_found() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let a_call = stored_call(&app, a.org).await;
    let browser = Browser::start().await;

    browser.open(&format!("{}/calls", app.base)).await;
    assert_eq!(
        browser.heading().await,
        "Sign in to Voxanne",
        "signed out: the sign-in page"
    );
    browser
        .wait_text("button", "Sign in as Clinic A owner")
        .await;
    browser.screenshots("sign-in").await;
    // On a page just opened, the keyboard's first stop is the link past the navigation.
    browser
        .open(&format!("{}/sign-in?next=%2Fcalls", app.base))
        .await;
    browser.heading().await;
    use fantoccini::actions::InputSource as _;
    let tab = fantoccini::actions::KeyActions::new("keyboard".into())
        .then(fantoccini::actions::KeyAction::Down { value: '\u{e004}' })
        .then(fantoccini::actions::KeyAction::Up { value: '\u{e004}' });
    browser.client.perform_actions(tab).await.expect("tab");
    let first = browser
        .client
        .execute("return document.activeElement.textContent", vec![])
        .await
        .expect("focused");
    assert_eq!(first, json!("Skip to content"));
    browser.click_button("Sign in as Clinic A owner").await;
    // Back where it was going.
    browser.wait_text("main h1", "Calls").await;
    browser.wait_text("tbody td", "+1").await;
    let numbers = browser.texts("tbody td:nth-child(2)").await;
    let api = app
        .get_as("/api/v1/calls?limit=25", &app.token(a.owner, Some(a.org)))
        .await;
    let want: Vec<String> = api.body["data"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["from_number"].as_str().expect("from").to_owned())
        .collect();
    assert_eq!(numbers.len(), want.len(), "{numbers:?}");
    assert!(
        numbers.iter().all(|n| n.starts_with("+1")),
        "only Clinic A's callers: {numbers:?}"
    );
    let page = browser.client.source().await.expect("source");
    assert!(!page.contains("+4420"), "nothing of Clinic B's");
    browser.screenshots("calls").await;

    // Filters go into the address and the list.
    browser.select("#f-status", "missed").await;
    browser.click_button("Filter").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let url = browser.client.current_url().await.expect("url");
    assert!(url.as_str().ends_with("/calls?status=missed"), "{url}");

    // The call's page, and its recording plays.
    browser.open(&format!("{}/calls/{a_call}", app.base)).await;
    browser.wait_text("main h1", "Call of").await;
    let played = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             const a = document.querySelector('audio');
             if (!a) { done('no audio element'); return; }
             a.addEventListener('error', () => done('error ' + (a.error && a.error.code)));
             a.addEventListener('playing', () => done({duration: a.duration}));
             a.play().catch((e) => done('play: ' + e));",
        )
        .await;
    let duration = played["duration"]
        .as_f64()
        .unwrap_or_else(|| panic!("the recording did not play: {played}"));
    assert!((duration - 0.25).abs() < 0.05, "{played}");
    browser.screenshots("call-detail").await;
    browser.open(&format!("{}/", app.base)).await;
    browser.wait_text("main h1", "Today").await;
    browser.wait_text(".stat", "calls this week").await;
    browser.screenshots("today").await;
    browser.open(&format!("{}/contacts", app.base)).await;
    browser.wait_text("tbody", "Ada").await;
    browser.screenshots("contacts").await;
    // A contact's page: their calls and appointments.
    browser.click("tbody td a").await;
    browser.wait_text("main h2", "Appointments").await;
    browser.wait_text("main table", "+1415").await;
    browser.screenshots("contact").await;
    browser.open(&format!("{}/appointments", app.base)).await;
    browser.heading().await;
    browser.screenshots("appointments").await;
    browser.open(&format!("{}/members", app.base)).await;
    browser.wait_text("main h2", "Invite someone").await;
    browser.screenshots("members").await;
    for (path, heading) in [
        ("/dnc", "Do-not-call list"),
        ("/knowledge-base?q=parking", "Knowledge base"),
        ("/settings", "Agent settings"),
        ("/integrations", "Integrations"),
        ("/security", "Security events"),
    ] {
        browser.open(&format!("{}{path}", app.base)).await;
        assert_eq!(browser.heading().await, heading, "{path}");
        let name = path
            .trim_start_matches('/')
            .split('?')
            .next()
            .unwrap_or("page");
        browser.screenshots(name).await;
    }
    sign_out(&browser).await;

    // Clinic B's owner: A's call is the not-found page, word for word a missing id's.
    sign_in_as(&browser, &app, "Clinic B owner").await;
    browser.open(&format!("{}/calls/{a_call}", app.base)).await;
    assert_eq!(browser.heading().await, "Not found");
    let theirs = browser
        .client
        .find(fantoccini::Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    browser.screenshots("not-found").await;
    browser
        .open(&format!("{}/calls/{}", app.base, uuid::Uuid::new_v4()))
        .await;
    assert_eq!(browser.heading().await, "Not found");
    let missing = browser
        .client
        .find(fantoccini::Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert_eq!(theirs, missing);
    // B's recording URL of A's call: nothing either.
    let status = browser
        .run_async(&format!(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/calls/{a_call}/recording').then((r) => done(r.status));"
        ))
        .await;
    assert_eq!(status, json!(404));
    browser.quit().await;
}

#[tokio::test]
async fn in_the_browser_a_write_needs_the_csrf_token_and_another_clinic_is_refused() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let browser = Browser::start().await;
    sign_in_as(&browser, &app, "Clinic A staff").await;
    let before = app.data_snapshot(a.org).await;
    // The page's own fetch, without the token the dashboard sends: refused.
    let r = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             fetch('/api/v1/contacts', {method: 'POST', headers: {'Content-Type': 'application/json'},
                   body: JSON.stringify({name: 'No Token'})})
               .then(async (r) => done({status: r.status, body: await r.json()}));",
        )
        .await;
    assert_eq!(r["status"], 403, "{r}");
    assert_eq!(r["body"]["error"]["code"], "csrf_failed");
    assert_eq!(app.data_snapshot(a.org).await, before);
    // The switcher cannot be pointed at a clinic the account is not in.
    let r = browser
        .run_async(&format!(
            "const done = arguments[arguments.length - 1];
             (async () => {{
               const s = await (await fetch('/auth/session')).json();
               const r = await fetch('/auth/session/org', {{method: 'POST',
                     headers: {{'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token}},
                     body: JSON.stringify({{org_id: '{}'}})}});
               const calls = await fetch('/api/v1/calls', {{headers: {{'X-Org-Id': '{}'}}}});
               done({{switch: r.status, calls: calls.status, body: await calls.text()}});
             }})();",
            b.org, b.org
        ))
        .await;
    assert_eq!(
        (r["switch"].clone(), r["calls"].clone()),
        (json!(403), json!(403)),
        "{r}"
    );
    assert!(!r["body"].as_str().unwrap_or("").contains("from_number"));
    browser.quit().await;
}

#[tokio::test]
async fn an_invitation_sent_from_the_members_page_is_taken_in_the_browser() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let browser = Browser::start().await;
    sign_in_as(&browser, &app, "Clinic A owner").await;
    browser.open(&format!("{}/members", app.base)).await;
    browser.fill("#f-email", "new.hire@example.org").await;
    browser.click_button("Send invitation").await;
    let notice = browser.wait_text(".notice", "Invitation sent").await;
    let link = notice
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("the link")
        .to_owned();
    sign_out(&browser).await;

    browser.open(&link).await;
    browser
        .wait_text("main p", "You are invited to join Clinic A as staff")
        .await;
    browser.screenshots("invitation").await;
    browser.fill("#f-display_name", "New Hire").await;
    browser.fill("#f-password", "a long enough password").await;
    browser.click_button("Create my account and join").await;
    browser.wait_text("main h1", "Today").await;
    let clinic = browser.texts("#clinic option").await;
    assert_eq!(clinic, ["Clinic A (staff)"]);
    // The same link again: used.
    sign_out(&browser).await;
    browser.open(&link).await;
    browser
        .wait_text("[role=alert]", "has been used or has expired")
        .await;
    browser.screenshots("invitation-used").await;
    // Forgot the password: the reset page mails a link (the demo outbox shows it).
    browser.open(&format!("{}/reset-password", app.base)).await;
    browser.fill("#f-email", "new.hire@example.org").await;
    browser.click_button("Mail me a link").await;
    browser.wait_text(".notice", "a link is on its way").await;
    browser.screenshots("reset-password").await;
    // The mail is sent off the request: the outbox has it shortly.
    for _ in 0..50 {
        if app.accounts.mailer.outbox_mails().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    browser.open(&format!("{}/outbox", app.base)).await;
    browser
        .wait_text("main", "Reset your Voxanne password")
        .await;
    browser.screenshots("outbox").await;
    let members: Value = app
        .get_as("/api/v1/members", &app.token(a.owner, Some(a.org)))
        .await
        .body;
    assert_eq!(members["data"].as_array().expect("members").len(), 3);
    browser.quit().await;
}

#[tokio::test]
async fn an_appointment_is_booked_and_moved_in_the_week_view() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let browser = Browser::start().await;
    sign_in_as(&browser, &app, "Clinic A staff").await;
    browser
        .open(&format!("{}/appointments?week=2031-03-03", app.base))
        .await;
    browser.wait_text("main h2", "New appointment").await;
    browser.set_value("#f-starts_at", "2031-03-04T10:00").await;
    browser.fill("#f-minutes", "45").await;
    browser.fill("#f-notes", "Booked in the week view").await;
    browser.click_button("Book").await;
    browser.wait_text(".slot", "Booked in the week view").await;
    let token = app.token(a.owner, Some(a.org));
    let booked = app
        .get_as("/api/v1/appointments?from=2031-03-01&to=2031-03-10", &token)
        .await
        .body["data"][0]
        .clone();
    assert_eq!(
        (booked["starts_at"].clone(), booked["ends_at"].clone()),
        (json!("2031-03-04T10:00:00Z"), json!("2031-03-04T10:45:00Z")),
        "{booked}"
    );
    browser.screenshots("appointments-week").await;

    // Moved a day later, same length.
    browser.click(".slot details summary").await;
    let id = booked["id"].as_str().expect("id");
    browser
        .set_value(&format!("[name='move-{id}']"), "2031-03-05T11:30")
        .await;
    browser.click_button("Move").await;
    browser.wait_text(".day:nth-child(3) .slot", "11:30").await;
    let moved = app
        .get_as(&format!("/api/v1/appointments/{id}"), &token)
        .await
        .body;
    assert_eq!(
        (moved["starts_at"].clone(), moved["ends_at"].clone()),
        (json!("2031-03-05T11:30:00Z"), json!("2031-03-05T12:15:00Z"))
    );
    // Clinic B's week is its own.
    sign_out(&browser).await;
    sign_in_as(&browser, &app, "Clinic B owner").await;
    browser
        .open(&format!("{}/appointments?week=2031-03-03", app.base))
        .await;
    browser.wait_text("main h2", "New appointment").await;
    assert!(browser.texts(".slot").await.is_empty(), "nothing of A's");
    browser.quit().await;
}

#[tokio::test]
async fn a_simulated_call_appears_live_with_its_transcript_and_ends_into_its_page() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let secret = "whsec-clinic-a-0123456789";
    app.set_vapi_secret(&a, secret).await;
    let browser = Browser::start().await;
    sign_in_as(&browser, &app, "Clinic A owner").await;
    browser.open(&format!("{}/live", app.base)).await;
    browser.wait_text("main", "No calls in progress.").await;
    let message = |name: &str| {
        vapi_fixture(
            name,
            &[
                ("__CALL_ID__", json!("vapi-browser-live")),
                ("__CALLER__", json!("+14155559876")),
                ("__CLINIC_NUMBER__", json!(a.number)),
                (
                    "__RECORDING_URL__",
                    json!("https://recordings.vapi.example/x.wav"),
                ),
            ],
        )
    };
    for name in ["status-update", "transcript-final"] {
        let r = app
            .post_vapi(
                &message(name),
                Some((secret, chrono::Utc::now().timestamp())),
            )
            .await;
        assert_eq!(r.status, 200, "{name}: {:?}", r.body);
    }
    browser
        .wait_text(".live-call", "I'd like to book a cleaning.")
        .await;
    browser.screenshots("live").await;
    let r = app
        .post_vapi(
            &message("end-of-call-report"),
            Some((secret, chrono::Utc::now().timestamp())),
        )
        .await;
    assert_eq!(r.status, 200);
    browser.wait_text("main li", "see the call").await;
    browser.click("main li a").await;
    browser.wait_text("main h1", "Call of").await;
    browser.wait_text("main", "+14155559876").await;
    browser.quit().await;
}

#[tokio::test]
async fn an_admin_sees_who_read_a_patients_data_and_staff_do_not_see_the_access_log() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let first = |list: Value| {
        list["data"][0]["id"]
            .as_str()
            .expect("a contact")
            .to_owned()
    };
    let ada = first(app.get_as("/api/v1/contacts?q=Ada", &owner).await.body);
    let bea = first(
        app.get_as("/api/v1/contacts?q=Bea", &app.token(b.owner, Some(b.org)))
            .await
            .body,
    );
    let browser = Browser::start().await;
    sign_in_as(&browser, &app, "Clinic A owner").await;

    // The owner opens Ada's page: that read is in the log (written a moment later)…
    browser.open(&format!("{}/contacts/{ada}", app.base)).await;
    browser.wait_text("main h2", "Appointments").await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let log = app
            .get_as(
                &format!("/api/v1/access-log?patient={ada}&limit=100"),
                &owner,
            )
            .await;
        let read = log.body["data"].as_array().is_some_and(|records| {
            records.iter().any(|r| {
                r["action"] == "read"
                    && r["subject_kind"] == "contact"
                    && r["actor_id"] == json!(a.owner.as_uuid())
                    && r["via"]
                        .as_str()
                        .is_some_and(|v| v.contains("/contacts/{id}"))
            })
        });
        if read {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}", log.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // …and the page's link shows it, by name, with the route it went through.
    browser.click("main a[href^='/access-log?patient=']").await;
    assert_eq!(browser.heading().await, "Access log");
    browser
        .wait_text("main p", "Every read and change of Ada Lovelace's data")
        .await;
    let row = browser.wait_text("tbody tr", "read contact").await;
    assert!(row.contains("Clinic A owner"), "{row}");
    let whats = browser.texts("tbody td:nth-child(3)").await;
    assert!(!whats.is_empty(), "{whats:?}");
    browser.screenshots("access-log").await;
    assert_eq!(browser.accessibility_problems().await, Vec::<String>::new());

    // The export link downloads the same selection as CSV.
    let csv = browser
        .run_async(
            "const done = arguments[arguments.length - 1];
             const a = [...document.querySelectorAll('main a')].find((l) => l.textContent === 'Export as CSV');
             fetch(a.href).then(async (r) => done({status: r.status, type: r.headers.get('content-type'),
                                                   href: a.getAttribute('href'), body: await r.text()}));",
        )
        .await;
    assert_eq!(csv["status"], 200, "{csv}");
    assert!(
        csv["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("text/csv")),
        "{csv}"
    );
    assert_eq!(
        csv["href"],
        json!(format!("/api/v1/access-log/export?patient={ada}"))
    );
    let body = csv["body"].as_str().expect("csv");
    assert!(body.lines().count() > 1 && body.contains(&ada), "{body}");

    // Another clinic's patient: nothing of theirs, and nothing of A's.
    browser
        .open(&format!("{}/access-log?patient={bea}", app.base))
        .await;
    browser.wait_text("main h1", "Access log").await;
    browser
        .wait_text("main [role=status]", "Nothing recorded.")
        .await;
    assert!(browser.texts("tbody tr").await.is_empty());
    sign_out(&browser).await;

    // Staff: no such page in the navigation, and the log refused if asked for.
    sign_in_as(&browser, &app, "Clinic A staff").await;
    let nav = browser.texts("nav a").await;
    assert!(nav.iter().all(|l| l != "Access log"), "{nav:?}");
    browser.open(&format!("{}/access-log", app.base)).await;
    browser
        .wait_text("main", "only admins read the access log")
        .await;
    browser.quit().await;
}
