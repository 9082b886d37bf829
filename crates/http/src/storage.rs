//! Reading stored objects (recordings) out to HTTP, through the `object_store` crate.

use crate::error::ApiError;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("wav") => "audio/wav",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("m4a") => "audio/mp4",
        _ => "application/octet-stream",
    }
}

/// Streams the object at `key`, without holding it in memory.
pub async fn stream(store: &dyn ObjectStore, key: &str) -> Result<Response, ApiError> {
    let path = Path::parse(key).map_err(ApiError::internal)?;
    let object = match store.get(&path).await {
        Ok(object) => object,
        // The row says stored, the object is gone: for the caller, there is no recording.
        Err(object_store::Error::NotFound { .. }) => {
            tracing::warn!(%key, "a stored recording is missing from storage");
            return Err(ApiError::NoRecording);
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    let size = object.meta.size;
    Ok((
        [
            (header::CONTENT_TYPE, content_type(key).to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::from_stream(object.into_stream()),
    )
        .into_response())
}
