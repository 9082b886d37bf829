//! Campaigns that really call, against a fake of Vapi's REST API that speaks its documented
//! `POST /call` (support/fake_vapi.rs) and Vapi's documented end-of-call report for an
//! outbound call (fixtures/vapi/end-of-call-report-outbound.json): leads imported from CSV
//! and deduplicated by number, each call placed with the clinic's own key and number, in the
//! callee's calling hours, never to a do-not-call or unconsented number, fair across clinics
//! and capped per clinic, and the report settling the attempt and the lead.

use crate::support::fake_vapi::{twilio_number, FakeVapi, KEY};
use crate::support::*;
use chrono::Timelike;
use serde_json::{json, Value};
use std::sync::Arc;
use voxanne_db::demo::DemoClinic;
use voxanne_jobs::{DialOutcome, Dialer, DialerConfig, Job, Metrics};

const SECRET: &str = "campaign-webhook-secret";
const ADA: &str = "+14155550123";
const BOB: &str = "+14155550124";
const CAROL: &str = "+14155550125";

/// An `Etc/GMT` zone where it is now about `hour`:00 (the POSIX sign: `Etc/GMT-2` is UTC+2).
fn zone_at(hour: i64) -> String {
    let now = chrono::Utc::now().hour() as i64;
    let mut offset = hour - now;
    if offset < -12 {
        offset += 24;
    }
    if offset > 14 {
        offset -= 24;
    }
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// Where it is early afternoon: a window of 08:00-21:00 is open for hours.
fn open_zone() -> String {
    zone_at(13)
}

/// Where it is 03:00: no call.
fn night_zone() -> String {
    zone_at(3)
}

struct World {
    app: TestApp,
    fake: FakeVapi,
    a: DemoClinic,
    b: DemoClinic,
}

async fn world() -> World {
    let fake = FakeVapi::spawn(vec![
        twilio_number("pn-a", "+14155550100"),
        twilio_number("pn-b", "+442079460100"),
    ])
    .await;
    let app = TestApp::spawn_with_vapi_api(&fake.base).await;
    let [a, b] = app.clinics().await;
    for clinic in [&a, &b] {
        let r = app
            .put(
                "/api/v1/integrations/vapi",
                &app.token(clinic.owner, Some(clinic.org)),
                &json!({"config": {"server_auth": {"type": "hmac"}},
                        "secrets": {"api_key": KEY, "webhook_secret": SECRET}}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    World { app, fake, a, b }
}

fn dialer(w: &World) -> Dialer {
    let vapi = voxanne_jobs::vapi::VapiSettings::new(None, w.fake.base.parse().expect("url"));
    Dialer::new(
        w.app.t.db.clone(),
        Arc::new(keyring()),
        Arc::new(vapi),
        DialerConfig {
            schedule: quick_schedule(),
            report_lease: std::time::Duration::from_secs(3600),
        },
        Arc::new(Metrics::default()),
    )
}

async fn import(w: &World, clinic: &DemoClinic, csv: &str) -> Value {
    let r = w
        .app
        .post(
            "/api/v1/leads/import",
            &w.app.token(clinic.owner, Some(clinic.org)),
            &json!({ "csv": csv }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body
}

/// An active campaign of `clinic` calling every `new` lead; its id.
async fn campaign(w: &World, clinic: &DemoClinic, extra: Value) -> String {
    let owner = w.app.token(clinic.owner, Some(clinic.org));
    let mut body = json!({"name": "Flu shots", "status": "active",
        "message": "Hello {name}, this is {clinic}: flu shots are in.",
        "window_start": "08:00", "window_end": "21:00"});
    for (k, v) in extra.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    let r = w.app.post("/api/v1/campaigns", &owner, &body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.body["id"].as_str().expect("id").to_owned();
    let r = w
        .app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            &owner,
            &json!({"lead_status": "new"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    id
}

async fn get(w: &World, clinic: &DemoClinic, path: &str) -> Value {
    let r = w
        .app
        .get_as(path, &w.app.token(clinic.owner, Some(clinic.org)))
        .await;
    assert_eq!(r.status, 200, "{path}: {:?}", r.body);
    r.body
}

/// The report Vapi sends at the end of outbound call `call_id` of `clinic` to `callee`.
async fn report(
    w: &World,
    clinic: &DemoClinic,
    call_id: &str,
    callee: &str,
    ended: &str,
    outcome: &str,
) -> Response {
    let pn = if clinic.org == w.a.org {
        "pn-a"
    } else {
        "pn-b"
    };
    let body = vapi_fixture(
        "end-of-call-report-outbound",
        &[
            ("__CALL_ID__", json!(call_id)),
            ("__ENDED_REASON__", json!(ended)),
            ("__OUTCOME__", json!(outcome)),
            ("__PHONE_NUMBER_ID__", json!(pn)),
            ("__CLINIC_NUMBER__", json!(clinic.number)),
            ("__CALLEE__", json!(callee)),
        ],
    );
    w.app
        .post_vapi(&body, Some((SECRET, chrono::Utc::now().timestamp())))
        .await
}

fn outcomes(
    batch: &[(voxanne_db::system::ClaimedCall, DialOutcome)],
) -> Vec<(String, DialOutcome)> {
    let mut out: Vec<_> = batch
        .iter()
        .map(|(c, o)| (c.phone.clone(), o.clone()))
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    out
}

#[tokio::test]
async fn leads_import_deduplicated_by_number_with_their_consent_and_become_contacts() {
    let w = world().await;
    let owner = w.app.token(w.a.owner, Some(w.a.org));
    let csv = format!(
        "Phone,Name,Time_Zone,Consent_Source\n\
         {ADA},Ada Lovelace,America/Los_Angeles,web form 2026-11-02\n\
         +1 (415) 555-0124,Bob,,\n\
         \n\
         +1-415-555-0123,,,\n"
    );
    let report = import(&w, &w.a, &csv).await;
    assert_eq!(
        report,
        json!({"rows": 3, "created": 2, "updated": 0, "duplicates": 1, "with_consent": 1})
    );
    let leads = get(&w, &w.a, "/api/v1/leads").await;
    let mut phones: Vec<&str> = leads["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|l| l["phone"].as_str().expect("phone"))
        .collect();
    phones.sort_unstable();
    assert_eq!(phones, vec![ADA, BOB]);
    let records = get(
        &w,
        &w.a,
        &format!("/api/v1/consent-records?phone=%2B{}", &ADA[1..]),
    )
    .await;
    assert_eq!(records["data"][0]["channel"], "calls");
    assert_eq!(records["data"][0]["granted"], true);
    assert_eq!(records["data"][0]["source"], "lead_import");

    // Again, with what is new: Bob's consent and an email; nothing duplicated.
    let report = import(
        &w,
        &w.a,
        &format!("phone,email,consent_source\n{BOB},bob@example.org,event sign-up\n"),
    )
    .await;
    assert_eq!(report["created"], 0);
    assert_eq!(report["updated"], 1);
    let bob = get(&w, &w.a, "/api/v1/leads?status=new").await["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|l| l["phone"] == BOB)
        .cloned()
        .expect("bob");
    assert_eq!(bob["name"], "Bob");
    assert_eq!(bob["email"], "bob@example.org");
    assert_eq!(bob["consent_source"], "event sign-up");

    // One bad row imports nothing, and names its line.
    let before = w.app.snapshot(w.a.org).await;
    let r = w
        .app
        .post(
            "/api/v1/leads/import",
            &owner,
            &json!({"csv": format!("phone,name\n{CAROL},Carol\nnot-a-number,Dan\n")}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 3"),
        "{:?}",
        r.body
    );
    assert_eq!(w.app.snapshot(w.a.org).await, before);
    let r = w
        .app
        .post(
            "/api/v1/leads/import",
            &owner,
            &json!({"csv": "name\nCarol\n"}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = w
        .app
        .post(
            "/api/v1/leads/import",
            &owner,
            &json!({"csv": format!("phone,time_zone\n{CAROL},Mars/Olympus\n")}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);

    // Staff read leads but do not import them.
    let staff = w.app.token(w.a.staff, Some(w.a.org));
    let r = w
        .app
        .post(
            "/api/v1/leads/import",
            &staff,
            &json!({"csv": "phone\n+14155550126\n"}),
        )
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);

    // Ada becomes a contact.
    let ada = leads["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|l| l["phone"] == ADA)
        .cloned()
        .expect("ada");
    let r = w
        .app
        .post(
            &format!("/api/v1/leads/{}/convert", ada["id"].as_str().expect("id")),
            &owner,
            &json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["lead"]["status"], "converted");
    let contact = get(
        &w,
        &w.a,
        &format!(
            "/api/v1/contacts/{}",
            r.body["contact_id"].as_str().expect("contact")
        ),
    )
    .await;
    assert_eq!(contact["phone"], ADA);
    assert_eq!(contact["name"], "Ada Lovelace");

    // Clinic B sees none of it.
    assert_eq!(get(&w, &w.b, "/api/v1/leads").await["data"], json!([]));
    let r = w
        .app
        .get_as(
            &format!("/api/v1/leads/{}", ada["id"].as_str().expect("id")),
            &w.app.token(w.b.owner, Some(w.b.org)),
        )
        .await;
    assert_eq!(r.status, 404, "{:?}", r.body);
}

#[tokio::test]
async fn a_call_goes_out_with_the_clinics_key_and_number_and_its_report_settles_the_lead() {
    let w = world().await;
    import(
        &w,
        &w.a,
        &format!(
            "phone,name,time_zone,consent_source\n{ADA},Ada,{},web form\n",
            open_zone()
        ),
    )
    .await;
    let id = campaign(&w, &w.a, json!({})).await;

    let batch = dialer(&w).run_once().await.expect("round");
    assert_eq!(
        outcomes(&batch),
        vec![(
            ADA.to_owned(),
            DialOutcome::Placed {
                provider_call_id: "call-1".into()
            }
        )]
    );
    let calls = w.fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["phoneNumberId"], "pn-a", "the clinic's own number");
    assert_eq!(call["customer"]["number"], ADA);
    assert_eq!(call["customer"]["name"], "Ada");
    let clinic = get(&w, &w.a, "/api/v1/organization").await["name"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_default();
    assert_eq!(
        call["assistant"]["firstMessage"],
        format!("Hello Ada, this is {clinic}: flu shots are in.")
    );
    assert_eq!(
        call["assistant"]["analysisPlan"]["structuredDataPlan"]["enabled"],
        true
    );
    let tools: Vec<&str> = call["assistant"]["model"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(tools.contains(&"confirm_booking"), "{tools:?}");
    assert!(w
        .fake
        .seen()
        .iter()
        .any(|s| s.method == "POST" && s.path == "/call"));

    let attempts = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/calls")).await;
    assert_eq!(attempts["data"][0]["status"], "calling");
    assert_eq!(attempts["data"][0]["provider_call_id"], "call-1");
    assert_eq!(attempts["data"][0]["from_number"], w.a.number);
    let lead = &get(&w, &w.a, "/api/v1/leads").await["data"][0];
    assert_eq!(lead["status"], "contacted");

    // The platform's report: answered, and not interested.
    let r = report(
        &w,
        &w.a,
        "call-1",
        ADA,
        "customer-ended-call",
        "not_interested",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let attempts = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/calls")).await;
    let attempt = &attempts["data"][0];
    assert_eq!(attempt["status"], "ended");
    assert_eq!(attempt["outcome"], "not_interested");
    assert_eq!(attempt["ended_reason"], "customer-ended-call");
    assert!(attempt["call_id"].is_string(), "{attempt:?}");
    let call_row = get(
        &w,
        &w.a,
        &format!(
            "/api/v1/calls/{}",
            attempt["call_id"].as_str().expect("call")
        ),
    )
    .await;
    assert_eq!(call_row["direction"], "outbound");
    assert_eq!(
        get(&w, &w.a, "/api/v1/leads").await["data"][0]["status"],
        "not_interested"
    );
    let targets = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/targets")).await;
    assert_eq!(targets["data"][0]["status"], "done");
    assert_eq!(targets["data"][0]["outcome"], "not_interested");

    // A retried report changes nothing; nothing more to call.
    let before = w.app.snapshot(w.a.org).await;
    let r = report(&w, &w.a, "call-1", ADA, "customer-ended-call", "callback").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.app.snapshot(w.a.org).await, before);
    assert!(dialer(&w).run_once().await.expect("round").is_empty());
    assert_eq!(w.fake.calls().len(), 1);
}

#[tokio::test]
async fn no_answer_and_busy_are_tried_again_until_the_attempts_run_out() {
    let w = world().await;
    import(
        &w,
        &w.a,
        &format!(
            "phone,name,time_zone,consent_source\n{ADA},Ada,{},web form\n",
            open_zone()
        ),
    )
    .await;
    let id = campaign(&w, &w.a, json!({"max_attempts": 2, "retry_minutes": 30})).await;
    dialer(&w).run_once().await.expect("round");
    let r = report(
        &w,
        &w.a,
        "call-1",
        ADA,
        "customer-did-not-answer",
        "answered",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let target = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/targets")).await["data"][0].clone();
    assert_eq!(target["status"], "queued");
    assert_eq!(target["outcome"], "no_answer");
    assert_eq!(target["attempts"], 1);
    let next: chrono::DateTime<chrono::Utc> = target["next_attempt_at"]
        .as_str()
        .expect("next")
        .parse()
        .expect("time");
    assert!(
        next > chrono::Utc::now() + chrono::Duration::minutes(29),
        "{next}"
    );
    // Not before its time.
    assert!(dialer(&w).run_once().await.expect("round").is_empty());

    // Its time comes.
    let mut admin = w.app.t.admin().await;
    sqlx::query("UPDATE campaign_targets SET next_attempt_at = now() - interval '1 second'")
        .execute(&mut admin)
        .await
        .expect("due now");
    let batch = dialer(&w).run_once().await.expect("round");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].0.attempt, 2);
    let r = report(&w, &w.a, "call-2", ADA, "customer-busy", "answered").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let target = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/targets")).await["data"][0].clone();
    assert_eq!(target["status"], "done", "the last attempt: {target:?}");
    assert_eq!(target["outcome"], "busy");
    let attempts = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/calls")).await;
    let mut seen: Vec<(i64, String)> = attempts["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap_or(0),
                a["outcome"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen, vec![(1, "no_answer".into()), (2, "busy".into())]);
    assert_eq!(w.fake.calls().len(), 2);
}

#[tokio::test]
async fn never_at_night_never_to_do_not_call_never_without_consent() {
    let w = world().await;
    let owner = w.app.token(w.a.owner, Some(w.a.org));
    import(
        &w,
        &w.a,
        &format!(
            "phone,name,time_zone,consent_source\n\
             {ADA},Night owl,{},web form\n\
             {BOB},Listed,{},web form\n\
             {CAROL},Unasked,{},\n\
             +14155550126,Withdrawn,{},web form\n\
             +8613800138000,Far away,,web form\n",
            night_zone(),
            open_zone(),
            open_zone(),
            open_zone()
        ),
    )
    .await;
    let r = w
        .app
        .post("/api/v1/dnc", &owner, &json!({"phone": BOB}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    // Room for every call at once: what holds a call back here is never the cap.
    let r = w
        .app
        .put(
            "/api/v1/messaging-settings",
            &owner,
            &json!({"max_concurrent_calls": 10}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["max_concurrent_calls"], 10);
    {
        let mut tx = w.app.t.db.tenant(w.a.org, w.a.owner).await.expect("tx");
        tx.record_consent(
            "+14155550126",
            voxanne_domain::messages::ConsentChannel::Calls,
            false,
            "staff",
            Some("asked on the phone not to be called"),
        )
        .await
        .expect("withdrawn");
        tx.commit().await.expect("commit");
    }
    let r = w
        .app
        .post(
            "/api/v1/campaigns",
            &owner,
            &json!({"name": "Flu shots", "status": "active", "window_start": "08:00", "window_end": "21:00"}),
        )
        .await;
    let id = r.body["id"].as_str().expect("id").to_owned();
    let r = w
        .app
        .post(
            &format!("/api/v1/campaigns/{id}/targets"),
            &owner,
            &json!({"lead_status": "new"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["added"], 4);
    assert_eq!(r.body["left_out"][0]["phone"], "+8613800138000");

    let batch = dialer(&w).run_once().await.expect("round");
    let got = outcomes(&batch);
    assert_eq!(got.len(), 3, "the night owl is not even claimed: {got:?}");
    assert!(
        got.iter()
            .all(|(_, o)| matches!(o, DialOutcome::Skipped { .. })),
        "{got:?}"
    );
    assert!(w.fake.calls().is_empty(), "no call placed");
    assert!(!w.fake.seen().iter().any(|s| s.path == "/call"));

    let targets = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/targets")).await;
    let status = |phone: &str| {
        targets["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|t| t["phone"] == phone)
            .map(|t| (t["status"].clone(), t["last_error"].clone()))
            .expect("target")
    };
    assert_eq!(status(ADA).0, "queued");
    assert_eq!(status(BOB).0, "skipped");
    assert!(status(BOB)
        .1
        .as_str()
        .unwrap_or_default()
        .contains("do-not-call"));
    assert_eq!(status(CAROL).0, "skipped");
    assert!(status(CAROL)
        .1
        .as_str()
        .unwrap_or_default()
        .contains("consent"));
    assert_eq!(status("+14155550126").0, "skipped");
    let leads = get(&w, &w.a, "/api/v1/leads").await;
    let lead_status = |phone: &str| {
        leads["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|l| l["phone"] == phone)
            .map(|l| l["status"].clone())
            .expect("lead")
    };
    assert_eq!(lead_status(BOB), "do_not_call");
    assert_eq!(lead_status(ADA), "new");

    // A paused campaign calls nobody, even in the window.
    let r = w
        .app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &owner,
            &json!({"status": "paused"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let mut admin = w.app.t.admin().await;
    sqlx::query("UPDATE campaign_targets SET time_zones = ARRAY[$1]")
        .bind(open_zone())
        .execute(&mut admin)
        .await
        .expect("daytime now");
    assert!(dialer(&w).run_once().await.expect("round").is_empty());

    // A window outside the calling hours is refused.
    let r = w
        .app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &owner,
            &json!({"window_start": "07:30"}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    let r = w
        .app
        .patch(
            &format!("/api/v1/campaigns/{id}"),
            &owner,
            &json!({"window_end": "21:30"}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
}

/// Puts `n` targets of an active campaign in the open window for `org`, with its cap.
async fn backlog(
    admin: &mut sqlx::PgConnection,
    org: voxanne_domain::OrgId,
    n: i32,
    cap: i32,
    prefix: &str,
) {
    sqlx::query(
        "INSERT INTO messaging_settings (org_id, max_concurrent_calls) VALUES ($1, $2)
         ON CONFLICT (org_id) DO UPDATE SET max_concurrent_calls = EXCLUDED.max_concurrent_calls",
    )
    .bind(org.as_uuid())
    .bind(cap)
    .execute(&mut *admin)
    .await
    .expect("cap");
    sqlx::query(
        "WITH c AS (INSERT INTO campaigns (org_id, name, status) VALUES ($1, 'Backlog', 'active')
                    RETURNING id)
         INSERT INTO campaign_targets (org_id, campaign_id, phone, time_zones)
         SELECT $1, c.id, $2 || lpad(i::text, 7, '0'), ARRAY[$4]
           FROM c, generate_series(1, $3) i",
    )
    .bind(org.as_uuid())
    .bind(prefix)
    .bind(n)
    .bind(open_zone())
    .execute(&mut *admin)
    .await
    .expect("backlog");
}

fn per_org(claims: &[voxanne_db::system::ClaimedCall], org: voxanne_domain::OrgId) -> usize {
    claims.iter().filter(|c| c.org_id == org).count()
}

#[tokio::test]
async fn the_dialer_is_fair_across_clinics_and_keeps_each_under_its_cap() {
    let w = world().await;
    let db = &w.app.t.db;
    let lease = std::time::Duration::from_secs(60);
    let mut admin = w.app.t.admin().await;
    // A whale's 10,000-number campaign beside a small clinic's 10.
    backlog(&mut admin, w.a.org, 10_000, 50, "+1415").await;
    backlog(&mut admin, w.b.org, 10, 10, "+4420").await;
    let first = voxanne_db::system::claim_calls(db, 20, lease)
        .await
        .expect("claim");
    assert_eq!(
        per_org(&first, w.b.org),
        10,
        "the small clinic is not kept waiting"
    );
    assert_eq!(per_org(&first, w.a.org), 10);

    // The whale: at most its cap in flight, however many batches.
    let mut whale = per_org(&first, w.a.org);
    for _ in 0..5 {
        let more = voxanne_db::system::claim_calls(db, 20, lease)
            .await
            .expect("claim");
        assert_eq!(per_org(&more, w.b.org), 0, "the small clinic has none left");
        whale += per_org(&more, w.a.org);
    }
    assert_eq!(whale, 50, "the whale's cap");
    // One of its calls ends: one more may go.
    sqlx::query(
        "UPDATE campaign_targets SET status = 'done'
          WHERE id = (SELECT id FROM campaign_targets WHERE org_id = $1 AND status = 'dialing' LIMIT 1)",
    )
    .bind(w.a.org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("ended");
    let more = voxanne_db::system::claim_calls(db, 20, lease)
        .await
        .expect("claim");
    assert_eq!(per_org(&more, w.a.org), 1);

    // Two dialers at once never exceed a cap together.
    sqlx::query("UPDATE campaign_targets SET status = 'queued' WHERE org_id = $1")
        .bind(w.a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("reset");
    let (x, y) = tokio::join!(
        voxanne_db::system::claim_calls(db, 40, lease),
        voxanne_db::system::claim_calls(db, 40, lease)
    );
    let together = per_org(&x.expect("claim"), w.a.org) + per_org(&y.expect("claim"), w.a.org);
    assert_eq!(together, 50);

    // A dialer that died: its claims go back to the queue when the lease runs out; a call
    // whose report never came ends failed, freeing its place.
    sqlx::query(
        "UPDATE campaign_targets SET status = 'calling'
          WHERE id IN (SELECT id FROM campaign_targets WHERE org_id = $1 AND status = 'dialing'
                        LIMIT 5)",
    )
    .bind(w.a.org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("calling");
    sqlx::query(
        "UPDATE campaign_targets SET lease_until = now() - interval '1 second'
          WHERE org_id = $1 AND status IN ('dialing', 'calling')",
    )
    .bind(w.a.org.as_uuid())
    .execute(&mut admin)
    .await
    .expect("expired");
    let settled = voxanne_db::system::requeue_stale_calls(db)
        .await
        .expect("sweep");
    assert_eq!(settled, 50);
    let (queued, failed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'failed')
           FROM campaign_targets WHERE org_id = $1",
    )
    .bind(w.a.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("counts");
    assert_eq!(queued + failed, 10_000);
    assert_eq!(failed, 5, "the calls that never reported");
}

#[tokio::test]
async fn a_clinic_never_reads_or_settles_anothers_campaign_calls() {
    let w = world().await;
    import(
        &w,
        &w.a,
        &format!(
            "phone,name,time_zone,consent_source\n{ADA},Ada,{},web form\n",
            open_zone()
        ),
    )
    .await;
    let a_campaign = campaign(&w, &w.a, json!({})).await;
    dialer(&w).run_once().await.expect("round");
    let b_owner = w.app.token(w.b.owner, Some(w.b.org));
    for path in [
        format!("/api/v1/campaigns/{a_campaign}/targets"),
        format!("/api/v1/campaigns/{a_campaign}/calls"),
    ] {
        let r = w.app.get_as(&path, &b_owner).await;
        assert_eq!(r.status, 404, "{path}: {:?}", r.body);
    }
    let a_lead = get(&w, &w.a, "/api/v1/leads").await["data"][0]["id"].clone();
    let r = w
        .app
        .post(
            "/api/v1/campaigns",
            &b_owner,
            &json!({"name": "B's own", "status": "active"}),
        )
        .await;
    let b_campaign = r.body["id"].as_str().expect("id").to_owned();
    let before = w.app.data_snapshot(w.a.org).await;
    let r = w
        .app
        .post(
            &format!("/api/v1/campaigns/{b_campaign}/targets"),
            &b_owner,
            &json!({"lead_ids": [a_lead]}),
        )
        .await;
    assert_eq!(r.status, 422, "{:?}", r.body);
    // B's report naming A's call id, from B's number: A's attempt is not B's to settle.
    let r = report(
        &w,
        &w.b,
        "call-1",
        ADA,
        "customer-ended-call",
        "not_interested",
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(w.app.data_snapshot(w.a.org).await, before);
    let attempt = &get(&w, &w.a, &format!("/api/v1/campaigns/{a_campaign}/calls")).await["data"][0];
    assert_eq!(attempt["status"], "calling");
}

/// Runs one of the agent's tools on outbound call `call` of clinic A, as Vapi sends it
/// (fixtures/vapi/tool-calls.json with the `Call`'s `type` an outbound call's); the result.
async fn outbound_tool(
    w: &World,
    call: &str,
    callee: &str,
    id: &str,
    name: &str,
    args: Value,
) -> String {
    let body = vapi_fixture(
        "tool-calls",
        &[
            ("__TOOL_CALL_ID__", json!(id)),
            ("__TOOL__", json!(name)),
            ("__ARGUMENTS_OBJECT__", args),
            ("__CALL_ID__", json!(call)),
            ("__CALLER__", json!(callee)),
            ("__CLINIC_NUMBER__", json!(w.a.number)),
        ],
    );
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.contains("\"inboundPhoneCall\""));
    let body = text.replace("\"inboundPhoneCall\"", "\"outboundPhoneCall\"");
    let r = w
        .app
        .post_vapi(
            body.as_bytes(),
            Some((SECRET, chrono::Utc::now().timestamp())),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["results"][0]["result"]
        .as_str()
        .expect("a result")
        .to_owned()
}

#[tokio::test]
async fn a_booking_made_on_the_call_through_the_agents_tools_makes_the_lead_booked() {
    let w = world().await;
    import(
        &w,
        &w.a,
        &format!(
            "phone,name,time_zone,consent_source\n{ADA},Ada,{},web form\n",
            open_zone()
        ),
    )
    .await;
    let id = campaign(&w, &w.a, json!({})).await;
    dialer(&w).run_once().await.expect("round");
    // A Monday 10:00 in clinic A's zone (Los Angeles), inside its opening hours.
    let held = outbound_tool(
        &w,
        "call-1",
        ADA,
        "t-1",
        "hold_slot",
        json!({"starts_at": "2031-03-03T10:00:00-08:00", "patient_name": "Ada Byron"}),
    )
    .await;
    let hold_id = held
        .split("hold_id ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ')', ';', ',']).next())
        .map(|h| h.trim_end_matches('.').to_owned())
        .unwrap_or_else(|| panic!("no hold id in {held:?}"));
    let booked = outbound_tool(
        &w,
        "call-1",
        ADA,
        "t-2",
        "confirm_booking",
        json!({"hold_id": hold_id}),
    )
    .await;
    assert!(
        booked.starts_with("Booked for Monday 3 March at 10:00."),
        "{booked}"
    );

    let r = report(&w, &w.a, "call-1", ADA, "customer-ended-call", "answered").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let attempt = get(&w, &w.a, &format!("/api/v1/campaigns/{id}/calls")).await["data"][0].clone();
    assert_eq!(attempt["outcome"], "booked");
    let appointment = get(
        &w,
        &w.a,
        &format!(
            "/api/v1/appointments/{}",
            attempt["appointment_id"].as_str().expect("booked")
        ),
    )
    .await;
    assert_eq!(appointment["call_id"], attempt["call_id"]);
    let lead = get(&w, &w.a, "/api/v1/leads").await["data"][0].clone();
    assert_eq!(lead["status"], "booked");
    assert_eq!(lead["contact_id"], appointment["contact_id"]);
    let contact = get(
        &w,
        &w.a,
        &format!(
            "/api/v1/contacts/{}",
            appointment["contact_id"].as_str().expect("contact")
        ),
    )
    .await;
    assert_eq!(
        contact["phone"], ADA,
        "the callee, not the clinic, is the patient"
    );
    let call = get(
        &w,
        &w.a,
        &format!(
            "/api/v1/calls/{}",
            attempt["call_id"].as_str().expect("call")
        ),
    )
    .await;
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["from_number"], w.a.number);
    assert_eq!(call["to_number"], ADA);
}
