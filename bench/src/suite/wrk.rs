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

/// What each request is: a Lua `request` function, with `token()` the next of the tokens,
/// `tid` the wrk thread's number and `threads` their count.
pub enum Request<'a> {
    /// `GET path`.
    Get(&'a str),
    /// `POST /api/v1/appointments` of a 30-minute slot no other request books: the k-th
    /// request of the run (over all threads) books `first` (Unix seconds) + k × 30 minutes.
    BookDistinct { first: i64 },
}

impl Request<'_> {
    fn lua(&self) -> String {
        match self {
            Request::Get(path) => format!(
                r#"request = function()
  return wrk.format("GET", "{path}", {{ ["Authorization"] = "Bearer " .. token() }})
end"#
            ),
            Request::BookDistinct { first } => format!(
                r#"local k = 0
request = function()
  local t = {first} + (k * threads + tid) * 1800
  k = k + 1
  local body = string.format('{{"starts_at":"%s","ends_at":"%s"}}',
    os.date("!%Y-%m-%dT%H:%M:%SZ", t), os.date("!%Y-%m-%dT%H:%M:%SZ", t + 1800))
  return wrk.format("POST", "/api/v1/appointments",
    {{ ["Authorization"] = "Bearer " .. token(), ["Content-Type"] = "application/json" }}, body)
end"#
            ),
        }
    }
}

/// `request` on `base_url` with `connections` connections for `seconds`, each request with
/// the next of `tokens`.
pub fn wrk(
    dir: &Path,
    base_url: &str,
    request: &Request,
    tokens: &[String],
    connections: u32,
    seconds: u32,
) -> Result<Load, Box<dyn std::error::Error>> {
    let quoted: Vec<String> = tokens.iter().map(|t| format!("\"{t}\"")).collect();
    let threads = connections.min(2);
    let script = dir.join("load.lua");
    std::fs::write(
        &script,
        format!(
            r#"local started = 0
setup = function(thread)
  thread:set("tid", started)
  started = started + 1
end
threads = {threads}
tid = 0
local tokens = {{ {tokens} }}
local n = 0
function token()
  n = n + 1
  return tokens[(n % #tokens) + 1]
end
{request}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{MARK}{{"requests":%d,"seconds":%f,"non_2xx":%d,"errors":%d,"p50_ms":%f,"p99_ms":%f}}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
"#,
            tokens = quoted.join(", "),
            request = request.lua(),
        ),
    )?;
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &connections.to_string()])
        .args(["-d", &format!("{seconds}s"), "--timeout", "10s", "-s"])
        .arg(&script)
        .arg(base_url)
        .output()
        .map_err(|e| format!("running wrk (Debian's package `wrk`): {e}"))?;
    let text = voxanne_bench::stdout_of("wrk", &output)?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(MARK))
        .ok_or_else(|| format!("no figures in wrk's output: {text}"))?;
    Ok(serde_json::from_str(line)?)
}
