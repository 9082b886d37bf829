//! The edge against hostile and unlucky clients, over real sockets: malformed, huge and slow
//! requests get JSON errors with stable codes in bounded time, a slow body never holds a
//! database connection, idle and excess connections are closed, and a database that goes
//! away is a 503 `unavailable` with `Retry-After`, not a 500.

use crate::support::TestApp;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing_subscriber::layer::SubscriberExt;
use voxanne_http::ServerConfig;

/// A response read off a raw socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Value,
}

impl Raw {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("<none>")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Reads one response (head, then a `content-length` body) within `within`; bytes of the
/// next response stay in `buf`.
async fn read_response(stream: &mut TcpStream, within: Duration) -> Raw {
    read_next(stream, &mut Vec::new(), within).await
}

async fn read_next(stream: &mut TcpStream, buf: &mut Vec<u8>, within: Duration) -> Raw {
    let deadline = Instant::now() + within;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let body = serde_json::from_slice(&buf[end + 4..end + 4 + length])
                    .unwrap_or_else(|_| panic!("not a JSON body: {head}\n{buf:?}"));
                buf.drain(..end + 4 + length);
                return Raw { status, head, body };
            }
        }
        let mut chunk = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) => panic!(
                "closed before a whole response: {:?}",
                String::from_utf8_lossy(buf)
            ),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Ok(Err(e)) => panic!("read: {e}"),
            Err(_) => panic!(
                "no response within {within:?}: {:?}",
                String::from_utf8_lossy(buf)
            ),
        }
    }
}

/// Whether the server closes `stream` within `within` (EOF or reset).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn send_raw(app: &TestApp, bytes: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let r = read_response(&mut stream, Duration::from_secs(5)).await;
    assert!(closed_within(&mut stream, Duration::from_secs(5)).await);
    r
}

#[tokio::test]
async fn malformed_oversized_and_ambiguous_requests_get_json_errors_with_stable_codes() {
    let app = TestApp::spawn().await;
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(10_000));
    let big_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..150)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("garbage", b"\x16\x03\x01 hello\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("no version", b"GET /healthz\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("bad header name", b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("NUL in a header", b"GET /healthz HTTP/1.1\r\nX-A: a\x00b\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("bad content-length", b"POST /healthz HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello".to_vec(), 400, "malformed_request"),
        ("two content-lengths", b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(), 400, "malformed_request"),
        ("smuggling", b"POST /healthz HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("unknown coding", b"POST /healthz HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 400, "malformed_request"),
        ("long uri", long_uri.into_bytes(), 414, "uri_too_long"),
        ("big header", big_header.into_bytes(), 431, "headers_too_large"),
        ("many headers", many_headers.into_bytes(), 431, "headers_too_large"),
    ];
    for (name, bytes, status, code) in cases {
        let r = send_raw(&app, &bytes).await;
        assert_eq!((r.status, r.code()), (status, code), "{name}: {r:?}");
        assert!(r.body["error"]["message"].is_string(), "{name}");
        assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
    }
}

#[tokio::test]
async fn a_bad_request_after_a_good_one_on_the_same_connection_gets_both_answers_in_order() {
    let app = TestApp::spawn().await;
    let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let first = read_next(&mut stream, &mut buf, Duration::from_secs(5)).await;
    assert_eq!((first.status, &first.body), (200, &json!({"status": "ok"})));
    let second = read_next(&mut stream, &mut buf, Duration::from_secs(5)).await;
    assert_eq!((second.status, second.code()), (400, "malformed_request"));
    // A chunked body followed on the same connection: the next head is found after it.
    let mut stream = TcpStream::connect(app.addr()).await.expect("connect");
    stream
        .write_all(
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
              4\r\nwxyz\r\n0\r\nX-Trailer: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .expect("write");
    let mut buf = Vec::new();
    let first = read_next(&mut stream, &mut buf, Duration::from_secs(5)).await;
    assert_eq!((first.status, first.code()), (405, "method_not_allowed"));
    let second = read_next(&mut stream, &mut buf, Duration::from_secs(5)).await;
    assert_eq!(second.status, 200);
}

fn quick_timeouts() -> ServerConfig {
    ServerConfig {
        head_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(400),
        ..ServerConfig::default()
    }
}

#[tokio::test]
async fn a_head_that_never_finishes_is_408_and_an_idle_connection_is_closed() {
    let app = TestApp::spawn_with_server(quick_timeouts()).await;
    // Slowloris: a head that trickles in and never ends.
    let mut slow = TcpStream::connect(app.addr()).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = Instant::now();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = slow.write_all(b"X-Slow: 1\r\n").await;
    }
    let r = read_response(&mut slow, Duration::from_secs(5)).await;
    assert_eq!((r.status, r.code()), (408, "request_timeout"));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(closed_within(&mut slow, Duration::from_secs(2)).await);

    // A connection that never sends anything, and a keep-alive one after its answer.
    let mut silent = TcpStream::connect(app.addr()).await.expect("connect");
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    let mut idle = TcpStream::connect(app.addr()).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        read_response(&mut idle, Duration::from_secs(5))
            .await
            .status,
        200
    );
    assert!(closed_within(&mut idle, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn slow_bodies_never_hold_database_connections_and_end_in_408() {
    let app = TestApp::spawn_with_server(quick_timeouts()).await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    // Three times the pool's connections, each a member's upload that stops half way.
    let mut stalled = Vec::new();
    for _ in 0..24 {
        let mut s = TcpStream::connect(app.addr()).await.expect("connect");
        let head = format!(
            "POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {a_token}\r\n\
             Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"name\": \"Sl"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Meanwhile another clinic is answered at once (the pool is not held by the uploads).
    let started = Instant::now();
    let r = app.get_as("/api/v1/calls?limit=1", &b_token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // And every stalled upload ends in 408, having written nothing.
    for mut s in stalled {
        let r = read_response(&mut s, Duration::from_secs(5)).await;
        assert_eq!((r.status, r.code()), (408, "request_timeout"));
    }
    let contacts = app.get_as("/api/v1/contacts?q=Sl", &a_token).await;
    assert_eq!(contacts.body["data"], json!([]), "{}", contacts.body);
}

#[tokio::test]
async fn past_the_connection_cap_a_client_gets_503_json_with_retry_after() {
    let app = TestApp::spawn_with_server(ServerConfig {
        max_connections: 4,
        ..ServerConfig::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(app.addr()).await.expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(
            read_response(&mut s, Duration::from_secs(5)).await.status,
            200
        );
        held.push(s);
    }
    let mut extra = TcpStream::connect(app.addr()).await.expect("connect");
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let r = read_response(&mut extra, Duration::from_secs(5)).await;
    assert_eq!((r.status, r.code()), (503, "too_many_connections"));
    assert_eq!(r.header("retry-after"), Some("1"));
    // A connection given back makes room again.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = app.get("/healthz", None, &[]).await;
    assert_eq!(r.status, 200);
}

/// A new contact named `name` whose row the superuser holds (`FOR UPDATE`, in a transaction
/// on the returned connection): requests that write it wait until that transaction ends.
async fn locked_contact(app: &TestApp, token: &str, name: &str) -> (String, sqlx::PgConnection) {
    let created = app
        .post("/api/v1/contacts", token, &json!({ "name": name }))
        .await;
    let id = created.body["id"].as_str().expect("contact id").to_owned();
    let mut admin = app.t.admin().await;
    sqlx::query("BEGIN")
        .execute(&mut admin)
        .await
        .expect("begin");
    sqlx::query("SELECT 1 FROM contacts WHERE id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut admin)
        .await
        .expect("lock");
    (id, admin)
}

#[tokio::test]
async fn a_request_over_its_time_is_503_timeout_and_rolls_back() {
    let app = TestApp::spawn_with_server(ServerConfig {
        request_timeout: Duration::from_millis(500),
        ..ServerConfig::default()
    })
    .await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    // Someone else holds the contact's row: the PATCH waits on the lock past its time.
    let (id, mut admin) = locked_contact(&app, &token, "Locked Out").await;
    let r = app
        .patch(
            &format!("/api/v1/contacts/{id}"),
            &token,
            &json!({"name": "Changed"}),
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (503, "timeout"),
        "{}",
        r.body
    );
    sqlx::query("COMMIT")
        .execute(&mut admin)
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = app.get_as(&format!("/api/v1/contacts/{id}"), &token).await;
    assert_eq!(
        after.body["name"],
        json!("Locked Out"),
        "the timed-out change was kept"
    );
}

#[tokio::test]
async fn an_oversized_webhook_body_is_413_json() {
    let app = TestApp::spawn().await;
    for path in [
        "/webhooks/voice/vapi",
        "/webhooks/voice/twilio",
        "/webhooks/sms/twilio/status",
    ] {
        let body = vec![b'a'; 2 * 1024 * 1024];
        let r = app
            .client
            .post(format!("{}{path}", app.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("send");
        assert_eq!(r.status(), 413, "{path}");
        let body: Value = r.json().await.expect("a JSON body");
        assert_eq!(body["error"]["code"], json!("payload_too_large"), "{path}");
    }
}

/// Counts ERROR events.
struct CountErrors(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountErrors {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A cluster of this test's own, so that it can be stopped under a running server.
fn own_cluster(dir: &std::path::Path) -> voxanne_db::embedded::EmbeddedCluster {
    voxanne_db::embedded::EmbeddedCluster::start(
        dir,
        voxanne_db::embedded::ClusterOptions {
            ephemeral: true,
            citus: false,
        },
    )
    .expect("starting a PostgreSQL cluster of the test's own")
}

#[tokio::test]
async fn a_database_that_goes_away_is_503_unavailable_with_retry_after_then_served_again() {
    use std::os::unix::fs::PermissionsExt;
    use voxanne_db::embedded::ADMIN_ROLE;
    let dir = tempfile::tempdir().expect("dir");
    // The cluster may run as another OS account (when we are root): let it in.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("mode");
    let started = dir.path().to_owned();
    let cluster = tokio::task::spawn_blocking(move || own_cluster(&started))
        .await
        .expect("cluster");
    voxanne_db::migrate::migrate(&cluster.connect_options(ADMIN_ROLE, "postgres"), None)
        .await
        .expect("migrate");
    let db = voxanne_db::Db::connect(
        cluster.connect_options(voxanne_db::migrate::APP_ROLE, "postgres"),
        4,
    )
    .await
    .expect("pool")
    .with_keyring(voxanne_testkit::keyring());
    let [a, _] = voxanne_db::demo::seed(&db).await.expect("seed");
    // Count the ERROR lines that announce the episode (the server runs on this thread).
    let errors = Arc::new(AtomicUsize::new(0));
    let _logs = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(CountErrors(errors.clone())),
    );
    let base = crate::support::serve_db(db).await;
    let client = reqwest::Client::new();
    let token = crate::support::token_for(a.owner, Some(a.org));
    let calls = || {
        client
            .get(format!("{base}/api/v1/calls?limit=1"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(calls().await.expect("request").status(), 200);

    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("join")
        .expect("stopping the cluster");
    for _ in 0..3 {
        let r = calls().await.expect("request");
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("2")
        );
        let body: Value = r.json().await.expect("JSON");
        assert_eq!(body["error"]["code"], json!("unavailable"));
    }
    assert_eq!(
        errors.load(Ordering::SeqCst),
        1,
        "one ERROR line for the episode, not one per request"
    );
    let ready = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 503);

    let restarting = dir.path().to_owned();
    let cluster = tokio::task::spawn_blocking(move || own_cluster(&restarting))
        .await
        .expect("cluster again");
    assert_eq!(calls().await.expect("request").status(), 200);
    tokio::task::spawn_blocking(move || cluster.stop())
        .await
        .expect("join")
        .expect("stop");
}

#[tokio::test]
async fn one_clinics_burst_of_slow_requests_leaves_the_pool_to_the_others() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    // Clinic A's requests all wait on a row lock: slow requests, as many as the pool has and
    // more.
    let (id, mut admin) = locked_contact(&app, &a_token, "Busy Line").await;
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (client, url, token) = (
            app.client.clone(),
            format!("{}/api/v1/contacts/{id}", app.base),
            a_token.clone(),
        );
        burst.spawn(async move {
            let r = client
                .patch(url)
                .bearer_auth(token)
                .json(&json!({"name": format!("Busy {i}")}))
                .send()
                .await
                .expect("send");
            let retry = r.headers().get("retry-after").is_some();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (
                status,
                body["error"]["code"].as_str().map(str::to_owned),
                retry,
            )
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Clinic B is served at once, while A's requests hold their share.
    let started = Instant::now();
    for _ in 0..5 {
        let r = app.get_as("/api/v1/calls?limit=1", &b_token).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // A's requests beyond its share are refused with 429 and Retry-After after a short wait.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sqlx::query("COMMIT")
        .execute(&mut admin)
        .await
        .expect("commit");
    let mut busy = 0;
    let mut done = 0;
    while let Some(r) = burst.join_next().await {
        match r.expect("join") {
            (429, Some(code), true) if code == "org_busy" => busy += 1,
            (200, _, _) => done += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((done, busy), (4, 8), "half the pool of 8 for clinic A");
}

#[tokio::test]
async fn failed_authentications_from_one_address_are_limited_with_429_and_retry_after() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    for i in 0..30 {
        let r = app.get("/api/v1/calls", Some("not.a.token"), &[]).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = app
        .client
        .get(format!("{}/api/v1/calls", app.base))
        .bearer_auth("not.a.token")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    let retry: u64 = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry));
    let body: Value = r.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], json!("too_many_auth_failures"));
    // The address is refused before its token is looked at, a valid one included.
    let valid = app.token(a.owner, Some(a.org));
    let r = app.get_as("/api/v1/calls", &valid).await;
    assert_eq!(
        (r.status.as_u16(), r.code()),
        (429, "too_many_auth_failures")
    );
}

#[tokio::test]
async fn webhooks_to_one_number_are_limited_whoever_owns_it() {
    let app = TestApp::spawn_with_limits(voxanne_http::limits::Limits::new(30, 5)).await;
    let [a, _] = app.clinics().await;
    for number in [a.number, "+15005550006"] {
        let body = json!({"message": {"type": "status-update", "status": "ringing",
            "call": {"id": "flood"}, "phoneNumber": {"number": number}}})
        .to_string()
        .into_bytes();
        let mut statuses = Vec::new();
        for _ in 0..7 {
            statuses.push(app.post_vapi(&body, None).await.status.as_u16());
        }
        assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429], "{number}");
    }
}
