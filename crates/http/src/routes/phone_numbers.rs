use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::optional_text;
use crate::found::found;
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::phone_numbers::{OwnedNumber as OwnedNumberRow, NUMBER_TAKEN};
use voxanne_db::DbError;
use voxanne_domain::PhoneNumber;

/// A phone number of the clinic as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct OwnedNumber {
    pub id: voxanne_domain::PhoneNumberId,
    /// E.164.
    pub number: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<OwnedNumberRow> for OwnedNumber {
    fn from(row: OwnedNumberRow) -> Self {
        Self {
            id: row.id,
            number: row.number,
            label: row.label,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"number": "+1 415 555 0100", "label": "Front desk"}))]
pub struct NewNumber {
    /// Normalised to E.164.
    #[schema(value_type = String)]
    number: PhoneNumber,
    #[schema(max_length = 100)]
    label: Option<String>,
}

const ADMINS_ONLY: &str = "staff cannot change the clinic's phone numbers";

/// The numbers the clinic owns (admins only).
#[utoipa::path(get, path = "/phone-numbers", tag = "phone-numbers", params(PageParams), responses((status = 200, body = Page<OwnedNumber>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<OwnedNumber>>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_phone_numbers(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |n| Cursor {
            at: n.created_at,
            id: n.id.as_uuid(),
        })
        .map(OwnedNumber::from),
    ))
}

/// Admins only. A number belongs to at most one clinic: one that is taken is a 409 that does
/// not say by whom.
#[utoipa::path(post, path = "/phone-numbers", tag = "phone-numbers", request_body = NewNumber, responses(
    (status = 201, body = OwnedNumber),
    (status = 409, description = "`number_taken`: this or another clinic has the number", body = crate::openapi::ErrorBody),
))]
pub async fn add(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewNumber>,
) -> Result<(StatusCode, Json<OwnedNumber>), ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    let label = optional_text("label", body.label.as_deref(), 100)?;
    let number = tx
        .add_phone_number(&body.number, label.as_deref())
        .await
        .map_err(|e| match e {
            DbError::Constraint { constraint } if constraint == NUMBER_TAKEN => {
                ApiError::Conflict {
                    code: "number_taken",
                    message: "this number is already in use".into(),
                }
            }
            e => e.into(),
        })?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(number.into())))
}

#[utoipa::path(get, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = Uuid, Path)), responses((status = 200, body = OwnedNumber)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::PhoneNumberId>,
) -> Result<Json<OwnedNumber>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    let number = found::<OwnedNumberRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(number.into()))
}

/// Admins only. Calls to a removed number no longer reach the clinic.
#[utoipa::path(delete, path = "/phone-numbers/{id}", tag = "phone-numbers", params(("id" = Uuid, Path)), responses((status = 204, description = "removed")))]
pub async fn remove(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::PhoneNumberId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    if !tx.remove_phone_number(id).await? {
        return Err(ApiError::missing(
            tx.membership(),
            "phone_numbers",
            "id",
            id.into(),
        ));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, add))
        .routes(routes!(get, remove))
}
