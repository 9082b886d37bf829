//! Erasing one patient, recordings included (voxanne_db::erase has what is erased and kept):
//! the API's `POST /contacts/{id}/erase` and `voxanne patient erase` both run this, in one
//! tenant transaction of the clinic that the caller commits. The recordings leave storage
//! before the rows; an erasure cut off between the two is run again, and a recording already
//! gone counts as removed.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use voxanne_db::erase::{EraseError, Erased};
use voxanne_db::{DbError, TenantTx};
use voxanne_domain::ContactId;

#[derive(Debug, thiserror::Error)]
pub enum ErasePatientError {
    #[error("the contact is under a legal hold, or one of its calls is")]
    Held,
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("removing a recording from storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("recording key {0} is outside the clinic's prefix")]
    Foreign(String),
}

impl From<EraseError> for ErasePatientError {
    fn from(e: EraseError) -> Self {
        match e {
            EraseError::Held => ErasePatientError::Held,
            EraseError::Db(e) => ErasePatientError::Db(e),
        }
    }
}

/// Erases contact `id` of the transaction's clinic; `None` when there is no such contact.
/// `progress` hears each step: a line of text, then (done, total) recordings as they go.
pub async fn erase_contact(
    tx: &mut TenantTx,
    store: &dyn ObjectStore,
    id: ContactId,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Option<Erased>, ErasePatientError> {
    let Some(scope) = tx.erasure_scope(id).await? else {
        return Ok(None);
    };
    progress(Progress::Found(&scope));
    let prefix = format!("{}/", tx.org());
    let total = scope.recordings.len();
    for (done, key) in scope.recordings.iter().enumerate() {
        // Keys are `{org_id}/recordings/...`: one outside the prefix is a bug, never removed.
        if !key.starts_with(&prefix) {
            return Err(ErasePatientError::Foreign(key.clone()));
        }
        match store.delete(&Path::from(key.as_str())).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        progress(Progress::Recording(done + 1, total));
    }
    let erased = tx.erase(&scope).await?;
    progress(Progress::Rows(&erased));
    Ok(Some(erased))
}

/// A step of [`erase_contact`].
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Found(&'a voxanne_db::erase::PatientScope),
    Recording(usize, usize),
    Rows(&'a Erased),
}
