//! A real pgbouncer in transaction mode in front of the per-process test cluster: one per test
//! process, started on first use, stopped by a watchdog when the process exits. Every test
//! database gets a pool of [`SERVER_POOL_SIZE`] server connections, so the clients of a test
//! (many more than that) really share server connections, as behind a production pooler.

use sqlx::postgres::PgConnectOptions;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use voxanne_db::embedded::{EmbeddedCluster, ADMIN_ROLE};
use voxanne_db::migrate::APP_ROLE;

/// Server connections per (database, role): small, so that clients share them.
pub const SERVER_POOL_SIZE: u32 = 2;
/// The port that names pgbouncer's socket (it listens on no TCP port).
const PORT: u16 = 6432;

pub struct Pgbouncer {
    dir: PathBuf,
    /// Kept so that the process is ours until the watchdog ends it.
    _child: Mutex<Child>,
}

impl Pgbouncer {
    /// Options to log in as `role` on `database` through pgbouncer: sqlx's defaults, as a
    /// client that knows nothing of the pooler would connect.
    pub fn connect_options(&self, role: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.dir)
            .port(PORT)
            .username(role)
            .database(database)
    }

    /// The same as a URL, for the command line's configuration.
    pub fn url(&self, role: &str, database: &str) -> String {
        format!(
            "postgres://{role}@localhost/{database}?host={}&port={PORT}",
            self.dir.display()
        )
    }

    /// pgbouncer's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

/// The pgbouncer binary: on PATH, else where Debian installs it.
fn binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("pgbouncer"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            ["/usr/sbin/pgbouncer", "/usr/local/sbin/pgbouncer"]
                .map(PathBuf::from)
                .into_iter()
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "pgbouncer was not found on PATH or in /usr/sbin: run scripts/ensure-postgres \
                 (Debian: `apt-get install pgbouncer`)"
            )
        })
}

/// The ini: transaction mode, every database of the cluster (`*`), trust (the cluster trusts
/// its socket, whose directory only its account can reach), a Unix socket only. No
/// `ignore_startup_parameters`: the application must connect without any that pgbouncer
/// does not know.
fn ini(dir: &Path, cluster_socket: &Path, cluster_port: u16) -> String {
    format!(
        "[databases]\n\
         * = host={cluster} port={cluster_port}\n\
         \n\
         [pgbouncer]\n\
         pool_mode = transaction\n\
         unix_socket_dir = {dir}\n\
         listen_port = {PORT}\n\
         auth_type = trust\n\
         auth_file = {dir}/userlist.txt\n\
         default_pool_size = {SERVER_POOL_SIZE}\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         max_client_conn = 500\n\
         listen_backlog = 4096\n\
         server_login_retry = 1\n\
         logfile = {dir}/pgbouncer.log\n\
         log_connections = 0\n\
         log_disconnections = 0\n",
        cluster = cluster_socket.display(),
        dir = dir.display(),
    )
}

pub(crate) fn start(cluster: &EmbeddedCluster) -> Pgbouncer {
    let program = binary();
    let dir = tempfile::Builder::new()
        .prefix("voxanne-pgbouncer-")
        .tempdir()
        .expect("a temp dir for pgbouncer")
        .keep();
    let (cluster_socket, cluster_port) = cluster.socket();
    std::fs::write(
        dir.join("pgbouncer.ini"),
        ini(&dir, cluster_socket, cluster_port),
    )
    .expect("writing pgbouncer.ini");
    // With trust, a role must still be listed to log in.
    std::fs::write(
        dir.join("userlist.txt"),
        format!("\"{APP_ROLE}\" \"\"\n\"{ADMIN_ROLE}\" \"\"\n"),
    )
    .expect("writing userlist.txt");
    let stderr = std::fs::File::create(dir.join("stderr.log")).expect("pgbouncer's stderr");

    let mut command = Command::new(&program);
    command
        .arg(dir.join("pgbouncer.ini"))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // pgbouncer refuses to run as root: run it as the cluster's account, which may also
    // reach the cluster's socket.
    if let Some((uid, gid)) = cluster.os_account() {
        for path in [&dir, &dir.join("pgbouncer.ini"), &dir.join("userlist.txt")] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .expect("handing pgbouncer its files");
        }
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()));
    spawn_watchdog(child.id(), &dir);
    wait_until_listening(&mut child, &dir);
    Pgbouncer {
        dir,
        _child: Mutex::new(child),
    }
}

/// Waits (up to 15 s) until pgbouncer accepts connections on its socket.
fn wait_until_listening(child: &mut Child, dir: &Path) {
    let socket = dir.join(format!(".s.PGSQL.{PORT}"));
    let started = Instant::now();
    loop {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            return;
        }
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || started.elapsed() > Duration::from_secs(15) {
            let mut stderr = String::new();
            if let Ok(mut file) = std::fs::File::open(dir.join("stderr.log")) {
                let _ = file.read_to_string(&mut stderr);
            }
            let log = std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default();
            panic!("pgbouncer did not start ({exited:?}):\n{stderr}\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops pgbouncer and removes its files once this process is gone.
// The watchdog outlives this process by design, so it is never waited for.
#[allow(clippy::zombie_processes)]
fn spawn_watchdog(pgbouncer: u32, dir: &Path) {
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.5; done; \
         kill -TERM {pgbouncer} 2>/dev/null; \
         n=0; while [ -d /proc/{pgbouncer} ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n+1)); done; \
         rm -rf '{dir}'",
        pid = std::process::id(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the pgbouncer watchdog");
}

/// The test process's pgbouncer, started on first use.
pub(crate) fn get(cluster: &EmbeddedCluster) -> &'static Pgbouncer {
    static PGBOUNCER: OnceLock<Pgbouncer> = OnceLock::new();
    PGBOUNCER.get_or_init(|| start(cluster))
}
