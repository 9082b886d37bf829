//! What a batch of large recording downloads costs in memory, in one run.
//!
//! A local cluster, the demo clinics, a loopback provider that serves N recordings of M MiB
//! each (generated as they are sent), a local directory as the store. Two variants, each one
//! whole batch of N concurrent downloads:
//!
//! | variant | what |
//! | --- | --- |
//! | streaming | the worker's `run_once`: claim, download, stream into storage, commit |
//! | buffered | the same downloads read whole into memory, then stored with one PUT each |
//!
//! Printed: the peak resident memory above the process's resting level during each batch
//! (sampled every 5 ms from `/proc/self/statm`), as MiB and as a share of the batch's bytes,
//! and streaming's peak as a share of buffered's.
//!
//! `cargo run --release -p voxanne-bench --bin recording-memory [-- N MIB]` (default 20 × 50)

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use secrecy::SecretString;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use voxanne_db::crypto::Keyring;
use voxanne_db::demo;
use voxanne_jobs::{Job, Metrics, Outcome, Schedule, Worker, WorkerConfig};
use voxanne_testkit::TestDb;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MIB: usize = 1024 * 1024;
const PIECE: usize = 64 * 1024;

/// Resident bytes now.
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Samples the resident size until stopped; returns the highest seen.
struct PeakSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl PeakSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss()));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self { stop, peak, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

/// Answers `GET /{bytes}/{name}.wav` with that many bytes, in 64 KiB writes.
async fn provider() -> Result<String, BoxError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let piece: Arc<Vec<u8>> = Arc::new((0..PIECE).map(|i| (i % 251) as u8).collect());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let piece = piece.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                let size: usize = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.trim_start_matches('/').split('/').next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let answer = format!("HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: {size}\r\nconnection: close\r\n\r\n");
                if socket.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut sent = 0;
                while sent < size {
                    let n = PIECE.min(size - sent);
                    if socket.write_all(&piece[..n]).await.is_err() {
                        return;
                    }
                    sent += n;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    Ok(base)
}

/// What the worker did before streaming: the whole body in a `Vec`, then one PUT.
async fn buffered_batch(store: Arc<dyn ObjectStore>, urls: Vec<String>) -> Result<(), BoxError> {
    let http = reqwest::Client::new();
    let mut jobs = tokio::task::JoinSet::new();
    for (i, url) in urls.into_iter().enumerate() {
        let (http, store) = (http.clone(), store.clone());
        jobs.spawn(async move {
            let mut response = http.get(url).send().await?.error_for_status()?;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                body.extend_from_slice(&chunk);
            }
            store
                .put(
                    &Path::from(format!("buffered/{i}.wav")),
                    PutPayload::from(body),
                )
                .await?;
            Ok::<(), BoxError>(())
        });
    }
    while let Some(done) = jobs.join_next().await {
        done??;
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB as f64
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let size_mib: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let size = size_mib * MIB;
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await?;
    let base = provider().await?;
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn ObjectStore> = Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(dir.path())?,
    );
    let keyring = Arc::new(Keyring::from_config(
        &SecretString::from("bench:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
        None,
    )?);

    let mut admin = t.admin().await;
    sqlx::query("UPDATE calls SET recording_status = 'none'")
        .execute(&mut admin)
        .await?;
    let urls: Vec<String> = (0..n).map(|i| format!("{base}/{size}/r{i}.wav")).collect();
    for (i, url) in urls.iter().enumerate() {
        let org = if i % 2 == 0 { a.org } else { b.org };
        sqlx::query(
            "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at,
                                recording_status, recording_url)
             VALUES ($1, 'inbound', 'completed', '+14155550100', '+14155550101', now(), 'queued', $2)",
        )
        .bind(org.as_uuid())
        .bind(url)
        .execute(&mut admin)
        .await?;
    }
    let worker = Worker::new(
        t.db.clone(),
        store.clone(),
        keyring,
        WorkerConfig {
            schedule: Schedule {
                batch: u32::try_from(n)?,
                lease: Duration::from_secs(3600),
                ..Schedule::default()
            },
            http_timeout: Duration::from_secs(1800),
            max_bytes: u64::try_from(size)? + 1,
            allow_private_addresses: true,
            ..WorkerConfig::default()
        },
        Arc::new(Metrics::default()),
    )?;

    let batch_bytes = (n * size) as u64;
    let rest = rss();
    let sampler = PeakSampler::start();
    let started = Instant::now();
    let outcomes = worker.run_once().await?;
    let streaming_time = started.elapsed();
    let streaming_peak = sampler.finish().saturating_sub(rest);
    let stored = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Stored { .. }))
        .count();
    if stored != n {
        return Err(format!("{stored} of {n} recordings stored: {outcomes:?}").into());
    }

    let rest_buffered = rss();
    let sampler = PeakSampler::start();
    let started = Instant::now();
    buffered_batch(store, urls).await?;
    let buffered_time = started.elapsed();
    let buffered_peak = sampler.finish().saturating_sub(rest_buffered);

    println!(
        "recording-memory: one batch of {n} concurrent downloads of {size_mib} MiB ({:.0} MiB), local store (release build advised)\n",
        mib(batch_bytes)
    );
    println!("| variant | peak RSS above rest (MiB) | share of the batch's bytes | time (s) |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, peak, time) in [
        ("streaming", streaming_peak, streaming_time),
        ("buffered", buffered_peak, buffered_time),
    ] {
        println!(
            "| {name} | {:.0} | {:.1}% | {:.1} |",
            mib(peak),
            peak as f64 / batch_bytes as f64 * 100.0,
            time.as_secs_f64()
        );
    }
    println!(
        "\nstreaming / buffered peak: {:.2}; per download while streaming: {:.1} MiB (parts are {} MiB)",
        streaming_peak as f64 / buffered_peak.max(1) as f64,
        mib(streaming_peak) / n as f64,
        voxanne_jobs::PART_BYTES / MIB
    );
    Ok(())
}
