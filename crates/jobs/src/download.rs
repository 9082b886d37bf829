//! Downloading a recording from its provider and streaming it into object storage: the
//! clinic's credentials only to its provider's media hosts, redirects followed by hand, one
//! deadline for the whole transfer, a size limit, and a body that must be complete, encrypted
//! as it arrives. A failed transfer leaves no object.

use crate::egress;
use crate::media_hosts::MediaHosts;
use crate::objects::SealedUpload;
use object_store::path::Path;
use object_store::ObjectStore;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use voxanne_db::crypto::Keyring;
use voxanne_domain::OrgId;

const MAX_REDIRECTS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("the call has no recording URL")]
    NoUrl,
    #[error("the recording URL is refused: {0}")]
    Refused(String),
    #[error("the provider credentials could not be read: {0}")]
    Credentials(String),
    #[error("the provider answered HTTP {0}")]
    Status(u16),
    #[error("the recording is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the download failed: {0}")]
    Http(String),
    #[error("the recording was truncated: {got} of {expected} bytes")]
    Truncated { got: u64, expected: u64 },
    #[error("storing the recording failed: {0}")]
    Storage(String),
}

/// HTTP basic credentials of a clinic's provider account.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: String,
    pub password: SecretString,
}

/// Where credentials may go, and whether private addresses (and plain http for credentials)
/// are allowed (development and tests).
#[derive(Debug, Clone, Copy)]
pub struct Policy<'a> {
    pub media_hosts: &'a MediaHosts,
    pub allow_private: bool,
}

/// GETs `url`, following redirects by hand so that every hop is checked here rather than left
/// to the client: each hop must be an allowed address, and gets the credentials only when it
/// has the first URL's origin and that origin is one of the provider's media hosts.
/// Everything, the body included, must finish by `deadline`.
pub async fn get(
    http: &reqwest::Client,
    url: &Url,
    credentials: Option<&Credentials>,
    policy: Policy<'_>,
    deadline: Instant,
) -> Result<reqwest::Response, DownloadError> {
    let origin = url.origin();
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        if !policy.allow_private {
            // IP literals never reach the resolver: check them before any connection.
            egress::check_url(&url).map_err(DownloadError::Refused)?;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(DownloadError::Http("timed out".into()));
        }
        let mut request = http.get(url.clone()).timeout(remaining);
        let credentialed =
            url.origin() == origin && policy.media_hosts.allows(&url, policy.allow_private);
        if let Some(c) = credentials.filter(|_| credentialed) {
            request = request.basic_auth(&c.user, Some(c.password.expose_secret()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| DownloadError::Http(error_chain(&e)))?;
        let status = response.status();
        if !is_redirect(status) {
            if !status.is_success() {
                return Err(DownloadError::Status(status.as_u16()));
            }
            return Ok(response);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(DownloadError::Status(status.as_u16()))?;
        url = url
            .join(location)
            .map_err(|e| DownloadError::Refused(format!("a redirect to `{location}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(DownloadError::Refused(format!(
                "a redirect to the {} scheme",
                url.scheme()
            )));
        }
    }
    Err(DownloadError::Refused("too many redirects".into()))
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// The response's content type, if it names one.
pub fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Streams the body of `response` into `store` at `path`, encrypted for `org` with the
/// keyring's current key (`objects::SealedUpload`): one PUT when it fits in a part, else a
/// multipart upload, with at most two parts in memory. A body over `max_bytes` or shorter
/// than its Content-Length aborts the upload, so no object appears. Returns the bytes of
/// audio stored.
pub async fn store(
    mut response: reqwest::Response,
    store: &dyn ObjectStore,
    path: &Path,
    max_bytes: u64,
    keyring: &Keyring,
    org: OrgId,
) -> Result<u64, DownloadError> {
    let expected = response.content_length();
    if expected.is_some_and(|n| n > max_bytes) {
        return Err(DownloadError::TooLarge(max_bytes));
    }
    let mut upload = SealedUpload::new(store, path, keyring, org)
        .await
        .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
    match stream(&mut response, &mut upload, expected, max_bytes).await {
        Ok(got) => {
            upload
                .finish()
                .await
                .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
            Ok(got)
        }
        Err(e) => {
            upload.abort().await;
            Err(e)
        }
    }
}

/// The body into `upload`; the bytes of it.
async fn stream(
    response: &mut reqwest::Response,
    upload: &mut SealedUpload<'_>,
    expected: Option<u64>,
    max_bytes: u64,
) -> Result<u64, DownloadError> {
    let mut got = 0u64;
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                return Err(match expected {
                    Some(expected) if got < expected && !e.is_timeout() => {
                        DownloadError::Truncated { got, expected }
                    }
                    _ => DownloadError::Http(error_chain(&e)),
                });
            }
        };
        got += chunk.len() as u64;
        if got > max_bytes {
            return Err(DownloadError::TooLarge(max_bytes));
        }
        upload
            .write(&chunk)
            .await
            .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
    }
    if let Some(expected) = expected {
        if got != expected {
            return Err(DownloadError::Truncated { got, expected });
        }
    }
    Ok(got)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
