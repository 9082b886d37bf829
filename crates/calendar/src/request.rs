//! Sending one request to a provider's API and reading its answer.

use crate::error::{from_response, truncate, CalendarError};
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::RequestBuilder;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;
use voxanne_domain::CalendarProvider;

/// `base` with `segments` appended, each percent-encoded; a base path, with or without a
/// trailing slash, is kept.
pub(crate) fn endpoint(
    provider: CalendarProvider,
    base: &Url,
    segments: &[&str],
) -> Result<Url, CalendarError> {
    let mut url = base.clone();
    url.set_query(None);
    url.path_segments_mut()
        .map_err(|()| CalendarError::Unavailable {
            provider,
            message: format!("{base} cannot be a base URL"),
        })?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// A successful answer's body.
pub(crate) struct Answer {
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self, provider: CalendarProvider) -> Result<Value, CalendarError> {
        serde_json::from_str(&self.body).map_err(|e| CalendarError::Unavailable {
            provider,
            message: format!("an answer that is not JSON: {e}"),
        })
    }
}

/// Sends `request` with the access token; a non-2xx answer is the provider's error.
pub(crate) async fn send(
    provider: CalendarProvider,
    request: RequestBuilder,
    access_token: &SecretString,
) -> Result<Answer, CalendarError> {
    let response = request
        .bearer_auth(access_token.expose_secret())
        .send()
        .await
        .map_err(|e| network(provider, e))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.map_err(|e| network(provider, e))?;
    if status.is_success() {
        Ok(Answer { body })
    } else {
        Err(from_response(provider, status, &headers, &body))
    }
}

fn network(provider: CalendarProvider, e: reqwest::Error) -> CalendarError {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    };
    CalendarError::Unavailable {
        provider,
        message: truncate(&format!("{what}: {}", e.without_url())),
    }
}

/// An answer that lacks what it must have.
pub(crate) fn malformed(provider: CalendarProvider, what: &str) -> CalendarError {
    CalendarError::Unavailable {
        provider,
        message: format!("an answer without {what}"),
    }
}

/// An RFC 3339 timestamp.
pub(crate) fn rfc3339(
    provider: CalendarProvider,
    value: &Value,
    what: &str,
) -> Result<DateTime<Utc>, CalendarError> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .ok_or_else(|| malformed(provider, what))
}

/// Graph's `dateTimeTimeZone` in UTC (asked for with `Prefer: outlook.timezone="UTC"`): a
/// `dateTime` without an offset (`2019-03-15T12:00:00.0000000`) is UTC. Another zone is
/// refused rather than guessed.
pub(crate) fn graph_time(
    provider: CalendarProvider,
    value: &Value,
    what: &str,
) -> Result<DateTime<Utc>, CalendarError> {
    let zone = value["timeZone"].as_str().unwrap_or("UTC");
    if !matches!(zone, "UTC" | "Etc/UTC" | "Coordinated Universal Time") {
        return Err(CalendarError::Unavailable {
            provider,
            message: format!("{what} in time zone {} instead of UTC", truncate(zone)),
        });
    }
    let text = value["dateTime"]
        .as_str()
        .ok_or_else(|| malformed(provider, what))?;
    if let Ok(d) = DateTime::parse_from_rfc3339(text) {
        return Ok(d.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|n| n.and_utc())
        .map_err(|_| malformed(provider, what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_base_with_or_without_a_slash_keeps_its_path_and_ids_are_encoded() {
        let p = CalendarProvider::Google;
        for base in ["http://h/api", "http://h/api/"] {
            let url =
                endpoint(p, &Url::parse(base).expect("url"), &["a b", "c/d?#"]).expect("endpoint");
            assert_eq!(url.as_str(), "http://h/api/a%20b/c%2Fd%3F%23");
        }
        let url = endpoint(p, &Url::parse("https://h").expect("url"), &["x@y.z"]).expect("url");
        assert_eq!(url.as_str(), "https://h/x@y.z");
    }

    #[test]
    fn graph_times_without_an_offset_are_utc() {
        let p = CalendarProvider::Microsoft;
        let t = graph_time(
            p,
            &json!({"dateTime": "2019-03-15T12:00:00.0000000", "timeZone": "UTC"}),
            "start",
        )
        .expect("time");
        assert_eq!(t.to_rfc3339(), "2019-03-15T12:00:00+00:00");
        assert!(graph_time(
            p,
            &json!({"dateTime": "2019-03-15T12:00:00", "timeZone": "Pacific Standard Time"}),
            "start"
        )
        .is_err());
    }
}
