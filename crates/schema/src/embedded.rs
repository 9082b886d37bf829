//! A private PostgreSQL cluster run from the machine's own PostgreSQL binaries: the default
//! database when no `DATABASE_URL` is configured, and the database of every test run.
//!
//! The cluster lives in `<data dir>/pg`, listens only on a Unix socket, trusts local
//! connections (the socket directory is private to the cluster's OS user), and is reused on
//! the next start. PostgreSQL refuses to run as root, so when we are root the cluster runs as
//! an unprivileged account (`postgres` by default, `VOXANNE_PG_OS_USER` to choose).

use sqlx::postgres::PgConnectOptions;
use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The cluster's superuser: bootstrap (roles) and migrations connect as this role.
pub const ADMIN_ROLE: &str = "postgres";
const PORT: u16 = 5432;
/// Unix socket paths are limited to 107 bytes; keep a margin for `/.s.PGSQL.5432`.
const MAX_SOCKET_DIR_LEN: usize = 90;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or under \
         /usr/lib/postgresql/*/bin. Install them (Debian: `apt-get install postgresql`) or set \
         DATABASE_URL to use an existing server."
    )]
    BinariesNotFound,
    #[error(
        "running as root, but the OS account `{0}` that should run PostgreSQL does not exist. \
         Create it (Debian's postgresql package does) or set VOXANNE_PG_OS_USER."
    )]
    NoUnprivilegedUser(String),
    #[error(
        "the PostgreSQL account `{user}` cannot reach {path}: {blocking} is not searchable by \
         it. Run `chmod o+x {blocking}`, or set VOXANNE_DATA_DIR to a directory it can reach, \
         e.g. /var/tmp/voxanne."
    )]
    Unreachable {
        user: String,
        path: PathBuf,
        blocking: PathBuf,
    },
    #[error("{action} failed: {detail}")]
    Command { action: String, detail: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let context = context.into();
    move |source| EmbeddedError::Io { context, source }
}

/// Tuning for where the cluster runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// Trade durability for speed (no fsync): for throwaway test clusters only.
    pub ephemeral: bool,
    /// Preload the Citus extension (a coordinator or worker of a distributed database). The
    /// extension must be installed for this PostgreSQL (see [`citus_available`]).
    pub citus: bool,
}

/// An OS account other than ours that runs the cluster (only when we are root).
#[derive(Debug, Clone)]
struct RunAs {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug)]
pub struct EmbeddedCluster {
    pg_dir: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<RunAs>,
    started_here: bool,
}

impl EmbeddedCluster {
    /// Initialises the cluster on first use, starts it unless it is already running, and
    /// returns a handle to it. Blocking: call from `spawn_blocking` in async code.
    pub fn start(data_dir: &Path, options: ClusterOptions) -> Result<Self, EmbeddedError> {
        let bin_dir = find_bin_dir().ok_or(EmbeddedError::BinariesNotFound)?;
        std::fs::create_dir_all(data_dir)
            .map_err(io_err(format!("creating {}", data_dir.display())))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(io_err(format!("resolving {}", data_dir.display())))?;
        let run_as = run_as_account()?;
        if let Some(account) = &run_as {
            let meta = std::fs::metadata(&data_dir)
                .map_err(io_err(format!("reading {}", data_dir.display())))?;
            // Our own data dir (e.g. made by `mktemp -d`, mode 0700): let the cluster's account
            // pass through it, without reading it. Directories above it are not ours to change.
            if meta.uid() == nix::unistd::geteuid().as_raw() && meta.mode() & 0o001 == 0 {
                std::fs::set_permissions(
                    &data_dir,
                    std::fs::Permissions::from_mode((meta.mode() & 0o7777) | 0o001),
                )
                .map_err(io_err(format!(
                    "letting {} through {}",
                    account.name,
                    data_dir.display()
                )))?;
            }
        }
        let pg_dir = data_dir.join("pg");
        let socket_dir = socket_dir_for(&data_dir);
        for dir in [&pg_dir, &socket_dir] {
            std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("securing {}", dir.display())))?;
            if let Some(account) = &run_as {
                std::os::unix::fs::chown(dir, Some(account.uid), Some(account.gid)).map_err(
                    io_err(format!("handing {} to {}", dir.display(), account.name)),
                )?;
                check_reachable(dir, account)?;
            }
        }
        let mut cluster = Self {
            pg_dir,
            socket_dir,
            bin_dir,
            run_as,
            started_here: false,
        };
        cluster.register_user()?;
        if !cluster.pg_dir.join("PG_VERSION").exists() {
            cluster.initdb(options)?;
        }
        if !cluster.is_running() {
            cluster.pg_ctl_start(options)?;
            cluster.adopt()?;
        } else if !owner_alive(&cluster.owner_file()) {
            // Left running by a process that died without stopping it: ours to stop now.
            tracing::info!(
                "adopting an embedded PostgreSQL left running by a process that is gone"
            );
            cluster.adopt()?;
        }
        Ok(cluster)
    }

    /// The file naming the process responsible for stopping the server.
    fn owner_file(&self) -> PathBuf {
        self.pg_dir.with_file_name("pg.owner")
    }

    fn adopt(&mut self) -> Result<(), EmbeddedError> {
        let file = self.owner_file();
        std::fs::write(&file, std::process::id().to_string())
            .map_err(io_err(format!("writing {}", file.display())))?;
        self.started_here = true;
        Ok(())
    }

    /// Connection options for `role` on `database`, over the cluster's socket.
    pub fn connect_options(&self, role: &str, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(role)
            .database(database)
    }

    pub fn pg_dir(&self) -> &Path {
        &self.pg_dir
    }

    /// The directory of the server's Unix socket, and its port (which names the socket).
    pub fn socket(&self) -> (&Path, u16) {
        (&self.socket_dir, PORT)
    }

    /// The OS account (uid, gid) that runs the server when it is not ours (we are root): what
    /// a tool beside it that also refuses root (a connection pooler) should run as.
    pub fn os_account(&self) -> Option<(u32, u32)> {
        self.run_as.as_ref().map(|a| (a.uid, a.gid))
    }

    /// Whether this handle started the server (and so should stop it).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// Where each process using the cluster leaves its pid (`serve` and a separate `voxanne
    /// worker` may share one cluster): the last one to go stops the server.
    fn users_dir(&self) -> PathBuf {
        self.pg_dir.with_file_name("pg.users")
    }

    fn register_user(&self) -> Result<(), EmbeddedError> {
        let dir = self.users_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let file = dir.join(std::process::id().to_string());
        std::fs::write(&file, b"").map_err(io_err(format!("writing {}", file.display())))
    }

    /// The other live processes that use the cluster; files of processes that are gone are
    /// removed.
    fn other_users(&self) -> Vec<i32> {
        let me = i32::try_from(std::process::id()).unwrap_or_default();
        let Ok(entries) = std::fs::read_dir(self.users_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
                if pid == me {
                    return None;
                }
                if pid_alive(pid) {
                    Some(pid)
                } else {
                    let _ = std::fs::remove_file(entry.path());
                    None
                }
            })
            .collect()
    }

    /// This process is done with the cluster: the server is stopped unless another voxanne
    /// process still uses it (then that one is responsible for it, and stops it when it goes).
    pub fn stop(&self) -> Result<(), EmbeddedError> {
        let _ = std::fs::remove_file(self.users_dir().join(std::process::id().to_string()));
        let others = self.other_users();
        if let Some(next) = others.first() {
            tracing::info!(
                users = others.len(),
                "the embedded PostgreSQL stays up: another voxanne process uses it"
            );
            let _ = std::fs::write(self.owner_file(), next.to_string());
            return Ok(());
        }
        let handed_to_me = std::fs::read_to_string(self.owner_file())
            .is_ok_and(|owner| owner.trim() == std::process::id().to_string());
        if !(self.started_here || handed_to_me) || !self.is_running() {
            return Ok(());
        }
        self.run("stopping PostgreSQL", "pg_ctl", |c| {
            c.arg("stop")
                .arg("-D")
                .arg(&self.pg_dir)
                .args(["-m", "fast", "-w"]);
        })
        .map(drop)
    }

    fn is_running(&self) -> bool {
        self.command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(&self.pg_dir)
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    }

    fn initdb(&self, options: ClusterOptions) -> Result<(), EmbeddedError> {
        tracing::info!(dir = %self.pg_dir.display(), "initialising the embedded PostgreSQL cluster");
        self.run("initdb", "initdb", |c| {
            c.arg("-D").arg(&self.pg_dir).args([
                "-U",
                ADMIN_ROLE,
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
            ]);
            if options.ephemeral {
                c.arg("--no-sync");
            }
        })
        .map(drop)
    }

    fn pg_ctl_start(&self, options: ClusterOptions) -> Result<(), EmbeddedError> {
        let mut server = format!(
            "-p {PORT} -c listen_addresses='' -c unix_socket_directories='{}' -c max_connections=300",
            self.socket_dir.display()
        );
        let mut preload = Vec::new();
        if options.citus {
            // Citus must come first; it commits multi-node transactions in two phases, and
            // runs a maintenance worker per database.
            preload.push("citus");
            server.push_str(" -c max_prepared_transactions=200 -c max_worker_processes=64");
        }
        if options.ephemeral {
            server.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            // Tests count statements (e.g. per claimed job batch) where the library exists.
            if self.has_library("pg_stat_statements") {
                preload.push("pg_stat_statements");
                server.push_str(" -c pg_stat_statements.track=all");
            }
        }
        if !preload.is_empty() {
            server.push_str(&format!(
                " -c shared_preload_libraries={}",
                preload.join(",")
            ));
        }
        let log = self.pg_dir.join("server.log");
        tracing::info!(dir = %self.pg_dir.display(), log = %log.display(), "starting the embedded PostgreSQL");
        self.run("starting PostgreSQL", "pg_ctl", |c| {
            c.arg("start")
                .arg("-D")
                .arg(&self.pg_dir)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o"])
                .arg(&server);
        })
        .map_err(|e| match e {
            EmbeddedError::Command { action, detail } => EmbeddedError::Command {
                action,
                detail: format!("{detail}\n(server log: {})", log.display()),
            },
            other => other,
        })
        .map(drop)
    }

    /// Whether the server has the extension library `name` (Debian: `<version>/lib/<name>.so`).
    fn has_library(&self, name: &str) -> bool {
        self.bin_dir
            .parent()
            .is_some_and(|version_dir| version_dir.join("lib").join(format!("{name}.so")).is_file())
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        // The cluster's account may not be able to read our working directory.
        command.current_dir("/");
        if let Some(account) = &self.run_as {
            command.uid(account.uid).gid(account.gid);
        }
        command
    }

    fn run(
        &self,
        action: &str,
        program: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Result<Output, EmbeddedError> {
        let mut command = self.command(program);
        configure(&mut command);
        let output = command
            .output()
            .map_err(io_err(format!("{action}: running {program}")))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(EmbeddedError::Command {
                action: action.to_owned(),
                detail: format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stderr).trim(),
                    String::from_utf8_lossy(&output.stdout).trim()
                ),
            })
        }
    }
}

/// Whether the process named in the owner file still exists.
fn owner_alive(file: &Path) -> bool {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .is_some_and(pid_alive)
}

fn pid_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true, // exists, but is not ours to signal
    }
}

/// `pg_ctl` and `initdb` from PATH, else the newest `/usr/lib/postgresql/<version>/bin`.
fn find_bin_dir() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("pg_ctl").is_file() && dir.join("initdb").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                // Follow a symlinked pg_ctl back to its real bin dir, where `postgres` lives.
                let real = std::fs::canonicalize(dir.join("pg_ctl")).ok();
                return Some(
                    real.and_then(|p| p.parent().map(Path::to_path_buf))
                        .unwrap_or(dir),
                );
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn run_as_account() -> Result<Option<RunAs>, EmbeddedError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = std::env::var("VOXANNE_PG_OS_USER").unwrap_or_else(|_| "postgres".to_owned());
    match nix::unistd::User::from_name(&name) {
        Ok(Some(user)) => Ok(Some(RunAs {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })),
        _ => Err(EmbeddedError::NoUnprivilegedUser(name)),
    }
}

/// Every ancestor of `dir` must be searchable by the cluster's account.
fn check_reachable(dir: &Path, account: &RunAs) -> Result<(), EmbeddedError> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let searchable = if meta.uid() == account.uid {
            mode & 0o100 != 0
        } else if meta.gid() == account.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(EmbeddedError::Unreachable {
                user: account.name.clone(),
                path: dir.to_path_buf(),
                blocking: ancestor.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// `<data dir>/run`, or a directory under the system temp dir when that path would be too
/// long for a Unix socket.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let preferred = data_dir.join("run");
    if preferred.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return preferred;
    }
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut hasher);
    std::env::temp_dir().join(format!("voxanne-{:016x}", hasher.finish()))
}

/// Whether the Citus extension is installed for the PostgreSQL that [`EmbeddedCluster`] runs.
pub fn citus_available() -> bool {
    find_bin_dir()
        .and_then(|bin| {
            bin.parent()
                .map(|version_dir| version_dir.join("lib").join("citus.so"))
        })
        .is_some_and(|library| library.is_file())
}

/// For tests and tools that need the binaries' location (e.g. to run `psql`).
pub fn postgres_bin(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    find_bin_dir().map(|dir| dir.join(program.as_ref()))
}
