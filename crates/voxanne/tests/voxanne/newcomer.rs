//! The README's run command as a newcomer meets it: `voxanne serve --demo` on the embedded
//! default database (what `scripts/run` starts), every printed curl line pasted into a shell,
//! then Ctrl-C and a second start that reuses the same cluster. And the other subcommands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_voxanne");

/// A data dir the cluster's OS account can reach even when we are root.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("voxanne-e2e-")
        .tempdir()
        .expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn voxanne(data: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env("VOXANNE_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("VOXANNE_JWT_SECRET")
        // Tests run side by side: each server's metrics on a port of its own.
        .env("VOXANNE_METRICS_ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn");
    c
}

/// The server process; SIGTERM on drop, so a failing test leaves nothing running.
struct Server {
    child: Child,
    out: Vec<String>,
}

impl Server {
    fn start(data: &Path) -> Self {
        Self::start_with(voxanne(data))
    }

    // The child is waited for by `stop` or `Drop`, which clippy cannot follow.
    #[allow(clippy::zombie_processes)]
    fn start_with(mut command: Command) -> Self {
        let mut child = command
            .args(["serve", "--demo", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting voxanne serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("reading stdout");
            let done = line.starts_with("Voxanne is listening on ");
            out.push(line);
            if done {
                return Self { child, out };
            }
        }
        let status = wait_for(&mut child);
        panic!(
            "voxanne serve exited ({status}) before listening; it printed:\n{}",
            out.join("\n")
        );
    }

    fn base_url(&self) -> String {
        let line = self.out.last().expect("listening line");
        line.trim_start_matches("Voxanne is listening on ")
            .split_whitespace()
            .next()
            .expect("url")
            .to_owned()
    }

    /// Ctrl-C's twin: SIGTERM, then wait for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = wait_for(&mut self.child);
        std::mem::forget(self);
        status
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        terminate(&self.child);
        let _ = wait_for(&mut self.child);
    }
}

fn terminate(child: &Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
}

fn wait_for(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("voxanne did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `voxanne` with `args` (a `call simulate` line) and a minute for the recording;
/// returns what it printed, after asserting it succeeded.
fn simulate_call<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .args(["--wait", "60s"])
        .output()
        .expect("call simulate");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    printed
}

/// The printed examples: a `# description (HTTP nnn)` line, then the curl line.
fn examples(out: &[String]) -> Vec<(u16, String)> {
    out.windows(2)
        .filter(|w| w[1].starts_with("curl "))
        .map(|w| {
            let status = w[0]
                .rsplit_once("(HTTP ")
                .and_then(|(_, s)| s.trim_end_matches(')').parse().ok())
                .unwrap_or_else(|| panic!("no expected status before {}", w[1]));
            (status, w[1].clone())
        })
        .collect()
}

/// Runs a printed curl line through bash, as pasted, and returns (status, body).
fn paste(line: &str) -> (u16, String) {
    let out = Command::new("bash")
        .args(["-c", &format!("{line} -w '\\n%{{http_code}}'")])
        .output()
        .expect("running curl (is curl installed?)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

#[test]
fn the_run_command_serves_demo_data_whose_printed_curl_lines_work_and_stops_cleanly() {
    let data = data_dir();
    let server = Server::start(data.path());
    let base = server.base_url();
    let examples = examples(&server.out);
    assert!(examples.len() >= 6, "printed examples: {:?}", server.out);
    assert!(
        server.out.iter().any(|l| l.contains("Clinic A"))
            && server.out.iter().any(|l| l.contains("Clinic B"))
    );

    let (status, body) = paste(&format!("curl -s {base}/healthz"));
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
    for (expected, line) in &examples {
        let (status, body) = paste(line);
        assert_eq!(status, *expected, "{line}\n{body}");
        let json: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        if *expected >= 400 {
            assert!(json["error"]["code"].is_string(), "{body}");
        }
    }
    // The printed call simulation plays a whole signed call: the agent books a free time and
    // the in-process worker fetches the recording the simulator serves.
    let simulate = server
        .out
        .iter()
        .find(|l| l.starts_with("voxanne call simulate "))
        .expect("a call simulate line")
        .clone();
    let args: Vec<&str> = simulate.split_whitespace().skip(1).collect();
    let printed = simulate_call(&args);
    assert!(
        printed.contains("assistant: \"Thank you for calling Clinic A."),
        "{printed}"
    );
    assert!(
        printed.contains("confirm_booking: Booked for "),
        "{printed}"
    );
    assert!(printed.contains("fetched."), "{printed}");
    // Clinic B's credential is HMAC: the simulator signs as Vapi does in that mode.
    let to_b: Vec<String> = args
        .iter()
        .map(|a| a.replace("+14155550100", "+442079460100"))
        .filter(|a| a != "--book")
        .collect();
    let printed = simulate_call(&to_b);
    assert!(
        printed.contains("assistant: \"Thank you for calling Clinic B."),
        "{printed}"
    );

    // The calls count as seeded, for the restart check below.
    let calls_line = examples
        .iter()
        .find(|(_, l)| l.contains("calls?limit=3"))
        .expect("calls example")
        .1
        .clone();
    let all_calls = calls_line.replace("limit=3", "limit=100");
    let before: serde_json::Value = serde_json::from_str(&paste(&all_calls).1).expect("json");

    let status = server.stop();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(
        !data.path().join("pg/postmaster.pid").exists(),
        "the embedded PostgreSQL is still running"
    );

    // The second start reuses the cluster and does not seed twice.
    let server = Server::start(data.path());
    let after: serde_json::Value =
        serde_json::from_str(&paste(&all_calls.replace(&base, &server.base_url())).1)
            .expect("json");
    assert_eq!(
        after["data"].as_array().map(Vec::len),
        before["data"].as_array().map(Vec::len)
    );
    // The in-process worker works on the demo's recordings meanwhile (their provider host
    // does not resolve): their status may move, nothing else may.
    let without_recordings = |v: &serde_json::Value| {
        let mut v = v["data"].clone();
        for call in v.as_array_mut().into_iter().flatten() {
            if let Some(call) = call.as_object_mut() {
                call.remove("recording_status");
                call.remove("recording_path");
            }
        }
        v
    };
    assert_eq!(without_recordings(&after), without_recordings(&before));
    assert!(server.stop().success());
}

#[test]
fn org_create_and_token_give_a_working_owner_login() {
    let data = data_dir();
    let owner = uuid::Uuid::new_v4().to_string();
    let created = voxanne(data.path())
        .args([
            "org",
            "create",
            "--name",
            "Harbor Dental",
            "--owner",
            &owner,
        ])
        .output()
        .expect("org create");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let org = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    uuid::Uuid::parse_str(&org).expect("org create prints the org id");

    let minted = voxanne(data.path())
        .args([
            "token", "--user", &owner, "--org", &org, "--role", "owner", "--ttl", "10m",
        ])
        .output()
        .expect("token");
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token = String::from_utf8_lossy(&minted.stdout).trim().to_owned();

    let server = Server::start(data.path());
    let (status, body) = paste(&format!(
        "curl -s {}/api/v1/me -H 'Authorization: Bearer {token}'",
        server.base_url()
    ));
    assert_eq!(status, 200, "{body}");
    let me: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(me["active_org"]["name"], "Harbor Dental");
    assert_eq!(me["role"], "owner");
    drop(server);

    let bad = voxanne(data.path())
        .args(["token", "--user", "nobody", "--org", &org])
        .output()
        .expect("token");
    assert!(!bad.status.success());
    let empty = voxanne(data.path())
        .args(["org", "create", "--name", "  ", "--owner", &owner])
        .output()
        .expect("org create");
    assert!(!empty.status.success());
}

#[test]
fn org_create_with_an_owner_email_gives_a_link_to_a_working_dashboard_sign_in() {
    let data = data_dir();
    let created = voxanne(data.path())
        .args([
            "org",
            "create",
            "--name",
            "Harbor Dental",
            "--owner-email",
            "Dr.Reed@Harbor.example",
        ])
        .output()
        .expect("org create");
    let stderr = String::from_utf8_lossy(&created.stderr).to_string();
    assert!(created.status.success(), "{stderr}");
    let org = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let link = stderr
        .split_whitespace()
        .find(|w| w.contains("/reset-password#"))
        .unwrap_or_else(|| panic!("no password link printed: {stderr}"));
    let token = link.split_once('#').expect("fragment").1.to_owned();

    let server = Server::start(data.path());
    let base = server.base_url();
    let (status, body) = paste(&format!(
        "curl -s {base}/auth/password-reset/confirm -H 'Content-Type: application/json' \
         -d '{{\"token\": \"{token}\", \"password\": \"harbor dental owner\"}}'"
    ));
    assert_eq!(status, 204, "{body}");
    let (_, body) = paste(&format!(
        "curl -s {base}/auth/sign-in -H 'Content-Type: application/json' \
         -d '{{\"email\": \"dr.reed@harbor.example\", \"password\": \"harbor dental owner\"}}'"
    ));
    let session: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(session["orgs"][0]["org_id"], org, "{body}");
    assert_eq!(session["orgs"][0]["role"], "owner");
    // The dashboard's page is there too.
    let page = std::process::Command::new("curl")
        .args(["-s", &format!("{base}/sign-in")])
        .output()
        .expect("curl");
    assert!(String::from_utf8_lossy(&page.stdout).contains("/assets/app.js"));
    drop(server);

    // A second clinic of the same address: the account is reused, no new link.
    let again = voxanne(data.path())
        .args([
            "org",
            "create",
            "--name",
            "Harbor Two",
            "--owner-email",
            "dr.reed@harbor.example",
        ])
        .output()
        .expect("org create");
    assert!(again.status.success());
    assert!(!String::from_utf8_lossy(&again.stderr).contains("/reset-password#"));
    let neither = voxanne(data.path())
        .args(["org", "create", "--name", "Nobody"])
        .output()
        .expect("org create");
    assert!(!neither.status.success(), "an owner is required");
}

#[test]
fn demo_json_prints_clinics_users_tokens_and_examples() {
    let data = data_dir();
    let out = voxanne(data.path())
        .args(["demo", "--json"])
        .output()
        .expect("demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("demo --json prints JSON");
    let clinics = report["clinics"].as_array().expect("clinics");
    assert_eq!(clinics.len(), 2);
    for clinic in clinics {
        let roles: Vec<&str> = clinic["users"]
            .as_array()
            .expect("users")
            .iter()
            .filter_map(|u| u["role"].as_str())
            .collect();
        assert_eq!(roles, ["owner", "staff"]);
        assert!(clinic["users"][0]["token"]
            .as_str()
            .is_some_and(|t| t.split('.').count() == 3));
    }
    assert!(report["examples"].as_array().is_some_and(|e| e
        .iter()
        .all(|x| x["curl"].as_str().is_some_and(|c| c.starts_with("curl ")))));
    assert!(
        !data.path().join("pg/postmaster.pid").exists(),
        "demo must stop the cluster it started"
    );
}

#[test]
fn with_database_url_it_migrates_that_server_and_serves_as_the_application_role() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (url, admin) = runtime.block_on(voxanne_testkit::empty_database_url());
    let data = data_dir();
    let mut command = voxanne(data.path());
    command.env("DATABASE_URL", &url).env(
        "VOXANNE_JWT_SECRET",
        "an-operator-provided-secret-of-some-length",
    );
    let server = Server::start_with(command);
    for (expected, line) in examples(&server.out) {
        let (status, body) = paste(&line);
        assert_eq!(status, expected, "{line}\n{body}");
    }
    assert!(
        !data.path().join("pg").exists(),
        "no embedded cluster with DATABASE_URL"
    );
    assert!(
        !data.path().join("jwt-secret").exists(),
        "no generated secret when one is configured"
    );

    // The tables belong to voxanne_owner, and the server's own sessions are voxanne_app's.
    let (owners, server_roles): (Vec<String>, Vec<String>) = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect_with(&admin).await.expect("admin");
        let owners = sqlx::query_scalar("SELECT DISTINCT tableowner::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&mut conn)
            .await
            .expect("owners");
        let roles = sqlx::query_scalar(
            "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut conn)
        .await
        .expect("sessions");
        (owners, roles)
    });
    assert_eq!(owners, ["voxanne_owner"]);
    assert_eq!(server_roles, ["voxanne_app"]);
    assert!(server.stop().success());
}

#[test]
fn behind_pgbouncer_in_transaction_mode_it_serves_through_the_pooler() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (url, admin) = runtime.block_on(voxanne_testkit::empty_database_url());
    let database = admin.get_database().expect("database").to_owned();
    let pooled = voxanne_testkit::pgbouncer().url("voxanne_app", &database);
    let data = data_dir();
    let mut command = voxanne(data.path());
    // Migrations over the direct URL; the application through the pooler.
    command
        .env("DATABASE_URL", &url)
        .env("VOXANNE_APP_DATABASE_URL", &pooled)
        .env("VOXANNE_DB_POOLER", "transaction")
        .env(
            "VOXANNE_JWT_SECRET",
            "an-operator-provided-secret-of-some-length",
        );
    let server = Server::start_with(command);
    for _ in 0..3 {
        for (expected, line) in examples(&server.out) {
            let (status, body) = paste(&line);
            assert_eq!(status, expected, "{line}\n{body}");
        }
    }
    // The server's sessions are pgbouncer's server connections: at most its pool size.
    let sessions: i64 = runtime.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect_with(&admin).await.expect("admin");
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'voxanne_app'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("sessions")
    });
    assert!(
        (1..=i64::from(voxanne_testkit::SERVER_POOL_SIZE)).contains(&sessions),
        "{sessions} server sessions"
    );
    assert!(server.stop().success());
}

#[test]
fn the_worker_command_runs_the_jobs_and_stops_cleanly_on_sigterm() {
    let data = data_dir();
    let mut child = voxanne(data.path())
        .env("RUST_LOG", "info")
        .arg("worker")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting voxanne worker");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("recording worker started"));
    assert!(started, "voxanne worker did not start");
    // Keep draining stderr so the child never blocks on a full pipe.
    let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    terminate(&child);
    let status = wait_for(&mut child);
    let rest = drain.join().expect("stderr");
    assert!(
        status.success(),
        "exit status after SIGTERM: {status}\n{}",
        rest.join("\n")
    );
    for stopped in ["recording worker stopped", "sms worker stopped"] {
        assert!(
            rest.iter().any(|l| l.contains(stopped)),
            "{stopped}: {rest:?}"
        );
    }
}

/// A minimal Vapi REST API on loopback (Vapi's shapes: a plain array from `GET /phone-number`,
/// `POST /credential` answering the credential with its `id`, `PATCH /phone-number/{id}`),
/// recording what it was sent.
/// What the fake Vapi was sent: (what, body).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

fn fake_vapi(numbers: serde_json::Value) -> (String, Seen) {
    use axum::routing::{get, patch, post};
    use std::sync::Arc;
    let seen: Seen = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let recorded = seen.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let record = move |what: &'static str| {
                let seen = recorded.clone();
                move |body: Option<axum::Json<serde_json::Value>>| {
                    let seen = seen.clone();
                    async move {
                        let body = body.map(|b| b.0).unwrap_or_default();
                        seen.lock().expect("lock").push((what.to_owned(), body.clone()));
                        axum::Json(serde_json::json!({"id": "5f0e3a1c-cli", "provider": "custom-credential",
                            "authenticationPlan": body["authenticationPlan"]}))
                    }
                }
            };
            let list = move || {
                let numbers = numbers.clone();
                async move { axum::Json(numbers) }
            };
            let app = axum::Router::new()
                .route("/phone-number", get(list))
                .route("/credential", post(record("create credential")))
                .route("/phone-number/{id}", patch(record("update number")));
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    (base, seen)
}

#[test]
fn vapi_sync_points_a_clinics_vapi_numbers_at_the_public_url() {
    let data = data_dir();
    let server = Server::start(data.path());
    let base = server.base_url();
    let out = voxanne(data.path())
        .args(["demo", "--json"])
        .output()
        .expect("demo");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let a = &report["clinics"][0];
    let (org, token) = (
        a["org_id"].as_str().expect("org"),
        a["users"][0]["token"].as_str().expect("token"),
    );
    let (status, body) = paste(&format!(
        "curl -s -X PUT {base}/api/v1/integrations/vapi -H 'authorization: Bearer {token}' \
         -H 'content-type: application/json' \
         -d '{{\"config\": {{\"server_auth\": {{\"type\": \"hmac\"}}}}, \"secrets\": {{\"api_key\": \"vapi-private-key\"}}}}'"
    ));
    assert_eq!(status, 200, "{body}");

    let (vapi, seen) = fake_vapi(serde_json::json!([
        {"id": "pn-a", "provider": "twilio", "number": a["phone_number"], "assistantId": "asst-1",
         "createdAt": "2026-11-01T09:00:00.000Z", "updatedAt": "2026-11-01T09:00:00.000Z"}
    ]));
    let out = voxanne(data.path())
        .env("VOXANNE_VAPI_API_URL", &vapi)
        .env("VOXANNE_PUBLIC_URL", "https://voxanne.example")
        .args(["vapi", "sync", "--org", org, "--json"])
        .output()
        .expect("vapi sync");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let synced: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        synced["server_url"],
        "https://voxanne.example/webhooks/voice/vapi"
    );
    assert_eq!(synced["credential"]["action"], "created");
    assert_eq!(synced["numbers"][0]["action"], "linked");
    let seen = seen.lock().expect("lock").clone();
    let (_, credential) = seen
        .iter()
        .find(|(w, _)| w == "create credential")
        .expect("credential");
    assert_eq!(credential["authenticationPlan"]["type"], "hmac");
    // The PUT replaced the clinic's secrets with the API key alone: the sync made a secret.
    assert_eq!(synced["webhook_secret_generated"], true);
    assert!(credential["authenticationPlan"]["secretKey"]
        .as_str()
        .is_some_and(|s| s.len() >= 32));
    let (_, update) = seen
        .iter()
        .find(|(w, _)| w == "update number")
        .expect("number");
    assert_eq!(
        update["server"],
        serde_json::json!({"url": "https://voxanne.example/webhooks/voice/vapi", "credentialId": "5f0e3a1c-cli"})
    );
    assert_eq!(update["assistantId"], serde_json::Value::Null);

    // With an OAuth 2.0 credential, the simulator asks the server's token endpoint for a
    // token, as Vapi does, and the call goes through with it.
    let secret = "oauth-client-secret-of-clinic-a";
    let (status, body) = paste(&format!(
        "curl -s -X PUT {base}/api/v1/integrations/vapi -H 'authorization: Bearer {token}' \
         -H 'content-type: application/json' \
         -d '{{\"config\": {{\"server_auth\": {{\"type\": \"oauth2\"}}}}, \"secrets\": {{\"webhook_secret\": \"{secret}\"}}}}'"
    ));
    assert_eq!(status, 200, "{body}");
    let out = Command::new(BIN)
        .args([
            "call",
            "simulate",
            "--to",
            a["phone_number"].as_str().expect("number"),
        ])
        .args(["--server", &base, "--secret", secret, "--client-id", org])
        .args(["--auth", r#"{"type": "oauth2"}"#, "--wait", "60s"])
        .output()
        .expect("call simulate");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("assistant: \"Thank you for calling Clinic A."),
        "{printed}"
    );
    assert!(server.stop().success());
}

#[test]
fn patient_export_and_erase_from_the_command_line_show_their_progress_and_respect_a_hold() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (url, admin) = runtime.block_on(voxanne_testkit::empty_database_url());
    let data = data_dir();
    let run = |args: &[&str]| {
        let mut command = voxanne(data.path());
        command.env("DATABASE_URL", &url).env(
            "VOXANNE_JWT_SECRET",
            "an-operator-provided-secret-of-some-length",
        );
        command.args(args).output().expect("voxanne")
    };
    let seeded = run(&["demo"]);
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );
    let sql = |sql: &str| {
        runtime.block_on(async {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&admin)
                .await
                .expect("admin");
            sqlx::query_scalar::<_, String>(sql)
                .fetch_all(&mut conn)
                .await
                .expect(sql)
        })
    };
    // A demo patient with calls, and a hold on it.
    let picked = sql("SELECT c.org_id::text || ' ' || c.id::text FROM contacts c
          WHERE EXISTS (SELECT 1 FROM calls k WHERE k.org_id = c.org_id AND k.contact_id = c.id)
          ORDER BY c.org_id, c.id LIMIT 1");
    let (org, contact) = picked[0].split_once(' ').expect("a patient");
    let (org, contact) = (org.to_owned(), contact.to_owned());
    let hold = format!(
        "INSERT INTO legal_holds (org_id, contact_id, reason)
         VALUES ('{org}', '{contact}', 'Counsel') RETURNING id::text"
    );
    sql(&hold);

    // The export first: an archive, with its progress, never over an existing file.
    let out = data.path().join("patient.zip");
    let out_arg = out.display().to_string();
    let export = [
        "patient",
        "export",
        "--org",
        &org,
        "--contact",
        &contact,
        "--out",
        &out_arg,
    ];
    let exported = run(&export);
    let stderr = String::from_utf8_lossy(&exported.stderr).to_string();
    assert!(exported.status.success(), "{stderr}");
    assert!(
        stderr.contains("rows;") && stderr.contains("archive written"),
        "{stderr}"
    );
    let archive = std::fs::read(&out).expect("the archive");
    assert!(archive.starts_with(b"PK\x03\x04"), "not a zip archive");
    assert!(!run(&export).status.success(), "overwrote the archive");

    let args = ["patient", "erase", "--org", &org, "--contact", &contact];
    let refused = run(&args);
    let stderr = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success());
    assert!(stderr.contains("legal hold"), "{stderr}");

    sql("DELETE FROM legal_holds RETURNING id::text");
    let erased = run(&args);
    let stderr = String::from_utf8_lossy(&erased.stderr).to_string();
    assert!(erased.status.success(), "{stderr}");
    assert!(
        stderr.contains("found: ") && stderr.contains("committing"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&erased.stdout).to_string();
    assert!(
        stdout.starts_with(&format!("erased contact {contact}: ")),
        "{stdout}"
    );
    let check = format!(
        "SELECT (SELECT count(*) FROM contacts WHERE id = '{contact}')::text || ' ' ||
                (SELECT count(*) FROM calls WHERE contact_id = '{contact}')::text || ' ' ||
                (SELECT string_agg(actor_kind || ':' || action || ':' || via, ',') FROM access_log
                  WHERE subject_id = '{contact}' AND action = 'erase')"
    );
    assert_eq!(sql(&check), ["0 0 cli:erase:cli:patient erase"]);
    // Again: there is no such contact now.
    let again = run(&args);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("has no contact"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
