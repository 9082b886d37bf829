//! OAuth 2.0 with the calendar providers, through the `oauth2` crate: the providers' settings,
//! the authorization code flow with PKCE (RFC 6749 section 4.1, RFC 7636: the consent URL, the
//! code exchange, the account's email), refreshing an access token (RFC 6749 section 6) and
//! revocation. The signed `state` and the browser cookie are the HTTP server's
//! (`voxanne_http::calendar_oauth`).

use crate::error::{truncate, CalendarError};
use crate::Tokens;
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use url::Url;
use voxanne_domain::CalendarProvider;

/// Where the providers send the browser back, under `VOXANNE_PUBLIC_URL`.
pub const CALLBACK_PATH: &str = "/oauth/callback";

/// Google's authorization endpoint.
pub const GOOGLE_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";
/// Google's token endpoint.
pub const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Google's revocation endpoint.
pub const GOOGLE_REVOKE_URL: &str = "https://oauth2.googleapis.com/revoke";
/// Google's OpenID Connect userinfo endpoint (the account's email).
pub const GOOGLE_USERINFO_URL: &str = "https://openidconnect.googleapis.com/v1/userinfo";
/// The Microsoft identity platform authority for work, school and personal accounts.
pub const MICROSOFT_AUTHORITY: &str = "https://login.microsoftonline.com/common";
/// Microsoft Graph (`/v1.0/...`).
pub const MICROSOFT_GRAPH_URL: &str = "https://graph.microsoft.com";
/// The Google Calendar API's base (`/calendar/v3/...`).
pub const GOOGLE_API_URL: &str = "https://www.googleapis.com";

/// Google: calendar access, and the account's email; offline access with a fresh consent, so
/// that a refresh token comes back every time.
pub const GOOGLE_SCOPES: &[&str] = &[
    "https://www.googleapis.com/auth/calendar",
    "openid",
    "email",
];
/// Microsoft identity platform: a refresh token (`offline_access`), the calendars, and the
/// signed-in user's profile for the account's address.
pub const MICROSOFT_SCOPES: &[&str] = &[
    "offline_access",
    "Calendars.ReadWrite",
    "User.Read",
    "openid",
    "email",
];

/// One provider's registered application and endpoints.
#[derive(Debug, Clone)]
pub struct ProviderApp {
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: SecretString,
    /// The authorization endpoint (the consent page).
    pub auth_url: Url,
    /// The token endpoint (code exchange and refresh).
    pub token_url: Url,
    /// Where the account's email is read with the access token: Google's userinfo endpoint,
    /// Microsoft Graph's `/v1.0/me`.
    pub account_url: Url,
    /// RFC 7009 revocation (Google). Microsoft has no endpoint that revokes one token: its
    /// only revocation, Graph's `revokeSignInSessions`, signs the user out everywhere, which is
    /// not ours to do; unlinking deletes the tokens and the clinic removes the app's consent.
    pub revoke_url: Option<Url>,
    /// The calendar API's base: Google's `https://www.googleapis.com` (paths `/calendar/v3/...`),
    /// Microsoft Graph's `https://graph.microsoft.com` (paths `/v1.0/...`). A base with a path
    /// of its own, with or without a trailing slash, keeps it.
    pub api_url: Url,
}

/// The calendar providers this server can connect to.
#[derive(Debug, Clone)]
pub struct CalendarOAuth {
    /// This server as the browser reaches it (`VOXANNE_PUBLIC_URL`).
    pub public_url: Option<Url>,
    /// Google's application, when configured.
    pub google: Option<ProviderApp>,
    /// Microsoft's application, when configured.
    pub microsoft: Option<ProviderApp>,
    /// The one HTTP client of every call to the providers (timeouts, no redirects).
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
        /// The provider.
        provider: CalendarProvider,
        /// RFC 6749 section 5.2's `error`.
        error: String,
        /// Its `error_description`.
        description: Option<String>,
    },
    /// The provider could not be reached or answered something that is not its format.
    #[error("{provider} could not be reached or answered unexpectedly: {source}")]
    Unavailable {
        /// The provider.
        provider: CalendarProvider,
        /// What went wrong.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{provider} did not tell the account's email address")]
    NoEmail {
        /// The provider.
        provider: CalendarProvider,
    },
}

/// What the provider gave for a code.
#[derive(Debug)]
pub struct Linked {
    /// The account's address, trimmed and lowercased.
    pub account_email: String,
    /// The access token.
    pub access_token: SecretString,
    /// The refresh token, when the provider gave one.
    pub refresh_token: Option<SecretString>,
    /// How long the access token lives.
    pub expires_in: Option<Duration>,
}

impl CalendarOAuth {
    /// The providers with one HTTP client: 15 s per request, 5 s to connect, no redirects.
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

    /// The provider's application, if it is configured.
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

    fn client(
        &self,
        provider: CalendarProvider,
        app: &ProviderApp,
    ) -> Result<Client, ExchangeError> {
        let bad = |e: url::ParseError| ExchangeError::Unavailable {
            provider,
            source: Box::new(e),
        };
        let client = BasicClient::new(ClientId::new(app.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                app.client_secret.expose_secret().to_owned(),
            ))
            // Both providers take the client's credentials in the form body.
            .set_auth_type(AuthType::RequestBody)
            .set_auth_uri_option(Some(AuthUrl::from_url(app.auth_url.clone())))
            .set_token_uri_option(Some(TokenUrl::from_url(app.token_url.clone())))
            .set_revocation_url_option(app.revoke_url.clone().map(RevocationUrl::from_url));
        // A refresh needs no redirect URI (a worker may run without a public URL).
        Ok(match self.redirect_uri() {
            Some(redirect) => client.set_redirect_uri(RedirectUrl::new(redirect).map_err(bad)?),
            None => client,
        })
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

    /// A fresh access token for `refresh_token` (RFC 6749 section 6). Google keeps the refresh
    /// token; Microsoft may rotate it, and then `Tokens::refresh_token` is the one to keep.
    /// `invalid_grant` (revoked, expired, or the consent withdrawn) is
    /// [`CalendarError::InvalidGrant`]: the link is broken until the clinic links again. Any
    /// other refusal (`invalid_client`: our application's credentials) is
    /// [`CalendarError::Rejected`], the operator's to fix, not the clinic's.
    pub async fn refresh(
        &self,
        provider: CalendarProvider,
        refresh_token: &SecretString,
    ) -> Result<Tokens, CalendarError> {
        let unavailable = |message: String| CalendarError::Unavailable { provider, message };
        let app = self
            .app(provider)
            .ok_or(CalendarError::NotConfigured { provider })?;
        let client = self
            .client(provider, app)
            .map_err(|e| unavailable(e.to_string()))?;
        let token = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.expose_secret().to_owned()))
            .map_err(|e| unavailable(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    let description = r.error_description().map(|d| truncate(d));
                    match r.error() {
                        BasicErrorResponseType::InvalidGrant => CalendarError::InvalidGrant {
                            provider,
                            error: "invalid_grant".into(),
                            description,
                        },
                        other => CalendarError::Rejected {
                            provider,
                            status: 400,
                            message: match description {
                                Some(d) => format!("{other}: {d}"),
                                None => other.to_string(),
                            },
                        },
                    }
                }
                RequestTokenError::Request(e) => unavailable(format!("the token endpoint: {e}")),
                RequestTokenError::Parse(e, _) => {
                    unavailable(format!("the token endpoint's answer: {}", e.inner()))
                }
                RequestTokenError::Other(e) => unavailable(truncate(&e)),
            })?;
        Ok(Tokens {
            access_token: SecretString::from(token.access_token().secret().as_str()),
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
