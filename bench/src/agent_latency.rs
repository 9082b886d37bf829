//! How long the voice platform waits for Voxanne during a call, in one run.
//!
//! The real server on loopback, a local cluster, the demo clinics. Each variant is sent N
//! times, interleaved, as the platform sends it (signed with the clinic's secret):
//!
//! | variant | what |
//! | --- | --- |
//! | healthz | `GET /healthz`: the HTTP round trip alone |
//! | status-update | a signed call event: clinic resolution, secret, signature, one write |
//! | assistant-request | the clinic's assistant (the platform's budget: 7.5 s end to end) |
//! | find_contact | one tool call, read-only |
//! | check_availability | one tool call: opening hours minus appointments, 14 days |
//!
//! Printed: p50 and p99 in ms, the ratio of each p50 to `healthz`, and the assistant-request's
//! p99 as a share of the platform's 7.5 s budget.
//!
//! `cargo run --release -p voxanne-bench --bin agent-latency [-- N]`

use secrecy::SecretString;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use voxanne_db::crypto::Keyring;
use voxanne_db::demo;
use voxanne_domain::IntegrationProvider;
use voxanne_http::auth::{AuthConfig, JwtVerifier};
use voxanne_http::AppState;
use voxanne_testkit::TestDb;
use voxanne_webhooks::vapi_auth::{ServerAuth, CONFIG_KEY};

const SECRET: &str = "bench-webhook-secret";
const BUDGET: Duration = Duration::from_millis(7500);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await?;
    let keyring = Arc::new(Keyring::from_config(
        &SecretString::from("bench:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
        None,
    )?);
    let mut tx = t.db.tenant(a.org, a.owner).await?;
    let secrets = [("webhook_secret".to_owned(), SecretString::from(SECRET))].into();
    // An HMAC credential on Vapi's defaults: the dearest of the modes to verify.
    let auth = json!({"type": "hmac"});
    let config = [(CONFIG_KEY.to_owned(), auth.clone())]
        .into_iter()
        .collect();
    let auth = ServerAuth::from_config(&json!({ CONFIG_KEY: auth }))?;
    tx.put_integration(&keyring, IntegrationProvider::Vapi, &config, Some(&secrets))
        .await?;
    tx.commit().await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (security, _) = voxanne_http::security_log::SecurityLog::start(t.db.clone());
    let state = AppState {
        security,
        // One number gets every request of the run: more than the default per-number limit
        // on webhooks, which is not what this measures.
        limits: Arc::new(voxanne_http::limits::Limits::new(30, u32::MAX)),
        db: t.db.clone(),
        auth: Arc::new(
            JwtVerifier::new(AuthConfig {
                hs256_secret: Some(SecretString::from("bench-jwt-secret-long-enough-for-hs256")),
                jwks: None,
                audience: "authenticated".into(),
            })
            .await?,
        ),
        recordings: Arc::new(object_store::memory::InMemory::new()),
        keyring,
        metrics: Arc::default(),
        vapi: Arc::default(),
        calendar: Arc::default(),
        accounts: Arc::new(voxanne_http::accounts::AccountSettings::development(
            base.parse()?,
        )),
        live: Arc::default(),
    };
    tokio::spawn(voxanne_http::serve(
        listener,
        state,
        Default::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();

    let message = |m: Value| {
        let mut m = m;
        m["call"] = json!({"id": "bench-call", "type": "inboundPhoneCall"});
        m["phoneNumber"] = json!({"number": a.number});
        m["customer"] = json!({"number": "+14155551001"});
        json!({ "message": m }).to_string().into_bytes()
    };
    let tool = |name: &str| {
        message(json!({"type": "tool-calls", "toolCallList": [
            {"id": "t", "type": "function", "function": {"name": name, "arguments": {}}}]}))
    };
    let variants: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("healthz", None),
        (
            "status-update",
            Some(message(
                json!({"type": "status-update", "status": "in-progress"}),
            )),
        ),
        (
            "assistant-request",
            Some(message(json!({"type": "assistant-request"}))),
        ),
        ("find_contact", Some(tool("find_contact"))),
        ("check_availability", Some(tool("check_availability"))),
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(n); variants.len()];
    for round in 0..n + 10 {
        for (i, (name, body)) in variants.iter().enumerate() {
            let request = match body {
                None => http.get(format!("{base}/healthz")),
                Some(body) => {
                    let url = format!("{base}/webhooks/voice/vapi");
                    let now = chrono::Utc::now().timestamp();
                    let mut request = http.post(&url).header("content-type", "application/json");
                    for (name, value) in auth.headers(SECRET, body, &url, now) {
                        request = request.header(name, value);
                    }
                    request.body(body.clone())
                }
            };
            let started = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            response.bytes().await?;
            let took = started.elapsed();
            if !status.is_success() {
                return Err(format!("{name}: HTTP {status}").into());
            }
            if round >= 10 {
                // The first rounds warm the pool and the caches.
                times[i].push(took);
            }
        }
    }
    for t in &mut times {
        t.sort();
    }
    let base_p50 = percentile(&times[0], 0.5);
    println!("agent-latency: {n} requests per variant, interleaved (release build advised)\n");
    println!("| variant | p50 ms | p99 ms | p50 / healthz |");
    println!("| --- | ---: | ---: | ---: |");
    for ((name, _), t) in variants.iter().zip(&times) {
        let p50 = percentile(t, 0.5);
        println!(
            "| {name} | {:.2} | {:.2} | {:.1} |",
            ms(p50),
            ms(percentile(t, 0.99)),
            p50.as_secs_f64() / base_p50.as_secs_f64()
        );
    }
    let assistant_p99 = percentile(&times[2], 0.99);
    println!(
        "\nassistant-request p99 is {:.3}% of the platform's 7.5 s budget",
        assistant_p99.as_secs_f64() / BUDGET.as_secs_f64() * 100.0
    );
    Ok(())
}
