//! Where recordings are stored, and reading them out to HTTP, through the `object_store` crate:
//! a local directory by default, or any S3-compatible service.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use std::sync::Arc;
use voxanne_db::crypto::Keyring;
use voxanne_domain::OrgId;
use voxanne_jobs::objects;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage location `{0}`: expected a directory, file:///dir or s3://bucket[/prefix]")]
    Location(String),
    #[error("creating {0}: {1}")]
    Directory(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] object_store::Error),
}

/// Opens the recordings' store at `location`: a directory path, `file:///dir`, or
/// `s3://bucket[/prefix]`, whose credentials, region and endpoint (for S3-compatible
/// services) come from the standard `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`).
pub fn open(location: &str) -> Result<std::sync::Arc<dyn ObjectStore>, StorageError> {
    open_with(location, object_store::aws::AmazonS3Builder::from_env())
}

/// [`open`], with the S3 settings given rather than read from the environment.
pub fn open_with(
    location: &str,
    s3: object_store::aws::AmazonS3Builder,
) -> Result<std::sync::Arc<dyn ObjectStore>, StorageError> {
    let local = |dir: &str| -> Result<std::sync::Arc<dyn ObjectStore>, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::Directory(dir.to_owned(), e))?;
        Ok(std::sync::Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir)?,
        ))
    };
    if let Some(rest) = location.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StorageError::Location(location.to_owned()));
        }
        let store = s3.with_bucket_name(bucket).build()?;
        let prefix = prefix.trim_matches('/');
        return Ok(if prefix.is_empty() {
            std::sync::Arc::new(store)
        } else {
            std::sync::Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
        });
    }
    if let Some(dir) = location.strip_prefix("file://") {
        return local(dir);
    }
    if location.contains("://") || location.is_empty() {
        return Err(StorageError::Location(location.to_owned()));
    }
    local(location)
}

fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("m4a") => "audio/mp4",
        _ => "application/octet-stream",
    }
}

/// Streams `org`'s recording at `key` as audio, opened as it streams (`voxanne_jobs::objects`),
/// without holding it in memory. Its length is sent first, so a player shows its progress.
pub async fn stream(
    store: &dyn ObjectStore,
    keyring: Arc<Keyring>,
    org: OrgId,
    key: &str,
) -> Result<Response, ApiError> {
    let audio = match objects::read(store, keyring, org, key).await {
        Ok(audio) => audio,
        // The row says stored, the object is gone: for the caller, there is no recording.
        Err(e) if e.is_not_found() => {
            tracing::warn!(%key, "a stored recording is missing from storage");
            return Err(ApiError::NoRecording);
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let kind = content_type(key);
    let key = key.to_owned();
    let chunks = audio.chunks.inspect_err(move |e| {
        // The header opened, a later chunk did not: the response ends short of its length.
        tracing::error!(%key, error = %e, "a stored recording failed while it was streamed");
    });
    Ok((
        [
            (header::CONTENT_TYPE, kind.to_owned()),
            (header::CONTENT_LENGTH, audio.len.to_string()),
        ],
        Body::from_stream(chunks),
    )
        .into_response())
}
