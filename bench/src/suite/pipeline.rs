//! Scenario 7: the recording pipeline's throughput, and whether small clinics wait longer
//! when a whale holds most of the backlog. A real `voxanne worker` drains a backlog of queued
//! recordings from a loopback recording host that answers each download after a fixed delay
//! and notes when it was asked; a job's wait is the time from the worker's start to its
//! download.

use crate::dataset;
use crate::report::{Row, Scenario};
use crate::server::{Process, ServerConfig};
use crate::{Bench, Error};
use axum::extract::{Path, State};
use sqlx::Executor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the recording host takes to answer: a download's network time.
const DELAY: Duration = Duration::from_millis(20);
/// A recording's bytes.
const SIZE: usize = 256 * 1024;

#[derive(Clone, Default)]
struct Host {
    /// (clinic, when) of every download.
    asked: Arc<Mutex<Vec<(u64, Instant)>>>,
}

async fn recording(
    State(host): State<Host>,
    Path((clinic, _call)): Path<(u64, String)>,
) -> impl axum::response::IntoResponse {
    host.asked
        .lock()
        .expect("the host's log")
        .push((clinic, Instant::now()));
    tokio::time::sleep(DELAY).await;
    ([("content-type", "audio/wav")], vec![0_u8; SIZE])
}

/// One drain of a backlog.
struct Drain {
    /// The small clinics' jobs' waits, sorted.
    small_waits: Vec<Duration>,
    jobs: usize,
    took: Duration,
    worker_peak_kib: u64,
}

fn p95(sorted: &[Duration]) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * 0.95).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

pub async fn scenario(b: &mut Bench) -> Result<Scenario, Error> {
    let host = Host::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/rec/{clinic}/{call}", axum::routing::get(recording))
        .with_state(host.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let smoke = b.plan.seconds <= 1;
    let (small_clinics, per_small, whale_jobs) = if smoke { (4, 3, 108) } else { (20, 10, 1800) };
    let small: Vec<u64> = (2..2 + small_clinics).collect();
    let mut best: [Option<Drain>; 2] = [None, None];
    for round in 1..=b.plan.rounds {
        for (i, whale) in [0, whale_jobs].into_iter().enumerate() {
            b.progress(&format!(
                "recordings: {} small clinics' jobs{}, round {round}/{}",
                small.len() as u64 * per_small,
                if whale > 0 {
                    format!(" and the whale's {whale}")
                } else {
                    String::new()
                },
                b.plan.rounds
            ));
            let mut jobs: Vec<(u64, u64)> = small.iter().map(|&c| (c, per_small)).collect();
            if whale > 0 {
                jobs.push((0, whale));
            }
            let drain = drain(b, &host, &url, &jobs).await?;
            let better = best[i]
                .as_ref()
                .is_none_or(|d| p95(&drain.small_waits) < p95(&d.small_waits));
            if better {
                best[i] = Some(drain);
            }
        }
    }
    let [Some(alone), Some(with_whale)] = best else {
        return Err("no drain was measured".into());
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rate = |d: &Drain| d.jobs as f64 / d.took.as_secs_f64().max(1e-9);
    Ok(Scenario {
        id: "7",
        title: "The recording pipeline and fairness",
        about: format!(
            "One `voxanne worker` (its default batch) drains a backlog of queued recordings \
             ({} KiB each, from a loopback host that answers after {} ms): {} small clinics' \
             {} jobs alone, then the same with the whale's {} more (90% of the backlog). Wait: \
             from the worker's start to a job's download. Ratio: to the small clinics' p95 \
             wait without the whale (target: about 1, the whale does not push them back).",
            SIZE / 1024,
            DELAY.as_millis(),
            small.len(),
            small.len() as u64 * per_small,
            whale_jobs,
        ),
        rows: vec![
            Row::new(
                "small clinics' p95 wait, alone",
                ms(p95(&alone.small_waits)),
                "ms",
            )
            .ratio(ms(p95(&alone.small_waits))),
            Row::new(
                "small clinics' p95 wait, the whale holding 90% of the backlog",
                ms(p95(&with_whale.small_waits)),
                "ms",
            )
            .ratio(ms(p95(&alone.small_waits))),
            Row::new(
                "throughput, with the whale",
                rate(&with_whale),
                "recordings/s",
            ),
            Row::new(
                "worker peak RSS",
                alone.worker_peak_kib.max(with_whale.worker_peak_kib) as f64 / 1024.0,
                "MiB",
            ),
        ],
        output: None,
    })
}

/// Queues `jobs` (clinic, how many) and lets a worker drain them.
async fn drain(b: &mut Bench, host: &Host, url: &str, jobs: &[(u64, u64)]) -> Result<Drain, Error> {
    let total: u64 = jobs.iter().map(|(_, n)| n).sum();
    for &(clinic, n) in jobs {
        sqlx::query(
            "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at,
                                ended_at, recording_status, recording_url)
             SELECT $1, 'inbound', 'completed', '+14155551001', '+14155550100', now(), now(),
                    'queued', $2 || '/rec/' || $3 || '/' || gen_random_uuid() || '.wav'
               FROM generate_series(1, $4)",
        )
        .bind(dataset::org_id(clinic))
        .bind(url)
        .bind(i64::try_from(clinic)?)
        .bind(i64::try_from(n)?)
        .execute(&mut b.admin)
        .await?;
    }
    host.asked.lock().expect("the host's log").clear();
    let config: &ServerConfig = &b.config;
    let started = Instant::now();
    let mut worker = Process::spawn(
        config,
        "worker",
        &["worker"],
        &[("VOXANNE_WORKER_ALLOW_PRIVATE_URLS", "true".into())],
    )?;
    let deadline = started + Duration::from_secs(300);
    let mut peak = 0;
    loop {
        worker
            .check_running()
            .map_err(|e| format!("the worker stopped: {e}"))?;
        peak = peak.max(worker.peak_rss_kib().unwrap_or(0));
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM calls WHERE recording_status IN ('queued', 'processing')",
        )
        .fetch_one(&mut b.admin)
        .await?;
        if open == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{open} recordings still open after 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    worker.stop()?;
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM calls WHERE recording_status = 'failed'")
            .fetch_one(&mut b.admin)
            .await?;
    if failed > 0 {
        return Err(format!("{failed} recordings failed").into());
    }
    // The next drain starts from an empty queue and the same table size.
    b.admin
        .execute("DELETE FROM calls WHERE recording_status = 'stored'")
        .await?;
    let asked = host.asked.lock().expect("the host's log").clone();
    if asked.len() as u64 != total {
        return Err(format!("{} downloads for {total} jobs", asked.len()).into());
    }
    let mut small_waits: Vec<Duration> = asked
        .iter()
        .filter(|(clinic, _)| *clinic != 0)
        .map(|(_, at)| at.saturating_duration_since(started))
        .collect();
    small_waits.sort();
    Ok(Drain {
        small_waits,
        jobs: asked.len(),
        took,
        worker_peak_kib: peak,
    })
}
