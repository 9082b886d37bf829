//! The live stream (`GET /api/v1/live`, server-sent events): a call starts, its final lines
//! arrive as Vapi streams them (the documented `status-update` and `transcript` messages of
//! `tests/fixtures/vapi/`, signed with the clinic's own secret), and it ends; each clinic's
//! stream carries its own calls only, and a stream whose member is removed ends.

use crate::support::*;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use voxanne_db::demo::DemoClinic;

const A_SECRET: &str = "whsec-clinic-a-0123456789";
const B_SECRET: &str = "whsec-clinic-b-9876543210";

/// An open event stream.
struct Events {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Events {
    async fn open(app: &TestApp, token: &str) -> Self {
        let response = app
            .client
            .get(format!("{}/api/v1/live", app.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("live");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "server-sent events"
        );
        Self {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        }
    }

    /// The next event `(name, data)`, or `None` if none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let raw: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in raw.lines() {
                    if let Some(n) = line.strip_prefix("event:") {
                        name = n.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some((name, value));
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buffer
                .push_str(&String::from_utf8_lossy(&chunk.expect("chunk")));
        }
    }

    /// Events until one satisfies `want` (within 10 s in all).
    async fn until(&mut self, want: impl Fn(&str, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (name, data) = self.next(left).await.expect("the awaited event came");
            if want(&name, &data) {
                return data;
            }
        }
    }
}

fn message(name: &str, call: &str, clinic: &DemoClinic) -> Vec<u8> {
    vapi_fixture(
        name,
        &[
            ("__CALL_ID__", json!(call)),
            ("__CALLER__", json!("+14155559876")),
            ("__CLINIC_NUMBER__", json!(clinic.number)),
            (
                "__RECORDING_URL__",
                json!("https://recordings.vapi.example/live.wav"),
            ),
        ],
    )
}

async fn send(app: &TestApp, body: &[u8], secret: &str) {
    let r = app
        .post_vapi(body, Some((secret, chrono::Utc::now().timestamp())))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

fn texts(call: &Value) -> Vec<String> {
    call["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["text"].as_str().expect("text").to_owned())
        .collect()
}

#[tokio::test]
async fn a_call_and_its_transcript_stream_live_to_its_clinic_only() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    app.set_vapi_secret(&a, A_SECRET).await;
    app.set_vapi_secret(&b, B_SECRET).await;
    let mut a_events = Events::open(&app, &app.token(a.staff, Some(a.org))).await;
    let mut b_events = Events::open(&app, &app.token(b.owner, Some(b.org))).await;
    let (name, first) = a_events
        .next(Duration::from_secs(5))
        .await
        .expect("at once");
    assert_eq!(name, "calls");
    let before: Vec<Value> = first["calls"].as_array().expect("calls").clone();

    // The call starts: it appears, with nothing said.
    send(&app, &message("status-update", "vapi-live-1", &a), A_SECRET).await;
    let live = a_events
        .until(|n, d| {
            n == "calls"
                && d["calls"]
                    .as_array()
                    .is_some_and(|c| c.len() > before.len())
        })
        .await;
    let call = live["calls"][0].clone();
    assert_eq!(call["status"], "in_progress");
    assert_eq!(call["from_number"], "+14155559876");
    assert!(texts(&call).is_empty());

    // A partial line is not kept; the final one is, in order.
    send(&app, &message("transcript", "vapi-live-1", &a), A_SECRET).await;
    send(
        &app,
        &message("transcript-final", "vapi-live-1", &a),
        A_SECRET,
    )
    .await;
    let live = a_events
        .until(|_, d| {
            d["calls"][0]["lines"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
        })
        .await;
    assert_eq!(texts(&live["calls"][0]), ["I'd like to book a cleaning."]);
    assert_eq!(live["calls"][0]["lines"][0]["role"], "user");

    // A line for a call the clinic does not have is acknowledged and kept nowhere.
    send(
        &app,
        &message("transcript-final", "vapi-unknown", &a),
        A_SECRET,
    )
    .await;

    // Clinic B's stream carried nothing of it.
    let mut seen_by_b = Vec::new();
    while let Some((_, data)) = b_events.next(Duration::from_millis(3500)).await {
        seen_by_b.push(data);
    }
    let b_text = serde_json::to_string(&seen_by_b).expect("json");
    assert!(
        !b_text.contains("vapi-live-1") && !b_text.contains("cleaning"),
        "{b_text}"
    );
    assert!(!b_text.contains("+14155559876"), "{b_text}");

    // The call ends: it leaves the live list, and its page has the report.
    send(
        &app,
        &message("end-of-call-report", "vapi-live-1", &a),
        A_SECRET,
    )
    .await;
    let id = call["id"].as_str().expect("id").to_owned();
    a_events
        .until(|_, d| {
            d["calls"]
                .as_array()
                .is_some_and(|c| c.iter().all(|c| c["id"] != id.as_str()))
        })
        .await;
    let r = app
        .get_as(
            &format!("/api/v1/calls/{id}"),
            &app.token(a.staff, Some(a.org)),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_ne!(r.body["status"], "in_progress");
}

#[tokio::test]
async fn a_stream_ends_when_its_member_is_removed() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    app.set_vapi_secret(&a, A_SECRET).await;
    let mut staff = Events::open(&app, &app.token(a.staff, Some(a.org))).await;
    staff.next(Duration::from_secs(5)).await.expect("first");
    let r = app
        .delete(
            &format!("/api/v1/members/{}", a.staff),
            &app.token(a.owner, Some(a.org)),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // The next read (a call starting wakes it) finds no membership: the stream ends, and
    // carries nothing of the call.
    send(&app, &message("status-update", "vapi-live-2", &a), A_SECRET).await;
    let (name, data) = staff
        .next(Duration::from_secs(10))
        .await
        .expect("an end event");
    assert_eq!((name.as_str(), data), ("end", json!("gone")));
    assert!(
        staff.next(Duration::from_secs(1)).await.is_none(),
        "and nothing after"
    );
}
