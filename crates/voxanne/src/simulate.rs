//! `voxanne call simulate`: plays a whole call against a running server as the voice platform
//! would: a signed assistant-request, tool calls that find the caller, look for a free time
//! and (with --book) hold and book it, then the end-of-call report with a recording URL that
//! this command serves itself until the server's worker has fetched it.

use anyhow::{bail, Context};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use voxanne_domain::PhoneNumber;
use voxanne_webhooks::vapi_auth::{ServerAuth, CONFIG_KEY};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The clinic's number being called (E.164).
    #[arg(long)]
    to: String,
    /// The caller's number (E.164).
    #[arg(long, default_value = "+14155550142")]
    from: String,
    /// Hold the first free time and book it.
    #[arg(long)]
    book: bool,
    /// Look for free times on this date (YYYY-MM-DD, the clinic's time zone); default: the
    /// next free times.
    #[arg(long)]
    date: Option<String>,
    /// The running server.
    #[arg(
        long,
        env = "VOXANNE_SERVER_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    server: String,
    /// The clinic's Vapi webhook secret; the demo clinics' secrets are known without it.
    #[arg(long, env = "VOXANNE_WEBHOOK_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// How the clinic's Vapi credential authenticates: its `server_auth` as JSON (e.g.
    /// '{"type":"hmac"}'); default: the demo clinic's, else `x-vapi-secret`.
    #[arg(long)]
    auth: Option<String>,
    /// With an `oauth2` credential: the clinic's organization id, the client id the token is
    /// asked for with (as Vapi asks the server's token endpoint).
    #[arg(long)]
    client_id: Option<String>,
    /// How long to keep serving the recording for the worker to fetch it.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

/// The recording this command serves: one second of silence, 8 kHz 16-bit mono WAV.
fn silent_wav() -> Vec<u8> {
    let samples: u32 = 8000;
    let data_len = samples * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8000u32.to_le_bytes()); // sample rate
    wav.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 0);
    wav
}

struct Recording {
    fetched: Notify,
    wav: Vec<u8>,
}

async fn serve_recording(
    State(recording): State<Arc<Recording>>,
    Path(_name): Path<String>,
) -> impl IntoResponse {
    recording.fetched.notify_one();
    ([(header::CONTENT_TYPE, "audio/wav")], recording.wav.clone())
}

/// One signed platform request, and its JSON answer.
struct Platform {
    http: reqwest::Client,
    url: String,
    secret: String,
    auth: ServerAuth,
    call_id: String,
    to: String,
    from: String,
}

impl Platform {
    async fn send(&self, mut message: Value) -> anyhow::Result<Value> {
        message["call"] = json!({"id": self.call_id, "type": "inboundPhoneCall"});
        message["phoneNumber"] = json!({"number": self.to});
        message["customer"] = json!({"number": self.from});
        let body = json!({ "message": message }).to_string().into_bytes();
        let now = chrono::Utc::now().timestamp();
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", "application/json");
        // As Vapi presents the clinic's credential.
        for (name, value) in self.auth.headers(&self.secret, &body, &self.url, now) {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .with_context(|| format!("sending to {}", self.url))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("the server answered {status}: {answer}");
        }
        Ok(answer)
    }

    /// Runs one tool; returns the sentence the agent would read out.
    async fn tool(&self, id: &str, name: &str, arguments: Value) -> anyhow::Result<String> {
        let answer = self
            .send(json!({"type": "tool-calls", "toolCallList": [
                {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}]}))
            .await?;
        let result = answer["results"][0]["result"]
            .as_str()
            .with_context(|| format!("no result for {name}: {answer}"))?
            .to_owned();
        println!("  {name}: {result}");
        Ok(result)
    }
}

/// The text after `marker`, up to a space, `)` or `;` (a trailing `.` dropped).
fn after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let end = rest.find([' ', ')', ';']).unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('.'))
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let to = PhoneNumber::parse(&args.to).context("--to")?;
    let from = PhoneNumber::parse(&args.from).context("--from")?;
    let secret = match args.secret.clone() {
        Some(secret) => secret,
        None => crate::demo::webhook_secret(to.as_str())
            .map(str::to_owned)
            .with_context(|| {
                format!(
                    "{} is not a demo clinic's number: pass the clinic's Vapi webhook secret with --secret",
                    to.as_str()
                )
            })?,
    };
    let auth = match &args.auth {
        Some(text) => serde_json::from_str(text).context("--auth is not JSON")?,
        None => crate::demo::server_auth(to.as_str()),
    };
    let auth = ServerAuth::from_config(&json!({ CONFIG_KEY: auth }))
        .map_err(|e| anyhow::anyhow!("--auth: {e}"))?;

    // With OAuth 2.0, Vapi first trades the secret for a token at the server's token
    // endpoint, and presents the token.
    let secret = match &auth {
        ServerAuth::Oauth2(_) => {
            let client_id = args
                .client_id
                .as_deref()
                .context("an oauth2 credential needs --client-id (the clinic's organization id)")?;
            let answer: Value = reqwest::Client::new()
                .post(format!(
                    "{}/oauth/vapi/token",
                    args.server.trim_end_matches('/')
                ))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", secret.as_str()),
                ])
                .send()
                .await
                .context("asking the token endpoint")?
                .json()
                .await
                .context("the token endpoint's answer")?;
            answer["access_token"]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("no token was issued: {answer}"))?
        }
        _ => secret,
    };

    let recording = Arc::new(Recording {
        fetched: Notify::new(),
        wav: silent_wav(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let recordings = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/recordings/{name}", axum::routing::get(serve_recording))
        .with_state(recording.clone());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let call_id = format!("sim-{}", uuid::Uuid::new_v4());
    let platform = Platform {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()?,
        url: format!("{}/webhooks/voice/vapi", args.server.trim_end_matches('/')),
        secret,
        auth,
        call_id: call_id.clone(),
        to: to.as_str().to_owned(),
        from: from.as_str().to_owned(),
    };
    println!(
        "Calling {} from {} (platform call id {call_id})",
        to.as_str(),
        from.as_str()
    );
    let started = chrono::Utc::now();
    let answer = platform
        .send(json!({"type": "assistant-request"}))
        .await
        .context("assistant-request")?;
    let assistant = &answer["assistant"];
    // The clinic's functions (the apology of a clinic not taking calls can only hang up).
    let tools = assistant["model"]["tools"]
        .as_array()
        .map_or(0, |t| t.iter().filter(|t| t["type"] == "function").count());
    println!(
        "  assistant: \"{}\" ({tools} tools, time zone {})",
        assistant["firstMessage"].as_str().unwrap_or_default(),
        assistant["metadata"]["timeZone"].as_str().unwrap_or("-"),
    );
    let mut transcript = vec![format!(
        "AI: {}",
        assistant["firstMessage"].as_str().unwrap_or_default()
    )];
    if tools == 0 {
        println!("  the clinic is not taking calls: the assistant hangs up");
    } else {
        platform
            .send(json!({"type": "status-update", "status": "in-progress"}))
            .await?;
        transcript.push("User: Hi, I'd like to book an appointment.".into());
        let found = platform.tool("sim-1", "find_contact", json!({})).await?;
        transcript.push(format!("AI: {found}"));
        let free = platform
            .tool(
                "sim-2",
                "check_availability",
                json!({ "date": args.date.clone() }),
            )
            .await?;
        transcript.push(format!("AI: {free}"));
        match (args.book, after(&free, "starts_at ")) {
            (true, Some(starts_at)) => {
                transcript.push("User: The first one, please.".into());
                let held = platform
                    .tool(
                        "sim-3",
                        "hold_slot",
                        json!({"starts_at": starts_at, "patient_name": "Sam Simulated"}),
                    )
                    .await?;
                let hold_id = after(&held, "hold_id ")
                    .with_context(|| format!("the hold was refused: {held}"))?;
                transcript.push(format!("AI: {held}"));
                transcript.push("User: Yes, book it.".into());
                let booked = platform
                    .tool(
                        "sim-4",
                        "confirm_booking",
                        json!({"hold_id": hold_id, "notes": "Booked by voxanne call simulate"}),
                    )
                    .await?;
                transcript.push(format!("AI: {booked}"));
            }
            (true, None) => println!("  nothing to book: no free time"),
            (false, _) => {
                println!("  (not booking: pass --book to hold and book the first free time)")
            }
        }
    }

    let recording_url = format!("{recordings}/recordings/{call_id}.wav");
    let ended = chrono::Utc::now();
    let report = platform
        .send(json!({"type": "end-of-call-report", "endedReason": "customer-ended-call",
            "startedAt": started.to_rfc3339(), "endedAt": ended.to_rfc3339(),
            "durationSeconds": (ended - started).num_milliseconds() as f64 / 1000.0,
            "artifact": {"transcript": transcript.join("\n"), "recordingUrl": recording_url},
            "analysis": {"summary": if args.book { "Simulated call: booked the first free time." } else { "Simulated call: looked at free times." }}}))
        .await
        .context("end-of-call-report")?;
    println!(
        "  end-of-call-report: call {} saved, recording queued from {recording_url}",
        report["call_id"].as_str().unwrap_or("-")
    );
    print!(
        "  waiting up to {} for the worker to fetch the recording... ",
        humantime::format_duration(args.wait)
    );
    std::io::Write::flush(&mut std::io::stdout())?;
    let fetched = tokio::time::timeout(args.wait, recording.fetched.notified())
        .await
        .is_ok();
    if fetched {
        // Let the response finish before the server goes away.
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("fetched.");
    } else {
        println!(
            "not fetched (is a worker running, and may it reach 127.0.0.1? `serve --demo` allows it; \
             otherwise set VOXANNE_WORKER_ALLOW_PRIVATE_URLS=true)."
        );
    }
    server.abort();
    println!(
        "Done: see the call and its appointment with the clinic's token at {}/api/v1/calls",
        args.server.trim_end_matches('/')
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recording_is_a_valid_wav_header() {
        let wav = silent_wav();
        assert_eq!(&wav[0..4], b"RIFF");
        assert_eq!(&wav[8..16], b"WAVEfmt ");
        assert_eq!(
            u32::from_le_bytes([wav[4], wav[5], wav[6], wav[7]]) as usize,
            wav.len() - 8
        );
        assert_eq!(
            after(
                "Free: x (starts_at 2031-03-03T09:00:00-08:00); y",
                "starts_at "
            ),
            Some("2031-03-03T09:00:00-08:00")
        );
        assert_eq!(after("hold_id abc.", "hold_id "), Some("abc"));
    }
}
