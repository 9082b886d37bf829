//! Downloading a recording from its provider and streaming it into object storage: the
//! clinic's credentials only to its provider's media hosts, redirects followed by hand, one
//! deadline for the whole transfer, a size limit, and a body that must be complete. A failed
//! transfer leaves no object.

use crate::egress;
use crate::media_hosts::MediaHosts;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayloadMut, WriteMultipart};
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

/// Part size of a multipart upload: S3's minimum for every part but the last. A body that
/// ends within the first part is stored with a single PUT.
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploading at once per download: one uploads while the next one fills, so a download
/// holds at most about two parts in memory whatever its size.
const PARTS_IN_FLIGHT: usize = 2;
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

/// Streams the body of `response` into `store` at `path`: one PUT when it fits in a part,
/// else a multipart upload, with at most [`PARTS_IN_FLIGHT`] parts in memory. A body over
/// `max_bytes` or shorter than its Content-Length aborts the upload, so no object appears.
/// Returns the bytes stored.
pub async fn store(
    mut response: reqwest::Response,
    store: &dyn ObjectStore,
    path: &Path,
    max_bytes: u64,
) -> Result<u64, DownloadError> {
    let expected = response.content_length();
    if expected.is_some_and(|n| n > max_bytes) {
        return Err(DownloadError::TooLarge(max_bytes));
    }
    let mut transfer = Transfer {
        first: PutPayloadMut::new().with_block_size(64 * 1024),
        upload: None,
        got: 0,
    };
    let streamed = transfer
        .stream(&mut response, store, path, expected, max_bytes)
        .await;
    let Transfer { first, upload, got } = transfer;
    match (streamed, upload) {
        (Ok(()), None) => {
            store
                .put(path, first.freeze())
                .await
                .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
        }
        (Ok(()), Some(upload)) => {
            // `finish` aborts the upload itself when a part or the completion fails.
            upload
                .finish()
                .await
                .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
        }
        (Err(e), upload) => {
            if let Some(upload) = upload {
                if let Err(abort) = upload.abort().await {
                    tracing::warn!(%path, error = %abort, "aborting a recording upload failed; the orphan sweep will not see its parts");
                }
            }
            return Err(e);
        }
    }
    Ok(got)
}

struct Transfer {
    /// The body until it outgrows one part.
    first: PutPayloadMut,
    /// Started once it does.
    upload: Option<WriteMultipart>,
    got: u64,
}

impl Transfer {
    async fn stream(
        &mut self,
        response: &mut reqwest::Response,
        store: &dyn ObjectStore,
        path: &Path,
        expected: Option<u64>,
        max_bytes: u64,
    ) -> Result<(), DownloadError> {
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    return Err(match expected {
                        Some(expected) if self.got < expected && !e.is_timeout() => {
                            DownloadError::Truncated {
                                got: self.got,
                                expected,
                            }
                        }
                        _ => DownloadError::Http(error_chain(&e)),
                    });
                }
            };
            self.got += chunk.len() as u64;
            if self.got > max_bytes {
                return Err(DownloadError::TooLarge(max_bytes));
            }
            if let Some(upload) = &mut self.upload {
                // Back pressure: the download waits while the store is behind.
                upload
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
                // Copied, not pushed: a pushed chunk would pin the client's whole read buffer.
                upload.write(&chunk);
                continue;
            }
            self.first.extend_from_slice(&chunk);
            if self.first.content_length() >= PART_BYTES {
                let multipart = store
                    .put_multipart(path)
                    .await
                    .map_err(|e| DownloadError::Storage(error_chain(&e)))?;
                let mut upload = WriteMultipart::new_with_chunk_size(multipart, PART_BYTES);
                for block in std::mem::take(&mut self.first).freeze().iter() {
                    upload.put(block.clone());
                }
                self.upload = Some(upload);
            }
        }
        if let Some(expected) = expected {
            if self.got != expected {
                return Err(DownloadError::Truncated {
                    got: self.got,
                    expected,
                });
            }
        }
        Ok(())
    }
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
