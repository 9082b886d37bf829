//! The cross-tenant attack matrix, generated from the OpenAPI document: a route added later is
//! attacked without editing this file.
//!
//! For every operation on a path with a uuid parameter, clinic B's owner (the strongest role)
//! aims it at an object of clinic A: read, update, delete, act. For every operation with a
//! request body, every `…_id` field of its example is pointed at clinic A's object of that
//! kind. Each attempt must fail with 404 or 422, change nothing of clinic A (every row of every
//! tenant table, compared), and leave a security event in clinic B.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use support::*;
use voxanne_db::demo::DemoClinic;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

struct Op {
    method: &'static str,
    path: String,
    op: Value,
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push(Op {
                    method,
                    path: path.clone(),
                    op: op.clone(),
                });
            }
        }
    }
    out
}

/// The uuid path parameters of an operation.
fn uuid_params(op: &Value) -> Vec<String> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path" && p["schema"]["format"] == "uuid")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// The part of a path before its first parameter: where its objects are listed.
fn collection(path: &str) -> &str {
    path.split("/{")
        .next()
        .unwrap_or(path)
        .trim_end_matches('/')
}

fn schema<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

/// The documented example of an operation's JSON body, if it has one (form-encoded
/// provider webhooks are not tenant API bodies).
fn example_body(doc: &Value, op: &Value) -> Option<Value> {
    let body = op
        .get("requestBody")
        .filter(|b| b["content"].get("application/json").is_some())?;
    let s = schema(doc, &body["content"]["application/json"]["schema"]);
    Some(
        s.get("example")
            .cloned()
            .unwrap_or_else(|| panic!("a request body schema has no example: {s}")),
    )
}

/// The first object of `clinic` in each collection that lists objects, by the key `field`.
async fn first_ids(
    app: &TestApp,
    doc: &Value,
    clinic: &DemoClinic,
) -> BTreeMap<(String, String), String> {
    let token = app.token(clinic.owner, Some(clinic.org));
    let mut found = BTreeMap::new();
    for op in operations(doc) {
        for param in uuid_params(&op.op) {
            let list = collection(&op.path).to_owned();
            let key = (list.clone(), param.clone());
            if found.contains_key(&key) {
                continue;
            }
            let r = app.get_as(&format!("{list}?limit=100"), &token).await;
            assert_eq!(
                r.status, 200,
                "{list} must list the objects of {} (for {} {}): {:?}",
                clinic.name, op.method, op.path, r.body
            );
            let items = r.body["data"].as_array().cloned().unwrap_or_default();
            let id = items
                .iter()
                .find_map(|item| item[param.as_str()].as_str().map(str::to_owned))
                .unwrap_or_else(|| {
                    panic!(
                        "{} has no object in {list} to attack {} {} with: seed one",
                        clinic.name, op.method, op.path
                    )
                });
            found.insert(key, id);
        }
    }
    found
}

async fn cross_tenant_events(app: &TestApp, token: &str) -> usize {
    let r = app.get_as("/api/v1/security-events?limit=100", token).await;
    r.body["data"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter(|x| x["kind"] == "cross_tenant_reference")
                .count()
        })
        .unwrap_or(0)
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
    let before = app.snapshot(a.org).await;

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
        let events_before = cross_tenant_events(&app, &b_token).await;
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
            app.snapshot(a.org).await,
            before,
            "{} {} changed clinic A's data",
            op.method,
            op.path
        );
        assert!(
            cross_tenant_events(&app, &b_token).await > events_before,
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
    let before = app.snapshot(a.org).await;
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
            let events_before = cross_tenant_events(&app, &b_token).await;
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
                app.snapshot(a.org).await,
                before,
                "{} {} changed clinic A's data",
                op.method,
                op.path
            );
            assert!(
                cross_tenant_events(&app, &b_token).await > events_before,
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
