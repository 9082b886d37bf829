//! The cross-tenant attack matrix, generated from the OpenAPI document: a route added later is
//! attacked without editing this file.
//!
//! For every operation on a path with a uuid parameter, clinic B's owner (the strongest role)
//! aims it at an object of clinic A: read, update, delete, act. For every operation with a
//! request body, every `…_id` field of its example is pointed at clinic A's object of that
//! kind. Each attempt must fail with 404 or 422, change nothing of clinic A's data (every row of
//! every tenant table, compared) and nothing at all of clinic B (the prober learns nothing from
//! its own security log), and be recorded, off the request path, in clinic A's security log.

use crate::support::openapi::*;
use crate::support::*;
use serde_json::{json, Value};
use voxanne_db::demo::DemoClinic;

async fn cross_tenant_events(app: &TestApp, target: &DemoClinic) -> usize {
    app.probe_events(target).await.len()
}

/// A fresh world: both clinics seeded, with an object in every tenant table.
async fn world() -> (TestApp, DemoClinic, DemoClinic, Value) {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    for c in [&a, &b] {
        let mut tx = app.t.db.tenant(c.org, c.owner).await.expect("tx");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    let doc = app.get("/api/v1/openapi.json", None, &[]).await.body;
    (app, a, b, doc)
}

#[tokio::test]
async fn no_route_with_an_id_lets_one_clinic_read_change_or_delete_anothers_object() {
    let (app, a, b, doc) = world().await;
    attack_ids(&app, &a, &b, &doc).await;
}

#[tokio::test]
async fn no_body_can_reference_another_clinics_object() {
    let (app, a, b, doc) = world().await;
    attack_references(&app, &a, &b, &doc).await;
}

/// Citus mode: clinic A, a whale, isolated into a shard of its own
/// (`isolate_tenant_to_new_shard`, every colocated table with it) and moved to a worker of its
/// own (`citus_move_shard_placement`, the other clinics' shard groups moved off it). Then the attack matrix both ways: B at the whale, and the whale at B.
#[tokio::test]
async fn a_whale_clinic_on_a_worker_of_its_own_keeps_its_attack_matrix() {
    if !voxanne_testkit::citus_mode() {
        eprintln!("skipped: a whale's own shard is a Citus test (VOXANNE_TEST_CITUS=1)");
        return;
    }
    let (app, a, b, doc) = world().await;
    isolate_on_its_own_worker(&app, &a, &b).await;
    attack_ids(&app, &a, &b, &doc).await;
    attack_ids(&app, &b, &a, &doc).await;
    // Four rounds in one minute would exceed a clinic's budget of security events (60 a
    // minute, the rest counted): the earlier rounds' events are made older than a minute.
    let mut admin = app.t.admin().await;
    let age = "UPDATE security_events SET created_at = now() - interval '2 minutes'";
    sqlx::query(age).execute(&mut admin).await.expect("aged");
    attack_references(&app, &a, &b, &doc).await;
    sqlx::query(age).execute(&mut admin).await.expect("aged");
    attack_references(&app, &b, &a, &doc).await;
}

/// Isolates `whale` into a shard group that holds it alone, on a worker that holds nothing
/// else (so not `other`), and checks both, its data unchanged and its API answering.
async fn isolate_on_its_own_worker(app: &TestApp, whale: &DemoClinic, other: &DemoClinic) {
    let mut admin = app.t.admin().await;
    let before = app.data_snapshot(whale.org).await;
    let shard: i64 = sqlx::query_scalar(
        "SELECT isolate_tenant_to_new_shard('organizations', $1::uuid, 'CASCADE', 'block_writes')",
    )
    .bind(whale.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("isolate_tenant_to_new_shard");
    let node_of = "SELECT p.nodename, p.nodeport FROM pg_dist_placement pl
                     JOIN pg_dist_node p ON p.groupid = pl.groupid
                    WHERE pl.shardid = get_shard_id_for_distribution_column('organizations', $1::uuid)";
    let first: (String, i32) = sqlx::query_as(node_of)
        .bind(whale.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("the whale's node");
    let own: (String, i32) = sqlx::query_as(
        "SELECT nodename, nodeport FROM pg_dist_node
          WHERE shouldhaveshards AND isactive AND noderole = 'primary'
            AND (nodename, nodeport) <> ($1, $2)
          ORDER BY nodeid LIMIT 1",
    )
    .bind(&first.0)
    .bind(first.1)
    .fetch_one(&mut admin)
    .await
    .expect("another worker");
    // The whale's shard group to the other worker, and every other shard group from there to
    // the first: the whale's worker holds the whale alone (Citus moves a shard's colocated
    // shards with it).
    let mv = "SELECT citus_move_shard_placement($1, $2, $3, $4, $5, 'block_writes')";
    sqlx::query(mv)
        .bind(shard)
        .bind(&first.0)
        .bind(first.1)
        .bind(&own.0)
        .bind(own.1)
        .execute(&mut admin)
        .await
        .expect("moving the whale");
    let others: Vec<i64> = sqlx::query_scalar(
        "SELECT s.shardid FROM pg_dist_shard s
           JOIN pg_dist_placement pl ON pl.shardid = s.shardid
           JOIN pg_dist_node n ON n.groupid = pl.groupid
          WHERE s.logicalrelid = 'organizations'::regclass AND s.shardid <> $1
            AND (n.nodename, n.nodeport) = ($2, $3)",
    )
    .bind(shard)
    .bind(&own.0)
    .bind(own.1)
    .fetch_all(&mut admin)
    .await
    .expect("the other shards on the whale's worker");
    for other_shard in &others {
        sqlx::query(mv)
            .bind(other_shard)
            .bind(&own.0)
            .bind(own.1)
            .bind(&first.0)
            .bind(first.1)
            .execute(&mut admin)
            .await
            .expect("moving another shard group off the whale's worker");
    }
    let on_own_worker: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT s.shardminvalue) FROM pg_dist_shard s
           JOIN pg_dist_placement pl ON pl.shardid = s.shardid
           JOIN pg_dist_node n ON n.groupid = pl.groupid
           JOIN pg_dist_partition t ON t.logicalrelid = s.logicalrelid AND t.partmethod = 'h'
          WHERE (n.nodename, n.nodeport) = ($1, $2)",
    )
    .bind(&own.0)
    .bind(own.1)
    .fetch_one(&mut admin)
    .await
    .expect("the shard groups of the whale's worker");
    assert_eq!(
        on_own_worker, 1,
        "the whale's worker holds another clinic's shards"
    );
    let other_node: (String, i32) = sqlx::query_as(node_of)
        .bind(other.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("the other clinic's node");
    eprintln!(
        "the whale isolated into shard {shard}, alone on {own:?} ({} shard groups moved off it); \
         the other clinic on {other_node:?}",
        others.len()
    );
    // Every tenant table's shard of the whale holds one hash value: the whale's alone.
    let (tables, alone, shard_groups, nodes): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE s.shardminvalue = s.shardmaxvalue),
                count(DISTINCT s.shardminvalue), count(DISTINCT pl.groupid)
           FROM pg_dist_partition t
           JOIN pg_dist_shard s ON s.logicalrelid = t.logicalrelid
           JOIN pg_dist_placement pl ON pl.shardid = s.shardid
          WHERE t.partmethod = 'h'
            AND s.shardid = get_shard_id_for_distribution_column(t.logicalrelid, $1::uuid)",
    )
    .bind(whale.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("the whale's shards");
    assert!(
        tables > 30,
        "the whale's shards of every tenant table: {tables}"
    );
    assert_eq!(
        alone, tables,
        "a shard of the whale holds another hash value too"
    );
    assert_eq!(
        (shard_groups, nodes),
        (1, 1),
        "the whale's shards are one group on one node"
    );
    let whale_node: (String, i32) = sqlx::query_as(node_of)
        .bind(whale.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("the whale's node");
    assert_ne!(
        whale_node, other_node,
        "the whale shares the other clinic's worker"
    );
    assert_eq!(
        app.data_snapshot(whale.org).await,
        before,
        "the whale's data changed on the way"
    );
    let r = app
        .get(
            "/api/v1/calls",
            Some(&app.token(whale.owner, Some(whale.org))),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(
        !r.body["data"].as_array().expect("calls").is_empty(),
        "{:?}",
        r.body
    );
}

/// Every operation with a uuid in its path, aimed by `b`'s owner at `a`'s object.
async fn attack_ids(app: &TestApp, a: &DemoClinic, b: &DemoClinic, doc: &Value) {
    let a_ids = first_ids(app, doc, a).await;
    let b_token = app.token(b.owner, Some(b.org));
    let before = app.data_snapshot(a.org).await;
    let b_before = app.snapshot(b.org).await;
    let b_records = app.access_records(b.org).await;

    let mut attacked = 0;
    for op in operations(doc) {
        let params = uuid_params(&op.op);
        if params.is_empty() {
            continue;
        }
        let mut path = op.path.clone();
        for param in &params {
            let id = &a_ids[&(collection(&op.path).to_owned(), param.clone())];
            path = path.replace(&format!("{{{param}}}"), id);
        }
        let body = example_body(doc, &op.op);
        let events_before = cross_tenant_events(app, a).await;
        let r = app
            .send(
                &op.method.to_uppercase(),
                &path,
                &b_token,
                body.as_ref(),
                &[],
            )
            .await;
        assert!(
            [404, 422].contains(&r.status.as_u16()),
            "{} {} with clinic A's id answered {} to clinic B: {:?}",
            op.method,
            op.path,
            r.status,
            r.body
        );
        assert_eq!(
            app.data_snapshot(a.org).await,
            before,
            "{} {} changed clinic A's data",
            op.method,
            op.path
        );
        assert_eq!(
            app.snapshot(b.org).await,
            b_before,
            "{} {}: the prober's clinic recorded something",
            op.method,
            op.path
        );
        assert_eq!(
            app.access_records(b.org).await,
            b_records,
            "{} {}: a refused request left an access record",
            op.method,
            op.path
        );
        assert!(
            cross_tenant_events(app, a).await > events_before,
            "{} {} with clinic A's id left no security event",
            op.method,
            op.path
        );
        attacked += 1;
    }
    assert!(
        attacked >= 25,
        "only {attacked} operations attacked: is the document complete?"
    );
}

/// Every `…_id` field of every request body, pointed by `b`'s owner at `a`'s object.
async fn attack_references(app: &TestApp, a: &DemoClinic, b: &DemoClinic, doc: &Value) {
    let a_ids = first_ids(app, doc, a).await;
    let b_ids = first_ids(app, doc, b).await;
    let b_token = app.token(b.owner, Some(b.org));
    let before = app.data_snapshot(a.org).await;
    let b_before = app.snapshot(b.org).await;
    let b_records = app.access_records(b.org).await;
    // Which collection holds the objects a `<kind>_id` field names: the one whose last
    // segment is `<kind>s` (contact_id → /contacts).
    let collections: Vec<String> = a_ids.keys().map(|(list, _)| list.clone()).collect();
    let holder = |field: &str| -> Option<String> {
        let kind = field.strip_suffix("_id")?;
        collections
            .iter()
            .find(|c| c.rsplit('/').next() == Some(&format!("{kind}s")))
            .cloned()
    };

    let mut attacked = 0;
    for op in operations(doc) {
        let Some(example) = example_body(doc, &op.op) else {
            continue;
        };
        let request_schema = schema(
            doc,
            &op.op["requestBody"]["content"]["application/json"]["schema"],
        );
        let fields: Vec<String> = request_schema["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        for field in fields
            .iter()
            .filter(|f| f.ends_with("_id") && *f != "org_id")
        {
            let Some(list) = holder(field) else { continue };
            let target = a_ids
                .iter()
                .find(|((l, _), _)| *l == list)
                .map(|(_, id)| id.clone())
                .expect("an id of A");
            // The operation runs on clinic B's own objects; only the reference points at A.
            let mut path = op.path.clone();
            for param in uuid_params(&op.op) {
                path = path.replace(
                    &format!("{{{param}}}"),
                    &b_ids[&(collection(&op.path).to_owned(), param.clone())],
                );
            }
            let mut body = example.clone();
            body[field.as_str()] = json!(target);
            let events_before = cross_tenant_events(app, a).await;
            let r = app
                .send(&op.method.to_uppercase(), &path, &b_token, Some(&body), &[])
                .await;
            assert!(
                [404, 422].contains(&r.status.as_u16()),
                "{} {} with {field} = clinic A's object answered {}: {:?}",
                op.method,
                op.path,
                r.status,
                r.body
            );
            assert_eq!(
                app.data_snapshot(a.org).await,
                before,
                "{} {} changed clinic A's data",
                op.method,
                op.path
            );
            assert_eq!(
                app.snapshot(b.org).await,
                b_before,
                "{} {} {field}: the prober's clinic recorded something",
                op.method,
                op.path
            );
            assert_eq!(
                app.access_records(b.org).await,
                b_records,
                "{} {} {field}: a refused request left an access record",
                op.method,
                op.path
            );
            assert!(
                cross_tenant_events(app, a).await > events_before,
                "{} {} {field}: no security event",
                op.method,
                op.path
            );
            attacked += 1;
        }
    }
    // contact_id and call_id of appointments and holds, at least.
    assert!(
        attacked >= 4,
        "only {attacked} references attacked: is the document complete?"
    );
}
