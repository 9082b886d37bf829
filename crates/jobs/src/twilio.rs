//! Twilio's REST API for sending an SMS (or any provider that speaks it):
//! `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, HTTP basic auth with the
//! account sid and auth token, a form with `To`, `From`, `Body` and optionally
//! `StatusCallback`. The answer is sorted into accepted, worth retrying, or refused.

use secrecy::{ExposeSecret, SecretString};

/// A clinic's own Twilio account.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub account_sid: String,
    pub auth_token: SecretString,
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub body: &'a str,
    /// Where the provider reports the message's delivery status.
    pub status_callback: Option<&'a str>,
}

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The message's id (`SM…`); `None` if the answer did not carry one.
    pub sid: Option<String>,
    /// The provider's status word (`queued`, `accepted`, `sent`, …).
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth another attempt: the provider failed (5xx), asked us to slow down (429), or did
    /// not answer in time.
    #[error("{0}")]
    Retryable(String),
    /// The provider refused this message (another 4xx): another attempt would be refused too.
    #[error("{0}")]
    Refused(String),
    /// The recipient has opted out of this sender (Twilio's error 21610, "Attempt to send to
    /// unsubscribed recipient": <https://www.twilio.com/docs/errors/21610>): the number opts
    /// out with the clinic too.
    #[error("{0}")]
    Unsubscribed(String),
}

/// Twilio's error code for a message to a number that texted STOP to the sender.
pub const UNSUBSCRIBED_RECIPIENT: i64 = 21610;

/// The fields Voxanne reads of Twilio's answers: a message resource on success (`sid`, and
/// `status` a word), an error object otherwise (`code`, `message`, and `status` the HTTP
/// status as a number). Anything else, or no JSON at all, reads as empty.
#[derive(Debug, Default)]
struct Answer {
    sid: Option<String>,
    status: Option<String>,
    code: Option<i64>,
    message: Option<String>,
}

impl Answer {
    fn parse(text: &str) -> Self {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        let text = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        Self {
            sid: text("sid"),
            status: text("status"),
            code: value.get("code").and_then(serde_json::Value::as_i64),
            message: text("message"),
        }
    }
}

/// The Messages endpoint of `account_sid` under `base` (the account sid is a path segment,
/// escaped as one).
pub fn messages_url(base: &reqwest::Url, account_sid: &str) -> Result<reqwest::Url, String> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| format!("{base} cannot be a base URL"))?
        .pop_if_empty()
        .extend(["2010-04-01", "Accounts", account_sid, "Messages.json"]);
    Ok(url)
}

/// Sends `message` with `credentials`. Never follows a redirect (the client is built so):
/// credentials go to the configured provider only.
pub async fn send(
    http: &reqwest::Client,
    base: &reqwest::Url,
    credentials: &Credentials,
    message: &Message<'_>,
) -> Result<Accepted, SendError> {
    let url = messages_url(base, &credentials.account_sid).map_err(SendError::Refused)?;
    let mut form = vec![
        ("To", message.to),
        ("From", message.from),
        ("Body", message.body),
    ];
    if let Some(callback) = message.status_callback {
        form.push(("StatusCallback", callback));
    }
    let response = http
        .post(url)
        .basic_auth(
            &credentials.account_sid,
            Some(credentials.auth_token.expose_secret()),
        )
        .form(&form)
        .send()
        .await
        .map_err(|e| SendError::Retryable(format!("the provider did not answer: {}", chain(&e))))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| {
        SendError::Retryable(format!(
            "the provider's answer (HTTP {}) was cut off: {}",
            status.as_u16(),
            chain(&e)
        ))
    })?;
    let answer = Answer::parse(&text);
    if status.is_success() {
        return Ok(Accepted {
            sid: answer.sid.filter(|s| !s.is_empty()),
            status: answer.status,
        });
    }
    let code = answer.code;
    let detail = match (answer.code, answer.message) {
        (Some(code), Some(message)) => format!(", code {code}: {message}"),
        (None, Some(message)) => format!(": {message}"),
        (Some(code), None) => format!(", code {code}"),
        (None, None) => String::new(),
    };
    let detail: String = detail.chars().take(500).collect();
    if code == Some(UNSUBSCRIBED_RECIPIENT) {
        Err(SendError::Unsubscribed(format!(
            "the recipient has unsubscribed from the clinic's number (HTTP {}{detail})",
            status.as_u16()
        )))
    } else if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Err(SendError::Retryable(format!(
            "the provider answered HTTP {}{detail}",
            status.as_u16()
        )))
    } else {
        Err(SendError::Refused(format!(
            "the provider refused the message (HTTP {}{detail})",
            status.as_u16()
        )))
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_sid_is_one_escaped_path_segment_under_the_base() {
        let base = reqwest::Url::parse("https://api.twilio.com").expect("url");
        assert_eq!(
            messages_url(&base, "AC123").expect("url").as_str(),
            "https://api.twilio.com/2010-04-01/Accounts/AC123/Messages.json"
        );
        let prefixed = reqwest::Url::parse("http://127.0.0.1:9/twilio/").expect("url");
        assert_eq!(
            messages_url(&prefixed, "../x?y").expect("url").as_str(),
            "http://127.0.0.1:9/twilio/2010-04-01/Accounts/..%2Fx%3Fy/Messages.json"
        );
    }
}
