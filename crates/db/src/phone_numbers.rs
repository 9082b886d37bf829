//! The phone numbers a clinic owns: the numbers patients call, and how a webhook finds its
//! clinic. A number belongs to at most one clinic (the global directory, migrations/0026).

use crate::rows::{query_row, tenant_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{PhoneNumber, PhoneNumberId};

/// A row of `phone_numbers` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedNumber {
    pub id: voxanne_domain::PhoneNumberId,
    /// E.164.
    pub number: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `query_as!` for [`OwnedNumber`]: the column list goes between the first two SQL pieces.
macro_rules! number_query {
    ($($query:tt)*) => {
        query_row!(OwnedNumber, "id, number, label, created_at", $($query)*)
    };
}

tenant_row!(OwnedNumber, PhoneNumberId, "phone_numbers", number_query);

/// The constraint that makes a number belong to at most one clinic.
pub const NUMBER_TAKEN: &str = "phone_numbers_number_key";

impl TenantTx {
    pub async fn list_phone_numbers(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<OwnedNumber>, DbError> {
        self.page::<OwnedNumber>(after, limit).await
    }

    /// Fails with `DbError::Constraint` [`NUMBER_TAKEN`] when any clinic (this one included)
    /// owns the number already.
    pub async fn add_phone_number(
        &mut self,
        number: &PhoneNumber,
        label: Option<&str>,
    ) -> Result<OwnedNumber, DbError> {
        let org = self.org().as_uuid();
        // The global directory first (migrations/0026): a number that any clinic holds fails
        // there, on NUMBER_TAKEN.
        sqlx::query!(
            "INSERT INTO app.phone_number_directory (number, org_id) VALUES ($1, $2)",
            number.as_str(),
            org
        )
        .execute(self.conn())
        .await?;
        Ok(number_query!(
            [
                "INSERT INTO phone_numbers (org_id, number, label) VALUES ($1, $2, $3) RETURNING ",
                ""
            ],
            org,
            number.as_str(),
            label
        )
        .fetch_one(self.conn())
        .await?)
    }

    /// Removes the clinic's number `id` and its entry in the global directory, so that the
    /// number is free for any clinic again. Whether it was there.
    pub async fn remove_phone_number(&mut self, id: PhoneNumberId) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let Some(number) = sqlx::query_scalar!(
            "DELETE FROM phone_numbers WHERE org_id = $1 AND id = $2 RETURNING number",
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?
        else {
            return Ok(false);
        };
        sqlx::query!(
            "DELETE FROM app.phone_number_directory WHERE org_id = $1 AND number = $2",
            org,
            number
        )
        .execute(self.conn())
        .await?;
        Ok(true)
    }
}
