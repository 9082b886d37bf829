//! The preconditions of distributing the schema by clinic (crates/schema/src/distribute.rs),
//! read from the catalog: they need no Citus, so they are checked on every run.

use sqlx::{Connection, Executor};
use voxanne_db::distribute::{preconditions, Violation};
use voxanne_db::DbError;
use voxanne_domain::{OrgId, PhoneNumber, UserId};
use voxanne_testkit::TestDb;

fn named(violations: &[Violation]) -> Vec<(String, String)> {
    violations
        .iter()
        .map(|v| (v.table.clone(), v.constraint.clone()))
        .collect()
}

#[tokio::test]
async fn the_schema_breaks_no_precondition_of_distribution() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let found = preconditions(&mut admin).await.expect("preconditions");
    assert!(found.is_empty(), "{found:#?}");
}

#[tokio::test]
async fn every_kind_of_defect_is_named_with_its_table_and_constraint() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    admin
        .execute(
            "CREATE TABLE public.fx_defects (
                 org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                 id         uuid NOT NULL,
                 code       text CONSTRAINT fx_code_key UNIQUE,
                 contact_id uuid,
                 other_id   uuid,
                 during     tstzrange,
                 PRIMARY KEY (org_id, id),
                 CONSTRAINT fx_set_null FOREIGN KEY (org_id, contact_id)
                     REFERENCES contacts (org_id, id) ON DELETE SET NULL (contact_id),
                 CONSTRAINT fx_unpaired FOREIGN KEY (other_id, contact_id)
                     REFERENCES contacts (org_id, id),
                 CONSTRAINT fx_overlap EXCLUDE USING gist (during WITH &&)
             );
             CREATE TABLE public.fx_global (
                 id     int PRIMARY KEY,
                 org    uuid,
                 person uuid,
                 CONSTRAINT fx_global_refers FOREIGN KEY (org, person) REFERENCES contacts (org_id, id)
             );
             CREATE TABLE public.fx_clean (
                 org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                 id     uuid NOT NULL,
                 contact_id uuid,
                 during tstzrange,
                 PRIMARY KEY (org_id, id),
                 FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE,
                 EXCLUDE USING gist (org_id WITH =, during WITH &&)
             );",
        )
        .await
        .expect("planting the defects");
    let found = preconditions(&mut admin).await.expect("preconditions");
    let found = named(&found);
    let expected: Vec<(String, String)> = [
        ("public.fx_defects", "fx_code_key"),
        ("public.fx_defects", "fx_overlap"),
        ("public.fx_defects", "fx_set_null"),
        ("public.fx_defects", "fx_unpaired"),
        ("public.fx_global", "fx_global_refers"),
    ]
    .iter()
    .map(|(t, c)| (t.to_string(), c.to_string()))
    .collect();
    assert_eq!(found, expected);
}

/// A coordinator and two workers of the test's own, with the Citus extension in `database`
/// on each and the workers added; `None` (the test says it skipped) without Citus.
struct Citus {
    nodes: Vec<voxanne_db::embedded::EmbeddedCluster>,
    _dir: tempfile::TempDir,
}

impl Citus {
    async fn start(database: &str) -> Option<Self> {
        use std::os::unix::fs::PermissionsExt;
        use voxanne_db::embedded::{citus_available, ClusterOptions, EmbeddedCluster, ADMIN_ROLE};
        if !citus_available() {
            eprintln!("skipped: the Citus extension is not installed for this PostgreSQL");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("voxanne-citus-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let mut nodes = Vec::new();
        for name in ["coordinator", "worker-1", "worker-2"] {
            let path = dir.path().join(name);
            let node = tokio::task::spawn_blocking(move || {
                EmbeddedCluster::start(
                    &path,
                    ClusterOptions {
                        ephemeral: true,
                        citus: true,
                    },
                )
            })
            .await
            .expect("join")
            .expect("starting a Citus node");
            let mut admin =
                sqlx::PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, "postgres"))
                    .await
                    .expect("connecting to a node");
            admin
                .execute(format!("CREATE DATABASE {database}").as_str())
                .await
                .expect("CREATE DATABASE");
            let mut db =
                sqlx::PgConnection::connect_with(&node.connect_options(ADMIN_ROLE, database))
                    .await
                    .expect("connecting to the node's database");
            db.execute("CREATE EXTENSION citus")
                .await
                .expect("CREATE EXTENSION citus");
            nodes.push(node);
        }
        let mut coordinator =
            sqlx::PgConnection::connect_with(&nodes[0].connect_options(ADMIN_ROLE, database))
                .await
                .expect("connecting to the coordinator");
        let host = |node: &EmbeddedCluster| node.socket().0.display().to_string();
        sqlx::query("SELECT citus_set_coordinator_host($1, 5432)")
            .bind(host(&nodes[0]))
            .execute(&mut coordinator)
            .await
            .expect("citus_set_coordinator_host");
        for worker in &nodes[1..] {
            sqlx::query("SELECT citus_add_node($1, 5432)")
                .bind(host(worker))
                .execute(&mut coordinator)
                .await
                .expect("citus_add_node");
        }
        Some(Self { nodes, _dir: dir })
    }

    fn admin(&self, node: usize, database: &str) -> sqlx::postgres::PgConnectOptions {
        self.nodes[node].connect_options(voxanne_db::embedded::ADMIN_ROLE, database)
    }
}

impl Drop for Citus {
    fn drop(&mut self) {
        for node in &self.nodes {
            let _ = node.stop();
        }
    }
}

#[tokio::test]
async fn on_citus_the_schema_distributes_by_clinic_and_a_clinic_reads_only_its_rows_from_one_worker(
) {
    use sqlx::Row;
    use voxanne_db::distribute::Placement;
    let Some(citus) = Citus::start("voxanne").await else {
        return;
    };
    let admin = citus.admin(0, "voxanne");
    // Every tenant table distributed, the global ones as reference tables; a rerun changes
    // nothing.
    let mut conn = sqlx::PgConnection::connect_with(&admin)
        .await
        .expect("admin");
    let first = voxanne_db::migrate::migrate_distributed(&admin, None, |_| {})
        .await
        .expect("distributing");
    assert!(first
        .tables
        .iter()
        .all(|t| t.changed || t.placement == Placement::Reference));
    assert_eq!(first.workers, 2);
    let tenant_tables = voxanne_testkit::tenant_tables(&mut conn).await;
    let distributed: Vec<String> = first
        .tables
        .iter()
        .filter(|t| t.placement == Placement::Distributed)
        .map(|t| t.table.trim_start_matches("public.").to_owned())
        .filter(|t| !t.starts_with("app."))
        .collect();
    let mut expected: Vec<String> = tenant_tables.into_iter().map(|(t, _)| t).collect();
    expected.sort();
    let mut distributed_sorted = distributed.clone();
    distributed_sorted.sort();
    assert_eq!(
        distributed_sorted, expected,
        "every tenant table is distributed"
    );
    let again = voxanne_db::migrate::migrate_distributed(&admin, None, |_| {})
        .await
        .expect("distributing again");
    assert!(again.tables.iter().all(|t| !t.changed), "{again:#?}");

    // Two clinics with a contact each.
    conn.execute(
        "INSERT INTO organizations (id, name) VALUES
             ('00000000-0000-4000-8000-00000000000a', 'A'), ('00000000-0000-4000-8000-00000000000b', 'B');
         INSERT INTO contacts (org_id, name, phone)
             SELECT id, 'Patient of ' || name, CASE name WHEN 'A' THEN '+14155550101' ELSE '+14155550102' END
               FROM organizations",
    )
    .await
    .expect("seeding");
    // The application's tenant transaction, as voxanne_app: only clinic A's row, from one task.
    let app = citus.nodes[0].connect_options(voxanne_db::migrate::APP_ROLE, "voxanne");
    let db = voxanne_db::Db::connect(app, 2).await.expect("app pool");
    assert!(db.distributed());
    let mut app_conn = sqlx::PgConnection::connect_with(
        &citus.nodes[0].connect_options(voxanne_db::migrate::APP_ROLE, "voxanne"),
    )
    .await
    .expect("app connection");
    app_conn
        .execute("BEGIN; SET LOCAL citus.propagate_set_commands = 'local'; SET LOCAL app.org_id = '00000000-0000-4000-8000-00000000000a'")
        .await
        .expect("context");
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM contacts ORDER BY name")
        .fetch_all(&mut app_conn)
        .await
        .expect("reading contacts");
    assert_eq!(names, ["Patient of A"]);
    let plan: Vec<String> = sqlx::query(
        "EXPLAIN SELECT name FROM contacts WHERE org_id = '00000000-0000-4000-8000-00000000000a'",
    )
    .fetch_all(&mut app_conn)
    .await
    .expect("explain")
    .iter()
    .map(|row| row.get::<String, _>(0))
    .collect();
    assert!(
        plan.iter().any(|line| line.trim() == "Task Count: 1"),
        "routed to one shard: {plan:#?}"
    );
    app_conn.execute("COMMIT").await.expect("commit");

    // All of a clinic's shards, in every distributed table, live on one worker.
    let nodes: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT n.nodename FROM pg_dist_partition p
           JOIN pg_dist_placement pl
             ON pl.shardid = get_shard_id_for_distribution_column(p.logicalrelid,
                                 '00000000-0000-4000-8000-00000000000a'::uuid)
           JOIN pg_dist_node n ON n.groupid = pl.groupid
          WHERE p.partmethod = 'h'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("where clinic A lives");
    assert_eq!(nodes.len(), 1, "clinic A's shards are on {nodes:?}");

    // Straight to the worker that holds clinic B's contacts, as the application role: its
    // shard refuses every row to clinic A's context (and gives B's to B's, so the way in works).
    let (b_node, b_shard): (String, String) = sqlx::query_as(
        "SELECT n.nodename, format('contacts_%s', s.shardid) FROM pg_dist_shard s
           JOIN pg_dist_placement pl ON pl.shardid = s.shardid
           JOIN pg_dist_node n ON n.groupid = pl.groupid
          WHERE s.shardid = get_shard_id_for_distribution_column('contacts',
                                '00000000-0000-4000-8000-00000000000b'::uuid)",
    )
    .fetch_one(&mut conn)
    .await
    .expect("where clinic B's contacts live");
    let worker = citus
        .nodes
        .iter()
        .skip(1)
        .find(|w| w.socket().0.display().to_string() == b_node)
        .expect("a worker holds them");
    let mut on_worker = sqlx::PgConnection::connect_with(
        &worker.connect_options(voxanne_db::migrate::APP_ROLE, "voxanne"),
    )
    .await
    .expect("the application role on the worker");
    let mut seen = Vec::new();
    for org in [
        "00000000-0000-4000-8000-00000000000a",
        "00000000-0000-4000-8000-00000000000b",
    ] {
        let names: Vec<String> = sqlx::raw_sql(&format!(
            "BEGIN; SET LOCAL app.org_id = '{org}'; SELECT name FROM {b_shard}; COMMIT"
        ))
        .fetch_all(&mut on_worker)
        .await
        .expect("reading the shard on the worker")
        .iter()
        .map(|row| row.get::<String, _>(0))
        .collect();
        seen.push(names);
    }
    assert_eq!(
        seen,
        [Vec::<String>::new(), vec!["Patient of B".to_owned()]],
        "on the worker, A's context reads nothing of B's shard; B's reads B's row"
    );

    // The application's own path: a member's tenant transaction (context by SET LOCAL, passed
    // on to the workers, then the membership check), the number directory, and the cross-org
    // lookup by number.
    let (a, b) = (
        OrgId::from_uuid(
            "00000000-0000-4000-8000-00000000000a"
                .parse()
                .expect("uuid"),
        ),
        OrgId::from_uuid(
            "00000000-0000-4000-8000-00000000000b"
                .parse()
                .expect("uuid"),
        ),
    );
    let (user_a, user_b) = (UserId::new_random(), UserId::new_random());
    conn.execute(
        format!(
            "INSERT INTO organization_members (org_id, user_id, role)
             VALUES ('{a}', '{user_a}', 'owner'), ('{b}', '{user_b}', 'owner')"
        )
        .as_str(),
    )
    .await
    .expect("members");
    let number = PhoneNumber::parse("+14155550142").expect("number");
    let mut tx = db.tenant(a, user_a).await.expect("A's tenant transaction");
    tx.add_phone_number(&number, Some("Front desk"))
        .await
        .expect("A adds the number");
    tx.commit().await.expect("commit");
    let mut tx = db.tenant(b, user_b).await.expect("B's tenant transaction");
    match tx.add_phone_number(&number, None).await {
        Err(DbError::Constraint { constraint }) => {
            assert_eq!(constraint, voxanne_db::phone_numbers::NUMBER_TAKEN)
        }
        other => panic!("B took A's number: {other:?}"),
    }
    drop(tx);
    assert_eq!(
        voxanne_db::system::org_for_number(&db, &number)
            .await
            .expect("org_for_number"),
        Some((a, true))
    );
    // Not a member of B: refused on the distributed database as on one server.
    assert!(matches!(
        db.tenant(b, user_a).await,
        Err(voxanne_db::TenantError::NotMember)
    ));
    db.close().await;
}
