//! Downloading a recording from its provider: timeouts, a size limit, and a body that must
//! be complete.

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

/// GETs `url` and returns the body and its content type.
pub async fn fetch(
    http: &reqwest::Client,
    url: &str,
    auth: Option<(String, String)>,
    max_bytes: u64,
) -> Result<(Vec<u8>, Option<String>), DownloadError> {
    let mut request = http.get(url);
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| DownloadError::Http(error_chain(&e)))?;
    if !response.status().is_success() {
        return Err(DownloadError::Status(response.status().as_u16()));
    }
    let expected = response.content_length();
    if expected.is_some_and(|n| n > max_bytes) {
        return Err(DownloadError::TooLarge(max_bytes));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() as u64 + chunk.len() as u64 > max_bytes {
                    return Err(DownloadError::TooLarge(max_bytes));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let got = body.len() as u64;
                return Err(match expected {
                    Some(expected) if got < expected && !e.is_timeout() => {
                        DownloadError::Truncated { got, expected }
                    }
                    _ => DownloadError::Http(error_chain(&e)),
                });
            }
        }
    }
    if let Some(expected) = expected {
        let got = body.len() as u64;
        if got != expected {
            return Err(DownloadError::Truncated { got, expected });
        }
    }
    Ok((body, content_type))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
