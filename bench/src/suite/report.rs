//! The suite's results: one table of figures and ratios per scenario, printed, and written
//! as `latest.json` and `BENCHMARKS.md`.

use serde::Serialize;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Serialize)]
pub struct Report {
    /// `full` or `smoke` (tiny data, one short round: proves the suite runs, measures nothing).
    pub mode: &'static str,
    pub date: String,
    pub commit: String,
    pub machine: Machine,
    pub parameters: serde_json::Value,
    pub scenarios: Vec<Scenario>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
    pub kernel: String,
    pub postgres: String,
}

#[derive(Debug, Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    /// What the figures are measured against, and the target when there is one.
    pub about: String,
    pub rows: Vec<Row>,
    /// Another benchmark's own table, when the scenario is one of the single benchmarks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Row {
    pub label: String,
    pub value: f64,
    pub unit: &'static str,
    /// To the scenario's reference row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}

impl Row {
    pub fn new(label: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Row {
            label: label.into(),
            value,
            unit,
            ratio: None,
        }
    }

    pub fn ratio(mut self, to: f64) -> Self {
        self.ratio = (to > 0.0).then(|| self.value / to);
        self
    }
}

impl Machine {
    pub fn read(postgres: String) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            cpu,
            kernel,
            postgres,
        }
    }
}

fn number(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

impl Report {
    /// The tables as Markdown (also what the suite prints).
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Written by `bench/run` ({} mode) on {}, commit `{}`: {} cores ({}), {} GiB, Linux {}, {}.\n",
            self.mode, self.date, self.commit, m.cores, m.cpu, m.memory_gib, m.kernel, m.postgres
        );
        let _ = writeln!(
            out,
            "Every figure is a ratio within this one run (interleaved rounds, the best round of \
             each variant); the absolute numbers say only what this machine did. Parameters: \
             `{}`.\n",
            self.parameters
        );
        for s in &self.scenarios {
            let _ = writeln!(out, "## {}. {}\n\n{}\n", s.id, s.title, s.about);
            if !s.rows.is_empty() {
                let _ = writeln!(out, "| | value | | ratio |\n| --- | ---: | --- | ---: |");
                for r in &s.rows {
                    let ratio = r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {ratio} |",
                        r.label,
                        number(r.value),
                        r.unit
                    );
                }
                out.push('\n');
            }
            if let Some(output) = &s.output {
                let _ = writeln!(out, "```\n{}\n```\n", output.trim_end());
            }
        }
        out
    }

    pub fn write(&self, dir: &Path, markdown: &Path) -> Result<(), Box<dyn std::error::Error>> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(
            dir.join("latest.json"),
            serde_json::to_string_pretty(self)? + "\n",
        )?;
        std::fs::write(markdown, self.markdown())?;
        Ok(())
    }
}
