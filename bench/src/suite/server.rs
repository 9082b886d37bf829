//! `voxanne serve` as a child process of the suite, on a loopback port of its own, with the
//! production defaults except where a benchmark needs otherwise (no worker, no metrics port).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub base_url: String,
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

impl Server {
    pub async fn start(config: &ServerConfig) -> Result<Self, Box<dyn std::error::Error>> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = config.data_dir.join(format!("server-{port}.log"));
        let child = Command::new(&config.binary)
            .args(["serve", "--no-worker"])
            .env("DATABASE_URL", &config.database_url)
            .env("VOXANNE_APP_DATABASE_URL", &config.app_database_url)
            .env("VOXANNE_JWT_SECRET", &config.jwt_secret)
            .env("VOXANNE_ENCRYPTION_KEY", &config.encryption_key)
            .env("VOXANNE_DATA_DIR", &config.data_dir)
            .env("VOXANNE_ADDR", format!("127.0.0.1:{port}"))
            .env("VOXANNE_METRICS_ADDR", "off")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::create(log.with_extension("err"))?)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", config.binary.display()))?;
        let mut server = Server {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("the server exited ({status}): {}", self.log_tail()).into());
            }
            let ready = client
                .get(format!("{}/readyz", self.base_url))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("the server was not ready in 120 s: {}", self.log_tail()).into())
    }

    fn log_tail(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let text = read(&self.log) + &read(&self.log.with_extension("err"));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The server's peak resident memory so far, in KiB (`VmHWM`).
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

impl Drop for Server {
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
