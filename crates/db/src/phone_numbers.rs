//! The phone numbers a clinic owns: the numbers patients call, and how a webhook finds its
//! clinic. A number belongs to at most one clinic (a global unique key).

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
}
