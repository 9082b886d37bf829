//! `voxanne serve` and `voxanne worker` as child processes of the suite (the server on a
//! loopback port of its own), with the production defaults except where a benchmark needs
//! otherwise (no worker inside the server, the metrics on a loopback port of its own,
//! recordings from loopback).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    process: Process,
    pub base_url: String,
    /// The operators' `/metrics` (Voxanne's server; not the peer's).
    metrics_url: Option<String>,
}

/// A `voxanne` child process, its output in a log file; killed when dropped.
pub struct Process {
    child: Child,
    log: PathBuf,
}

/// How the server reaches the suite's database.
#[derive(Clone)]
pub struct ServerConfig {
    /// The `voxanne` binary.
    pub binary: PathBuf,
    pub database_url: String,
    pub app_database_url: String,
    pub jwt_secret: String,
    pub encryption_key: String,
    pub data_dir: PathBuf,
}

impl Process {
    /// `voxanne ARGS` with the suite's configuration and `env`.
    pub fn spawn(
        config: &ServerConfig,
        name: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut command = Command::new(&config.binary);
        command
            .args(args)
            .env("VOXANNE_METRICS_ADDR", "off")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("DATABASE_URL", &config.database_url)
            .env("VOXANNE_APP_DATABASE_URL", &config.app_database_url)
            .env("VOXANNE_JWT_SECRET", &config.jwt_secret)
            .env("VOXANNE_ENCRYPTION_KEY", &config.encryption_key)
            .env("VOXANNE_DATA_DIR", &config.data_dir);
        Self::run(command, &config.data_dir.join(format!("{name}.log")))
    }

    /// Starts `command`, its output into `log` (and `log` with `.err`).
    pub fn run(mut command: Command, log: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let child = command
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", command.get_program().to_string_lossy()))?;
        Ok(Process {
            child,
            log: log.to_path_buf(),
        })
    }

    /// An error when the process has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        match self.child.try_wait()? {
            Some(status) => Err(format!("it exited ({status}): {}", self.log_tail()).into()),
            None => Ok(()),
        }
    }

    pub fn log_tail(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let text = read(&self.log) + &read(&self.log.with_extension("err"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process's peak resident memory so far, in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        proc_status_kib(self.child.id(), "VmHWM:")
    }

    /// Asks the server to stop (SIGTERM) and waits for it.
    pub fn stop(mut self) -> Result<(), Box<dyn std::error::Error>> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id())?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Server {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.child.id()
    }

    pub async fn start(config: &ServerConfig) -> Result<Self, Box<dyn std::error::Error>> {
        let free_port = || -> std::io::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (port, metrics_port) = (free_port()?, free_port()?);
        let process = Process::spawn(
            config,
            &format!("server-{port}"),
            &["serve", "--no-worker"],
            &[
                ("VOXANNE_ADDR", format!("127.0.0.1:{port}")),
                ("VOXANNE_METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
            ],
        )?;
        let mut server = Server {
            process,
            base_url: format!("http://127.0.0.1:{port}"),
            metrics_url: Some(format!("http://127.0.0.1:{metrics_port}/metrics")),
        };
        server.wait_ready("/readyz").await?;
        Ok(server)
    }

    /// The Express peer (`bench/peer/server.js`) with Node.js, as `voxanne_app` on the
    /// suite's database; None (and why) when Node.js or the peer's packages are missing.
    pub async fn start_peer(
        config: &ServerConfig,
        peer: &Path,
        database: &sqlx::postgres::PgConnectOptions,
    ) -> Result<Result<Self, String>, Box<dyn std::error::Error>> {
        if !peer.join("node_modules").is_dir() {
            return Ok(Err(format!(
                "{} has no node_modules (bench/run installs them with npm when Node.js is here)",
                peer.display()
            )));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = Command::new("node");
        command
            .arg(peer.join("server.js"))
            .env("PORT", port.to_string())
            .env("JWT_SECRET", &config.jwt_secret)
            .env(
                "PGHOST",
                database
                    .get_socket()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| database.get_host().to_owned()),
            )
            .env("PGPORT", database.get_port().to_string())
            .env("PGDATABASE", database.get_database().unwrap_or("postgres"))
            .env("PGUSER", "voxanne_app");
        let process = match Process::run(command, &config.data_dir.join("peer.log")) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("Node.js did not start: {e}"))),
        };
        let mut server = Server {
            process,
            base_url: format!("http://127.0.0.1:{port}"),
            metrics_url: None,
        };
        server.wait_ready("/api/v1/calls").await?;
        Ok(Ok(server))
    }

    /// Waits until `path` answers (any status).
    async fn wait_ready(&mut self, path: &str) -> Result<(), Box<dyn std::error::Error>> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            self.process
                .check_running()
                .map_err(|e| format!("the server did not start: {e}"))?;
            let response = client
                .get(format!("{}{path}", self.base_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            let ready = match path {
                "/readyz" => response.is_ok_and(|r| r.status().is_success()),
                _ => response.is_ok(),
            };
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "the server was not ready in 120 s: {}",
            self.process.log_tail()
        )
        .into())
    }

    pub fn peak_rss_kib(&self) -> Option<u64> {
        self.process.peak_rss_kib()
    }

    /// The value of the counter or gauge `name` on the server's `/metrics`.
    pub async fn metric(&self, name: &str) -> Result<f64, Box<dyn std::error::Error>> {
        let url = self
            .metrics_url
            .as_deref()
            .ok_or("this server has no /metrics")?;
        let text = reqwest::get(url).await?.error_for_status()?.text().await?;
        text.lines()
            .find_map(|line| {
                let (key, value) = line.split_once(' ')?;
                (key == name).then(|| value.trim().parse::<f64>().ok())?
            })
            .ok_or_else(|| format!("/metrics has no {name}").into())
    }

    pub fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        self.process.stop()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A `Vm…:` line of `/proc/PID/status`, in KiB.
pub fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}
