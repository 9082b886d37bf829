//! Connecting a clinic's Google or Microsoft calendar: OAuth 2.0's authorization code flow
//! with PKCE (RFC 6749 section 4.1, RFC 7636). The providers' settings and the calls to them
//! (code exchange, the account's email, revocation) are `voxanne_calendar`'s, re-exported
//! here; this module holds the signed `state` and the browser cookie that must come back with
//! the callback. The routes are `routes/calendar_oauth.rs`.
//!
//! The `state` sent to the provider is `base64url(org id || state id || mac)`, the MAC an
//! HMAC-SHA256 under a key derived from the keyring: a state this server did not issue is
//! refused before the database is asked. The state row itself is single use and expires.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use std::time::Duration;
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_domain::OrgId;

pub use voxanne_calendar::oauth::{
    CALLBACK_PATH, GOOGLE_API_URL, GOOGLE_AUTH_URL, GOOGLE_REVOKE_URL, GOOGLE_TOKEN_URL,
    GOOGLE_USERINFO_URL, MICROSOFT_AUTHORITY, MICROSOFT_GRAPH_URL,
};
pub use voxanne_calendar::{CalendarOAuth, ExchangeError, Linked, ProviderApp};

/// The cookie that binds a flow to the browser that started it.
pub const COOKIE: &str = "voxanne_oauth";
/// How long a started flow may take.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// Whether the flow's cookie is `Secure`: when the server is reached over https, i.e.
/// everywhere but a development server on plain http (where a browser would drop it).
pub fn secure_cookie(calendar: &CalendarOAuth) -> bool {
    calendar
        .public_url
        .as_ref()
        .is_none_or(|u| u.scheme() == "https")
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
