//! Scenario 7: the background pipelines' throughput, and whether small clinics wait longer
//! when a whale holds most of the backlog. A real `voxanne worker` drains a backlog of queued
//! recordings (from a loopback recording host) or of queued SMS (to a loopback stand-in for
//! Twilio's Messages API); both answer after a fixed delay and note when they were asked. A
//! job's wait is the time from the worker's start to its request.

use crate::dataset;
use crate::report::{Row, Scenario};
use crate::server::Process;
use crate::{Bench, Error};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use secrecy::SecretString;
use sqlx::Executor;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use voxanne_db::crypto::Keyring;
use voxanne_db::encrypted::SMS_BODY;
use voxanne_domain::IntegrationProvider;

/// How long the hosts take to answer: a request's network time.
const DELAY: Duration = Duration::from_millis(20);
/// A recording's bytes.
const SIZE: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Recordings,
    Sms,
}

#[derive(Clone, Default)]
struct Host {
    /// (clinic, when) of every request.
    asked: Arc<Mutex<Vec<(u64, Instant)>>>,
}

impl Host {
    fn note(&self, clinic: u64) {
        self.asked
            .lock()
            .expect("the host's log")
            .push((clinic, Instant::now()));
    }
}

async fn recording(
    State(host): State<Host>,
    Path((clinic, _call)): Path<(u64, String)>,
) -> impl axum::response::IntoResponse {
    host.note(clinic);
    tokio::time::sleep(DELAY).await;
    ([("content-type", "audio/wav")], vec![0_u8; SIZE])
}

/// A clinic's Twilio account sid: `AC` and 32 hex digits, the clinic's number in them.
fn account_sid(clinic: u64) -> String {
    format!("AC{clinic:032x}")
}

/// `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, answered as Twilio documents the
/// create call (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource):
/// 201 with the Message resource, whose `sid` starts `SM` and whose `status` is `queued`.
async fn message(
    State(host): State<Host>,
    Path((sid, _)): Path<(String, String)>,
) -> impl axum::response::IntoResponse {
    let clinic = sid
        .strip_prefix("AC")
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(u64::MAX);
    host.note(clinic);
    tokio::time::sleep(DELAY).await;
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({
            "account_sid": account_sid(clinic), "sid": sid, "status": "queued",
            "direction": "outbound-api", "num_segments": "1", "api_version": "2010-04-01",
        })),
    )
}

/// One drain of a backlog.
struct Drain {
    /// The small clinics' jobs' waits, sorted.
    small_waits: Vec<Duration>,
    jobs: usize,
    took: Duration,
    worker_peak_kib: u64,
}

impl Drain {
    fn p95(&self) -> Duration {
        let i = ((self.small_waits.len() as f64 - 1.0) * 0.95).round() as usize;
        self.small_waits.get(i).copied().unwrap_or_default()
    }

    fn per_second(&self) -> f64 {
        self.jobs as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

pub async fn scenario(b: &mut Bench) -> Result<Scenario, Error> {
    let host = Host::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/rec/{clinic}/{call}", axum::routing::get(recording))
        .route(
            "/2010-04-01/Accounts/{sid}/{resource}",
            axum::routing::post(message),
        )
        .with_state(host.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (small_clinics, per_small, whale_jobs) = if b.plan.smoke {
        (4, 3, 108)
    } else {
        (20, 10, 1800)
    };
    let small: Vec<u64> = (2..2 + small_clinics).collect();
    let clinics: Vec<u64> = std::iter::once(0).chain(small.iter().copied()).collect();
    twilio_accounts(b, &clinics).await?;
    let mut rows = Vec::new();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut peak = 0;
    for kind in [Kind::Recordings, Kind::Sms] {
        let name = match kind {
            Kind::Recordings => "recordings",
            Kind::Sms => "SMS",
        };
        let mut best: [Option<Drain>; 2] = [None, None];
        for round in 1..=b.plan.rounds {
            for (i, whale) in [0, whale_jobs].into_iter().enumerate() {
                b.progress(&format!(
                    "{name}: {} small clinics' jobs{}, round {round}/{}",
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
                let drain = drain(b, &host, &url, kind, &jobs).await?;
                peak = peak.max(drain.worker_peak_kib);
                if best[i].as_ref().is_none_or(|d| drain.p95() < d.p95()) {
                    best[i] = Some(drain);
                }
            }
        }
        let [Some(alone), Some(with_whale)] = best else {
            return Err("no drain was measured".into());
        };
        rows.push(
            Row::new(
                format!("{name}: small clinics' p95 wait, alone"),
                ms(alone.p95()),
                "ms",
            )
            .ratio(ms(alone.p95())),
        );
        rows.push(
            Row::new(
                format!("{name}: small clinics' p95 wait, the whale holding 90% of the backlog"),
                ms(with_whale.p95()),
                "ms",
            )
            .ratio(ms(alone.p95())),
        );
        rows.push(Row::new(
            format!("{name}: throughput, with the whale"),
            with_whale.per_second(),
            "jobs/s",
        ));
    }
    rows.push(Row::new("worker peak RSS", peak as f64 / 1024.0, "MiB"));
    Ok(Scenario {
        id: "7",
        title: "The background pipelines and fairness",
        about: format!(
            "One `voxanne worker` (its default batches) drains a backlog: recordings of {} KiB \
             from a loopback host, or SMS to a loopback stand-in for Twilio's Messages API, \
             each answered after {} ms. First {} small clinics' {} jobs alone, then the same \
             with the whale's {} more (90% of the backlog). Wait: from the worker's start to \
             a job's request. Ratio: to the small clinics' p95 wait without the whale (target: \
             about 1, the whale does not push them back).",
            SIZE / 1024,
            DELAY.as_millis(),
            small.len(),
            small.len() as u64 * per_small,
            whale_jobs,
        ),
        rows,
        output: None,
    })
}

/// A number and a Twilio account for each of `clinics`, stored as the API stores them.
async fn twilio_accounts(b: &mut Bench, clinics: &[u64]) -> Result<(), Error> {
    let keyring = Keyring::from_config(&SecretString::from(b.config.encryption_key.clone()), None)?;
    for &clinic in clinics {
        let number = format!("+1415600{clinic:04}");
        sqlx::query(
            "WITH claim AS (
                 INSERT INTO app.phone_number_directory (number, org_id) VALUES ($2, $1)
                 ON CONFLICT DO NOTHING)
             INSERT INTO phone_numbers (org_id, number, label) VALUES ($1, $2, 'Bench')
             ON CONFLICT DO NOTHING",
        )
        .bind(dataset::org_id(clinic))
        .bind(&number)
        .execute(&mut b.admin)
        .await?;
        let mut tx =
            b.t.db
                .tenant(
                    dataset::org_id(clinic).into(),
                    dataset::user_id(clinic).into(),
                )
                .await?;
        let config = [
            (
                "account_sid".to_owned(),
                serde_json::json!(account_sid(clinic)),
            ),
            ("from_number".to_owned(), serde_json::json!(number)),
        ]
        .into_iter()
        .collect();
        let secrets = [("auth_token".to_owned(), SecretString::from("bench-token"))].into();
        tx.put_integration(
            &keyring,
            IntegrationProvider::Twilio,
            &config,
            Some(&secrets),
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Queues `jobs` (clinic, how many) of `kind` and lets a worker drain them.
async fn drain(
    b: &mut Bench,
    host: &Host,
    url: &str,
    kind: Kind,
    jobs: &[(u64, u64)],
) -> Result<Drain, Error> {
    let total: u64 = jobs.iter().map(|(_, n)| n).sum();
    for &(clinic, n) in jobs {
        let insert = match kind {
            Kind::Recordings => {
                "INSERT INTO calls (org_id, direction, status, from_number, to_number, started_at,
                                    ended_at, recording_status, recording_url)
                 SELECT $1, 'inbound', 'completed', '+14155551001', '+14155550100', now(), now(),
                        'queued', $2 || '/rec/' || $3 || '/' || gen_random_uuid() || '.wav'
                   FROM generate_series(1, $4)"
            }
            Kind::Sms => {
                // The texts encrypted as the server writes them: the worker decrypts each.
                let keyring = Keyring::from_config(
                    &SecretString::from(b.config.encryption_key.clone()),
                    None,
                )?;
                let org = dataset::org_id(clinic);
                let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::new_v4()).collect();
                let bodies = ids
                    .iter()
                    .map(|id| {
                        let aad = SMS_BODY.aad(voxanne_domain::OrgId::from_uuid(org), *id);
                        keyring.seal_stored(format!("See you soon {url}{clinic}").as_bytes(), &aad)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                sqlx::query(
                    "INSERT INTO sms_confirmation_logs (org_id, id, to_number, body)
                     SELECT $1, t.id, '+1415555' || lpad(t.g::text, 4, '0'), t.body
                       FROM unnest($2::uuid[], $3::bytea[]) WITH ORDINALITY AS t(id, body, g)",
                )
                .bind(org)
                .bind(&ids)
                .bind(&bodies)
                .execute(&mut b.admin)
                .await?;
                continue;
            }
        };
        sqlx::query(insert)
            .bind(dataset::org_id(clinic))
            .bind(url)
            .bind(i64::try_from(clinic)?)
            .bind(i64::try_from(n)?)
            .execute(&mut b.admin)
            .await?;
    }
    let (open, failed, done) = match kind {
        Kind::Recordings => (
            "SELECT count(*) FROM calls WHERE recording_status IN ('queued', 'processing')",
            "SELECT count(*) FROM calls WHERE recording_status = 'failed'",
            "DELETE FROM calls WHERE recording_status = 'stored'",
        ),
        Kind::Sms => (
            "SELECT count(*) FROM sms_confirmation_logs WHERE status IN ('queued', 'sending')",
            "SELECT count(*) FROM sms_confirmation_logs WHERE status NOT IN ('sent', 'delivered')",
            "DELETE FROM sms_confirmation_logs",
        ),
    };
    host.asked.lock().expect("the host's log").clear();
    let started = Instant::now();
    let mut worker = Process::spawn(
        &b.config,
        "worker",
        &["worker"],
        &[
            ("VOXANNE_WORKER_ALLOW_PRIVATE_URLS", "true".into()),
            ("VOXANNE_SMS_API_URL", url.to_owned()),
        ],
    )?;
    let deadline = started + Duration::from_secs(300);
    let mut peak = 0;
    loop {
        worker
            .check_running()
            .map_err(|e| format!("the worker stopped: {e}"))?;
        peak = peak.max(worker.peak_rss_kib().unwrap_or(0));
        let left: i64 = sqlx::query_scalar(open).fetch_one(&mut b.admin).await?;
        if left == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{left} jobs still open after 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    worker.stop()?;
    let failed: i64 = sqlx::query_scalar(failed).fetch_one(&mut b.admin).await?;
    if failed > 0 {
        let log = worker_log(b);
        return Err(format!("{failed} jobs did not succeed; the worker's log ends: {log}").into());
    }
    // The next drain starts from an empty queue and the same table size.
    b.admin.execute(done).await?;
    let asked = host.asked.lock().expect("the host's log").clone();
    if asked.len() as u64 != total {
        return Err(format!("{} requests for {total} jobs", asked.len()).into());
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

fn worker_log(b: &Bench) -> String {
    let text = std::fs::read_to_string(b.config.data_dir.join("worker.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
