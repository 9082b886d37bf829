//! One answer for "no such object" across every resource: the active clinic's row by its
//! typed id, or the 404 that a missing id and another clinic's id share (reported, off the
//! request path, as a possible probe: `ApiError::missing`). Handlers name no table.

use crate::error::ApiError;
use voxanne_db::{TenantRow, TenantTx};

/// The active clinic's row `id`, or 404.
pub async fn found<T: TenantRow>(tx: &mut TenantTx, id: T::Id) -> Result<T, ApiError> {
    match tx.find::<T>(id).await? {
        Some(row) => Ok(row),
        None => Err(ApiError::missing(
            tx.membership(),
            T::TABLE,
            "id",
            id.into(),
        )),
    }
}

/// Deletes the active clinic's row `id`, or 404 when it has none.
pub async fn delete_found<T: TenantRow>(tx: &mut TenantTx, id: T::Id) -> Result<(), ApiError> {
    if tx.delete::<T>(id).await? {
        Ok(())
    } else {
        Err(ApiError::missing(
            tx.membership(),
            T::TABLE,
            "id",
            id.into(),
        ))
    }
}
