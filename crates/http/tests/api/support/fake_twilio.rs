//! A fake Twilio Messages API: a real HTTP server on loopback that records every request and
//! answers from a script per `To` number (201 with a sid, an error status, or too slow).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

/// How the fake provider answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 201 with a new `SM…` sid and status `queued`.
    Accept,
    /// This status, with a Twilio error body.
    Fail(u16),
    /// Nothing until long after the client's timeout.
    Slow,
    /// 400 with Twilio's error 21610: the recipient texted STOP to the sender
    /// (`fixtures/twilio/error-21610.json`).
    Unsubscribed,
}

/// A request the fake provider received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub user: String,
    pub password: String,
    pub form: HashMap<String, String>,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Replies by `To` number; `Accept` once a script runs out.
    script: Arc<Mutex<HashMap<String, VecDeque<Reply>>>>,
    sids: Arc<Mutex<u32>>,
}

pub struct FakeTwilio {
    pub base: String,
    state: Fake,
}

impl FakeTwilio {
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Fake::default();
        let app = axum::Router::new()
            .route(
                "/2010-04-01/Accounts/{account}/Messages.json",
                axum::routing::post(messages),
            )
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    pub fn script(&self, to: &str, replies: &[Reply]) {
        self.state
            .script
            .lock()
            .expect("lock")
            .insert(to.to_owned(), replies.iter().cloned().collect());
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("lock").clone()
    }
}

async fn messages(
    State(fake): State<Fake>,
    Path(account): Path<String>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> axum::response::Response {
    use base64::Engine as _;
    let (user, password) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.split_once(':').map(|(u, p)| (u.to_owned(), p.to_owned())))
        .unwrap_or_default();
    let to = form.get("To").cloned().unwrap_or_default();
    fake.seen.lock().expect("lock").push(Seen {
        path: format!("/2010-04-01/Accounts/{account}/Messages.json"),
        user,
        password,
        form,
    });
    let reply = fake
        .script
        .lock()
        .expect("lock")
        .get_mut(&to)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Reply::Accept);
    let status = |code: u16| axum::http::StatusCode::from_u16(code).expect("status");
    match reply {
        Reply::Accept => {
            let n = {
                let mut sids = fake.sids.lock().expect("lock");
                *sids += 1;
                *sids
            };
            let sid = format!("SM{n:032x}");
            (
                status(201),
                axum::Json(
                    json!({"sid": sid, "status": "queued", "to": to, "account_sid": account}),
                ),
            )
                .into_response()
        }
        Reply::Fail(code) => (
            status(code),
            axum::Json(
                json!({"code": 21211, "message": "The 'To' number is not a valid phone number.",
                "more_info": "https://www.twilio.com/docs/errors/21211", "status": code}),
            ),
        )
            .into_response(),
        Reply::Unsubscribed => {
            let body: serde_json::Value =
                serde_json::from_slice(&crate::support::fixture("twilio/error-21610.json"))
                    .expect("fixture");
            (status(400), axum::Json(body)).into_response()
        }
        Reply::Slow => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            (status(201), axum::Json(json!({"sid": "SMtoolate"}))).into_response()
        }
    }
}
