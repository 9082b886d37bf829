//! The phone numbers a clinic owns: the numbers patients call, and how a webhook finds its
//! clinic. A number belongs to at most one clinic (a global unique key).

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use uuid::Uuid;
use voxanne_domain::PhoneNumber;

/// A row of `phone_numbers` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct OwnedNumber {
    pub id: voxanne_domain::PhoneNumberId,
    /// E.164.
    pub number: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, number, label, created_at";

impl crate::TenantRow for OwnedNumber {
    const TABLE: &'static str = "phone_numbers";
    const COLUMNS: &'static str = COLUMNS;
    type Id = voxanne_domain::PhoneNumberId;
}

/// The constraint that makes a number belong to at most one clinic.
pub const NUMBER_TAKEN: &str = "phone_numbers_number_key";

impl TenantTx {
    pub async fn list_phone_numbers(
        &mut self,
        after: Option<(DateTime<Utc>, Uuid)>,
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
        Ok(sqlx::query_as::<_, OwnedNumber>(&format!(
            "INSERT INTO phone_numbers (org_id, number, label) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
        ))
        .bind(org)
        .bind(number.as_str())
        .bind(label)
        .fetch_one(self.conn())
        .await?)
    }
}
