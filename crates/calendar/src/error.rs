//! What a call to a provider can come to, read from the status, the `Retry-After` header and
//! the providers' documented error bodies: Google's
//! `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}], "status"}}` and
//! Graph's `{"error": {"code", "message"}}`. Messages are short and never carry a token.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::Duration;
use voxanne_domain::CalendarProvider;

/// How much of a provider's message an error keeps.
const MESSAGE_CHARS: usize = 200;

/// Why a call to a calendar provider did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    /// This server has no application for the provider.
    #[error("{provider} calendars are not configured")]
    NotConfigured {
        /// The provider.
        provider: CalendarProvider,
    },
    /// The provider refused the refresh token (`invalid_grant`: revoked, expired, consent
    /// withdrawn): the link is broken until the clinic links the calendar again.
    #[error("{provider} refused the refresh token: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    InvalidGrant {
        /// The provider.
        provider: CalendarProvider,
        /// RFC 6749 section 5.2's `error`.
        error: String,
        /// Its `error_description`, shortened.
        description: Option<String>,
    },
    /// 401 on an API call: the access token expired or was revoked; refresh and try again.
    #[error("{provider} refused the access token")]
    Unauthorized {
        /// The provider.
        provider: CalendarProvider,
    },
    /// 429, Google's 403 `rateLimitExceeded`/`userRateLimitExceeded`/`quotaExceeded`, or a 503
    /// with `Retry-After`: try again later, after `retry_after` when the provider said.
    #[error("{provider} is rate limiting this server{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// The provider.
        provider: CalendarProvider,
        /// The provider's `Retry-After`.
        retry_after: Option<Duration>,
    },
    /// 404 or 410 on an event: it is not there (any more).
    #[error("{provider} has no such event")]
    NotFound {
        /// The provider.
        provider: CalendarProvider,
    },
    /// Any other 4xx: the request will not succeed as it is.
    #[error("{provider} refused the request ({status}): {message}")]
    Rejected {
        /// The provider.
        provider: CalendarProvider,
        /// The HTTP status.
        status: u16,
        /// The provider's message, shortened.
        message: String,
    },
    /// A network error, a timeout, a 5xx or an answer that is not the provider's format.
    #[error("{provider} could not be reached or answered unexpectedly: {message}")]
    Unavailable {
        /// The provider.
        provider: CalendarProvider,
        /// What went wrong, shortened.
        message: String,
    },
}

impl CalendarError {
    /// Whether trying the same request again cannot help (a broken link, a refused request, an
    /// event that is gone, no configuration). `Unauthorized` is not: a refresh fixes it.
    pub fn permanent(&self) -> bool {
        matches!(
            self,
            Self::NotConfigured { .. }
                | Self::InvalidGrant { .. }
                | Self::NotFound { .. }
                | Self::Rejected { .. }
        )
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The provider the error is about.
    pub fn provider(&self) -> CalendarProvider {
        match self {
            Self::NotConfigured { provider }
            | Self::InvalidGrant { provider, .. }
            | Self::Unauthorized { provider }
            | Self::RateLimited { provider, .. }
            | Self::NotFound { provider }
            | Self::Rejected { provider, .. }
            | Self::Unavailable { provider, .. } => *provider,
        }
    }
}

/// At most [`MESSAGE_CHARS`] characters of `text`.
pub(crate) fn truncate(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 section 10.2.3).
pub(crate) fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value)
        .ok()?
        .with_timezone(&Utc);
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

/// The provider's error for a non-success answer.
pub(crate) fn from_response(
    provider: CalendarProvider,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> CalendarError {
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let error = &json["error"];
    // Google: a message and reasons; Graph: a code (a word) and a message.
    let reasons: Vec<&str> = error["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    let message = match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (None, Some(message)) if !reasons.is_empty() => {
            format!("{}: {message}", reasons.join(","))
        }
        (_, Some(message)) => message.to_owned(),
        _ if body.trim().is_empty() => format!("status {status}"),
        _ => body.to_owned(),
    };
    let message = truncate(&message);
    let wait = retry_after(headers, Utc::now());
    let rate_limited = reasons.iter().any(|r| {
        matches!(
            *r,
            "rateLimitExceeded" | "userRateLimitExceeded" | "quotaExceeded"
        )
    });
    match status.as_u16() {
        401 => CalendarError::Unauthorized { provider },
        429 => CalendarError::RateLimited {
            provider,
            retry_after: wait,
        },
        403 if rate_limited => CalendarError::RateLimited {
            provider,
            retry_after: wait,
        },
        404 | 410 => CalendarError::NotFound { provider },
        503 if wait.is_some() => CalendarError::RateLimited {
            provider,
            retry_after: wait,
        },
        // 408 (request timeout) is the network's, not the request's.
        408 => CalendarError::Unavailable { provider, message },
        code @ 400..=499 => CalendarError::Rejected {
            provider,
            status: code,
            message,
        },
        _ => CalendarError::Unavailable { provider, message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:00Z")
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(120)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(60)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers, now), None);
    }

    #[test]
    fn long_messages_are_cut() {
        let long = "x".repeat(500);
        assert_eq!(truncate(&long).chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(truncate(" short "), "short");
    }

    #[test]
    fn a_google_403_is_rate_limiting_only_for_its_rate_reasons() {
        let body = r#"{"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"User Rate Limit Exceeded"}],"code":403,"message":"User Rate Limit Exceeded"}}"#;
        let e = from_response(
            CalendarProvider::Google,
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            body,
        );
        assert!(matches!(e, CalendarError::RateLimited { .. }), "{e:?}");
        let body = r#"{"error":{"errors":[{"domain":"global","reason":"forbiddenForNonOrganizer","message":"No"}],"code":403,"message":"No"}}"#;
        let e = from_response(
            CalendarProvider::Google,
            StatusCode::FORBIDDEN,
            &HeaderMap::new(),
            body,
        );
        assert!(
            matches!(&e, CalendarError::Rejected { status: 403, message, .. } if message == "forbiddenForNonOrganizer: No"),
            "{e:?}"
        );
        assert!(e.permanent());
    }
}
