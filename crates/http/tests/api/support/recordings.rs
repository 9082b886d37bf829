//! The recording worker's test support: a fake provider serving recordings on loopback with
//! injected faults, and helpers to queue calls, run the worker and read the outcome.

use super::{keyring, TestApp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use uuid::Uuid;
use voxanne_domain::OrgId;
use voxanne_jobs::{Job, Metrics, Schedule, Worker, WorkerConfig};

/// A provider on 127.0.0.1:
///
/// - `/ok/x` answers the recording; `/flaky/x` answers 500 twice, then the recording;
///   `/fail/x` always 500; `/truncate/x` promises 1000 bytes and sends 10; `/slow/x` answers
///   after 3 s; `/slowok/x` answers the recording after 600 ms.
/// - `/redirect/{host:port}/{rest}` answers 302 to `http://{host:port}/{rest}`.
/// - `/big/{n}/x` answers `n` bytes of [`big_audio`] with a Content-Length, in 64 KiB writes;
///   `/bigchunked/{n}/x` the same without a length (chunked); `/bigtruncate/{n}/x` promises
///   `n` and closes after half. With a `paused-` prefix (`/paused-big/…`) the answer stops
///   after half until [`Provider::release`].
pub struct Provider {
    pub base: String,
    pub port: u16,
    pub hits: Arc<Mutex<HashMap<String, usize>>>,
    /// The Authorization header of each request, by path.
    pub auth: Arc<Mutex<HashMap<String, Option<String>>>>,
    release: Arc<Notify>,
}

/// The recording `/ok/…` and its kin answer: 20 000 bytes that depend on the path.
pub fn audio_for(path: &str) -> Vec<u8> {
    let seed = path
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    (0..20_000u32)
        .map(|i| (seed.wrapping_add(i) % 251) as u8)
        .collect()
}

/// Byte `i` of a large recording (not periodic in any power of two, so a misplaced part shows).
fn big_byte(i: usize) -> u8 {
    ((i.wrapping_mul(7) + i / 4099) % 251) as u8
}

/// The `n` bytes `/big/{n}/…` answers.
pub fn big_audio(n: usize) -> Vec<u8> {
    (0..n).map(big_byte).collect()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const CHUNK: usize = 64 * 1024;

impl Provider {
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let auth: Arc<Mutex<HashMap<String, Option<String>>>> = Arc::default();
        let release = Arc::new(Notify::new());
        let (h, au, r) = (hits.clone(), auth.clone(), release.clone());
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(socket, h.clone(), au.clone(), r.clone()));
            }
        });
        Self {
            base: format!("http://{addr}"),
            port: addr.port(),
            hits,
            auth,
            release,
        }
    }

    pub fn url(&self, kind: &str, name: &str) -> String {
        format!("{}/{kind}/{name}.wav", self.base)
    }

    /// `/{kind}/{bytes}/{name}.wav`, for the large kinds.
    pub fn big_url(&self, kind: &str, bytes: usize, name: &str) -> String {
        format!("{}/{kind}/{bytes}/{name}.wav", self.base)
    }

    /// `host:port` of this provider under another name for loopback.
    pub fn localhost(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// `host:port` of this provider.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Lets one paused answer go on.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// The Authorization header the request for `path` carried (`None` if none, panics if the
    /// path was never requested).
    pub fn auth_of(&self, path: &str) -> Option<String> {
        self.auth
            .lock()
            .expect("lock")
            .get(path)
            .unwrap_or_else(|| panic!("{path} was never requested"))
            .clone()
    }
}

async fn serve(
    mut socket: TcpStream,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    auth: Arc<Mutex<HashMap<String, Option<String>>>>,
    release: Arc<Notify>,
) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        match socket.read(&mut buf[len..]).await {
            Ok(0) | Err(_) => return,
            Ok(n) => len += n,
        }
    }
    let head = String::from_utf8_lossy(&buf[..len]).to_string();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let authorization = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
        .map(|l| l["authorization:".len()..].trim().to_owned());
    auth.lock()
        .expect("lock")
        .insert(path.clone(), authorization);
    let n = {
        let mut hits = hits.lock().expect("lock");
        let n = hits.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let mut segments = path.trim_start_matches('/').splitn(3, '/');
    let kind = segments.next().unwrap_or_default();
    let (paused, kind) = match kind.strip_prefix("paused-") {
        Some(kind) => (true, kind),
        None => (false, kind),
    };
    if let ("big" | "bigchunked" | "bigtruncate", Some(size)) = (kind, segments.next()) {
        let size: usize = size.parse().expect("a size");
        big(&mut socket, kind, size, paused, &release).await;
        let _ = socket.shutdown().await;
        return;
    }
    if kind == "redirect" {
        let to = path.trim_start_matches("/redirect/");
        let response = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let _ = socket.write_all(response.as_bytes()).await;
        let _ = socket.shutdown().await;
        return;
    }
    let body = audio_for(&path);
    let ok = |body: &[u8]| {
        let mut r = format!("HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    };
    let error =
        b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            .to_vec();
    let response = match kind {
        "ok" => ok(&body),
        "flaky" if n > 2 => ok(&body),
        "flaky" | "fail" => error,
        "truncate" => {
            let mut r =
                b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\nconnection: close\r\n\r\n".to_vec();
            r.extend_from_slice(&body[..10]);
            r
        }
        "slowok" => {
            tokio::time::sleep(Duration::from_millis(600)).await;
            ok(&body)
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            ok(&body)
        }
        _ => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec(),
    };
    let _ = socket.write_all(&response).await;
    let _ = socket.shutdown().await;
}

/// Writes a large answer in 64 KiB pieces, generated as it goes.
async fn big(socket: &mut TcpStream, kind: &str, size: usize, paused: bool, release: &Notify) {
    let chunked = kind == "bigchunked";
    let head = if chunked {
        "HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_owned()
    } else {
        format!("HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n")
    };
    if socket.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let half = size / 2;
    let mut sent = 0;
    while sent < size {
        if sent == half {
            if paused {
                release.notified().await;
            }
            if kind == "bigtruncate" {
                return;
            }
        }
        let end = (sent + CHUNK)
            .min(size)
            .min(if sent < half { half } else { size });
        let piece: Vec<u8> = (sent..end).map(big_byte).collect();
        let written = if chunked {
            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
            framed.extend_from_slice(&piece);
            framed.extend_from_slice(b"\r\n");
            socket.write_all(&framed).await
        } else {
            socket.write_all(&piece).await
        };
        if written.is_err() {
            return;
        }
        sent = end;
    }
    if chunked {
        let _ = socket.write_all(b"0\r\n\r\n").await;
    }
}

/// The worker settings of the tests: quick retries, a 1 s download timeout, 1 MiB at most,
/// private addresses allowed (the providers listen on loopback).
pub fn config() -> WorkerConfig {
    WorkerConfig {
        schedule: super::quick_schedule(),
        http_timeout: Duration::from_secs(1),
        max_bytes: 1024 * 1024,
        orphan_sweep_every: Duration::from_secs(3600),
        allow_private_addresses: true,
        twilio_media_hosts: voxanne_jobs::MediaHosts::twilio(),
    }
}

/// For the large recordings: one attempt, 30 s (a debug build on a busy machine), `max_bytes`.
pub fn large_config(max_bytes: u64) -> WorkerConfig {
    let base = config();
    WorkerConfig {
        schedule: Schedule {
            max_attempts: 1,
            ..base.schedule.clone()
        },
        http_timeout: Duration::from_secs(30),
        max_bytes,
        ..base
    }
}

/// A worker storing into the test app's directory.
pub fn worker(app: &TestApp, config: WorkerConfig) -> Worker {
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(app.storage.path()).expect("store");
    worker_on(app, Arc::new(store), config)
}

pub fn worker_on(
    app: &TestApp,
    store: Arc<dyn object_store::ObjectStore>,
    config: WorkerConfig,
) -> Worker {
    Worker::new(
        app.t.db.clone(),
        store,
        Arc::new(keyring()),
        config,
        Arc::new(Metrics::default()),
    )
    .expect("worker")
}

/// Runs rounds until the queue is empty (nothing claimed, nothing waiting for its backoff).
pub async fn drain(app: &TestApp, worker: &Worker) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = worker.run_once().await.expect("round");
        if done.is_empty() && queued(app).await == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn queued(app: &TestApp) -> i64 {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM calls c JOIN organizations o ON o.id = c.org_id
          WHERE o.status = 'active' AND c.recording_status IN ('queued', 'processing')",
    )
    .fetch_one(&mut admin)
    .await
    .expect("count")
}

/// The demo's recordings point at an unreachable host: take them out of the queue.
pub async fn quiet_demo_queue(app: &TestApp) {
    let mut admin = app.t.admin().await;
    sqlx::query("UPDATE calls SET recording_status = 'none' WHERE recording_status IN ('queued', 'processing')")
        .execute(&mut admin)
        .await
        .expect("quiet");
}

/// Queues new calls of `org` whose recordings are at `urls`. Returns their ids.
pub async fn queue(app: &TestApp, org: OrgId, urls: &[String]) -> Vec<Uuid> {
    let mut admin = app.t.admin().await;
    let mut ids = Vec::new();
    for url in urls {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at,
                                recording_status, recording_url)
             VALUES ($1, 'inbound', 'completed', '+14155550100', '+14155550101', now(), 'queued', $2)
             RETURNING id",
        )
        .bind(org.as_uuid())
        .bind(url)
        .fetch_one(&mut admin)
        .await
        .expect("queue");
        ids.push(id);
    }
    ids
}

/// (recording_status, recording_path, recording_attempts)
pub async fn call_state(app: &TestApp, id: Uuid) -> (String, Option<String>, i32) {
    let mut admin = app.t.admin().await;
    sqlx::query_as(
        "SELECT recording_status, recording_path, recording_attempts FROM calls WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&mut admin)
    .await
    .expect("call")
}

/// The last error kept for a failed recording.
pub async fn last_error(app: &TestApp, id: Uuid) -> String {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar("SELECT last_error FROM failed_recording_uploads WHERE call_id = $1")
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .expect("failure record")
}

/// Gives `org` a Twilio integration with these credentials.
pub async fn set_twilio(
    app: &TestApp,
    clinic: &voxanne_db::demo::DemoClinic,
    sid: &str,
    token: &str,
) {
    let owner = app.token(clinic.owner, Some(clinic.org));
    let r = app
        .put(
            "/api/v1/integrations/twilio",
            &owner,
            &serde_json::json!({"config": {"account_sid": sid}, "secrets": {"auth_token": token}}),
        )
        .await;
    assert!(r.status.is_success(), "{:?}", r.body);
}

/// `Basic base64(user:password)`
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
