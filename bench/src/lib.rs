//! What the benchmarks share: running PostgreSQL's own load generator, `pgbench`, as a second
//! process against a cluster.

use sqlx::postgres::PgConnectOptions;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `pgbench` on the PATH, else the one beside Debian's PostgreSQL server binaries.
pub fn pgbench_path() -> PathBuf {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("pgbench"))
            .collect::<Vec<_>>()
    });
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"));
    on_path
        .chain(debian)
        .find(|p| p.is_file())
        .unwrap_or_else(|| "pgbench".into())
}

/// Runs `script` (simple protocol) with pgbench on the database of `options` as `role`, for
/// `seconds` with `clients`; transactions per second.
pub fn pgbench(
    options: &PgConnectOptions,
    role: &str,
    script: &Path,
    clients: u32,
    seconds: u32,
) -> Result<f64, Box<dyn std::error::Error>> {
    pgbench_with(options, role, script, clients, seconds, &[])
}

/// [`pgbench`] with `defines` as `-D name=value`: variables every client starts with.
pub fn pgbench_with(
    options: &PgConnectOptions,
    role: &str,
    script: &Path,
    clients: u32,
    seconds: u32,
    defines: &[(&str, String)],
) -> Result<f64, Box<dyn std::error::Error>> {
    let host = options
        .get_socket()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| options.get_host().to_owned());
    let database = options.get_database().unwrap_or("postgres");
    let output = Command::new(pgbench_path())
        .args(["-n", "-M", "simple", "-f"])
        .arg(script)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(4).to_string(),
        ])
        .args(["-T", &seconds.to_string()])
        .args(
            defines
                .iter()
                .flat_map(|(k, v)| ["-D".to_owned(), format!("{k}={v}")]),
        )
        .args([
            "-h",
            &host,
            "-p",
            &options.get_port().to_string(),
            "-U",
            role,
        ])
        .arg(database)
        .output()?;
    let text = stdout_of("pgbench", &output)?;
    // "tps = 5123.456789 (without initial connection time)"
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .ok_or_else(|| format!("no tps in pgbench's output: {text}").into())
}

/// A finished child's standard output; an error naming `what`, with its output, when it
/// failed.
pub fn stdout_of(
    what: &str,
    output: &std::process::Output,
) -> Result<String, Box<dyn std::error::Error>> {
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {text}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(text)
}
