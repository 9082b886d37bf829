//! The OpenAPI document declares what the server enforces: a string at its declared
//! `maxLength` is accepted and one character more is refused naming the field, and a query
//! parameter at its declared bounds is accepted and one past them refused. So a generated
//! client, or an outside fuzzer, finds no input the schema allows and the server refuses
//! over a length or a bound.

use crate::support::openapi::*;
use crate::support::*;
use serde_json::Value;

fn refused_for(r: &Response, field: &str) -> bool {
    r.status == 422 && r.body["error"]["field"] == field
}

#[tokio::test]
async fn every_declared_length_and_bound_is_the_one_the_server_enforces() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    {
        let mut tx = app.t.db.tenant(a.org, a.owner).await.expect("tx");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    let doc = app.get("/api/v1/openapi.json", None, &[]).await.body;
    let ids = first_ids(&app, &doc, &a).await;
    let token = app.token(a.owner, Some(a.org));
    let mut failures = Vec::new();
    let mut checked = 0;
    for op in operations(&doc) {
        if op.method == "delete" || !op.path.starts_with("/api/v1") {
            continue;
        }
        let mut path = op.path.clone();
        for param in uuid_params(&op.op) {
            let id = &ids[&(collection(&op.path).to_owned(), param.clone())];
            path = path.replace(&format!("{{{param}}}"), id);
        }
        if path.contains('{') {
            continue;
        }
        let method = op.method.to_uppercase();
        if let Some(example) = example_body(&doc, &op.op) {
            let body_schema = schema(
                &doc,
                &op.op["requestBody"]["content"]["application/json"]["schema"],
            );
            for (name, property) in body_schema["properties"].as_object().into_iter().flatten() {
                let Some(max) = property["maxLength"].as_u64() else {
                    continue;
                };
                // The example's value, padded in front to the length: still of its kind (an
                // email stays an email).
                let base = example[name.as_str()].as_str().unwrap_or("x").to_owned();
                let with = |length: u64| {
                    let pad = (length as usize).saturating_sub(base.chars().count());
                    let mut body = example.clone();
                    body[name.as_str()] = Value::String(format!("{}{base}", "x".repeat(pad)));
                    body
                };
                let at = app
                    .send(&method, &path, &token, Some(&with(max)), &[])
                    .await;
                let over = app
                    .send(&method, &path, &token, Some(&with(max + 1)), &[])
                    .await;
                checked += 1;
                if refused_for(&at, name) || at.status.is_server_error() {
                    failures.push(format!(
                        "{method} {} {name} at maxLength {max}: {} {}",
                        op.path, at.status, at.body
                    ));
                }
                if !refused_for(&over, name) {
                    failures.push(format!(
                        "{method} {} {name} past maxLength {max}: {} {}",
                        op.path, over.status, over.body
                    ));
                }
            }
        }
        if op.method == "get" {
            let params: Vec<&Value> = op.op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            // The other required parameters, each with a plain value.
            let required = |except: &str| -> String {
                params
                    .iter()
                    .filter(|p| p["in"] == "query" && p["required"] == true && p["name"] != except)
                    .map(|p| format!("&{}=x", p["name"].as_str().unwrap_or_default()))
                    .collect()
            };
            for param in &params {
                let name = param["name"].as_str().unwrap_or_default();
                let (Some(min), Some(max)) = (
                    param["schema"]["minimum"].as_i64(),
                    param["schema"]["maximum"].as_i64(),
                ) else {
                    continue;
                };
                let q = |v: i64| format!("{path}?{name}={v}{}", required(name));
                for (value, accepted) in
                    [(min, true), (max, true), (min - 1, false), (max + 1, false)]
                {
                    let r = app.get(&q(value), Some(&token), &[]).await;
                    checked += 1;
                    if refused_for(&r, name) == accepted || r.status.is_server_error() {
                        failures.push(format!(
                            "GET {}?{name}={value}: {} {}",
                            op.path, r.status, r.body
                        ));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(
        checked >= 30,
        "only {checked} constraints checked: are they declared?"
    );
}
