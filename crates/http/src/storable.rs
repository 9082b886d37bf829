//! What PostgreSQL cannot store, refused at the edge with the field named (422), so that no
//! request can carry it to the database and come back as a 500: text with a NUL character
//! (`\u0000`, `%00`), and instants or dates outside the years 1 to 9999. Every JSON body and
//! every query string is checked here whole, so a field added later is covered without
//! remembering to.
//!
//! Provider webhooks are different: what a signed report says must not be lost, so their
//! text is cleaned instead (`voxanne_webhooks::strip_nul`).

use crate::error::ApiError;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::Value;

const YEARS: std::ops::RangeInclusive<i32> = 1..=9999;

/// Checks one text value.
pub fn check_text(field: &str, text: &str) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(ApiError::validation(
            field,
            "must not contain a NUL character",
        ));
    }
    // Whatever serde would read as an instant or a date must be one the database stores.
    let year = text
        .parse::<DateTime<Utc>>()
        .map(|t| t.year())
        .or_else(|_| text.parse::<NaiveDate>().map(|d| d.year()));
    if let Ok(year) = year {
        if !YEARS.contains(&year) {
            return Err(ApiError::validation(
                field,
                "must be a time between the years 1 and 9999",
            ));
        }
    }
    Ok(())
}

/// Checks every key and string of a JSON value; `path` names where it is (`""` at the top).
pub fn check_value(path: &str, value: &Value) -> Result<(), ApiError> {
    match value {
        Value::String(text) => check_text(if path.is_empty() { "body" } else { path }, text),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_value(&format!("{path}[{i}]"), item)),
        Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if key.contains('\0') {
                return Err(ApiError::validation(
                    "body",
                    "a field name must not contain a NUL character",
                ));
            }
            check_value(&here, item)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// Checks every parameter of a query string.
pub fn check_query(query: &str) -> Result<(), ApiError> {
    url::form_urlencoded::parse(query.as_bytes()).try_for_each(|(name, value)| {
        if name.contains('\0') {
            return Err(ApiError::validation(
                "query",
                "a parameter name must not contain a NUL character",
            ));
        }
        check_text(&name, &value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(value: Value) -> Option<String> {
        match check_value("", &value) {
            Ok(()) => None,
            Err(ApiError::Validation { field, .. }) => Some(field),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn nul_and_unstorable_times_are_found_wherever_they_are() {
        assert_eq!(field(json!({"name": "a\u{0}b"})), Some("name".into()));
        assert_eq!(
            field(json!({"a": [{"b": "x"}, {"b": "-200000-01-01T00:00:00Z"}]})),
            Some("a[1].b".into())
        );
        assert_eq!(
            field(json!({"when": "+12000-01-01T00:00:00Z"})),
            Some("when".into())
        );
        assert_eq!(field(json!({"day": "-0001-12-31"})), Some("day".into()));
        assert_eq!(field(json!({"name": "2026-11-23T10:00:00Z", "n": 1})), None);
        assert_eq!(
            field(json!({"notes": "plain text, \\u0000 as written"})),
            None
        );
        assert!(check_query("q=a%00b").is_err());
        assert!(check_query("from=-200000-01-01").is_err());
        assert!(check_query("q=grace&limit=3").is_ok());
    }
}
