//! Test support. One embedded PostgreSQL cluster per test process (in a temp dir, stopped by a
//! watchdog when the process exits), one migrated template database, and for every test a
//! fresh database created from the template: no shared state between tests. On demand, a
//! pgbouncer in transaction mode in front of the cluster (`pgbouncer.rs`). A loopback fake of
//! Google's and Microsoft's OAuth and calendar APIs (`fake_calendar.rs`).

pub mod fake_calendar;
mod pgbouncer;

pub use pgbouncer::{Pgbouncer, SERVER_POOL_SIZE};

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokio::sync::OnceCell;
use voxanne_db::embedded::{ClusterOptions, EmbeddedCluster, ADMIN_ROLE};
use voxanne_db::migrate::APP_ROLE;
use voxanne_db::{Db, Pooler};

const TEMPLATE: &str = "voxanne_template";

struct Cluster {
    /// The database server the tests connect to: the only one, or Citus' coordinator.
    cluster: EmbeddedCluster,
    /// Citus mode: the two workers beside the coordinator.
    workers: Vec<EmbeddedCluster>,
    _dir: PathBuf,
}

/// Whether this test process runs against Citus (`VOXANNE_TEST_CITUS=1`): a coordinator and
/// two workers, every database distributed by clinic (docs/SCALING.md).
pub fn citus_mode() -> bool {
    std::env::var("VOXANNE_TEST_CITUS").is_ok_and(|v| v == "1")
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let citus = citus_mode();
        if citus && !voxanne_db::embedded::citus_available() {
            panic!(
                "VOXANNE_TEST_CITUS=1, but the Citus extension is not installed for this \
                 PostgreSQL (build it: docs/SCALING.md)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("voxanne-test-")
            .tempdir()
            .expect("a temp dir for the test cluster")
            .keep();
        // The cluster may run as another OS account (when we are root): let it in.
        set_mode(&dir, 0o755);
        let options = ClusterOptions {
            ephemeral: true,
            citus,
        };
        let start = |path: &Path| {
            let node = EmbeddedCluster::start(path, options)
                .unwrap_or_else(|e| panic!("starting the test PostgreSQL cluster: {e}"));
            if node.started_here() {
                spawn_watchdog(node.pg_dir(), path);
            }
            node
        };
        if !citus {
            return Cluster {
                cluster: start(&dir),
                workers: Vec::new(),
                _dir: dir,
            };
        }
        let cluster = start(&dir.join("coordinator"));
        let workers = ["worker-1", "worker-2"]
            .iter()
            .map(|name| start(&dir.join(name)))
            .collect();
        Cluster {
            cluster,
            workers,
            _dir: dir,
        }
    })
}

impl Cluster {
    /// Every server: the coordinator first.
    fn nodes(&self) -> impl Iterator<Item = &EmbeddedCluster> {
        std::iter::once(&self.cluster).chain(&self.workers)
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .expect("setting temp dir permissions");
}

/// Stops the cluster (fast shutdown) and removes its files once this process is gone.
// The watchdog outlives this process by design, so it is never waited for.
#[allow(clippy::zombie_processes)]
fn spawn_watchdog(pg_dir: &Path, dir: &Path) {
    let script = format!(
        "while [ -d /proc/{pid} ]; do sleep 0.5; done; \
         kill -INT \"$(head -n 1 '{pg}/postmaster.pid')\" 2>/dev/null; \
         n=0; while [ -f '{pg}/postmaster.pid' ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done; \
         rm -rf '{dir}'",
        pid = std::process::id(),
        pg = pg_dir.display(),
        dir = dir.display(),
    );
    std::process::Command::new("sh")
        .args(["-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning the test cluster watchdog");
}

async fn template() {
    static READY: OnceCell<()> = OnceCell::const_new();
    READY
        .get_or_init(|| async {
            let c = cluster();
            for node in c.nodes() {
                let mut admin =
                    PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, "postgres"))
                        .await
                        .expect("connecting to the test cluster");
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)").as_str())
                    .await
                    .expect("dropping an old template");
                admin
                    .execute(format!("CREATE DATABASE {TEMPLATE}").as_str())
                    .await
                    .expect("creating the template database");
                if citus_mode() {
                    let mut db =
                        PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, TEMPLATE))
                            .await
                            .expect("connecting to the template database");
                    db.execute("CREATE EXTENSION citus")
                        .await
                        .expect("CREATE EXTENSION citus");
                    // Where Citus reaches the node itself (shard splits and moves): its
                    // socket directory, not the default `localhost`, where nothing listens.
                    db.execute(
                        format!(
                            "ALTER SYSTEM SET citus.local_hostname = '{}'",
                            node.socket().0.display()
                        )
                        .as_str(),
                    )
                    .await
                    .expect("setting citus.local_hostname");
                    db.execute("SELECT pg_reload_conf()")
                        .await
                        .expect("reloading the configuration");
                }
            }
            let admin = c.cluster.connect_options(ADMIN_ROLE, TEMPLATE);
            if citus_mode() {
                add_workers(c, TEMPLATE).await;
                voxanne_db::migrate::migrate_distributed(&admin, None, |_| {})
                    .await
                    .expect("migrating and distributing the template database");
                // Citus keeps a maintenance connection to each database that has the
                // extension; a template must have none to be copied.
                for node in c.nodes() {
                    let mut db =
                        PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, "postgres"))
                            .await
                            .expect("connecting to the test cluster");
                    db.execute(
                        format!(
                            "ALTER DATABASE {TEMPLATE} WITH ALLOW_CONNECTIONS false;
                             SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                              WHERE datname = '{TEMPLATE}'"
                        )
                        .as_str(),
                    )
                    .await
                    .expect("closing the template");
                }
            } else {
                voxanne_db::migrate::migrate(&admin, None)
                    .await
                    .expect("migrating the template database");
            }
        })
        .await;
}

/// Citus mode: the coordinator knows itself and its two workers, in `database` (the
/// template's metadata goes with every database copied from it).
async fn add_workers(c: &Cluster, database: &str) {
    let mut coordinator =
        PgConnection::connect_with(&c.cluster.connect_options(ADMIN_ROLE, database))
            .await
            .expect("connecting to the coordinator");
    let host = |node: &EmbeddedCluster| node.socket().0.display().to_string();
    sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
        .bind(host(&c.cluster))
        .bind(i32::from(c.cluster.socket().1))
        .execute(&mut coordinator)
        .await
        .expect("citus_set_coordinator_host");
    for worker in &c.workers {
        sqlx::query("SELECT citus_add_node($1, $2)")
            .bind(host(worker))
            .bind(i32::from(worker.socket().1))
            .execute(&mut coordinator)
            .await
            .expect("citus_add_node");
    }
}

/// The tests' encryption keys: `test2` is current, `test1` is an older key still read (as
/// after a rotation).
pub const ENCRYPTION_KEY: &str = "test2:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
pub const ENCRYPTION_KEYS_OLD: &str = "test1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

/// The keyring of [`ENCRYPTION_KEY`] and [`ENCRYPTION_KEYS_OLD`]: what every test pool seals
/// and opens patient text with.
pub fn keyring() -> std::sync::Arc<voxanne_db::crypto::Keyring> {
    static KEYRING: std::sync::OnceLock<std::sync::Arc<voxanne_db::crypto::Keyring>> =
        std::sync::OnceLock::new();
    KEYRING
        .get_or_init(|| {
            std::sync::Arc::new(
                voxanne_db::crypto::Keyring::from_config(
                    &secrecy::SecretString::from(ENCRYPTION_KEY),
                    Some(&secrecy::SecretString::from(ENCRYPTION_KEYS_OLD)),
                )
                .expect("the test keyring"),
            )
        })
        .clone()
}

/// The audio of a recording object as the server stores it (`voxanne_db::envelope`),
/// `org`'s at `key`, opened with [`keyring`]. Panics unless the object is encrypted and opens
/// for that place: a test that reads stored recordings also checks they are encrypted.
pub fn open_recording(org: voxanne_domain::OrgId, key: &str, object: &[u8]) -> Vec<u8> {
    let header = voxanne_db::envelope::Header::of_object(object).expect("a recording's header");
    assert!(
        header.is_some(),
        "the recording {key} is stored unencrypted"
    );
    voxanne_db::envelope::open_object(&keyring(), org, key, object)
        .expect("the recording opens for its clinic and key")
}

/// `row` of `table` as the superuser reads it (`to_jsonb(t)`), with its encrypted patient
/// text (`voxanne_db::encrypted::FIELDS`) opened with [`keyring`]: the text the clinic wrote,
/// for assertions and snapshots. A value that does not open reads `<does not open>`.
pub fn open_patient_text(table: &str, row: &mut serde_json::Value) {
    let uuid = |key: &str| {
        row.get(key)
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<uuid::Uuid>().ok())
    };
    let (Some(org), Some(id)) = (uuid("org_id"), uuid("id")) else {
        return;
    };
    let keyring = keyring();
    for field in voxanne_db::encrypted::FIELDS
        .iter()
        .filter(|f| f.table == table)
    {
        let Some(value) = row.get_mut(field.column) else {
            continue;
        };
        let Some(stored) = value.as_str().map(voxanne_db::encrypted::json_bytea) else {
            continue;
        };
        let aad = field.aad(voxanne_domain::OrgId::from(org), id);
        let text = stored
            .and_then(|stored| keyring.open_stored(&stored, &aad).ok())
            .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
            .unwrap_or_else(|| "<does not open>".to_owned());
        *value = serde_json::Value::String(text);
    }
}

/// A database of its own for one test, migrated, with an application pool.
pub struct TestDb {
    pub name: String,
    pub db: Db,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = new_database().await;
        let db = Db::connect(app_options(&name), 8)
            .await
            .expect("connecting as the application role")
            .with_keyring(keyring());
        Self { name, db }
    }

    /// A database of its own whose application pool (`db`, 8 connections) goes through the
    /// test process's pgbouncer in transaction mode, configured as the application is behind
    /// such a pooler: its clients share [`SERVER_POOL_SIZE`] server connections.
    pub async fn behind_pgbouncer() -> Self {
        let name = new_database().await;
        let db = Db::connect_via(pooled_app_options(&name), 8, Pooler::Transaction)
            .await
            .unwrap_or_else(|e| panic!("connecting through pgbouncer: {e}\n{}", pgbouncer().log()))
            .with_keyring(keyring());
        Self { name, db }
    }

    /// Another application pool of `max_connections` through pgbouncer, as
    /// [`TestDb::behind_pgbouncer`] configures it.
    pub async fn pooled_db(&self, max_connections: u32) -> Db {
        Db::connect_via(
            pooled_app_options(&self.name),
            max_connections,
            Pooler::Transaction,
        )
        .await
        .expect("connecting through pgbouncer")
        .with_keyring(keyring())
    }

    /// Options to log in as the application role through pgbouncer (sqlx's defaults: add
    /// `Pooler::Transaction.connect_options` for the application's settings).
    pub fn pgbouncer_app_options(&self) -> PgConnectOptions {
        pgbouncer().connect_options(APP_ROLE, &self.name)
    }

    /// Options to log in as the application role, e.g. to run raw SQL the way a bug would.
    pub fn app_options(&self) -> PgConnectOptions {
        app_options(&self.name)
    }

    /// Options to log in as the cluster's superuser: for inspecting, never for the code under test.
    pub fn admin_options(&self) -> PgConnectOptions {
        cluster().cluster.connect_options(ADMIN_ROLE, &self.name)
    }

    pub async fn admin(&self) -> PgConnection {
        PgConnection::connect_with(&self.admin_options())
            .await
            .expect("connecting as admin")
    }

    /// Waits (up to 3 s) until no connection of the application role to this database is
    /// idle inside a transaction; returns how many still are.
    pub async fn idle_in_transaction(&self) -> i64 {
        let mut admin = self.admin().await;
        let mut left = 0;
        for _ in 0..300 {
            left = sqlx::query_scalar!(
                r#"SELECT count(*) AS "n!" FROM pg_stat_activity
                    WHERE datname = current_database() AND usename = 'voxanne_app'
                      AND state LIKE 'idle in transaction%'"#
            )
            .fetch_one(&mut admin)
            .await
            .expect("pg_stat_activity");
            if left == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        left
    }

    pub async fn app_conn(&self) -> PgConnection {
        PgConnection::connect_with(&self.app_options())
            .await
            .expect("connecting as the application role")
    }
}

fn app_options(database: &str) -> PgConnectOptions {
    cluster().cluster.connect_options(APP_ROLE, database)
}

fn pooled_app_options(database: &str) -> PgConnectOptions {
    pgbouncer().connect_options(APP_ROLE, database)
}

/// A new database from the migrated template (in Citus mode, on every node: the coordinator's
/// copy of the metadata names the workers' copies of the shards); its name.
async fn new_database() -> String {
    template().await;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    for node in cluster().nodes() {
        let mut admin = PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, "postgres"))
            .await
            .expect("connecting to the test cluster");
        admin
            .execute(format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}").as_str())
            .await
            .expect("creating the test database");
    }
    name
}

/// The test process's pgbouncer (transaction mode, [`SERVER_POOL_SIZE`] server connections
/// per database) in front of its cluster, started on first use. Blocking on first use.
pub fn pgbouncer() -> &'static Pgbouncer {
    pgbouncer::get(&cluster().cluster)
}

/// Puts at least one row in every tenant table that demo seeding leaves empty, inside the
/// org's own tenant transaction: with `voxanne_db::demo::seed`, every tenant table has rows.
pub async fn fill_remaining_tables(tx: &mut voxanne_db::TenantTx) {
    let org = tx.org().as_uuid();
    // A calendar whose token is encrypted as the server stores one.
    let connection = uuid::Uuid::new_v4();
    let token = keyring()
        .seal(
            b"ya29.fill-token",
            &voxanne_db::calendar_connections::token_aad("access_token_enc", tx.org(), connection),
        )
        .expect("encrypting a token");
    sqlx::query(
        "INSERT INTO calendar_connections (org_id, id, provider, account_email, access_token_enc, key_id)
         VALUES ($1, $2, 'google', 'desk@clinic.example', $3, $4) RETURNING 1",
    )
    .bind(org)
    .bind(connection)
    .bind(token.bytes)
    .bind(token.key_id)
    .fetch_all(tx.conn())
    .await
    .expect("a calendar connection");
    let statements = [
        "INSERT INTO appointment_holds (org_id, starts_at, ends_at, expires_at)
         VALUES ($1, now() + interval '3 days', now() + interval '3 days 30 minutes', now() + interval '5 minutes')",
        "INSERT INTO access_log (org_id, actor_kind, subject_kind, action, via)
         VALUES ($1, 'system', 'calls', 'list', 'test kit')",
        "INSERT INTO calendar_busy (org_id, connection_id, starts_at, ends_at)
         SELECT org_id, id, now() + interval '4 days', now() + interval '4 days 1 hour'
           FROM calendar_connections WHERE org_id = $1 LIMIT 1",
        "INSERT INTO calendar_event_writes (org_id, appointment_id, connection_id)
         SELECT a.org_id, a.id, c.id FROM appointments a JOIN calendar_connections c USING (org_id)
          WHERE a.org_id = $1 LIMIT 1",
        "INSERT INTO invitations (org_id, email, role, secret_hash, invited_by, expires_at)
         SELECT org_id, 'new.hire@clinic.example', 'staff', sha256('secret'), user_id,
                now() + interval '7 days'
           FROM organization_members WHERE org_id = $1 LIMIT 1",
        "INSERT INTO call_transcript_lines (org_id, call_id, role, text)
         SELECT org_id, id, 'user', '\\x00'::bytea || convert_to('Hello, is that the clinic?', 'UTF8')
           FROM calls WHERE org_id = $1 LIMIT 1",
        "INSERT INTO locations (org_id, name) VALUES ($1, 'Main street')",
        "INSERT INTO practitioners (org_id, name, resource, location_id)
         SELECT org_id, 'Dr Fill', 'dr-fill', id FROM locations WHERE org_id = $1 LIMIT 1",
        "INSERT INTO services (org_id, name, duration_minutes) VALUES ($1, 'Check-up', 30)",
        "INSERT INTO practitioner_services (org_id, practitioner_id, service_id)
         SELECT p.org_id, p.id, s.id FROM practitioners p JOIN services s USING (org_id)
          WHERE p.org_id = $1 LIMIT 1",
        "INSERT INTO closures (org_id, practitioner_id, starts_on, ends_on, reason)
         SELECT org_id, id, DATE '2031-12-24', DATE '2031-12-26', 'Holidays'
           FROM practitioners WHERE org_id = $1 LIMIT 1",
        "INSERT INTO integration_settings (org_id, provider, config) VALUES ($1, 'twilio', '{}')",
        "INSERT INTO calendar_oauth_states (org_id, user_id, provider, verifier_enc, key_id, browser_hash, expires_at)
         SELECT org_id, user_id, 'google', '\\x00', 'k1', sha256('cookie'), now() + interval '10 minutes'
           FROM organization_members WHERE org_id = $1 LIMIT 1",
        "INSERT INTO campaigns (org_id, name) VALUES ($1, 'Flu shots')",
        "INSERT INTO sms_confirmation_logs (org_id, appointment_id, to_number, body)
         SELECT org_id, id, '+14155550999', '\\x00'::bytea || convert_to('See you soon', 'UTF8')
           FROM appointments WHERE org_id = $1 LIMIT 1",
        "INSERT INTO dnc_list (org_id, phone) VALUES ($1, '+14155550998')",
        "INSERT INTO messaging_settings (org_id, help_text) VALUES ($1, 'Call us on +14155550100.')",
        "INSERT INTO reminder_rules (org_id, minutes_before, service_id)
         SELECT org_id, 1440, id FROM services WHERE org_id = $1 LIMIT 1",
        "INSERT INTO consent_records (org_id, phone, channel, granted, source, detail)
         VALUES ($1, '+14155550998', 'sms', false, 'sms_keyword', 'STOP')",
        "INSERT INTO inbox_messages (org_id, channel, kind, from_number, body, provider_message_id,
                                     appointment_id, reply_to_sms_id)
         SELECT org_id, 'sms', 'reschedule_request', to_number, '\\x0052', 'SMfill', appointment_id, id
           FROM sms_confirmation_logs WHERE org_id = $1 LIMIT 1",
        "INSERT INTO leads (org_id, phone, name, time_zone, consent_source)
         VALUES ($1, '+14155550997', 'Lee Fill', 'America/Chicago', 'web form')",
        "INSERT INTO campaign_targets (org_id, campaign_id, lead_id, phone, name, time_zones)
         SELECT l.org_id, c.id, l.id, l.phone, l.name, ARRAY[l.time_zone]
           FROM leads l JOIN campaigns c USING (org_id) WHERE l.org_id = $1 LIMIT 1",
        "INSERT INTO cold_call_logs (org_id, target_id, campaign_id, lead_id, attempt, to_number,
                                     from_number, provider_call_id, status, outcome, ended_reason)
         SELECT org_id, id, campaign_id, lead_id, 1, phone, '+14155550100', 'vapi-fill', 'ended',
                'voicemail', 'voicemail'
           FROM campaign_targets WHERE org_id = $1 LIMIT 1",
        "INSERT INTO knowledge_base_documents (org_id, title, body) VALUES ($1, 'Parking', 'Free parking behind the clinic.')",
        "INSERT INTO knowledge_base_chunks (org_id, document_id, ordinal, content)
         SELECT org_id, id, 0, body FROM knowledge_base_documents WHERE org_id = $1 LIMIT 1",
        "INSERT INTO credit_transactions (org_id, amount_cents, reason) VALUES ($1, 5000, 'top-up')",
        "INSERT INTO failed_recording_uploads (org_id, call_id, attempts, last_error)
         SELECT org_id, id, 1, 'HTTP 500' FROM calls WHERE org_id = $1 LIMIT 1",
        "INSERT INTO security_events (org_id, kind) VALUES ($1, 'test')",
        "INSERT INTO idempotency_keys (org_id, key, request_hash, status, response)
         VALUES ($1, 'fixture-key', 'fixture-hash', 201, '{}')",
        // The oldest call: the newest (first listed) stays free for tests to hold.
        "INSERT INTO legal_holds (org_id, call_id, reason)
         SELECT org_id, id, 'Pending claim' FROM calls WHERE org_id = $1
          ORDER BY started_at, id LIMIT 1",
        "INSERT INTO retention_purges (org_id, kind, cutoff, items, subject_ids)
         VALUES ($1, 'sms_body', now() - interval '30 days', 1, ARRAY[gen_random_uuid()])",
    ];
    for sql in statements {
        // RETURNING: on Citus an INSERT … SELECT computed on the coordinator reaches the
        // shards as an INSERT rather than a COPY, which row level security refuses.
        let sql = format!("{sql} RETURNING 1");
        // Dynamic: the list above, run in turn with the same parameter.
        sqlx::query(&sql)
            .bind(org)
            .execute(tx.conn())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Only the access log's purge writes checkpoints, so the superuser writes this one (in a
    // connection of its own, committed at once): the chain's start, which changes nothing of
    // what the chain verifies.
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(tx.conn())
        .await
        .expect("database");
    let mut admin =
        PgConnection::connect_with(&cluster().cluster.connect_options(ADMIN_ROLE, &database))
            .await
            .expect("connecting as admin");
    sqlx::query(
        "INSERT INTO access_log_checkpoints (org_id, through_seq, hash)
         VALUES ($1, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000')
         ON CONFLICT DO NOTHING",
    )
    .bind(org)
    .execute(&mut admin)
    .await
    .expect("a checkpoint");
}

/// Every table in `public` that holds tenant data, from the catalog: the tables with an
/// `org_id` column, and `organizations` itself. Paired with the name of its tenant column.
pub async fn tenant_tables(admin: &mut PgConnection) -> Vec<(String, String)> {
    sqlx::query!(
        r#"SELECT c.relname::text AS "table!",
                  CASE WHEN c.relname = 'organizations' THEN 'id' ELSE 'org_id' END AS "column!"
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
              AND (c.relname = 'organizations' OR EXISTS (
                    SELECT 1 FROM pg_attribute a
                     WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped))
            ORDER BY 1"#
    )
    .fetch_all(admin)
    .await
    .expect("listing tenant tables")
    .into_iter()
    .map(|row| (row.table, row.column))
    .collect()
}

/// A fresh, empty database (not migrated) on the test cluster, and the superuser URL that
/// reaches it over the Unix socket: for testing what `DATABASE_URL` does. In Citus mode it is
/// what an operator prepares before the first `voxanne migrate` (docs/SCALING.md): the
/// database on every node with the extension, the coordinator knowing its workers; the
/// migration then distributes it.
pub async fn empty_database_url() -> (String, PgConnectOptions) {
    let (url, options) = empty_single_server_database_url().await;
    if citus_mode() {
        prepare_for_citus(options.get_database().expect("a database name")).await;
    }
    (url, options)
}

/// Citus mode: makes the coordinator's database `name` ready to distribute, as an operator
/// would (docs/SCALING.md): the same database on each worker, the extension on all three, the
/// workers added. `voxanne migrate` then distributes it, tables and rows.
pub async fn prepare_for_citus(name: &str) {
    let c = cluster();
    assert!(citus_mode(), "prepare_for_citus needs the Citus mode");
    for node in c.nodes() {
        if !std::ptr::eq(node, &c.cluster) {
            let mut admin =
                PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, "postgres"))
                    .await
                    .expect("connecting to a worker");
            admin
                .execute(format!("CREATE DATABASE {name}").as_str())
                .await
                .expect("creating the database on a worker");
        }
        let mut db = PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, name))
            .await
            .expect("connecting to the database");
        db.execute("CREATE EXTENSION IF NOT EXISTS citus")
            .await
            .expect("CREATE EXTENSION citus");
    }
    add_workers(c, name).await;
}

/// A fresh, empty database on the test cluster's server alone (Citus' coordinator in Citus
/// mode), without the Citus extension: a single server's database, and its superuser URL.
pub async fn empty_single_server_database_url() -> (String, PgConnectOptions) {
    let c = cluster();
    let name = format!("ext_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect_with(&c.cluster.connect_options(ADMIN_ROLE, "postgres"))
        .await
        .expect("connecting to the test cluster");
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("creating an empty database");
    let options = c.cluster.connect_options(ADMIN_ROLE, &name);
    let socket = options
        .get_socket()
        .expect("socket dir")
        .display()
        .to_string();
    let url = format!(
        "postgres://{ADMIN_ROLE}@localhost/{name}?host={socket}&port={}",
        options.get_port()
    );
    (url, options)
}
