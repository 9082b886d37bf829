//! Validation of request fields, each failure naming its field (422).

use crate::error::ApiError;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};

/// For PATCH bodies: absent → `None` (keep), `null` → `Some(None)` (clear), a value →
/// `Some(Some(v))`. Use with `#[serde(default, deserialize_with = "nullable")]`.
pub fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// An optional uuid query parameter, named in its error.
pub fn uuid_param(field: &str, value: Option<&str>) -> Result<Option<uuid::Uuid>, ApiError> {
    value
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| ApiError::validation(field, "must be a uuid"))
        })
        .transpose()
}

/// Trimmed text of `min..=max` characters.
pub fn text(field: &str, value: &str, min: usize, max: usize) -> Result<String, ApiError> {
    let value = value.trim();
    let len = value.chars().count();
    if len < min || len > max {
        return Err(ApiError::validation(
            field,
            format!("must be {min} to {max} characters"),
        ));
    }
    Ok(value.to_owned())
}

/// Optional text: empty after trimming counts as absent.
pub fn optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, ApiError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => text(field, v, 1, max).map(Some),
    }
}

/// A plausible email address (one `@`, something on both sides, a dot in the domain).
pub fn email(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(value) = optional_text(field, value, 320)? else {
        return Ok(None);
    };
    let valid = value.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && domain.contains('.') && !domain.contains('@') && !value.contains(' ')
    });
    if valid {
        Ok(Some(value))
    } else {
        Err(ApiError::validation(field, "not an email address"))
    }
}

/// One of `allowed`.
pub fn one_of(
    field: &str,
    value: &str,
    allowed: &[&'static str],
) -> Result<&'static str, ApiError> {
    allowed
        .iter()
        .find(|a| **a == value)
        .copied()
        .ok_or_else(|| {
            ApiError::validation(field, format!("must be one of: {}", allowed.join(", ")))
        })
}

/// An RFC 3339 instant, or a date (`2026-11-23`) meaning the start of that day (UTC); for
/// an upper bound a date includes the whole day.
fn parse_bound(field: &str, text: &str, upper: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(instant.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ApiError::validation(
            field,
            "expected an RFC 3339 timestamp or a date (YYYY-MM-DD)",
        )
    })?;
    let date = if upper {
        date.succ_opt().unwrap_or(date)
    } else {
        date
    };
    Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// Optional lower and upper time bounds.
pub type TimeRange = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Optional `from` and `to` query bounds (see [`parse_bound`]); `to` must be after `from`.
pub fn time_range(from: Option<&str>, to: Option<&str>) -> Result<TimeRange, ApiError> {
    let from = from.map(|t| parse_bound("from", t, false)).transpose()?;
    let to = to.map(|t| parse_bound("to", t, true)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from >= to {
            return Err(ApiError::validation("to", "must be after `from`"));
        }
    }
    Ok((from, to))
}

/// A local time of day as the API writes it: `HH:MM`.
pub fn hhmm(t: chrono::NaiveTime) -> String {
    t.format("%H:%M").to_string()
}

/// A local time of day given as `HH:MM` (00:00 to 23:59), named in its error.
pub fn time_field(field: &str, value: &str) -> Result<chrono::NaiveTime, ApiError> {
    chrono::NaiveTime::parse_from_str(value.trim(), "%H:%M")
        .map_err(|_| ApiError::validation(field, "a local time as HH:MM (00:00 to 23:59)"))
}
