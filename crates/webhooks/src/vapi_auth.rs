//! How a clinic's Vapi server URL proves itself: the clinic's choice among the credentials
//! Vapi offers (Vapi docs, "Server authentication", docs.vapi.ai/server-url/server-authentication;
//! the custom credential's `authenticationPlan` in Vapi's API: `BearerAuthenticationPlan` and
//! `HMACAuthenticationPlan`, as Vapi's server SDKs declare them).
//!
//! - `x-vapi-secret`: the secret verbatim in `X-Vapi-Secret`: the legacy inline
//!   `server.secret`, and a bearer credential with that header and no prefix. The default.
//! - `bearer`: `Authorization: Bearer <secret>`, or the header the clinic chose, with or
//!   without the `Bearer ` prefix (`headerName`, `bearerPrefixEnabled`).
//! - `hmac`: the MAC of a payload built from `payloadFormat` (`{timestamp}.{body}` unless
//!   the clinic says otherwise; `{body}`, `{timestamp}`, `{method}`, `{url}`, `{svix-id}`),
//!   keyed with the secret (`secretIsBase64`: decoded first), in `signatureHeader` after
//!   `signaturePrefix`, hex or base64; the timestamp in `timestampHeader` must be within the
//!   replay window.
//!
//! - `oauth2`: Vapi's OAuth 2.0 credential, with Voxanne as the token endpoint: Vapi trades
//!   the client id (the clinic's organization id) and secret for an access token at
//!   `/oauth/vapi/token` (client credentials grant, RFC 6749 section 4.4) and sends
//!   `Authorization: Bearer <token>`. The token is Voxanne's own: an expiry and a MAC keyed
//!   with the clinic's secret, so nothing is stored and another clinic's token proves nothing.
//!
//! The settings are a clinic's `server_auth` in its `vapi` integration config (non-secret,
//! shown as stored); the secret is the integration's `webhook_secret` (sealed). Every
//! comparison is constant time.

use crate::signature::SignatureError;
use crate::voice::Request;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The config key that holds a clinic's choice.
pub const CONFIG_KEY: &str = "server_auth";

const DEFAULT_PAYLOAD_FORMAT: &str = "{timestamp}.{body}";
const DEFAULT_REPLAY_WINDOW_SECONDS: i64 = 300;
const MAX_REPLAY_WINDOW_SECONDS: i64 = 3600;

/// A clinic's server authentication, as its `vapi` integration stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ServerAuth {
    /// `X-Vapi-Secret: <secret>` (Vapi's legacy `server.secret`).
    #[default]
    XVapiSecret,
    /// Vapi's bearer credential.
    Bearer(BearerPlan),
    /// Vapi's HMAC credential.
    Hmac(HmacPlan),
    /// Vapi's OAuth 2.0 credential, this server its token endpoint.
    Oauth2(OAuth2Plan),
}

/// How long the access tokens Voxanne issues to Vapi last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Plan {
    /// Seconds (60 to 86400; default 3600).
    #[serde(default = "token_ttl")]
    pub token_ttl_seconds: i64,
}

fn token_ttl() -> i64 {
    3600
}

/// The prefix of the access tokens Voxanne issues, and what their MAC covers besides the
/// expiry (so that the MAC is of nothing else the secret keys).
const TOKEN_PREFIX: &str = "vxo1";
const TOKEN_CONTEXT: &[u8] = b"voxanne vapi oauth2 access token|";

fn token_mac(secret: &[u8], expires: i64) -> Vec<u8> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(TOKEN_CONTEXT);
    mac.update(expires.to_string().as_bytes());
    mac.finalize().into_bytes().to_vec()
}

impl OAuth2Plan {
    /// An access token for the clinic whose client secret is `secret`: `(token, expires_in)`.
    pub fn issue(&self, secret: &[u8], now: i64) -> (String, i64) {
        let expires = now.saturating_add(self.token_ttl_seconds);
        let mac =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token_mac(secret, expires));
        (
            format!("{TOKEN_PREFIX}.{expires}.{mac}"),
            self.token_ttl_seconds,
        )
    }

    fn verify(&self, secret: &[u8], token: &str, now: i64) -> Result<(), SignatureError> {
        let mut parts = token.split('.');
        let (Some(TOKEN_PREFIX), Some(expires), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SignatureError::Malformed);
        };
        let expires: i64 = expires.parse().map_err(|_| SignatureError::Malformed)?;
        let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(mac)
            .map_err(|_| SignatureError::Malformed)?;
        if !bool::from(token_mac(secret, expires).ct_eq(&given)) {
            return Err(SignatureError::Mismatch);
        }
        if now > expires {
            return Err(SignatureError::Stale {
                age_seconds: now - expires,
            });
        }
        Ok(())
    }
}

/// Vapi's bearer settings, with Vapi's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerPlan {
    /// The header Vapi sends the token in (Vapi's `headerName`; default `Authorization`).
    #[serde(default = "authorization")]
    pub header_name: String,
    /// Whether the value starts with `Bearer ` (Vapi's `bearerPrefixEnabled`; default true).
    #[serde(default = "yes")]
    pub bearer_prefix: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    Sha256,
    Sha512,
    Sha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Hex,
    Base64,
}

/// Vapi's HMAC settings, with Vapi's defaults, and the replay window Voxanne applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HmacPlan {
    /// `sha256`, `sha512` or `sha1` (Vapi's `algorithm`; default `sha256`).
    #[serde(default = "sha256")]
    pub algorithm: Algorithm,
    /// Vapi's `signatureHeader` (default `x-signature`).
    #[serde(default = "x_signature")]
    pub signature_header: String,
    /// Vapi's `timestampHeader` (default `x-timestamp`).
    #[serde(default = "x_timestamp")]
    pub timestamp_header: String,
    /// Vapi's `messageIdHeader`: where `{svix-id}` comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id_header: Option<String>,
    /// Vapi's `signaturePrefix`, e.g. `sha256=` (default none).
    #[serde(default)]
    pub signature_prefix: String,
    /// Vapi's `includeTimestamp` (default true): without it nothing bounds a replay.
    #[serde(default = "yes")]
    pub include_timestamp: bool,
    /// Vapi's `payloadFormat` (default `{timestamp}.{body}`, or `{body}` without a timestamp).
    #[serde(default)]
    pub payload_format: Option<String>,
    /// Vapi's `signatureEncoding`: `hex` (default) or `base64`.
    #[serde(default = "hex")]
    pub signature_encoding: Encoding,
    /// Vapi's `secretIsBase64` (default false): the secret is decoded before use.
    #[serde(default)]
    pub secret_is_base64: bool,
    /// How far the signed timestamp may be from now, in seconds (1 to 3600; default 300).
    #[serde(default = "replay_window")]
    pub replay_window_seconds: i64,
}

fn authorization() -> String {
    "Authorization".into()
}
fn yes() -> bool {
    true
}
fn sha256() -> Algorithm {
    Algorithm::Sha256
}
fn hex() -> Encoding {
    Encoding::Hex
}
fn x_signature() -> String {
    "x-signature".into()
}
fn x_timestamp() -> String {
    "x-timestamp".into()
}
fn replay_window() -> i64 {
    DEFAULT_REPLAY_WINDOW_SECONDS
}

/// A setting that cannot be used, naming the field (relative to `server_auth`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Headers a credential may not claim: the ones HTTP itself or the proxy in front decides.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    "x-forwarded-for",
    "x-forwarded-proto",
];

fn header_name(field: &str, name: &str) -> Result<String, ConfigError> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.is_empty()
        || lower.len() > 64
        || http::HeaderName::from_bytes(lower.as_bytes()).is_err()
    {
        return Err(invalid(field, "a header name: 1 to 64 token characters"));
    }
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err(invalid(
            field,
            format!("`{lower}` is set by HTTP, not by a credential"),
        ));
    }
    Ok(lower)
}

/// One piece of an HMAC payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part<'a> {
    Text(&'a str),
    Body,
    Timestamp,
    Method,
    Url,
    MessageId,
}

/// The pieces of `format`; an unknown `{…}` is an error.
fn payload_parts(format: &str) -> Result<Vec<Part<'_>>, String> {
    let mut parts = Vec::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(&rest[..open]));
        }
        let close = rest[open..].find('}').ok_or("an unclosed `{`")? + open;
        parts.push(match &rest[open + 1..close] {
            "body" => Part::Body,
            "timestamp" => Part::Timestamp,
            "method" => Part::Method,
            "url" => Part::Url,
            "svix-id" => Part::MessageId,
            other => {
                return Err(format!(
                    "unknown placeholder `{{{other}}}`: use {{body}}, {{timestamp}}, {{method}}, {{url}} or {{svix-id}}"
                ))
            }
        });
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest));
    }
    Ok(parts)
}

impl HmacPlan {
    fn payload_format(&self) -> &str {
        match &self.payload_format {
            Some(format) => format,
            None if self.include_timestamp => DEFAULT_PAYLOAD_FORMAT,
            None => "{body}",
        }
    }

    fn validated(mut self) -> Result<Self, ConfigError> {
        self.signature_header = header_name("signature_header", &self.signature_header)?;
        self.timestamp_header = header_name("timestamp_header", &self.timestamp_header)?;
        if let Some(name) = &self.message_id_header {
            self.message_id_header = Some(header_name("message_id_header", name)?);
        }
        if self.signature_prefix.len() > 32 || self.signature_prefix.contains(char::is_control) {
            return Err(invalid(
                "signature_prefix",
                "at most 32 printable characters",
            ));
        }
        if !(1..=MAX_REPLAY_WINDOW_SECONDS).contains(&self.replay_window_seconds) {
            return Err(invalid(
                "replay_window_seconds",
                format!("1 to {MAX_REPLAY_WINDOW_SECONDS} seconds"),
            ));
        }
        let format = self.payload_format().to_owned();
        if format.len() > 200 {
            return Err(invalid("payload_format", "at most 200 characters"));
        }
        let parts = payload_parts(&format).map_err(|m| invalid("payload_format", m))?;
        if !parts.contains(&Part::Body) {
            return Err(invalid(
                "payload_format",
                "must contain {body}: otherwise the message itself is not signed",
            ));
        }
        if parts.contains(&Part::Timestamp) != self.include_timestamp {
            return Err(invalid(
                "payload_format",
                "contains {timestamp} exactly when include_timestamp is true (a timestamp \
                 that is not signed bounds nothing)",
            ));
        }
        if parts.contains(&Part::MessageId) && self.message_id_header.is_none() {
            return Err(invalid(
                "message_id_header",
                "required when payload_format contains {svix-id}",
            ));
        }
        let mut names = vec![&self.signature_header];
        if self.include_timestamp {
            names.push(&self.timestamp_header);
        }
        names.extend(self.message_id_header.as_ref());
        if (1..names.len()).any(|i| names[..i].contains(&names[i])) {
            return Err(invalid(
                "signature_header",
                "each header must be a different one",
            ));
        }
        Ok(self)
    }

    /// The bytes the platform signs for `request`, or why they cannot be built.
    fn payload(&self, request: &Request<'_>) -> Result<Vec<u8>, SignatureError> {
        let parts = payload_parts(self.payload_format()).map_err(|_| SignatureError::Malformed)?;
        let mut payload = Vec::with_capacity(request.body.len() + 64);
        for part in parts {
            match part {
                Part::Text(text) => payload.extend_from_slice(text.as_bytes()),
                Part::Body => payload.extend_from_slice(request.body),
                Part::Timestamp => payload
                    .extend_from_slice(present(request.header(&self.timestamp_header))?.as_bytes()),
                Part::Method => payload.extend_from_slice(b"POST"),
                Part::Url => payload.extend_from_slice(request.url.as_bytes()),
                Part::MessageId => {
                    let header = self.message_id_header.as_deref().unwrap_or_default();
                    payload.extend_from_slice(present(request.header(header))?.as_bytes())
                }
            }
        }
        Ok(payload)
    }

    fn key(&self, secret: &[u8]) -> Result<Vec<u8>, SignatureError> {
        if self.secret_is_base64 {
            STANDARD
                .decode(secret)
                .map_err(|_| SignatureError::Mismatch)
        } else {
            Ok(secret.to_vec())
        }
    }

    fn mac(&self, key: &[u8], payload: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], payload: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
            mac.update(payload);
            mac.finalize().into_bytes().to_vec()
        }
        match self.algorithm {
            Algorithm::Sha256 => run::<Hmac<Sha256>>(key, payload),
            Algorithm::Sha512 => run::<Hmac<sha2::Sha512>>(key, payload),
            Algorithm::Sha1 => run::<Hmac<sha1::Sha1>>(key, payload),
        }
    }

    fn verify(&self, secret: &[u8], request: &Request<'_>) -> Result<(), SignatureError> {
        let signature = present(request.header(&self.signature_header))?;
        let encoded = signature
            .strip_prefix(self.signature_prefix.as_str())
            .ok_or(SignatureError::Malformed)?;
        let given = match self.signature_encoding {
            Encoding::Hex => hex::decode(encoded).map_err(|_| SignatureError::Malformed)?,
            Encoding::Base64 => STANDARD
                .decode(encoded)
                .map_err(|_| SignatureError::Malformed)?,
        };
        let payload = self.payload(request)?;
        let expected = self.mac(&self.key(secret)?, &payload);
        // The signature first: a forged request learns nothing about the clock.
        if !bool::from(expected.ct_eq(&given)) {
            return Err(SignatureError::Mismatch);
        }
        if self.include_timestamp {
            let sent = present(request.header(&self.timestamp_header))?;
            let at: i64 = sent.parse().map_err(|_| SignatureError::Malformed)?;
            // Seconds, or milliseconds from a platform that sends those.
            let at = if at.abs() >= 100_000_000_000 {
                at / 1000
            } else {
                at
            };
            let age_seconds = request.now.saturating_sub(at);
            if age_seconds.abs() > self.replay_window_seconds {
                return Err(SignatureError::Stale { age_seconds });
            }
        }
        Ok(())
    }

    fn sign(&self, secret: &[u8], request: &Request<'_>) -> Result<String, SignatureError> {
        let mac = self.mac(&self.key(secret)?, &self.payload(request)?);
        let encoded = match self.signature_encoding {
            Encoding::Hex => hex::encode(mac),
            Encoding::Base64 => STANDARD.encode(mac),
        };
        Ok(format!("{}{encoded}", self.signature_prefix))
    }
}

/// A plan's settings, an error naming the field that is wrong.
fn settings_of<T: serde::de::DeserializeOwned>(settings: Value) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(settings).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // An unknown field is named by the message, not the path.
        let field = match message.split('`').nth(1) {
            Some(name) if message.starts_with("unknown field") => name.to_owned(),
            _ if path == "." => String::new(),
            _ => path,
        };
        ConfigError { field, message }
    })
}

fn present(header: Option<&str>) -> Result<&str, SignatureError> {
    header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)
}

/// Whether `given` is `expected`, in time that depends on neither (both are hashed first, so
/// not even the length is compared in the clear).
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    Sha256::digest(given)
        .ct_eq(&Sha256::digest(expected))
        .into()
}

impl ServerAuth {
    /// The clinic's setting from its `vapi` integration config: the default when absent.
    pub fn from_config(config: &Value) -> Result<Self, ConfigError> {
        match config.get(CONFIG_KEY) {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(value) => {
                let types = "`x-vapi-secret`, `bearer`, `hmac` or `oauth2`";
                let mut fields = value
                    .as_object()
                    .cloned()
                    .ok_or_else(|| invalid("", format!("an object whose `type` is {types}")))?;
                let kind = fields.remove("type");
                let settings = Value::Object(fields);
                let auth = match kind.as_ref().and_then(Value::as_str) {
                    Some("x-vapi-secret") => match settings
                        .as_object()
                        .and_then(|f| f.keys().next())
                    {
                        Some(extra) => return Err(invalid(extra, "x-vapi-secret has no settings")),
                        None => Self::XVapiSecret,
                    },
                    Some("bearer") => Self::Bearer(settings_of(settings)?),
                    Some("hmac") => Self::Hmac(settings_of(settings)?),
                    Some("oauth2") => Self::Oauth2(settings_of(settings)?),
                    _ => return Err(invalid("type", format!("one of {types}"))),
                };
                auth.validated()
            }
        }
    }

    fn validated(self) -> Result<Self, ConfigError> {
        Ok(match self {
            Self::XVapiSecret => Self::XVapiSecret,
            Self::Bearer(plan) => Self::Bearer(BearerPlan {
                header_name: header_name("header_name", &plan.header_name)?,
                bearer_prefix: plan.bearer_prefix,
            }),
            Self::Hmac(plan) => Self::Hmac(plan.validated()?),
            Self::Oauth2(plan) => {
                if !(60..=86_400).contains(&plan.token_ttl_seconds) {
                    return Err(invalid("token_ttl_seconds", "60 to 86400 seconds"));
                }
                Self::Oauth2(plan)
            }
        })
    }

    /// Checks `request` against the clinic's `secret`.
    pub fn verify(&self, secret: &[u8], request: &Request<'_>) -> Result<(), SignatureError> {
        let token = |header: &str, prefix: bool| -> Result<(), SignatureError> {
            let sent = present(request.header(header))?;
            let token = if prefix {
                match sent.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
                    _ => return Err(SignatureError::Malformed),
                }
            } else {
                sent
            };
            if same_secret(token.as_bytes(), secret) {
                Ok(())
            } else {
                Err(SignatureError::Mismatch)
            }
        };
        match self {
            Self::XVapiSecret => token("x-vapi-secret", false),
            Self::Bearer(plan) => token(&plan.header_name, plan.bearer_prefix),
            Self::Hmac(plan) => plan.verify(secret, request),
            Self::Oauth2(plan) => {
                let sent = present(request.header("authorization"))?;
                match sent.split_once(' ') {
                    Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                        plan.verify(secret, token.trim(), request.now)
                    }
                    _ => Err(SignatureError::Malformed),
                }
            }
        }
    }

    /// The headers the platform sends with `body` at `request.now` (for `voxanne call
    /// simulate` and the benchmarks; the server's tests sign independently).
    pub fn headers(&self, secret: &str, body: &[u8], url: &str, now: i64) -> Vec<(String, String)> {
        match self {
            Self::XVapiSecret => vec![("x-vapi-secret".into(), secret.into())],
            Self::Bearer(plan) => {
                let value = if plan.bearer_prefix {
                    format!("Bearer {secret}")
                } else {
                    secret.to_owned()
                };
                vec![(plan.header_name.clone(), value)]
            }
            Self::Hmac(plan) => {
                let mut headers = http::HeaderMap::new();
                let mut out = Vec::new();
                if plan.include_timestamp {
                    out.push((plan.timestamp_header.clone(), now.to_string()));
                }
                if let Some(name) = &plan.message_id_header {
                    out.push((name.clone(), format!("msg_{now}")));
                }
                for (name, value) in &out {
                    if let (Ok(name), Ok(value)) = (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        http::HeaderValue::from_str(value),
                    ) {
                        headers.insert(name, value);
                    }
                }
                let request = Request {
                    url,
                    headers: &headers,
                    body,
                    now,
                };
                if let Ok(signature) = plan.sign(secret.as_bytes(), &request) {
                    out.push((plan.signature_header.clone(), signature));
                }
                out
            }
            // What Vapi sends once it holds a token (`voxanne call simulate` asks the token
            // endpoint for one, as Vapi does, and passes the token as `secret`).
            Self::Oauth2(_) => vec![("authorization".into(), format!("Bearer {secret}"))],
        }
    }

    /// The custom credential that makes Vapi authenticate this way (`POST /credential`,
    /// provider `custom-credential`, its `authenticationPlan`). `oauth_client` is the token
    /// endpoint and the client id, for `oauth2`.
    pub fn vapi_credential(&self, name: &str, secret: &str, oauth_client: (&str, &str)) -> Value {
        let plan = match self {
            Self::XVapiSecret => json!({"type": "bearer", "token": secret,
                "headerName": "X-Vapi-Secret", "bearerPrefixEnabled": false}),
            Self::Bearer(plan) => json!({"type": "bearer", "token": secret,
                "headerName": plan.header_name, "bearerPrefixEnabled": plan.bearer_prefix}),
            Self::Hmac(plan) => {
                let mut p = json!({"type": "hmac", "secretKey": secret,
                    "algorithm": plan.algorithm, "signatureHeader": plan.signature_header,
                    "timestampHeader": plan.timestamp_header,
                    "includeTimestamp": plan.include_timestamp,
                    "payloadFormat": plan.payload_format(),
                    "signatureEncoding": plan.signature_encoding,
                    "secretIsBase64": plan.secret_is_base64});
                if !plan.signature_prefix.is_empty() {
                    p["signaturePrefix"] = json!(plan.signature_prefix);
                }
                if let Some(header) = &plan.message_id_header {
                    p["messageIdHeader"] = json!(header);
                }
                p
            }
            Self::Oauth2(_) => json!({"type": "oauth2", "url": oauth_client.0,
                "clientId": oauth_client.1, "clientSecret": secret}),
        };
        json!({"provider": "custom-credential", "name": name, "authenticationPlan": plan})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    /// The fixtures' signatures were computed outside this code, with OpenSSL
    /// (`printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac whsec_test`, and
    /// likewise), from the scheme as Vapi documents it: the MAC of `payloadFormat` with
    /// `{timestamp}` and `{body}` filled in, keyed with the credential's `secretKey`.
    const BODY: &str =
        r#"{"message":{"type":"status-update","status":"in-progress","call":{"id":"call-1"}}}"#;
    const SECRET: &[u8] = b"whsec_test";
    const URL: &str = "https://voxanne.example/webhooks/voice/vapi";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    v.parse().expect("value"),
                )
            })
            .collect()
    }

    fn check(
        auth: &ServerAuth,
        pairs: &[(&str, &str)],
        body: &str,
        now: i64,
    ) -> Result<(), SignatureError> {
        let headers = headers(pairs);
        auth.verify(
            SECRET,
            &Request {
                url: URL,
                headers: &headers,
                body: body.as_bytes(),
                now,
            },
        )
    }

    fn auth(config: Value) -> ServerAuth {
        ServerAuth::from_config(&json!({ CONFIG_KEY: config })).expect("valid")
    }

    #[test]
    fn hmac_with_vapis_defaults_verifies_the_documented_scheme() {
        let plan = auth(json!({"type": "hmac"}));
        let sig = "c794dc6be4cc9caa7b71dd2aac3196f0de011b3d0176013e2b88f74555f3a6f2";
        let sent = [("x-signature", sig), ("x-timestamp", "1700000000")];
        assert_eq!(check(&plan, &sent, BODY, 1_700_000_100), Ok(()));
        // Milliseconds are read as such.
        let ms = [
            (
                "x-signature",
                "3705017433a6591cef30974ce4e67d1d8d0b40ce6455704049ef62834271a912",
            ),
            ("x-timestamp", "1700000000000"),
        ];
        assert_eq!(check(&plan, &ms, BODY, 1_700_000_000), Ok(()));
        assert_eq!(
            check(&plan, &sent, BODY, 1_700_000_301),
            Err(SignatureError::Stale { age_seconds: 301 })
        );
        assert_eq!(
            check(
                &plan,
                &sent,
                &BODY.replace("in-progress", "ended"),
                1_700_000_000
            ),
            Err(SignatureError::Mismatch),
            "a tampered body"
        );
        assert_eq!(
            check(
                &plan,
                &[("x-signature", sig), ("x-timestamp", "1700000001")],
                BODY,
                1_700_000_000
            ),
            Err(SignatureError::Mismatch),
            "the timestamp is signed"
        );
        assert_eq!(
            check(&plan, &[("x-signature", sig)], BODY, 1_700_000_000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            check(&plan, &[("x-timestamp", "1700000000")], BODY, 1_700_000_000),
            Err(SignatureError::Missing)
        );
        let other = plan.verify(
            b"another clinic",
            &Request {
                url: URL,
                headers: &headers(&sent),
                body: BODY.as_bytes(),
                now: 1_700_000_000,
            },
        );
        assert_eq!(other, Err(SignatureError::Mismatch));
        assert_eq!(
            plan.headers("whsec_test", BODY.as_bytes(), URL, 1_700_000_000),
            vec![
                ("x-timestamp".to_owned(), "1700000000".to_owned()),
                ("x-signature".to_owned(), sig.to_owned())
            ]
        );
    }

    #[test]
    fn hmac_honours_every_vapi_setting() {
        let sha512 = auth(
            json!({"type": "hmac", "algorithm": "sha512", "signature_encoding": "base64",
            "signature_prefix": "sha512=", "signature_header": "X-Clinic-Sig", "timestamp_header": "X-Clinic-Time"}),
        );
        let sig = "sha512=httXVyJD5iQijOXNBVVVrL+WYnpgibaQUMXTMu8W8iOQAJdMe0ErZttM0n1qiXJrLC6jEnrXbU0l8LREj7jqNw==";
        let sent = [("x-clinic-sig", sig), ("x-clinic-time", "1700000000")];
        assert_eq!(check(&sha512, &sent, BODY, 1_700_000_000), Ok(()));
        let unprefixed = [("x-clinic-sig", &sig[7..]), ("x-clinic-time", "1700000000")];
        assert_eq!(
            check(&sha512, &unprefixed, BODY, 1_700_000_000),
            Err(SignatureError::Malformed)
        );

        let body_only =
            auth(json!({"type": "hmac", "algorithm": "sha1", "include_timestamp": false}));
        let sent = [("x-signature", "fc356b14a230913f2dc27f7e9813d6a40dcdb02c")];
        assert_eq!(check(&body_only, &sent, BODY, 0), Ok(()));
        assert_eq!(
            check(&body_only, &sent, "{}", 0),
            Err(SignatureError::Mismatch)
        );

        // Svix's published test vector (docs.svix.com, "Verifying payloads manually"), a
        // scheme Vapi's HMAC plan expresses: `{svix-id}.{timestamp}.{body}`, base64 secret,
        // base64 signature after `v1,`.
        let svix = auth(
            json!({"type": "hmac", "payload_format": "{svix-id}.{timestamp}.{body}",
            "message_id_header": "webhook-id", "timestamp_header": "webhook-timestamp",
            "signature_header": "webhook-signature", "signature_prefix": "v1,",
            "signature_encoding": "base64", "secret_is_base64": true}),
        );
        let sent = [
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ];
        let headers = headers(&sent);
        let request = Request {
            url: URL,
            headers: &headers,
            body: br#"{"test": 2432232314}"#,
            now: 1_614_265_330,
        };
        assert_eq!(
            svix.verify(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &request),
            Ok(())
        );
        assert_eq!(
            svix.verify(b"not base64!", &request),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn bearer_and_x_vapi_secret_compare_the_whole_token() {
        let default = ServerAuth::from_config(&json!({})).expect("default");
        assert_eq!(default, ServerAuth::XVapiSecret);
        assert_eq!(
            check(&default, &[("x-vapi-secret", "whsec_test")], BODY, 0),
            Ok(())
        );
        for wrong in ["whsec_tes", "whsec_test2", "WHSEC_TEST", ""] {
            assert!(
                check(&default, &[("x-vapi-secret", wrong)], BODY, 0).is_err(),
                "{wrong}"
            );
        }
        assert_eq!(
            check(&default, &[("authorization", "Bearer whsec_test")], BODY, 0),
            Err(SignatureError::Missing)
        );

        let bearer = auth(json!({"type": "bearer"}));
        assert_eq!(
            check(&bearer, &[("authorization", "Bearer whsec_test")], BODY, 0),
            Ok(())
        );
        assert_eq!(
            check(&bearer, &[("authorization", "whsec_test")], BODY, 0),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&bearer, &[("authorization", "Basic whsec_test")], BODY, 0),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&bearer, &[("authorization", "Bearer other")], BODY, 0),
            Err(SignatureError::Mismatch)
        );
        let custom =
            auth(json!({"type": "bearer", "header_name": "X-Clinic-Key", "bearer_prefix": false}));
        assert_eq!(
            check(&custom, &[("x-clinic-key", "whsec_test")], BODY, 0),
            Ok(())
        );
        assert_eq!(
            check(&custom, &[("authorization", "Bearer whsec_test")], BODY, 0),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn settings_that_cannot_protect_a_clinic_are_refused_with_their_field() {
        let refused = |config: Value| {
            ServerAuth::from_config(&json!({ CONFIG_KEY: config }))
                .expect_err("refused")
                .field
        };
        assert_eq!(
            refused(json!({"type": "hmac", "payload_format": "{timestamp}"})),
            "payload_format"
        );
        assert_eq!(
            refused(json!({"type": "hmac", "payload_format": "{body}"})),
            "payload_format"
        );
        assert_eq!(
            refused(json!({"type": "hmac", "payload_format": "{nonce}.{body}"})),
            "payload_format"
        );
        assert_eq!(
            refused(json!({"type": "hmac", "payload_format": "{svix-id}.{timestamp}.{body}"})),
            "message_id_header"
        );
        assert_eq!(
            refused(json!({"type": "hmac", "replay_window_seconds": 0})),
            "replay_window_seconds"
        );
        assert_eq!(
            refused(json!({"type": "hmac", "signature_header": "x-timestamp"})),
            "signature_header"
        );
        assert_eq!(
            refused(json!({"type": "hmac", "algorithm": "md5"})),
            "algorithm"
        );
        assert_eq!(
            refused(json!({"type": "bearer", "header_name": "Host"})),
            "header_name"
        );
        assert_eq!(
            refused(json!({"type": "bearer", "header_name": "bad header"})),
            "header_name"
        );
        assert_eq!(refused(json!({"type": "bearer", "token": "x"})), "token");
        assert_eq!(
            refused(json!({"type": "x-vapi-secret", "header_name": "x"})),
            "header_name"
        );
        assert_eq!(refused(json!({"type": "basic"})), "type");
        assert_eq!(
            refused(json!({"type": "oauth2", "token_ttl_seconds": 5})),
            "token_ttl_seconds"
        );
        assert_eq!(refused(json!("hmac")), "");
    }

    #[test]
    fn oauth2_tokens_are_the_clinics_and_expire() {
        let plan = OAuth2Plan {
            token_ttl_seconds: 3600,
        };
        let (token, expires_in) = plan.issue(SECRET, 1_700_000_000);
        assert_eq!(expires_in, 3600);
        let auth = ServerAuth::Oauth2(plan.clone());
        let bearer = format!("Bearer {token}");
        assert_eq!(
            check(&auth, &[("authorization", &bearer)], BODY, 1_700_003_600),
            Ok(())
        );
        assert_eq!(
            check(&auth, &[("authorization", &bearer)], BODY, 1_700_003_601),
            Err(SignatureError::Stale { age_seconds: 1 })
        );
        let (other, _) = plan.issue(b"another clinic", 1_700_000_000);
        assert_eq!(
            check(
                &auth,
                &[("authorization", &format!("Bearer {other}"))],
                BODY,
                1_700_000_000
            ),
            Err(SignatureError::Mismatch)
        );
        let stretched = token.replacen("1700003600", "1800003600", 1);
        assert_eq!(
            check(
                &auth,
                &[("authorization", &format!("Bearer {stretched}"))],
                BODY,
                1_700_000_000
            ),
            Err(SignatureError::Mismatch),
            "the expiry is signed"
        );
        for bad in ["Bearer x", "Bearer vxo1.1.!!", "Basic abc", "vxo1"] {
            assert!(
                check(&auth, &[("authorization", bad)], BODY, 0).is_err(),
                "{bad}"
            );
        }
        let c = auth.vapi_credential(
            "Voxanne",
            "s",
            ("https://v.example/oauth/vapi/token", "org-1"),
        );
        assert_eq!(
            c["authenticationPlan"],
            json!({"type": "oauth2",
            "url": "https://v.example/oauth/vapi/token", "clientId": "org-1", "clientSecret": "s"})
        );
    }

    #[test]
    fn the_vapi_credential_carries_vapis_field_names() {
        let x = ServerAuth::XVapiSecret.vapi_credential("Voxanne", "s", ("", ""));
        assert_eq!(
            x["authenticationPlan"],
            json!({"type": "bearer", "token": "s",
            "headerName": "X-Vapi-Secret", "bearerPrefixEnabled": false})
        );
        let h = auth(json!({"type": "hmac"})).vapi_credential("Voxanne", "s", ("", ""));
        assert_eq!(
            h["authenticationPlan"]["payloadFormat"],
            "{timestamp}.{body}"
        );
        assert_eq!(h["authenticationPlan"]["signatureHeader"], "x-signature");
        assert_eq!(h["authenticationPlan"]["algorithm"], "sha256");
    }
}
