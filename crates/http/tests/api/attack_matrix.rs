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
    let a_ids = first_ids(&app, &doc, &a).await;
    let b_token = app.token(b.owner, Some(b.org));
    let before = app.data_snapshot(a.org).await;
    let b_before = app.snapshot(b.org).await;

    let mut attacked = 0;
    for op in operations(&doc) {
        let params = uuid_params(&op.op);
        if params.is_empty() {
            continue;
        }
        let mut path = op.path.clone();
        for param in &params {
            let id = &a_ids[&(collection(&op.path).to_owned(), param.clone())];
            path = path.replace(&format!("{{{param}}}"), id);
        }
        let body = example_body(&doc, &op.op);
        let events_before = cross_tenant_events(&app, &a).await;
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
        assert!(
            cross_tenant_events(&app, &a).await > events_before,
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

#[tokio::test]
async fn no_body_can_reference_another_clinics_object() {
    let (app, a, b, doc) = world().await;
    let a_ids = first_ids(&app, &doc, &a).await;
    let b_ids = first_ids(&app, &doc, &b).await;
    let b_token = app.token(b.owner, Some(b.org));
    let before = app.data_snapshot(a.org).await;
    let b_before = app.snapshot(b.org).await;
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
    for op in operations(&doc) {
        let Some(example) = example_body(&doc, &op.op) else {
            continue;
        };
        let request_schema = schema(
            &doc,
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
            let events_before = cross_tenant_events(&app, &a).await;
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
            assert!(
                cross_tenant_events(&app, &a).await > events_before,
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
