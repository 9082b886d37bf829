//! The benchmark suite: one command builds in release (`bench/run`), starts its own cluster and
//! server, generates clinics and calls at scale, runs every scenario from second processes on
//! loopback (`wrk` for the API, `pgbench` for the database), and writes one table of ratios:
//! `bench/results/latest.json` and `BENCHMARKS.md`.
//!
//! Scenarios (figures are ratios within the run; see BENCHMARKS.md for the last full run):
//! 1. the list endpoint against the pgbench ceiling (its SELECT alone) at 16 and 64 connections;
//! 2. the tenant transaction against the bare query, in the database (and `db-side`'s breakdown);
//! 3. the API with RLS forced against the same server whose role bypasses RLS;
//! 4. p50/p99 of small clinics and the whale at the small scale and at the large one;
//! 5. many bookings of one slot, and distinct-slot booking throughput against pgbench's INSERT;
//! 6. what the voice platform waits for (`agent-latency`);
//! 7. the recording pipeline's throughput, and small clinics' wait with and without a whale;
//! 8. the server's peak memory under the 64-connection load, and the worker's (`recording-memory`);
//! 9. the distributed mode (Citus) against one server, and the time to convert a database.
//!
//! `bench/run [--smoke] [--clinics N] [--calls N] [--seconds S] [--rounds R]`

mod cpu;
mod dataset;
mod distributed;
mod pipeline;
mod report;
mod server;
mod wrk;

use clap::Parser;
use dataset::Dataset;
use report::{Report, Row, Scenario};
use secrecy::SecretString;
use server::{Server, ServerConfig};
use sqlx::{Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::time::Duration;
use voxanne_bench::{pgbench, pgbench_with};
use voxanne_http::auth::{mint_hs256, DevToken};
use voxanne_testkit::TestDb;
use wrk::{wrk, Load, Request};

/// The servers' encryption key (a fixed one: the data set is encrypted with it too).
pub const ENCRYPTION_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

#[derive(Debug, Parser, serde::Serialize)]
#[command(name = "suite", about = "Voxanne's benchmark suite")]
struct Args {
    /// Tiny data and one short round of everything: proves the suite runs (CI), measures nothing.
    #[arg(long)]
    smoke: bool,
    /// Clinics at the large scale.
    #[arg(long)]
    clinics: Option<u64>,
    /// Calls at the large scale (a tenth of them the whale's).
    #[arg(long)]
    calls: Option<u64>,
    /// Clinics at the small scale.
    #[arg(long)]
    small_clinics: Option<u64>,
    /// Calls at the small scale.
    #[arg(long)]
    small_calls: Option<u64>,
    /// Seconds per measured run.
    #[arg(long)]
    seconds: Option<u32>,
    /// Interleaved rounds; the best of each variant counts.
    #[arg(long)]
    rounds: Option<u32>,
    /// Where latest.json goes (default bench/results; with --smoke or --only, a temp dir).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only these scenarios (comma-separated ids, e.g. `10` or `1,3`); the report then goes
    /// to a temp dir unless --out says where.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Another build of `voxanne` (e.g. a change's), measured in scenario 1 beside this one,
    /// interleaved round by round: its throughput and CPU per request against this build's.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// After scenario 1, one more 16-connection run of the list and one of pgbench's tenant
    /// transaction, each with `pg_stat_statements` reset before it: where the database's time
    /// per request goes, statement by statement (printed with the progress, not in the
    /// report; the test kit's clusters load it).
    #[arg(long)]
    statements: bool,
    /// Scenario 9's own process (the suite starts it in the test kit's Citus mode).
    #[arg(long, hide = true)]
    distributed_child: bool,
}

/// The run's parameters, defaults filled in.
#[derive(Debug, serde::Serialize)]
struct Plan {
    /// Tiny data and one short round: the suite runs, nothing is measured.
    smoke: bool,
    clinics: u64,
    calls: u64,
    small_clinics: u64,
    small_calls: u64,
    seconds: u32,
    rounds: u32,
    /// Clinics whose tokens the load rotates over.
    rotation: u64,
    /// Connections of the latency runs (scenario 4).
    latency_connections: u32,
    /// The scenarios to run; empty: all.
    only: Vec<String>,
    /// A second build measured beside this one in scenario 1 (`--compare`).
    compare: Option<PathBuf>,
    /// Statement by statement after scenario 1 (`--statements`).
    statements: bool,
}

impl Plan {
    fn from(args: &Args) -> Self {
        let (clinics, calls, small_clinics, small_calls, seconds, rounds) = if args.smoke {
            (12, 3_000, 4, 400, 1, 1)
        } else {
            (10_000, 10_000_000, 100, 10_000, 10, 3)
        };
        let clinics = args.clinics.unwrap_or(clinics).max(2);
        let small_clinics = args
            .small_clinics
            .unwrap_or(small_clinics)
            .clamp(2, clinics);
        Plan {
            smoke: args.smoke,
            clinics,
            calls: args.calls.unwrap_or(calls),
            small_clinics,
            small_calls: args.small_calls.unwrap_or(small_calls),
            seconds: args.seconds.unwrap_or(seconds).max(1),
            rounds: args.rounds.unwrap_or(rounds).max(1),
            rotation: (small_clinics - 1).min(100),
            latency_connections: 4,
            only: args.only.clone(),
            compare: args.compare.clone(),
            statements: args.statements,
        }
    }

    /// Whether scenario `id` runs.
    fn wants(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == id)
    }
}

type Error = Box<dyn std::error::Error>;

const LIST: &str = "/api/v1/calls?limit=25";
const COLUMNS: &str = "id, org_id, contact_id, direction, status, from_number, to_number, \
     started_at, ended_at, duration_seconds, recording_status, recording_path, \
     NULL::text AS transcript, summary, created_at";

fn main() -> Result<(), Error> {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}

/// Everything the scenarios share.
struct Bench {
    plan: Plan,
    t: TestDb,
    admin: PgConnection,
    dir: tempfile::TempDir,
    config: ServerConfig,
    secret: SecretString,
}

/// A token of a generated clinic's owner for that clinic, signed with `secret`.
fn clinic_token(secret: &SecretString, clinic: u64) -> Result<String, Error> {
    Ok(mint_hs256(
        secret,
        "authenticated",
        &DevToken {
            user: dataset::user_id(clinic).into(),
            org: Some(dataset::org_id(clinic).into()),
            role: None,
            ttl: Duration::from_secs(24 * 3600),
        },
    )?)
}

impl Bench {
    fn token(&self, clinic: u64) -> Result<String, Error> {
        clinic_token(&self.secret, clinic)
    }

    /// The small clinics' tokens the load rotates over.
    fn rotation(&self) -> Result<Vec<String>, Error> {
        (1..=self.plan.rotation).map(|i| self.token(i)).collect()
    }

    fn wrk(&self, server: &Server, tokens: &[String], connections: u32) -> Result<Load, Error> {
        self.load(server, &Request::Get(LIST), tokens, connections)
    }

    fn load(
        &self,
        server: &Server,
        request: &Request,
        tokens: &[String],
        connections: u32,
    ) -> Result<Load, Error> {
        let load = wrk(
            self.dir.path(),
            &server.base_url,
            request,
            tokens,
            connections,
            self.plan.seconds,
        )?;
        if load.requests == 0 || load.non_2xx > 0 || load.errors > 0 {
            return Err(format!("the API did not answer every request with 2xx: {load:?}").into());
        }
        Ok(load)
    }

    /// A pgbench script: `body` with `:c` the last group of a random rotated clinic's ids.
    fn script(&self, name: &str, body: &str) -> Result<PathBuf, Error> {
        let path = self.dir.path().join(name);
        std::fs::write(
            &path,
            format!(
                "\\set c {} + random(1, {})\n{body}\n",
                dataset::ID_BASE,
                self.plan.rotation
            ),
        )?;
        Ok(path)
    }

    /// The pid of the cluster's postmaster (the parent of a backend), for reading its CPU.
    async fn postmaster(&mut self) -> Result<u32, Error> {
        let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut self.admin)
            .await?;
        cpu::parent(u32::try_from(backend)?).ok_or_else(|| "no postmaster in /proc".into())
    }

    fn progress(&self, what: &str) {
        eprintln!("[suite] {what}");
    }
}

async fn run(args: Args) -> Result<(), Error> {
    let plan = Plan::from(&args);
    let bin_dir = std::env::current_exe()?
        .parent()
        .map(Path::to_path_buf)
        .ok_or("the suite's own directory")?;
    let binary = bin_dir.join("voxanne");
    if !binary.is_file() {
        return Err(format!(
            "{} is missing: run the suite with bench/run, which builds it",
            binary.display()
        )
        .into());
    }
    if args.distributed_child {
        return distributed::child(&plan, &binary).await;
    }
    eprintln!("[suite] starting a cluster");
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let postgres: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut admin)
        .await?;
    let postgres = postgres
        .split(" on ")
        .next()
        .unwrap_or(&postgres)
        .to_owned();
    let dir = tempfile::Builder::new()
        .prefix("voxanne-bench-")
        .tempdir()?;
    let options = t.admin_options();
    let socket = options
        .get_socket()
        .ok_or("the cluster's socket directory")?
        .display()
        .to_string();
    let url = |role: &str| {
        format!(
            "postgres://{role}@localhost/{}?host={socket}&port={}",
            t.name,
            options.get_port()
        )
    };
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let config = ServerConfig {
        binary,
        database_url: url(options.get_username()),
        app_database_url: url("voxanne_app"),
        jwt_secret: secret.clone(),
        encryption_key: ENCRYPTION_KEY.into(),
        data_dir: dir.path().to_path_buf(),
    };
    let mut b = Bench {
        plan,
        admin: t.admin().await,
        t,
        dir,
        config,
        secret: SecretString::from(secret),
    };
    drop(admin);

    let mut scenarios = Vec::new();
    let started = std::time::Instant::now();
    b.progress(&format!(
        "small scale: {} clinics, {} calls",
        b.plan.small_clinics, b.plan.small_calls
    ));
    let keyring = voxanne_db::crypto::Keyring::from_config(
        &SecretString::from(b.config.encryption_key.clone()),
        None,
    )?;
    let small = dataset::grow(
        &mut b.admin,
        &keyring,
        &Dataset::default(),
        b.plan.small_clinics,
        b.plan.small_calls,
    )
    .await?;
    let mut server = Server::start(&b.config).await?;
    let latency_small = if b.plan.wants("4") {
        Some(latency(&b, &server)?)
    } else {
        None
    };
    b.progress(&format!(
        "large scale: {} clinics, {} calls",
        b.plan.clinics, b.plan.calls
    ));
    let generating = std::time::Instant::now();
    let large = dataset::grow(&mut b.admin, &keyring, &small, b.plan.clinics, b.plan.calls).await?;
    let generated_in = generating.elapsed();
    if let Some(latency_small) = latency_small {
        let latency_large = latency(&b, &server)?;
        scenarios.push(scale_scenario(
            &small,
            &large,
            latency_small,
            latency_large,
            generated_in,
        ));
    }

    if b.plan.wants("1") || b.plan.wants("2") {
        let (ceiling, isolation) = ceiling(&mut b, &server).await?;
        scenarios.push(ceiling);
        scenarios.push(isolation);
        if b.plan.statements {
            statements(&mut b, &server).await?;
        }
    }
    let peak_rss = server.peak_rss_kib().unwrap_or(0);
    if b.plan.wants("5") {
        scenarios.push(booking(&mut b, &server).await?);
    }
    if b.plan.wants("3") {
        server = rls_bypass(&mut b, server, &mut scenarios).await?;
    }
    if b.plan.wants("10") {
        scenarios.push(access_log_cost(&mut b, &server).await?);
    }
    server.stop()?;
    if b.plan.wants("7") {
        scenarios.push(pipeline::scenario(&mut b).await?);
    }
    let run_child = |id: &str| b.plan.wants(id);
    if run_child("6") {
        scenarios.push(child_scenario(
            &bin_dir,
            ("6", "What the voice platform waits for"),
            "`agent-latency`: each agent tool round trip during a call against a bare HTTP round \
         trip, and against the platform's 7.5 s budget for the assistant request.",
            "agent-latency",
            if b.plan.smoke { &["20"] } else { &[] },
            &[],
        )?);
    }
    let about_9 = "The list endpoint (`GET /api/v1/calls?limit=25`, wrk, 16 connections, rotating \
         the clinics) on a Citus coordinator with two workers, all on this machine, against one \
         server, interleaved rounds; both databases hold the same clinics and calls, and the \
         distributed one was converted in place from a single server's database (timed). \
         The ratio is what the distributed mode costs a request here, not what more machines \
         would add.";
    if !b.plan.wants("9") {
    } else if distributed::available() {
        let (clinics, calls) = if b.plan.smoke {
            (4, 400)
        } else {
            (1_000, 1_000_000)
        };
        let (clinics, calls, seconds, rounds) = (
            clinics.to_string(),
            calls.to_string(),
            b.plan.seconds.to_string(),
            b.plan.rounds.to_string(),
        );
        scenarios.push(child_scenario(
            &bin_dir,
            ("9", "The distributed mode"),
            about_9,
            "suite",
            &[
                "--distributed-child",
                "--small-clinics",
                &clinics,
                "--small-calls",
                &calls,
                "--seconds",
                &seconds,
                "--rounds",
                &rounds,
            ],
            &[("VOXANNE_TEST_CITUS", "1")],
        )?);
    } else {
        b.progress("scenario 9 skipped: Citus is not installed for this PostgreSQL");
        scenarios.push(Scenario {
            id: "9",
            title: "The distributed mode",
            about: about_9.into(),
            rows: Vec::new(),
            output: Some(
                "skipped: the Citus extension is not installed for this PostgreSQL \
                 (docs/SCALING.md)"
                    .into(),
            ),
        });
    }
    if b.plan.wants("8") {
        let mut memory = child_scenario(
            &bin_dir,
            ("8", "Memory"),
            "The server's peak resident memory (`VmHWM`) after every API scenario above, the \
         64-connection load included (target: ≤ 100 MB); and `recording-memory`: the worker's \
         peak memory for a batch of large recordings, streamed against buffered (independent \
         of the recordings' size).",
            "recording-memory",
            if b.plan.smoke { &["2", "2"] } else { &[] },
            &[],
        )?;
        memory.rows.push(Row::new(
            "server peak RSS (64-connection load)",
            peak_rss as f64 / 1024.0,
            "MiB",
        ));
        scenarios.push(memory);
    }
    if b.plan.wants("2") {
        let mut db_side = child_scenario(
            &bin_dir,
            ("2b", "Where the tenant transaction's cost goes"),
            "`db-side`: one clinic's page with pgbench, variant by variant (the transaction, the \
         context, RLS, the membership check).",
            "db-side",
            if b.plan.smoke {
                &["2", "1", "1", "200"]
            } else {
                &[]
            },
            &[],
        )?;
        db_side.rows.clear();
        scenarios.push(db_side);
    }

    // By number; "2b" after "2".
    scenarios.sort_by_key(|s| {
        let digits: String = s.id.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u32>().unwrap_or(u32::MAX), s.id.len())
    });
    let report = Report {
        mode: if b.plan.smoke { "smoke" } else { "full" },
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        commit: commit(),
        machine: report::Machine::read(postgres),
        parameters: serde_json::to_value(&b.plan)?,
        scenarios,
    };
    let partial = !b.plan.only.is_empty();
    let (out, markdown) = match (&args.out, args.smoke || partial) {
        (Some(out), _) => (out.clone(), out.join("BENCHMARKS.md")),
        (None, true) => {
            let out = std::env::temp_dir().join("voxanne-bench-smoke");
            (out.clone(), out.join("BENCHMARKS.md"))
        }
        (None, false) => (
            PathBuf::from("bench/results"),
            PathBuf::from("BENCHMARKS.md"),
        ),
    };
    report.write(&out, &markdown)?;
    println!("{}", report.markdown());
    eprintln!(
        "[suite] done in {:.0} s: {} and {}",
        started.elapsed().as_secs_f64(),
        out.join("latest.json").display(),
        markdown.display()
    );
    Ok(())
}

/// The best (lowest) p50 and p99 over the rounds, for the rotated small clinics and for the
/// whale alone.
#[derive(Debug, Clone, Copy)]
struct Latency {
    small: (f64, f64),
    whale: (f64, f64),
}

fn latency(b: &Bench, server: &Server) -> Result<Latency, Error> {
    let small = b.rotation()?;
    let whale = vec![b.token(0)?];
    let best = |acc: (f64, f64), l: Load| (acc.0.min(l.p50_ms), acc.1.min(l.p99_ms));
    let mut out = Latency {
        small: (f64::MAX, f64::MAX),
        whale: (f64::MAX, f64::MAX),
    };
    for round in 1..=b.plan.rounds {
        b.progress(&format!("latency, round {round}/{}", b.plan.rounds));
        out.small = best(
            out.small,
            b.wrk(server, &small, b.plan.latency_connections)?,
        );
        out.whale = best(
            out.whale,
            b.wrk(server, &whale, b.plan.latency_connections)?,
        );
    }
    Ok(out)
}

fn scale_scenario(
    small: &Dataset,
    large: &Dataset,
    at_small: Latency,
    at_large: Latency,
    generated_in: Duration,
) -> Scenario {
    let mut rows = Vec::new();
    for (who, s, l) in [
        ("small clinics", at_small.small, at_large.small),
        ("the whale", at_small.whale, at_large.whale),
    ] {
        rows.push(Row::new(format!("{who}: p50, small scale"), s.0, "ms"));
        rows.push(Row::new(format!("{who}: p50, large scale"), l.0, "ms").ratio(s.0));
        rows.push(Row::new(format!("{who}: p99, small scale"), s.1, "ms"));
        rows.push(Row::new(format!("{who}: p99, large scale"), l.1, "ms").ratio(s.1));
    }
    Scenario {
        id: "4",
        title: "Small clinics and a whale, at two scales",
        about: format!(
            "`GET {LIST}` with 4 connections, for the small clinics (rotated) and for the whale \
             alone: small scale {} clinics and {} calls (the whale {}, a small clinic {}); large \
             scale {} clinics and {} calls (the whale {}, a small clinic {}), generated with \
             COPY in {:.0} s. Ratio: large scale to small (target: p99 ≤ 1.5).",
            small.clinics(),
            small.calls(),
            small.whale_calls(),
            small.small_clinic_calls(),
            large.clinics(),
            large.calls(),
            large.whale_calls(),
            large.small_clinic_calls(),
            generated_in.as_secs_f64(),
        ),
        rows,
        output: None,
    }
}

/// Scenarios 1 and 2: pgbench's bare page and tenant transaction, and the API, at 16 and 64
/// connections, interleaved.
async fn ceiling(b: &mut Bench, server: &Server) -> Result<(Scenario, Scenario), Error> {
    let peer = Server::start_peer(&b.config, Path::new("bench/peer"), &b.t.admin_options()).await?;
    if let Err(why) = &peer {
        eprintln!("[suite] the Express peer is skipped: {why}");
    }
    let org = "'00000000-0000-4000-8000-:c'";
    let page = format!(
        "SELECT {COLUMNS} FROM calls WHERE org_id = {org} ORDER BY started_at DESC, id DESC LIMIT 26;"
    );
    let bare = b.script("bare.sql", &page)?;
    // What the application sends for a user's request (crates/db/src/tenant.rs): `\;` has
    // pgbench send BEGIN and app.enter_tenant as one message, the application's batch.
    let tenant = b.script(
        "tenant.sql",
        &format!(
            "BEGIN \\; SELECT role, status, now() = statement_timestamp() AS fresh \
             FROM app.enter_tenant({org}, '00000000-0000-4000-9000-:c');\n{page}\nCOMMIT;"
        ),
    )?;
    let postmaster = b.postmaster().await?;
    let b = &*b;
    let superuser = b.t.admin_options().get_username().to_owned();
    let tokens = b.rotation()?;
    let compared = match &b.plan.compare {
        Some(binary) => {
            let mut config = b.config.clone();
            config.binary = std::path::absolute(binary)?;
            Some(Server::start(&config).await?)
        }
        None => None,
    };
    let connections = [16_u32, 64];
    let mut best = [[0.0_f64; 5]; 2];
    // CPU seconds per request of each variant (the least of the rounds), for the rows that
    // say where a request's cost goes.
    let mut spent = [[cpu::Spent {
        server: f64::MAX,
        database: f64::MAX,
    }; 5]; 2];
    let seconds = f64::from(b.plan.seconds);
    for round in 1..=b.plan.rounds {
        for (c, &n) in connections.iter().enumerate() {
            b.progress(&format!(
                "ceiling, {n} connections, round {round}/{}",
                b.plan.rounds
            ));
            let options = b.t.admin_options();
            let database = |script: &Path, role: &str| {
                cpu::around(None, postmaster, || {
                    pgbench(&options, role, script, n, b.plan.seconds)
                })
                .map(|(tps, spent)| (tps, tps * seconds, spent))
            };
            let api = |server: &Server| {
                cpu::around(Some(server.pid()), postmaster, || b.wrk(server, &tokens, n))
                    .map(|(load, spent)| (load.per_second(), load.requests as f64, spent))
            };
            let runs = [
                database(&bare, &superuser)?,
                database(&tenant, "voxanne_app")?,
                api(server)?,
                match &peer {
                    Ok(peer) => api(peer)?,
                    Err(_) => (0.0, 0.0, cpu::Spent::default()),
                },
                match &compared {
                    Some(other) => api(other)?,
                    None => (0.0, 0.0, cpu::Spent::default()),
                },
            ];
            for (v, (rate, count, used)) in runs.into_iter().enumerate() {
                best[c][v] = best[c][v].max(rate);
                if count > 0.0 {
                    let least = &mut spent[c][v];
                    least.server = least.server.min(used.server / count);
                    least.database = least.database.min(used.database / count);
                }
            }
        }
    }
    let mut rows = Vec::new();
    for (c, &n) in connections.iter().enumerate() {
        let [bare, tenant, api, express, _] = best[c];
        rows.push(
            Row::new(
                format!("pgbench: the page's SELECT alone, superuser, {n} connections"),
                bare,
                "tx/s",
            )
            .ratio(bare),
        );
        rows.push(
            Row::new(
                format!("Voxanne: GET {LIST}, {n} connections"),
                api,
                "req/s",
            )
            .ratio(bare),
        );
        rows.push(Row::new(
            format!("Voxanne to the tenant transaction in pgbench, {n} connections"),
            api / tenant,
            "×",
        ));
        if peer.is_ok() {
            rows.push(
                Row::new(
                    format!("Express + node-postgres, the same transaction, {n} connections"),
                    express,
                    "req/s",
                )
                .ratio(bare),
            );
            rows.push(Row::new(
                format!("Voxanne to Express, {n} connections"),
                api / express,
                "×",
            ));
        }
    }
    // Where a request's CPU goes (µs, from /proc; the load generators' own not counted).
    for (c, &n) in connections.iter().enumerate() {
        let us = |seconds: f64| seconds * 1e6;
        let [_, tenant, api, express, _] = spent[c];
        rows.push(Row::new(
            format!("CPU per request, {n} connections: database, pgbench's tenant transaction"),
            us(tenant.database),
            "µs",
        ));
        rows.push(
            Row::new(
                format!("CPU per request, {n} connections: database, Voxanne's"),
                us(api.database),
                "µs",
            )
            .ratio(us(tenant.database)),
        );
        rows.push(Row::new(
            format!("CPU per request, {n} connections: server, Voxanne"),
            us(api.server),
            "µs",
        ));
        if peer.is_ok() {
            rows.push(Row::new(
                format!("CPU per request, {n} connections: server, Express"),
                us(express.server),
                "µs",
            ));
        }
    }
    if let Some(binary) = &b.plan.compare {
        let name = binary.display();
        for (c, &n) in connections.iter().enumerate() {
            let us = |seconds: f64| seconds * 1e6;
            let (this, other) = (spent[c][2], spent[c][4]);
            rows.push(
                Row::new(format!("{name}, {n} connections"), best[c][4], "req/s").ratio(best[c][2]),
            );
            rows.push(
                Row::new(
                    format!("{name}: server CPU per request, {n} connections"),
                    us(other.server),
                    "µs",
                )
                .ratio(us(this.server)),
            );
            rows.push(
                Row::new(
                    format!("{name}: database CPU per request, {n} connections"),
                    us(other.database),
                    "µs",
                )
                .ratio(us(this.database)),
            );
        }
    }
    if let Some(other) = compared {
        other.stop()?;
    }
    let peer_note = match &peer {
        Ok(_) => " The peer: Express and node-postgres (`bench/peer`, one Node.js process, a pool \
                   of 10 like Voxanne's) verifying the same token and running the same tenant \
                   transaction (target: Voxanne ≥ 4× it)."
            .to_owned(),
        Err(why) => format!(" The Express peer was skipped: {why}."),
    };
    if let Ok(peer) = peer {
        peer.stop()?;
    }
    let ceiling = Scenario {
        id: "1",
        title: "The list endpoint against the database's ceiling",
        about: format!(
            "wrk rotating {} clinics' tokens on `GET {LIST}`; pgbench running the page's SELECT \
             (the same columns, one of the same clinics at random) as the superuser. Ratio: to \
             the SELECT alone at the same connections (target ≥ 0.4 at 16); and Voxanne to \
             the database-side tenant transaction (target ≥ 0.8).{peer_note}",
            b.plan.rotation
        ),
        rows,
        output: None,
    };
    let [bare, tenant, ..] = best[0];
    let isolation = Scenario {
        id: "2",
        title: "What isolation costs the database",
        about: "pgbench, 16 connections, a random rotated clinic each transaction: the page's \
                SELECT as the superuser, against the tenant transaction every request runs as \
                voxanne_app (BEGIN and app.enter_tenant: the context and the membership check; \
                the page under forced RLS; COMMIT). Target: the tenant transaction ≥ 0.5 of the bare query."
            .into(),
        rows: vec![
            Row::new("bare SELECT, superuser", bare, "tx/s").ratio(bare),
            Row::new("tenant transaction, voxanne_app", tenant, "tx/s").ratio(bare),
        ],
        output: None,
    };
    Ok((ceiling, isolation))
}

/// `--statements`: the list under 16 connections, then pgbench's tenant transaction (the
/// script of scenario 1), each with `pg_stat_statements` reset before it; the statements that
/// took the database's time, per request of the run.
async fn statements(b: &mut Bench, server: &Server) -> Result<(), Error> {
    let tokens = b.rotation()?;
    b.admin
        .execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await?;
    let tenant = b.dir.path().join("tenant.sql");
    for variant in ["Voxanne", "pgbench's tenant transaction"] {
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(&mut b.admin)
            .await?;
        let requests = if variant == "Voxanne" {
            b.wrk(server, &tokens, 16)?.requests as f64
        } else {
            let options = b.t.admin_options();
            pgbench(&options, "voxanne_app", &tenant, 16, b.plan.seconds)?
                * f64::from(b.plan.seconds)
        }
        .max(1.0);
        let rows: Vec<(String, i64, i64, f64, f64)> = sqlx::query_as(
            "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 110), calls, plans,
                    total_exec_time, total_plan_time
               FROM pg_stat_statements
              WHERE userid = 'voxanne_app'::regrole
              ORDER BY total_exec_time + total_plan_time DESC LIMIT 12",
        )
        .fetch_all(&mut b.admin)
        .await?;
        b.progress(&format!(
            "{variant}: statements of {requests:.0} requests (per request: calls, plans, \
             µs executing, µs planning):"
        ));
        for (query, calls, plans, exec, plan) in rows {
            let per = |v: f64| v / requests;
            eprintln!(
                "  {:5.2} {:5.2} {:7.1} {:7.1}  {query}",
                per(calls as f64),
                per(plans as f64),
                per(exec) * 1e3,
                per(plan) * 1e3
            );
        }
    }
    Ok(())
}

/// The clinic whose calendar the booking scenario fills: open around the clock (in UTC), so
/// that every 30-minute slot is bookable.
const BOOKING_CLINIC: u64 = 1;

/// Scenario 5: many bookings of one slot at once (exactly one wins, none fails), and the
/// throughput of bookings of distinct slots against pgbench inserting the same rows.
async fn booking(b: &mut Bench, server: &Server) -> Result<Scenario, Error> {
    let org = dataset::org_id(BOOKING_CLINIC);
    let day = serde_json::json!([["00:00", "24:00"]]);
    let hours: serde_json::Map<String, serde_json::Value> =
        ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
            .into_iter()
            .map(|d| (d.to_owned(), day.clone()))
            .collect();
    sqlx::query(
        "INSERT INTO agent_configurations (org_id, opening_hours, time_zone) VALUES ($1, $2, 'UTC')
         ON CONFLICT (org_id) DO UPDATE SET opening_hours = EXCLUDED.opening_hours, time_zone = 'UTC'",
    )
    .bind(org)
    .bind(serde_json::Value::Object(hours))
    .execute(&mut b.admin)
    .await?;
    let token = b.token(BOOKING_CLINIC)?;

    let racers = if b.plan.smoke { 50 } else { 500 };
    b.progress(&format!("booking: {racers} at one slot"));
    let race = race(&server.base_url, &token, racers).await?;
    let won = race.count(201);
    let server_errors = race.statuses.iter().filter(|s| **s >= 500).count();
    if won != 1 || server_errors > 0 {
        return Err(format!(
            "{racers} bookings of one slot: {won} booked, {server_errors} server errors: {:?}",
            race.statuses
        )
        .into());
    }

    let superuser = b.t.admin_options().get_username().to_owned();
    let insert = b.dir.path().join("book.sql");
    std::fs::write(
        &insert,
        format!(
            "\\set k :k + 1\n\\set s :base + :k * 16 + :client_id\n\
             INSERT INTO appointments (org_id, resource, starts_at, ends_at) VALUES ('{org}', 'default', \
             timestamptz '2060-01-01 00:00:00+00' + :s * interval '30 minutes', \
             timestamptz '2060-01-01 00:00:00+00' + (:s + 1) * interval '30 minutes');\n"
        ),
    )?;
    let mut best = [0.0_f64; 2];
    // Each round books slots no earlier round did: the API from 2031 on, 100,000 slots (5.7
    // years) a round apart; pgbench (16 clients, each its own slots) from 2060 on, ten million
    // slots a round apart.
    let first = chrono::DateTime::parse_from_rfc3339("2031-01-01T00:00:00Z")?.timestamp();
    for round in 1..=b.plan.rounds {
        b.progress(&format!(
            "booking distinct slots, round {round}/{}",
            b.plan.rounds
        ));
        let api = b.load(
            server,
            &Request::BookDistinct {
                first: first + i64::from(round) * 100_000 * 1800,
            },
            std::slice::from_ref(&token),
            16,
        )?;
        best[0] = best[0].max(api.per_second());
        let tps = pgbench_with(
            &b.t.admin_options(),
            &superuser,
            &insert,
            16,
            b.plan.seconds,
            &[
                ("k", "0".into()),
                ("base", (i64::from(round) * 10_000_000).to_string()),
            ],
        )?;
        best[1] = best[1].max(tps);
    }
    Ok(Scenario {
        id: "5",
        title: "Booking",
        about: format!(
            "{racers} `POST /api/v1/appointments` of one slot at once (after a barrier), each on \
             its own connection: exactly one may win and none may fail. Then bookings of \
             distinct slots, wrk with 16 connections, against pgbench inserting the same rows \
             (16 clients, as the superuser: no tenant transaction, no checks). Ratio: to \
             pgbench."
        ),
        rows: vec![
            Row::new("one slot: booked", won as f64, "requests"),
            Row::new(
                "one slot: 409 slot_taken",
                race.count(409) as f64,
                "requests",
            ),
            Row::new(
                "one slot: other answers (429 org_busy, …)",
                (racers - won - race.count(409)) as f64,
                "requests",
            ),
            Row::new("one slot: 5xx", server_errors as f64, "requests"),
            Row::new(
                "one slot: all answered in",
                race.settled.as_secs_f64() * 1000.0,
                "ms",
            ),
            Row::new("pgbench: INSERT of a distinct slot", best[1], "tx/s").ratio(best[1]),
            Row::new(
                "Voxanne: POST /api/v1/appointments, distinct slots",
                best[0],
                "req/s",
            )
            .ratio(best[1]),
        ],
        output: None,
    })
}

struct Race {
    statuses: Vec<u16>,
    settled: Duration,
}

impl Race {
    fn count(&self, status: u16) -> usize {
        self.statuses.iter().filter(|s| **s == status).count()
    }
}

/// `n` bookings of one slot, each on its own connection, sent together after a barrier.
async fn race(base_url: &str, token: &str, n: usize) -> Result<Race, Error> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        // A client each: a connection each, opened before the barrier.
        let client = reqwest::Client::new();
        client.get(format!("{base_url}/healthz")).send().await?;
        let request = client
            .post(format!("{base_url}/api/v1/appointments"))
            .bearer_auth(token)
            .json(&serde_json::json!({
                "starts_at": "2030-06-03T10:00:00Z", "ends_at": "2030-06-03T10:30:00Z"
            }));
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            request.send().await.map(|r| r.status().as_u16())
        });
    }
    barrier.wait().await;
    let started = std::time::Instant::now();
    let mut statuses = Vec::with_capacity(n);
    while let Some(result) = set.join_next().await {
        statuses.push(result??);
    }
    Ok(Race {
        statuses,
        settled: started.elapsed(),
    })
}

/// Scenario 3: the API at 16 connections with RLS forced, against the same server whose
/// role bypasses RLS (restarted with `ALTER ROLE voxanne_app BYPASSRLS`, reverted after).
async fn rls_bypass(
    b: &mut Bench,
    mut server: Server,
    scenarios: &mut Vec<Scenario>,
) -> Result<Server, Error> {
    let tokens = b.rotation()?;
    let mut best = [0.0_f64; 2];
    for round in 1..=b.plan.rounds {
        b.progress(&format!("RLS bypassed, round {round}/{}", b.plan.rounds));
        best[0] = best[0].max(b.wrk(&server, &tokens, 16)?.per_second());
        server.stop()?;
        b.admin.execute("ALTER ROLE voxanne_app BYPASSRLS").await?;
        let bypassing = Server::start(&b.config).await;
        let measured = match bypassing {
            Ok(s) => {
                let load = b.wrk(&s, &tokens, 16);
                s.stop()?;
                load
            }
            Err(e) => Err(e),
        };
        b.admin
            .execute("ALTER ROLE voxanne_app NOBYPASSRLS")
            .await?;
        best[1] = best[1].max(measured?.per_second());
        server = Server::start(&b.config).await?;
    }
    scenarios.push(Scenario {
        id: "3",
        title: "Forced RLS against a role that bypasses it",
        about: format!(
            "wrk, 16 connections, rotating {} clinics, `GET {LIST}`; the same server restarted \
             with its role given BYPASSRLS (the queries and the membership check unchanged: \
             what the policies cost). Ratio: to the bypassing role.",
            b.plan.rotation
        ),
        rows: vec![
            Row::new("RLS bypassed", best[1], "req/s").ratio(best[1]),
            Row::new("RLS forced", best[0], "req/s").ratio(best[1]),
        ],
        output: None,
    });
    Ok(server)
}

/// Scenario 10: what the access log costs the list endpoint. Interleaved rounds of the same
/// server with its records written (a read's records by the access writer, many requests'
/// in one statement), and with the INSERT turned into nothing by a rule (the writer's round
/// trip is still made, and waited for: the rest of the cost is the write). How many records
/// the writer's transactions carried. Then how fast the sealer chains what the rounds wrote.
async fn access_log_cost(b: &mut Bench, server: &Server) -> Result<Scenario, Error> {
    let tokens = b.rotation()?;
    let postmaster = b.postmaster().await?;
    let mut best = [0.0_f64; 2];
    // The least CPU per request of the rounds, with the records and without.
    let mut spent = [cpu::Spent {
        server: f64::MAX,
        database: f64::MAX,
    }; 2];
    let mut least = |slot: usize, (load, used): (Load, cpu::Spent)| {
        let n = load.requests.max(1) as f64;
        spent[slot].server = spent[slot].server.min(used.server / n);
        spent[slot].database = spent[slot].database.min(used.database / n);
        load.per_second()
    };
    let mut shared = (0.0_f64, 0.0_f64);
    for round in 1..=b.plan.rounds {
        b.progress(&format!("access log, round {round}/{}", b.plan.rounds));
        let before = (
            server.metric("voxanne_access_writer_batches_total").await?,
            server.metric("voxanne_access_writer_records_total").await?,
        );
        let load = |b: &Bench| {
            cpu::around(Some(server.pid()), postmaster, || {
                b.wrk(server, &tokens, 16)
            })
        };
        best[0] = best[0].max(least(0, load(b)?));
        shared.0 += server.metric("voxanne_access_writer_batches_total").await? - before.0;
        shared.1 += server.metric("voxanne_access_writer_records_total").await? - before.1;
        b.admin
            .execute(
                "CREATE RULE bench_no_access_log AS ON INSERT TO access_log DO INSTEAD NOTHING",
            )
            .await?;
        let measured = load(b);
        b.admin
            .execute("DROP RULE bench_no_access_log ON access_log")
            .await?;
        best[1] = best[1].max(least(1, measured?));
    }
    b.progress("sealing the access log");
    let unsealed: i64 = sqlx::query_scalar("SELECT count(*) FROM access_log WHERE seq IS NULL")
        .fetch_one(&mut b.admin)
        .await?;
    let sealing = std::time::Instant::now();
    let mut sealed = 0_i64;
    loop {
        let n: i64 = sqlx::query_scalar("SELECT app.seal_access_log(100, 1000)")
            .fetch_one(&mut b.admin)
            .await?;
        if n == 0 {
            break;
        }
        sealed += n;
    }
    let sealed_per_second = sealed as f64 / sealing.elapsed().as_secs_f64().max(1e-9);
    let written_per_second = best[0];
    // CPU per request (µs), with the records against without.
    let cpu_rows = [
        ("database", spent[1].database, spent[0].database),
        ("server", spent[1].server, spent[0].server),
    ]
    .into_iter()
    .flat_map(|(who, without, with)| {
        [("not written", without), ("written", with)].map(|(how, seconds)| {
            Row::new(
                format!("{who} CPU per request, records {how}"),
                seconds * 1e6,
                "µs",
            )
            .ratio(without * 1e6)
        })
    });
    Ok(Scenario {
        id: "10",
        title: "The access log's cost",
        about: format!(
            "wrk, 16 connections, rotating {} clinics, `GET {LIST}` (one access record per \
             page, naming its contacts, written by the access writer with other requests' \
             before the page is answered), interleaved with the same server whose record \
             INSERT a rule turns into nothing (the writer's round trip is still made and \
             waited for). Target: with the records ≥ 0.9× without. The records per writing \
             transaction are the rounds' mean, from the server's `/metrics`. Then the \
             sealer (`app.seal_access_log(100, 1000)` until none is left) over the {unsealed} \
             records the rounds wrote: it must outpace the writers.",
            b.plan.rotation
        ),
        rows: vec![
            Row::new("records not written", best[1], "req/s").ratio(best[1]),
            Row::new("records written", best[0], "req/s").ratio(best[1]),
        ]
        .into_iter()
        .chain(cpu_rows)
        .chain([
            Row::new(
                "records per writing transaction",
                shared.1 / shared.0.max(1.0),
                "records",
            ),
            Row::new("sealed", sealed_per_second, "records/s").ratio(written_per_second),
        ])
        .collect(),
        output: None,
    })
}

/// One of the single benchmarks, run as a child; its table becomes the scenario's output.
fn child_scenario(
    bin_dir: &Path,
    (id, title): (&'static str, &'static str),
    about: &str,
    bin: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Scenario, Error> {
    eprintln!("[suite] {bin} {}", args.join(" "));
    let output = std::process::Command::new(bin_dir.join(bin))
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("running {bin}: {e}"))?;
    let text = voxanne_bench::stdout_of(bin, &output)?;
    Ok(Scenario {
        id,
        title,
        about: about.into(),
        rows: Vec::new(),
        output: Some(text),
    })
}

/// The checked-out commit, `-dirty` when the tree has changes; `unknown` without git.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(head) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{head}-dirty")
        }
        Some(head) => head,
        None => "unknown".into(),
    }
}
