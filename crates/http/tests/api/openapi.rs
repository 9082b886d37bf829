//! The OpenAPI document: served, complete, and every operation states its auth and errors.

use crate::support::*;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op.clone()));
            }
        }
    }
    out
}

/// Every `$ref` in `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.extend(v.as_str().map(str::to_owned));
                }
                refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_document_is_served_without_auth_and_matches_the_code() {
    let app = TestApp::spawn().await;
    let r = app.get("/api/v1/openapi.json", None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.")));
    let generated = serde_json::to_value(voxanne_http::openapi()).expect("json");
    assert_eq!(r.body, generated);
}

#[tokio::test]
async fn every_documented_route_exists_and_every_reference_resolves() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(a.owner, Some(a.org));
    let doc = serde_json::to_value(voxanne_http::openapi()).expect("json");
    for (method, path, _) in operations(&doc) {
        let concrete = path
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{user_id}", &uuid::Uuid::new_v4().to_string());
        let url = format!("{}{concrete}", app.base);
        let response = app
            .client
            .request(method.to_uppercase().parse().expect("method"), &url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("request");
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(
            body["error"]["code"], "no_route",
            "{method} {path} is documented but not routed"
        );
        assert_ne!(
            body["error"]["code"], "method_not_allowed",
            "{method} {path} is documented but not routed"
        );
    }

    let mut found = Vec::new();
    refs(&doc, &mut found);
    for reference in found {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "dangling {reference}"
        );
    }
}

#[tokio::test]
async fn every_api_operation_declares_auth_the_org_header_and_its_errors() {
    let doc = serde_json::to_value(voxanne_http::openapi()).expect("json");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let ops = operations(&doc);
    assert!(ops.len() >= 6);
    for (method, path, op) in ops {
        let responses = op["responses"].as_object().expect("responses");
        let has = |status: &str| responses.contains_key(status);
        assert!(has("500"), "{method} {path}: no 500");
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path}: no success response"
        );
        if !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json" {
            continue;
        }
        assert_eq!(
            op["security"][0]["bearer"],
            serde_json::json!([]),
            "{method} {path}: no bearer security"
        );
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .map(|p| p.iter().filter_map(|x| x["name"].as_str()).collect())
            .unwrap_or_default();
        if voxanne_http::openapi::uses_org(&path) {
            assert!(
                params.contains(&"X-Org-Id"),
                "{method} {path}: no X-Org-Id header"
            );
            assert!(has("403"), "{method} {path}: no 403");
        } else {
            assert!(
                !params.contains(&"X-Org-Id"),
                "{method} {path} acts in no org but documents X-Org-Id"
            );
        }
        for status in ["400", "401"] {
            assert!(has(status), "{method} {path}: no {status}");
        }
        if path.contains('{') {
            assert!(has("404"), "{method} {path}: no 404");
        }
        if op.get("requestBody").is_some() {
            for status in ["413", "415", "422"] {
                assert!(has(status), "{method} {path}: no {status}");
            }
        }
        for status in ["400", "401", "403", "404", "422"] {
            if let Some(r) = responses.get(status) {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
    }
}
