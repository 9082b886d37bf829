//! Scenario 9, the distributed mode (docs/SCALING.md). Run as a child of the suite in the
//! test kit's Citus mode (a coordinator and two workers on this machine): two databases on
//! the coordinator get the same clinics and calls as single-server databases; one of them is
//! then converted in place (`voxanne migrate --distributed`'s code: the rows copied into the
//! shards), timed; a server on each, and the list endpoint measured on both in interleaved
//! rounds. The figure is what the distributed mode costs a request on one machine (the hop to
//! a worker, the Citus planner, the membership check as a statement of its own), not what
//! more machines would add.

use crate::dataset::{self, Dataset};
use crate::server::{Server, ServerConfig};
use crate::wrk::{wrk, Request};
use crate::{clinic_token, Error, Plan, LIST};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether this machine can run the scenario (Citus installed for its PostgreSQL).
pub fn available() -> bool {
    voxanne_db::embedded::citus_available()
}

/// The child's work; its table on stdout.
pub async fn child(plan: &Plan, binary: &Path) -> Result<(), Error> {
    if !voxanne_testkit::citus_mode() {
        return Err(
            "the distributed scenario runs in the Citus mode (VOXANNE_TEST_CITUS=1)".into(),
        );
    }
    let (clinics, calls) = (plan.small_clinics, plan.small_calls);
    let dir = tempfile::Builder::new()
        .prefix("voxanne-bench-citus-")
        .tempdir()?;
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let mut configs = Vec::new();
    let mut converted_in = Duration::ZERO;
    for (i, distributed) in [false, true].into_iter().enumerate() {
        let (url, options) = voxanne_testkit::empty_single_server_database_url().await;
        voxanne_db::migrate::migrate(&options, None).await?;
        let mut admin = PgConnection::connect_with(&options).await?;
        eprintln!(
            "[suite] distributed mode: {clinics} clinics, {calls} calls in database {}",
            i + 1
        );
        let keyring = voxanne_db::crypto::Keyring::from_config(
            &SecretString::from(crate::ENCRYPTION_KEY),
            None,
        )?;
        dataset::grow(&mut admin, &keyring, &Dataset::default(), clinics, calls).await?;
        if distributed {
            let name = options.get_database().ok_or("a database name")?.to_owned();
            voxanne_testkit::prepare_for_citus(&name).await;
            eprintln!("[suite] converting it to a distributed database");
            let started = Instant::now();
            voxanne_db::migrate::migrate_distributed(&options, None, |_| {}).await?;
            converted_in = started.elapsed();
            let (rows, placed): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM calls),
                        (SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = 'calls'::regclass)",
            )
            .fetch_one(&mut admin)
            .await?;
            if rows != i64::try_from(calls)? || placed != 1 {
                return Err(format!(
                    "the conversion lost rows or left calls local: {rows} calls, placed {placed}"
                )
                .into());
            }
        }
        admin.close().await?;
        let socket = options
            .get_socket()
            .ok_or("the cluster's socket directory")?;
        let app_url = format!(
            "postgres://voxanne_app@localhost/{}?host={}&port={}",
            options.get_database().ok_or("a database name")?,
            socket.display(),
            options.get_port()
        );
        let data_dir = dir.path().join(format!("db{i}"));
        std::fs::create_dir_all(&data_dir)?;
        configs.push(ServerConfig {
            binary: binary.to_path_buf(),
            database_url: url,
            app_database_url: app_url,
            jwt_secret: secret.clone(),
            encryption_key: crate::ENCRYPTION_KEY.into(),
            data_dir,
        });
    }
    let secret = SecretString::from(secret);
    let tokens = (1..=plan.rotation)
        .map(|c| clinic_token(&secret, c))
        .collect::<Result<Vec<_>, _>>()?;
    let single = Server::start(&configs[0]).await?;
    let citus = Server::start(&configs[1]).await?;
    let mut best = [(0.0_f64, f64::MAX, f64::MAX); 2];
    for round in 1..=plan.rounds {
        for (k, server) in [&single, &citus].into_iter().enumerate() {
            eprintln!(
                "[suite] distributed mode, round {round}/{}: {}",
                plan.rounds,
                ["one server", "Citus"][k]
            );
            let load = wrk(
                dir.path(),
                &server.base_url,
                &Request::Get(LIST),
                &tokens,
                16,
                plan.seconds,
            )?;
            if load.requests == 0 || load.non_2xx > 0 || load.errors > 0 {
                return Err(
                    format!("the API did not answer every request with 2xx: {load:?}").into(),
                );
            }
            best[k] = (
                best[k].0.max(load.per_second()),
                best[k].1.min(load.p50_ms),
                best[k].2.min(load.p99_ms),
            );
        }
    }
    single.stop()?;
    citus.stop()?;
    println!("variant                               value     ratio");
    println!(
        "one server: req/s (16 connections)  {:>8.0}      1.00",
        best[0].0
    );
    println!(
        "Citus: req/s (16 connections)       {:>8.0}  {:>8.2}",
        best[1].0,
        best[1].0 / best[0].0
    );
    println!(
        "one server: p50 / p99 ms            {:>5.2} / {:<6.2}",
        best[0].1, best[0].2
    );
    println!(
        "Citus: p50 / p99 ms                 {:>5.2} / {:<6.2} {:>5.2} (p50)",
        best[1].1,
        best[1].2,
        best[1].1 / best[0].1
    );
    println!(
        "conversion of {clinics} clinics, {calls} calls: {:.1} s",
        converted_in.as_secs_f64()
    );
    Ok(())
}
