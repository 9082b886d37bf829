//! Every answer a test receives is one the OpenAPI document declares for that operation: the
//! tests play the part of an outside client that trusts the document, so a status a route can
//! answer but does not declare fails the test that provoked it.

use serde_json::Value;
use std::sync::OnceLock;

fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        serde_json::to_value(voxanne_http::openapi()).expect("the OpenAPI document as JSON")
    })
}

/// Whether the template `/api/v1/calls/{id}` matches the concrete `/api/v1/calls/5f…`.
fn matches(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

/// Panics if the document has the operation `method path` and does not declare `status` for
/// it. Requests outside the document (unknown paths, methods it does not list) are the
/// router's business and are not checked here.
pub fn check(method: &str, path: &str, status: u16) {
    let path = path.split('?').next().unwrap_or(path);
    let doc = document();
    let Some(paths) = doc["paths"].as_object() else {
        return;
    };
    // A literal segment beats a parameter (`/holds/{id}/confirm` is not `/holds/{id}`).
    let mut candidates: Vec<(&String, &Value)> =
        paths.iter().filter(|(t, _)| matches(t, path)).collect();
    candidates.sort_by_key(|(t, _)| t.matches('{').count());
    let Some((template, item)) = candidates.first() else {
        return;
    };
    let Some(op) = item.get(method.to_ascii_lowercase()) else {
        return;
    };
    let responses = &op["responses"];
    let declared = responses.get(status.to_string()).is_some()
        || responses.get(format!("{}XX", status / 100)).is_some()
        || responses.get("default").is_some();
    assert!(
        declared,
        "{method} {template} answered {status}, which the OpenAPI document does not declare \
         (it declares {:?})",
        responses.as_object().map(|r| r.keys().collect::<Vec<_>>())
    );
}
