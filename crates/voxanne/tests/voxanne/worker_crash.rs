//! A `voxanne worker` process killed (SIGKILL) in the middle of a batch: after its lease runs
//! out, another worker finishes every job, once, and nothing is lost or stored twice.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_voxanne");
const JOBS: i32 = 6;

/// Serves recordings; while `slow` is set every download hangs (a provider that stalls).
async fn provider(slow: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/{name}",
        axum::routing::get(
            move |axum::extract::Path(name): axum::extract::Path<String>| {
                let slow = slow.clone();
                async move {
                    if slow.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    (
                        [("content-type", "audio/wav")],
                        format!("RIFF recording {name}").into_bytes(),
                    )
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

struct Worker(Child);

impl Worker {
    fn start(url: &str, data: &std::path::Path, storage: &std::path::Path) -> Self {
        let child = Command::new(BIN)
            .args([
                "worker",
                "--worker-lease",
                "3s",
                "--worker-http-timeout",
                "2s",
                "--worker-batch",
                "10",
                // The test provider listens on loopback.
                "--worker-allow-private-urls",
            ])
            .env("DATABASE_URL", url)
            .env("VOXANNE_DATA_DIR", data)
            .env("VOXANNE_STORAGE_DIR", storage)
            // The test kit's key, so the test opens what the worker stores.
            .env("VOXANNE_ENCRYPTION_KEY", voxanne_testkit::ENCRYPTION_KEY)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("starting voxanne worker");
        Self(child)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0.id() as i32), signal);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

async fn states(admin: &mut sqlx::PgConnection) -> Vec<(String, i32)> {
    sqlx::query_as("SELECT recording_status, recording_attempts FROM calls ORDER BY id")
        .fetch_all(admin)
        .await
        .expect("states")
}

async fn wait_until(
    admin: &mut sqlx::PgConnection,
    what: &str,
    done: impl Fn(&[(String, i32)]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = states(admin).await;
        if done(&now) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing_and_stores_nothing_twice() {
    use sqlx::Connection;
    let (url, admin_options) = voxanne_testkit::empty_database_url().await;
    let data = tempfile::tempdir().expect("data dir");
    let storage = tempfile::tempdir().expect("storage");
    let slow = Arc::new(AtomicBool::new(true));
    let base = provider(slow.clone()).await;

    // The first worker migrates the empty database; then a clinic with queued recordings.
    let first = Worker::start(&url, data.path(), storage.path());
    let mut admin = sqlx::PgConnection::connect_with(&admin_options)
        .await
        .expect("admin");
    let deadline = Instant::now() + Duration::from_secs(60);
    // Every migration applied (each commits on its own: the tables appear before the last).
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations"))
        .expect("the migrations directory")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count() as i64;
    loop {
        let table: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
                .fetch_one(&mut admin)
                .await
                .expect("catalog");
        if table.is_some() {
            let applied: i64 =
                sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&mut admin)
                    .await
                    .expect("migrations");
            if applied >= migrations {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not migrate the database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // In Citus mode the worker's migration then distributes the tables.
    while voxanne_testkit::citus_mode() {
        let distributed: bool = sqlx::query_scalar(
            "SELECT count(*) = (SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename <> '_sqlx_migrations')
               FROM pg_dist_partition p JOIN pg_class c ON c.oid = p.logicalrelid
              WHERE c.relnamespace = 'public'::regnamespace",
        )
        .fetch_one(&mut admin)
        .await
        .expect("Citus metadata");
        if distributed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker's migration did not distribute the tables"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query(
        "WITH org AS (INSERT INTO organizations (name) VALUES ('Crash Clinic') RETURNING id)
         INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at, recording_status, recording_url)
         SELECT org.id, 'inbound', 'completed', '+14155550100', '+14155550101', now(), 'queued', $1 || '/' || g || '.wav'
           FROM org, generate_series(1, $2) g",
    )
    .bind(&base)
    .bind(JOBS)
    .execute(&mut admin)
    .await
    .expect("queue");

    // The first worker claims the batch, its downloads hang, and it is killed.
    wait_until(&mut admin, "the batch is claimed", |s| {
        s.iter().all(|(status, _)| status == "processing")
    })
    .await;
    first.signal(nix::sys::signal::Signal::SIGKILL);
    drop(first);
    assert!(
        files(storage.path()).is_empty(),
        "nothing was stored before the crash"
    );

    // The provider recovers; a second worker takes the jobs over once the lease runs out.
    slow.store(false, Ordering::SeqCst);
    let second = Worker::start(&url, data.path(), storage.path());
    wait_until(&mut admin, "every recording is stored", |s| {
        s.iter().all(|(status, _)| status == "stored")
    })
    .await;
    second.signal(nix::sys::signal::Signal::SIGTERM);
    drop(second);

    let final_states = states(&mut admin).await;
    assert_eq!(final_states.len(), JOBS as usize);
    assert!(
        final_states.iter().all(|(_, attempts)| *attempts == 2),
        "one crashed attempt and one good one each: {final_states:?}"
    );
    let stored = files(storage.path());
    assert_eq!(
        stored.len(),
        JOBS as usize,
        "one object per recording: {stored:?}"
    );
    let paths: Vec<String> =
        sqlx::query_scalar("SELECT recording_path FROM calls ORDER BY recording_path")
            .fetch_all(&mut admin)
            .await
            .expect("paths");
    for path in &paths {
        let file = storage.path().join(path);
        let bytes = std::fs::read(&file).unwrap_or_else(|_| panic!("{path} is not in storage"));
        // Stored encrypted for its clinic (the key's first segment), opening to the audio.
        let org: uuid::Uuid = path
            .split('/')
            .next()
            .and_then(|o| o.parse().ok())
            .expect("org");
        let audio =
            voxanne_testkit::open_recording(voxanne_domain::OrgId::from_uuid(org), path, &bytes);
        assert!(audio.starts_with(b"RIFF recording "), "{path}");
    }
}
