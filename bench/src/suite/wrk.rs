//! HTTP load from a second process: `wrk`, with a Lua script that rotates the requests over
//! clinics' tokens and prints its figures as one JSON line.

use serde::Deserialize;
use std::path::Path;
use std::process::Command;

/// One wrk run.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize)]
pub struct Load {
    pub requests: u64,
    pub seconds: f64,
    /// Responses other than 2xx, and socket errors (connect, read, write, timeout).
    pub non_2xx: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Load {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.requests as f64 / self.seconds
        } else {
            0.0
        }
    }
}

const MARK: &str = "voxanne-bench:";

/// `GET path` on `base_url` with `connections` connections for `seconds`, each request with
/// the next of `tokens`.
pub fn wrk(
    dir: &Path,
    base_url: &str,
    path: &str,
    tokens: &[String],
    connections: u32,
    seconds: u32,
) -> Result<Load, Box<dyn std::error::Error>> {
    let quoted: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    let script = dir.join("rotate.lua");
    std::fs::write(
        &script,
        format!(
            r#"local tokens = {{ {tokens} }}
local path = "{path}"
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", path, {{ ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1] }})
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{MARK}{{"requests":%d,"seconds":%f,"non_2xx":%d,"errors":%d,"p50_ms":%f,"p99_ms":%f}}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"#,
            tokens = quoted.join(", "),
        ),
    )?;
    let threads = connections.min(2);
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(base_url)
        .output()
        .map_err(|e| format!("running wrk (Debian's package `wrk`): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(MARK))
        .ok_or_else(|| format!("no figures in wrk's output: {text}"))?;
    Ok(serde_json::from_str(line)?)
}
