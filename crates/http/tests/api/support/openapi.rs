//! The OpenAPI document as a source of test cases: every operation, its uuid path
//! parameters, its example body, and an object of a clinic to aim it at.

use super::TestApp;
use serde_json::Value;
use std::collections::BTreeMap;
use voxanne_db::demo::DemoClinic;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

pub struct Op {
    pub method: &'static str,
    pub path: String,
    pub op: Value,
}

pub fn operations(doc: &Value) -> Vec<Op> {
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
pub fn uuid_params(op: &Value) -> Vec<String> {
    op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "path" && p["schema"]["format"] == "uuid")
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect()
}

/// The part of a path before its first parameter: where its objects are listed.
pub fn collection(path: &str) -> &str {
    path.split("/{")
        .next()
        .unwrap_or(path)
        .trim_end_matches('/')
}

pub fn schema<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.trim_start_matches("#/components/schemas/")],
        None => schema,
    }
}

/// The documented example of an operation's JSON body, if it has one (form-encoded
/// provider webhooks are not tenant API bodies).
pub fn example_body(doc: &Value, op: &Value) -> Option<Value> {
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
pub async fn first_ids(
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
