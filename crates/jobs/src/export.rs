//! Exporting one patient (GDPR Art. 15): everything the clinic holds about a contact, as one
//! zip archive. `manifest.json` says what it is; one JSON file per table holds that table's
//! rows of the patient with all their columns (the scope of an erasure, voxanne_db::erase, and
//! the number's consent trail and do-not-call entry, the legal holds and the access records
//! about the patient); `recordings/` holds the calls' recordings, decrypted. The API's
//! `GET /contacts/{id}/export` and `voxanne patient export` both run this.
//!
//! The rows are read in one tenant transaction of the clinic, which then commits (recording the
//! export) before the recordings are copied, each streamed from storage and decrypted to a
//! file, so memory stays a chunk whatever their size. The archive is written to a directory the caller gives.

use crate::objects::{self, ObjectError};
use futures_util::StreamExt;
use object_store::ObjectStore;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use voxanne_db::crypto::CryptoError;
use voxanne_db::{DbError, TenantTx};
use voxanne_domain::ContactId;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("reading a recording from storage: {0}")]
    Storage(#[from] ObjectError),
    #[error("writing the archive: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("recording key {0} is outside the clinic's prefix")]
    Foreign(String),
}

/// The archive written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exported {
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    pub rows: usize,
    pub recordings: usize,
}

/// A step of [`export_contact`].
#[derive(Debug, Clone, Copy)]
pub enum ExportProgress {
    /// The rows are read: how many, and how many recordings follow.
    Rows { rows: usize, recordings: usize },
    /// (done, total) recordings copied, and the bytes copied so far.
    Recording {
        done: usize,
        total: usize,
        bytes: u64,
    },
    /// The archive is written.
    Written { bytes: u64 },
}

/// Exports contact `id` of `tx`'s clinic into `dir` (as `patient-{id}.zip`); `None` when there
/// is no such contact (the transaction is then dropped). Commits `tx`.
pub async fn export_contact(
    mut tx: TenantTx,
    store: &dyn ObjectStore,
    id: ContactId,
    dir: &Path,
    mut progress: impl FnMut(ExportProgress),
) -> Result<Option<Exported>, ExportError> {
    let Some(scope) = tx.export_scope(id).await? else {
        return Ok(None);
    };
    let tables = tx.patient_rows(&scope).await?;
    let org = tx.org();
    let keyring = tx
        .shared_keyring()
        .ok_or(DbError::from(CryptoError::NoKeyring))?;
    tx.commit().await?;
    let rows = tables.iter().map(|(_, rows)| rows.len()).sum();
    let total = scope.recordings.len();
    progress(ExportProgress::Rows {
        rows,
        recordings: total,
    });

    // Each recording to a file of its own first (streamed), then into the archive.
    let prefix = format!("{org}/");
    let mut copied = Vec::with_capacity(total);
    let mut bytes = 0u64;
    for (done, key) in scope.recordings.iter().enumerate() {
        if !key.starts_with(&prefix) {
            return Err(ExportError::Foreign(key.clone()));
        }
        let name = key.rsplit('/').next().unwrap_or(key).to_owned();
        let file = dir.join(format!("recording-{done}"));
        let mut out = tokio::fs::File::create(&file).await?;
        match objects::read(store, keyring.clone(), org, key).await {
            Ok(audio) => {
                let mut chunks = audio.chunks;
                while let Some(chunk) = chunks.next().await {
                    let chunk = chunk?;
                    bytes += chunk.len() as u64;
                    out.write_all(&chunk).await?;
                }
                out.flush().await?;
                copied.push((format!("recordings/{name}"), file));
            }
            // The row says stored, the object is gone: the archive says so in its manifest.
            Err(e) if e.is_not_found() => {
                tracing::warn!(%key, "an exported recording is missing from storage");
            }
            Err(e) => return Err(e.into()),
        }
        progress(ExportProgress::Recording {
            done: done + 1,
            total,
            bytes,
        });
    }

    let path = dir.join(format!("patient-{id}.zip"));
    let manifest = serde_json::json!({
        "format": "voxanne patient export 1",
        "exported_at": chrono::Utc::now(),
        "org_id": org,
        "contact_id": id,
        "tables": tables.iter().map(|(t, rows)| (t.to_string(), serde_json::json!(rows.len())))
            .collect::<serde_json::Map<String, serde_json::Value>>(),
        "recordings": copied.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(),
        "recordings_missing": total - copied.len(),
    });
    let archive = path.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<u64, ExportError> {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&archive)?);
        let json = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        // Recordings are compressed already.
        let stored = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        zip.start_file("manifest.json", json)?;
        zip.write_all(&serde_json::to_vec_pretty(&manifest).unwrap_or_default())?;
        for (table, rows) in &tables {
            zip.start_file(format!("{table}.json"), json)?;
            zip.write_all(&serde_json::to_vec_pretty(rows).unwrap_or_default())?;
        }
        for (name, file) in &copied {
            zip.start_file(name.as_str(), stored)?;
            std::io::copy(&mut std::fs::File::open(file)?, &mut zip)?;
            std::fs::remove_file(file)?;
        }
        zip.finish()?;
        Ok(std::fs::metadata(&archive)?.len())
    })
    .await
    .map_err(|e| ExportError::Io(std::io::Error::other(e)))??;
    progress(ExportProgress::Written { bytes: written });
    Ok(Some(Exported {
        path,
        bytes: written,
        rows,
        recordings: total,
    }))
}
