//! Where Vapi reaches this server, and where this server reaches Vapi's REST API.

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

impl Default for VapiSettings {
    fn default() -> Self {
        Self::new(None, Url::parse(DEFAULT_API_URL).expect("Vapi's URL"))
    }
}
