//! Where Vapi reaches this server, and where this server reaches Vapi's REST API (with a
//! clinic's own private key: its numbers, its credential, its outbound calls).

use serde_json::Value;
use url::Url;

/// Vapi's REST API.
pub const DEFAULT_API_URL: &str = "https://api.vapi.ai";

#[derive(Debug, Clone)]
pub struct VapiSettings {
    /// This server as Vapi reaches it (`VOXANNE_PUBLIC_URL`): the assistants Voxanne gives
    /// Vapi point their server and tools at `{public_url}/webhooks/voice/vapi`.
    pub public_url: Option<Url>,
    /// Vapi's REST API (`VOXANNE_VAPI_API_URL`).
    pub api_url: Url,
    pub http: reqwest::Client,
}

impl VapiSettings {
    pub fn new(public_url: Option<Url>, api_url: Url) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .connect_timeout(std::time::Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            public_url,
            api_url,
            http,
        }
    }

    /// The URL Vapi posts server messages to, when this server knows its public address.
    pub fn webhook_url(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}/webhooks/voice/vapi", u.as_str().trim_end_matches('/')))
    }
}

impl VapiSettings {
    /// The token endpoint of Vapi's OAuth 2.0 credential, when this server knows its public
    /// address.
    pub fn token_url(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}/oauth/vapi/token", u.as_str().trim_end_matches('/')))
    }
}

impl Default for VapiSettings {
    fn default() -> Self {
        Self::new(None, Url::parse(DEFAULT_API_URL).expect("Vapi's URL"))
    }
}

/// What Vapi's REST API answered, when it is not what was asked for. Vapi's errors are
/// NestJS-shaped: `{"message": "…" | ["…"], "error": "Unauthorized", "statusCode": 401}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VapiError {
    #[error("Vapi refused the API key: {0}")]
    Unauthorized(String),
    #[error("Vapi is limiting requests; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("Vapi has no such {0}")]
    NotFound(&'static str),
    #[error("Vapi answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("Vapi could not be reached: {0}")]
    Unreachable(String),
}

/// Vapi's `message` (a string, or a list of them), else the body as text.
fn vapi_message(body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .map(|m| match m {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("; "),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let text = message.unwrap_or_else(|| body.to_owned());
    text.chars().take(300).collect()
}

/// A client of Vapi's REST API with one clinic's private key.
pub struct VapiApi<'a> {
    settings: &'a VapiSettings,
    key: &'a str,
}

impl<'a> VapiApi<'a> {
    pub fn new(settings: &'a VapiSettings, key: &'a str) -> Self {
        Self { settings, key }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        what: &'static str,
    ) -> Result<Value, VapiError> {
        let url = format!(
            "{}{path}",
            self.settings.api_url.as_str().trim_end_matches('/')
        );
        let mut request = self
            .settings
            .http
            .request(method, &url)
            .bearer_auth(self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| VapiError::Unreachable(e.without_url().to_string()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = response
            .text()
            .await
            .map_err(|e| VapiError::Unreachable(e.without_url().to_string()))?;
        match status.as_u16() {
            200..=299 => serde_json::from_str(&text).map_err(|_| VapiError::Refused {
                status: status.as_u16(),
                message: "the answer is not JSON".into(),
            }),
            401 | 403 => Err(VapiError::Unauthorized(vapi_message(&text))),
            404 => Err(VapiError::NotFound(what)),
            429 => Err(VapiError::RateLimited {
                retry_after: retry_after.unwrap_or(30).clamp(1, 3600),
            }),
            other => Err(VapiError::Refused {
                status: other,
                message: vapi_message(&text),
            }),
        }
    }

    /// `GET /phone-number`: every number of the account (a plain array; up to 1000).
    pub async fn phone_numbers(&self) -> Result<Vec<Value>, VapiError> {
        match self
            .call(
                reqwest::Method::GET,
                "/phone-number?limit=1000",
                None,
                "phone numbers",
            )
            .await?
        {
            Value::Array(numbers) => Ok(numbers),
            _ => Err(VapiError::Refused {
                status: 200,
                message: "the phone number list is not an array".into(),
            }),
        }
    }

    /// `POST /credential`: the new credential's id.
    pub async fn create_credential(&self, credential: &Value) -> Result<String, VapiError> {
        let created = self
            .call(
                reqwest::Method::POST,
                "/credential",
                Some(credential),
                "credential",
            )
            .await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| VapiError::Refused {
                status: 201,
                message: "the created credential has no id".into(),
            })
    }

    /// `PATCH /credential/{id}`.
    pub async fn update_credential(&self, id: &str, credential: &Value) -> Result<(), VapiError> {
        let path = format!("/credential/{}", path_segment(id));
        self.call(
            reqwest::Method::PATCH,
            &path,
            Some(credential),
            "credential",
        )
        .await
        .map(drop)
    }

    /// `PATCH /phone-number/{id}`.
    pub async fn update_phone_number(&self, id: &str, update: &Value) -> Result<(), VapiError> {
        let path = format!("/phone-number/{}", path_segment(id));
        self.call(reqwest::Method::PATCH, &path, Some(update), "phone number")
            .await
            .map(drop)
    }
}

impl VapiApi<'_> {
    /// `POST /call` (Vapi's `CreateCallDTO`): places an outbound phone call; the created
    /// call's `id`.
    pub async fn create_call(&self, call: &Value) -> Result<String, VapiError> {
        let created = self
            .call(reqwest::Method::POST, "/call", Some(call), "call")
            .await?;
        created["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| VapiError::Refused {
                status: 201,
                message: "the created call has no id".into(),
            })
    }

    /// Vapi's id of the account's phone number `number` (E.164), if the account has it.
    pub async fn phone_number_id(&self, number: &str) -> Result<Option<String>, VapiError> {
        Ok(self.phone_numbers().await?.iter().find_map(|n| {
            (n["number"].as_str() == Some(number))
                .then(|| n["id"].as_str().map(str::to_owned))
                .flatten()
        }))
    }
}

/// An id from Vapi, made safe to put in a path.
fn path_segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}
