//! Built-in accounts: passwords (argon2id), the session cookie and its CSRF token, the links
//! mailed for invitations and password resets, and the mailer (SMTP, or in development an
//! outbox the dashboard shows and the log prints).
//!
//! A session is a random 32-byte token in an HttpOnly, SameSite=Lax cookie (Secure unless the
//! server's public address is plain http, as in development); the database keeps its sha256
//! only. Its CSRF token is derived from it (sha256 of a label and the token): a page of this
//! origin learns it from `GET /auth/session` and sends it back in `X-CSRF-Token` with every
//! write; another site can neither read the cookie nor the token.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "voxanne_session";
/// The header a cookie-authenticated write carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A new random secret (32 bytes), as it goes into a cookie or a link.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The sha256 a secret is stored as.
pub fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// The CSRF token of a session's token.
pub fn csrf_token(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"voxanne csrf\0");
    h.update(session_token.as_bytes());
    URL_SAFE_NO_PAD.encode(h.finalize())
}

/// Whether `given` is the CSRF token of `session_token`, in constant time.
pub fn csrf_matches(session_token: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    csrf_token(session_token)
        .as_bytes()
        .ct_eq(given.as_bytes())
        .into()
}

/// The shortest password accepted.
pub const MIN_PASSWORD: usize = 10;
/// The longest (argon2 takes any length; this bounds the work a request can ask for).
pub const MAX_PASSWORD: usize = 256;

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes), off the async
/// threads.
pub async fn hash_password(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A hash of no password, verified against when the address has no account, so that an
/// unknown address costs the same as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::encode_b64(b"voxanne-decoy-salt")
            .unwrap_or_else(|_| SaltString::generate(&mut argon2::password_hash::rand_core::OsRng));
        Argon2::default()
            .hash_password(b"decoy", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Whether `password` matches `hash` (`None`: no account, checked against a decoy), off the
/// async threads. `!` and unparsable hashes match nothing.
pub async fn verify_password(password: String, hash: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| decoy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            // Still do the work: the answer must not tell an unusable account apart.
            let _ = PasswordHash::new(decoy_hash())
                .map(|d| Argon2::default().verify_password(password.as_bytes(), &d));
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && real
    })
    .await
    .unwrap_or(false)
}

/// A mail to send.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Where mail goes.
pub enum Mailer {
    /// An SMTP server (`VOXANNE_SMTP_URL`), from `from`.
    Smtp {
        transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
        from: lettre::message::Mailbox,
    },
    /// Development: kept in memory (the newest `OUTBOX_SIZE`), shown by the dashboard, and
    /// printed in the log.
    Outbox(Mutex<VecDeque<Mail>>),
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { from, .. } => write!(f, "Mailer::Smtp(from {from})"),
            Mailer::Outbox(_) => write!(f, "Mailer::Outbox"),
        }
    }
}

const OUTBOX_SIZE: usize = 100;

impl Mailer {
    /// The development outbox.
    pub fn outbox() -> Self {
        Mailer::Outbox(Mutex::new(VecDeque::new()))
    }

    /// SMTP from `url`: `smtp://user:pass@host:587?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:465` (TLS on connect), `smtp://host:25` (no TLS, for a local
    /// relay), sending as `from`.
    pub fn smtp(url: &str, from: &str) -> Result<Self, String> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| format!("VOXANNE_SMTP_URL: {e}"))?
            .timeout(Some(Duration::from_secs(20)))
            .build();
        let from = from
            .parse()
            .map_err(|e| format!("VOXANNE_MAIL_FROM: {e}"))?;
        Ok(Mailer::Smtp { transport, from })
    }

    /// Sends `mail`; an SMTP failure is the caller's to report.
    pub async fn send(&self, mail: Mail) -> Result<(), String> {
        match self {
            Mailer::Outbox(outbox) => {
                tracing::info!(to = %mail.to, subject = %mail.subject, body = %mail.body,
                    "mail (development outbox: set VOXANNE_SMTP_URL to send it)");
                let mut outbox = outbox.lock().unwrap_or_else(|e| e.into_inner());
                outbox.push_front(mail);
                outbox.truncate(OUTBOX_SIZE);
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                use lettre::AsyncTransport as _;
                let to = mail.to.parse().map_err(|e| format!("recipient: {e}"))?;
                let message = lettre::Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(mail.subject)
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(mail.body)
                    .map_err(|e| e.to_string())?;
                transport
                    .send(message)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// The development outbox, newest first (empty when mail goes by SMTP).
    pub fn outbox_mails(&self) -> Vec<Mail> {
        match self {
            Mailer::Outbox(outbox) => outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned()
                .collect(),
            Mailer::Smtp { .. } => Vec::new(),
        }
    }
}

/// A demo user the sign-in page offers one click for (demo mode only).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DemoUser {
    /// What the button says: "Clinic A owner".
    pub label: String,
    pub user_id: voxanne_domain::UserId,
    pub org_id: voxanne_domain::OrgId,
}

/// How accounts work on this server.
#[derive(Debug)]
pub struct AccountSettings {
    /// The address links in mails point at (`VOXANNE_PUBLIC_URL`).
    pub public_url: url::Url,
    /// Whether the session cookie is `Secure` (the public address is https).
    pub secure_cookie: bool,
    pub session_ttl: Duration,
    pub invitation_ttl: Duration,
    pub reset_ttl: Duration,
    pub mailer: Mailer,
    /// Demo mode's one-click users (empty otherwise).
    pub demo_users: Vec<DemoUser>,
    /// Failed sign-ins per address (email) a minute, on top of the per-client limit.
    pub sign_in_failures: crate::limits::WindowCounter<String>,
    /// Password reset mails per address a minute.
    pub reset_requests: crate::limits::WindowCounter<String>,
}

impl AccountSettings {
    /// Development settings for `public_url`: the outbox, 12-hour sessions, 7-day invitations,
    /// 1-hour reset links, 10 failed sign-ins and 3 reset mails a minute per address.
    pub fn development(public_url: url::Url) -> Self {
        Self {
            secure_cookie: public_url.scheme() == "https",
            public_url,
            session_ttl: Duration::from_secs(12 * 3600),
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            reset_ttl: Duration::from_secs(3600),
            mailer: Mailer::outbox(),
            demo_users: Vec::new(),
            sign_in_failures: crate::limits::WindowCounter::new(10),
            reset_requests: crate::limits::WindowCounter::new(3),
        }
    }

    /// The `Set-Cookie` value of a new session.
    pub fn session_cookie(&self, token: &str) -> String {
        cookie::Cookie::build((SESSION_COOKIE, token.to_owned()))
            .http_only(true)
            .secure(self.secure_cookie)
            .same_site(cookie::SameSite::Lax)
            .path("/")
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(self.session_ttl.as_secs()).unwrap_or(i64::MAX),
            ))
            .build()
            .to_string()
    }

    /// The `Set-Cookie` value that removes the session cookie.
    pub fn cleared_cookie(&self) -> String {
        cookie::Cookie::build((SESSION_COOKIE, ""))
            .http_only(true)
            .secure(self.secure_cookie)
            .same_site(cookie::SameSite::Lax)
            .path("/")
            .max_age(cookie::time::Duration::ZERO)
            .build()
            .to_string()
    }

    /// A link to `path` (with `#fragment`: never sent to a server, never in a log).
    pub fn link(&self, path: &str, fragment: &str) -> String {
        let mut url = self.public_url.clone();
        url.set_path(path);
        url.set_fragment(Some(fragment));
        url.to_string()
    }
}

/// The session token in a request's `Cookie` headers, if any.
pub fn session_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE && !c.value().is_empty())
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_against_its_hash_only() {
        let hash = hash_password("correct horse battery".into())
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!verify_password("correct horse battery!".into(), Some(hash)).await);
        assert!(
            !verify_password("decoy".into(), None).await,
            "no account: never"
        );
        assert!(!verify_password("x".into(), Some("!".into())).await);
    }

    #[test]
    fn the_csrf_token_is_the_sessions_own() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
    }

    #[test]
    fn the_session_cookie_is_http_only_lax_and_secure_on_https() {
        let s = AccountSettings::development("https://clinic.example".parse().expect("url"));
        let c = s.session_cookie("tok");
        for part in [
            "voxanne_session=tok",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
        ] {
            assert!(c.contains(part), "{c}");
        }
        let dev = AccountSettings::development("http://localhost:8080".parse().expect("url"));
        assert!(!dev.session_cookie("tok").contains("Secure"));
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "a=1; voxanne_session=tok; b=2".parse().expect("header"),
        );
        assert_eq!(session_token(&headers).as_deref(), Some("tok"));
    }
}
