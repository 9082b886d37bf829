//! Stopping, as an operator does it: SIGTERM ends `serve` within its grace period even while
//! a client holds a half-sent request, and an embedded cluster that a separate `voxanne
//! worker` still uses stays up until the last of them goes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_voxanne");

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("voxanne-stop-")
        .tempdir()
        .expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn voxanne(data: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.env("VOXANNE_DATA_DIR", data)
        .env_remove("DATABASE_URL")
        .env_remove("VOXANNE_JWT_SECRET")
        .env("VOXANNE_METRICS_ADDR", "off")
        .env("VOXANNE_SHUTDOWN_GRACE", "1s")
        // Long enough that only the shutdown deadline can end the half-sent request.
        .env("VOXANNE_HTTP_HEAD_TIMEOUT", "120s")
        .env("VOXANNE_HTTP_BODY_TIMEOUT", "120s")
        .env("RUST_LOG", "warn")
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Starts `serve` and returns it with its address.
// The child is waited for by the tests (or killed on their failure), which clippy cannot follow.
#[allow(clippy::zombie_processes)]
fn serve(data: &Path) -> (Child, String) {
    let mut child = voxanne(data, &["serve", "--addr", "127.0.0.1:0", "--no-worker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve");
    let stdout = child.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("stdout");
        if let Some(rest) = line.strip_prefix("Voxanne is listening on http://") {
            let addr = rest.split_whitespace().next().expect("addr").to_owned();
            return (child, addr);
        }
    }
    panic!("serve exited before listening");
}

fn term(child: &Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Waits up to `within` for `child` to exit.
fn exited_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// SIGKILLs a process on drop, so that a failing test leaves nothing running.
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0 as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

fn postgres_running(data: &Path) -> bool {
    data.join("pg/postmaster.pid").exists()
}

#[test]
fn sigterm_ends_serve_within_its_grace_even_with_a_half_sent_request() {
    let data = data_dir();
    let (mut server, addr) = serve(data.path());
    let _server = KillOnDrop(server.id());
    let mut stalled = std::net::TcpStream::connect(&addr).expect("connect");
    stalled
        .write_all(b"POST /api/v1/contacts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na")
        .expect("half a request");
    std::thread::sleep(Duration::from_millis(200));
    let asked = Instant::now();
    term(&server);
    let status = exited_within(&mut server, Duration::from_secs(15));
    let _ = server.kill();
    let status = status.expect("serve still running 15 s after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(
        asked.elapsed() < Duration::from_secs(8),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        !postgres_running(data.path()),
        "the embedded PostgreSQL is still up"
    );
}

#[test]
fn stopping_serve_leaves_the_cluster_to_a_worker_that_still_uses_it() {
    let data = data_dir();
    let (mut server, _) = serve(data.path());
    let mut worker = voxanne(data.path(), &["worker"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("worker");
    let _guards = (KillOnDrop(server.id()), KillOnDrop(worker.id()));
    // The worker is up once it registered as a user of the cluster.
    let registered = data.path().join("pg.users").join(worker.id().to_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !registered.exists() {
        assert!(
            Instant::now() < deadline,
            "the worker never opened the cluster"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    term(&server);
    let status = exited_within(&mut server, Duration::from_secs(15)).expect("serve stops");
    assert!(status.success(), "{status}");
    assert!(postgres_running(data.path()), "stopped under the worker");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        worker.try_wait().expect("worker").is_none(),
        "the worker lost its database"
    );

    term(&worker);
    let status = exited_within(&mut worker, Duration::from_secs(15));
    let _ = worker.kill();
    assert!(status.expect("worker stops").success());
    assert!(
        !postgres_running(data.path()),
        "the last user left it running"
    );
}
