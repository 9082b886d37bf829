//! Bad input is never a 500, generated from the OpenAPI document so that a route added later
//! is covered without editing this file: every leaf of every documented request body, and
//! every documented query parameter, is replaced in turn by values that are hostile to a
//! database or a parser (a NUL character, instants PostgreSQL cannot store, huge and
//! fractional numbers, very long text, wrong shapes, deep nesting). Each answer must be JSON,
//! with a stable error code when it is an error, and never a 5xx.

use crate::support::openapi::*;
use crate::support::*;
use serde_json::{json, Value};

/// Replaces, in `value`, every leaf in turn by each hostile value that suits it; returns the
/// variants with the leaf's path.
fn variants(value: &Value) -> Vec<(String, Value)> {
    fn walk(path: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(fields) => {
                for (key, item) in fields {
                    let here = format!("{path}/{key}");
                    walk(&here, item, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{path}/{i}"), item, out);
                }
            }
            leaf => {
                let mut hostile = vec![
                    json!("a\u{0}b"),
                    json!("\u{0}"),
                    json!("-200000-01-01T00:00:00Z"),
                    json!("+275760-09-13T00:00:00Z"),
                    json!("0000-01-01T00:00:00Z"),
                    json!("9999-12-31T23:59:59-23:59"),
                    json!("-0001-01-01"),
                    json!("x".repeat(200_000)),
                    json!("' OR 1=1; --"),
                    json!(null),
                    json!(true),
                    json!([]),
                    json!({}),
                    json!([leaf.clone()]),
                ];
                if leaf.is_number() || leaf.is_null() {
                    hostile.extend([
                        json!(1e308),
                        json!(-1e308),
                        json!(9_223_372_036_854_775_807_i64),
                        json!(-9_223_372_036_854_775_808_i64),
                        json!(18_446_744_073_709_551_615_u64),
                        json!(2_147_483_648_i64),
                        json!(-2_147_483_649_i64),
                        json!(-1),
                        json!(0),
                        json!(0.5),
                    ]);
                }
                out.extend(hostile.into_iter().map(|h| (path.to_owned(), h)));
            }
        }
    }
    let mut leaves = Vec::new();
    walk("", value, &mut leaves);
    let mut out = Vec::new();
    for (path, hostile) in leaves {
        let mut body = value.clone();
        if let Some(slot) = body.pointer_mut(&path) {
            *slot = hostile;
            out.push((path, body));
        }
    }
    // Whole-body shapes: a NUL in a field name, nesting past any sane depth.
    let mut nul_key = value.clone();
    if let Some(fields) = nul_key.as_object_mut() {
        fields.insert("na\u{0}me".into(), json!("x"));
    }
    out.push(("<nul key>".into(), nul_key));
    let mut deep = json!(1);
    for _ in 0..300 {
        deep = json!([deep]);
    }
    let mut nested = value.clone();
    if let Some(fields) = nested.as_object_mut() {
        if let Some((key, _)) = fields.iter().next().map(|(k, v)| (k.clone(), v.clone())) {
            fields.insert(key, deep);
        }
    }
    out.push(("<deep>".into(), nested));
    out
}

const QUERY_VALUES: [&str; 10] = [
    "%00",
    "a%00b",
    "-200000-01-01T00%3A00%3A00Z",
    "%2B275760-09-13T00%3A00%3A00Z",
    "-0001-01-01",
    "99999999999999999999999",
    "-1",
    "1e308",
    "%FF%FE",
    "%E2%80%AE%27%22",
];

fn is_acceptable(r: &Response) -> bool {
    let status = r.status.as_u16();
    status < 500 && (status < 400 || r.body["error"]["code"].is_string())
}

#[tokio::test]
async fn no_hostile_value_in_any_body_field_or_query_parameter_is_a_500() {
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
    let mut sent = 0;
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
            // A path parameter that is not an id (an integration's provider name).
            path = path.replacen('{', "", 1).replacen('}', "", 1);
            path = path.replace("provider", "vapi");
        }
        if let Some(example) = example_body(&doc, &op.op) {
            for (leaf, body) in variants(&example) {
                let r = app
                    .send(&op.method.to_uppercase(), &path, &token, Some(&body), &[])
                    .await;
                sent += 1;
                if !is_acceptable(&r) {
                    failures.push(format!(
                        "{} {} with {leaf} = {:.80}: {} {}",
                        op.method,
                        op.path,
                        body.pointer(&leaf)
                            .map(Value::to_string)
                            .unwrap_or_default(),
                        r.status,
                        r.body
                    ));
                }
            }
        }
        if op.method == "get" {
            let params: Vec<String> = op.op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            for param in &params {
                for value in QUERY_VALUES {
                    let r = app
                        .get(&format!("{path}?{param}={value}"), Some(&token), &[])
                        .await;
                    sent += 1;
                    if !is_acceptable(&r) {
                        failures.push(format!(
                            "GET {}?{param}={value}: {} {}",
                            op.path, r.status, r.body
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {sent} hostile requests were not clean 4xx answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        sent > 500,
        "only {sent} requests: is the document complete?"
    );
}

#[tokio::test]
async fn a_nul_or_an_unstorable_time_is_422_naming_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let before = app.snapshot(a.org).await;
    let cases = [
        ("/api/v1/contacts", json!({"name": "Gr\u{0}ace"}), "name"),
        (
            "/api/v1/appointments",
            json!({"starts_at": "-200000-01-07T17:00:00Z", "ends_at": "2030-01-07T17:30:00Z"}),
            "starts_at",
        ),
        (
            "/api/v1/appointments",
            json!({"starts_at": "2030-01-07T17:00:00Z", "ends_at": "+275760-01-07T17:30:00Z"}),
            "ends_at",
        ),
    ];
    for (path, body, field) in cases {
        let r = app.post(path, &token, &body).await;
        assert_eq!(
            (
                r.status.as_u16(),
                r.code(),
                r.body["error"]["field"].as_str()
            ),
            (422, "validation_failed", Some(field)),
            "{path} {body}: {}",
            r.body
        );
    }
    for query in [
        "q=a%00b",
        "from=-200000-01-01",
        "to=%2B275760-01-01T00:00:00Z",
    ] {
        let path = if query.starts_with('q') {
            format!("/api/v1/contacts?{query}")
        } else {
            format!("/api/v1/calls?{query}")
        };
        let r = app.get_as(&path, &token).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (422, "validation_failed"),
            "{path}"
        );
    }
    assert_eq!(app.snapshot(a.org).await, before);
}
