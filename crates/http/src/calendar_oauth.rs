//! Connecting a clinic's Google or Microsoft calendar: OAuth 2.0's authorization code flow
//! with PKCE (RFC 6749 section 4.1, RFC 7636), through the `oauth2` crate. This module holds
//! the providers' settings, the signed `state`, the browser cookie that must come back with
//! the callback, and the calls to the providers (code exchange, the account's email,
//! revocation). The routes are `routes/calendar_oauth.rs`.
//!
//! The `state` sent to the provider is `base64url(org id || state id || mac)`, the MAC an
//! HMAC-SHA256 under a key derived from the keyring: a state this server did not issue is
//! refused before the database is asked. The state row itself is single use and expires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError,
    RevocationUrl, Scope, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::time::Duration;
use url::Url;
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_domain::{CalendarProvider, OrgId};

/// The cookie that binds a flow to the browser that started it.
pub const COOKIE: &str = "voxanne_oauth";
/// Where the providers send the browser back, under `VOXANNE_PUBLIC_URL`.
pub const CALLBACK_PATH: &str = "/oauth/callback";
/// How long a started flow may take.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
pub const GOOGLE_REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
pub const GOOGLE_USERINFO_URL: &str = "https://openidconnect.googleapis.com/v1/userinfo";
pub const MICROSOFT_AUTHORITY: &str = "https://login.microsoftonline.com/common";
pub const MICROSOFT_GRAPH_URL: &str = "https://graph.microsoft.com";

/// Google: calendar access, and the account's email; offline access with a fresh consent, so
/// that a refresh token comes back every time.
const GOOGLE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar",
    "openid",
    "email",
];
/// Microsoft identity platform: a refresh token (`offline_access`), the calendars, and the
/// signed-in user's profile for the account's address.
const MICROSOFT_SCOPES: &[&str] = &[
    "offline_access",
    "Calendars.ReadWrite",
    "User.Read",
    "openid",
    "email",
];

/// One provider's registered application and endpoints.
#[derive(Debug, Clone)]
pub struct ProviderApp {
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: Url,
    pub token_url: Url,
    /// Where the account's email is read with the access token: Google's userinfo endpoint,
    /// Microsoft Graph's `/v1.0/me`.
    pub account_url: Url,
    /// RFC 7009 revocation (Google). Microsoft has no endpoint that revokes one token: its
    /// only revocation, Graph's `revokeSignInSessions`, signs the user out everywhere, which is
    /// not ours to do; unlinking deletes the tokens and the clinic removes the app's consent.
    pub revoke_url: Option<Url>,
}

/// The calendar providers this server can connect to.
#[derive(Debug, Clone)]
pub struct CalendarOAuth {
    /// This server as the browser reaches it (`VOXANNE_PUBLIC_URL`).
    pub public_url: Option<Url>,
    pub google: Option<ProviderApp>,
    pub microsoft: Option<ProviderApp>,
    pub http: reqwest::Client,
}

impl Default for CalendarOAuth {
    fn default() -> Self {
        Self::new(None, None, None)
    }
}

type Client = BasicClient<
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a code could not be turned into a linked account.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The provider refused the code (`invalid_grant`: expired, used, or the verifier or
    /// redirect URI does not match), or the client (`invalid_client`).
    #[error("{provider} refused the authorization code: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        provider: CalendarProvider,
        error: String,
        description: Option<String>,
    },
    /// The provider could not be reached or answered something that is not its format.
    #[error("{provider} could not be reached or answered unexpectedly: {source}")]
    Unavailable {
        provider: CalendarProvider,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{provider} did not tell the account's email address")]
    NoEmail { provider: CalendarProvider },
}

/// What the provider gave for a code.
#[derive(Debug)]
pub struct Linked {
    pub account_email: String,
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_in: Option<Duration>,
}

impl CalendarOAuth {
    pub fn new(
        public_url: Option<Url>,
        google: Option<ProviderApp>,
        microsoft: Option<ProviderApp>,
    ) -> Self {
        // No redirects: a token endpoint that redirects is not followed with the code.
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            public_url,
            google,
            microsoft,
            http,
        }
    }

    pub fn app(&self, provider: CalendarProvider) -> Option<&ProviderApp> {
        match provider {
            CalendarProvider::Google => self.google.as_ref(),
            CalendarProvider::Microsoft => self.microsoft.as_ref(),
        }
    }

    /// `{VOXANNE_PUBLIC_URL}/oauth/callback`, the redirect URI to register with each provider.
    pub fn redirect_uri(&self) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|u| format!("{}{CALLBACK_PATH}", u.as_str().trim_end_matches('/')))
    }

    /// The cookie is `Secure` when the server is reached over https, i.e. everywhere but a
    /// development server on plain http (where a browser would drop a `Secure` cookie).
    pub fn secure_cookie(&self) -> bool {
        self.public_url
            .as_ref()
            .is_none_or(|u| u.scheme() == "https")
    }

    fn client(
        &self,
        provider: CalendarProvider,
        app: &ProviderApp,
    ) -> Result<Client, ExchangeError> {
        let redirect = self.redirect_uri().unwrap_or_default();
        let bad = |e: url::ParseError| ExchangeError::Unavailable {
            provider,
            source: Box::new(e),
        };
        Ok(BasicClient::new(ClientId::new(app.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                app.client_secret.expose_secret().to_owned(),
            ))
            // Both providers take the client's credentials in the form body.
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri_option(Some(AuthUrl::from_url(app.auth_url.clone())))
            .set_token_uri_option(Some(TokenUrl::from_url(app.token_url.clone())))
            .set_revocation_url_option(app.revoke_url.clone().map(RevocationUrl::from_url))
            .set_redirect_uri(RedirectUrl::new(redirect).map_err(bad)?))
    }

    /// The provider's consent URL for `state`, with the PKCE `challenge` of the flow's
    /// verifier (S256). `None` when the provider is not configured.
    pub fn authorization_url(
        &self,
        provider: CalendarProvider,
        state: String,
        challenge: PkceCodeChallenge,
    ) -> Option<Url> {
        let app = self.app(provider)?;
        let client = self.client(provider, app).ok()?;
        let request = client
            .authorize_url(move || CsrfToken::new(state))
            .ok()?
            .set_pkce_challenge(challenge);
        let request = match provider {
            CalendarProvider::Google => request
                .add_scopes(GOOGLE_SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
                .add_extra_param("access_type", "offline")
                .add_extra_param("prompt", "consent"),
            CalendarProvider::Microsoft => {
                request.add_scopes(MICROSOFT_SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            }
        };
        Some(request.url().0)
    }

    /// Exchanges `code` (with the flow's verifier) at the provider's token endpoint and reads
    /// the account's email with the access token.
    pub async fn exchange(
        &self,
        provider: CalendarProvider,
        code: String,
        verifier: SecretString,
    ) -> Result<Linked, ExchangeError> {
        let unavailable = |source: Box<dyn std::error::Error + Send + Sync>| {
            ExchangeError::Unavailable { provider, source }
        };
        let app = self
            .app(provider)
            .ok_or_else(|| unavailable("the provider is no longer configured".into()))?;
        let client = self.client(provider, app)?;
        let token = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| unavailable(Box::new(e)))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.expose_secret().to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => ExchangeError::Refused {
                    provider,
                    error: match r.error() {
                        BasicErrorResponseType::Extension(other) => other.clone(),
                        known => known.to_string(),
                    },
                    description: r.error_description().cloned(),
                },
                other => unavailable(Box::new(other)),
            })?;
        let access_token = SecretString::from(token.access_token().secret().as_str());
        let account_email = self.account_email(provider, app, &access_token).await?;
        Ok(Linked {
            account_email,
            access_token,
            refresh_token: token
                .refresh_token()
                .map(|t| SecretString::from(t.secret().as_str())),
            expires_in: token.expires_in(),
        })
    }

    /// Google's userinfo `email`; Microsoft Graph's `mail`, else `userPrincipalName`.
    async fn account_email(
        &self,
        provider: CalendarProvider,
        app: &ProviderApp,
        access_token: &SecretString,
    ) -> Result<String, ExchangeError> {
        let unavailable = |source: Box<dyn std::error::Error + Send + Sync>| {
            ExchangeError::Unavailable { provider, source }
        };
        let response = self
            .http
            .get(app.account_url.clone())
            .bearer_auth(access_token.expose_secret())
            .send()
            .await
            .map_err(|e| unavailable(Box::new(e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(
                format!("{} answered {status}", app.account_url).into(),
            ));
        }
        let body: serde_json::Value = response
            .json()
            .await
            .map_err(|e| unavailable(Box::new(e)))?;
        let fields: &[&str] = match provider {
            CalendarProvider::Google => &["email"],
            CalendarProvider::Microsoft => &["mail", "userPrincipalName"],
        };
        fields
            .iter()
            .find_map(|f| body[*f].as_str().filter(|s| !s.trim().is_empty()))
            .map(|s| s.trim().to_lowercase())
            .ok_or(ExchangeError::NoEmail { provider })
    }

    /// Revokes a token at the provider where it has a revocation endpoint (Google). Returns
    /// `Ok(false)` when the provider has none (Microsoft).
    pub async fn revoke(
        &self,
        provider: CalendarProvider,
        token: &SecretString,
    ) -> Result<bool, ExchangeError> {
        let Some(app) = self.app(provider).filter(|a| a.revoke_url.is_some()) else {
            return Ok(false);
        };
        let Some(url) = app.revoke_url.clone() else {
            return Ok(false);
        };
        // Google's documented revocation: a form POST of `token=` (no client authentication).
        // Not the `oauth2` crate's RFC 7009 request, which insists on an https endpoint.
        let unavailable = |source: Box<dyn std::error::Error + Send + Sync>| {
            ExchangeError::Unavailable { provider, source }
        };
        let response = self
            .http
            .post(url)
            .form(&[("token", token.expose_secret())])
            .send()
            .await
            .map_err(|e| unavailable(Box::new(e)))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(unavailable(
                format!(
                    "the revocation endpoint answered {status}: {}",
                    body.chars().take(200).collect::<String>()
                )
                .into(),
            ));
        }
        Ok(true)
    }
}

/// The state a flow sends to the provider: its org and row, and their MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedState {
    pub org: OrgId,
    pub id: Uuid,
}

const MAC_LEN: usize = 32;
const STATE_PURPOSE: &str = "calendar-oauth-state";

fn state_mac(keyring: &Keyring, org: OrgId, id: Uuid) -> Hmac<Sha256> {
    let key = keyring.derive_key(STATE_PURPOSE);
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
        .expect("HMAC takes a key of any length");
    mac.update(org.as_uuid().as_bytes());
    mac.update(id.as_bytes());
    mac
}

impl SignedState {
    pub fn encode(&self, keyring: &Keyring) -> String {
        let mac = state_mac(keyring, self.org, self.id)
            .finalize()
            .into_bytes();
        let mut bytes = Vec::with_capacity(32 + MAC_LEN);
        bytes.extend_from_slice(self.org.as_uuid().as_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        bytes.extend_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The state, if `text` is one this server signed (constant-time MAC check).
    pub fn verify(keyring: &Keyring, text: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        if bytes.len() != 32 + MAC_LEN {
            return None;
        }
        let org = OrgId::from_uuid(Uuid::from_slice(&bytes[..16]).ok()?);
        let id = Uuid::from_slice(&bytes[16..32]).ok()?;
        state_mac(keyring, org, id)
            .verify_slice(&bytes[32..])
            .ok()?;
        Some(Self { org, id })
    }
}

/// A fresh random value for the browser cookie.
pub fn new_browser_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the state row keeps of the cookie: its sha256.
pub fn browser_hash(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

/// Whether `cookie` is the one whose hash the state kept (constant time).
pub fn same_browser(cookie: Option<&str>, stored: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    cookie.is_some_and(|c| bool::from(browser_hash(c).as_slice().ct_eq(stored)))
}

/// The `Set-Cookie` that starts a flow in this browser.
pub fn set_cookie(value: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path={CALLBACK_PATH}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        STATE_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` that ends it, whatever the callback decided.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; Path={CALLBACK_PATH}; Max-Age=0; HttpOnly; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `voxanne_oauth` cookie of a request's `Cookie` headers.
pub fn cookie_of(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
}
