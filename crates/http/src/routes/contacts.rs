use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::{email, nullable, optional_text, text};
use crate::found::found;
use crate::pagination::{parse_page, Cursor, Page};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::contacts::{Contact as ContactRow, ContactFields};
use voxanne_db::{DbError, Membership};
use voxanne_domain::{ContactId, PhoneNumber};

/// A contact as the API shows it (the row is the database's).
#[derive(Debug, Serialize, ToSchema)]
pub struct Contact {
    pub id: ContactId,
    pub name: String,
    /// E.164.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ContactRow> for Contact {
    fn from(row: ContactRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            phone: row.phone,
            email: row.email,
            notes: row.notes,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "phone": "+14155550123", "email": "ada@example.com", "notes": "Prefers mornings"}))]
pub struct NewContact {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: String,
    /// E.164; punctuation is accepted and normalised.
    #[schema(value_type = Option<String>)]
    phone: Option<PhoneNumber>,
    #[schema(max_length = 320, pattern = r"^[^@\s]+@[^@\s]*\.[^@\s]*$")]
    email: Option<String>,
    #[schema(max_length = 10_000)]
    notes: Option<String>,
}

/// Fields to change; `null` clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Ada King", "email": "ada.king@example.com", "notes": "Called back on Monday"}))]
pub struct ContactPatch {
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    phone: Option<Option<PhoneNumber>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 320, pattern = r"^[^@\s]+@[^@\s]*\.[^@\s]*$")]
    email: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 10_000)]
    notes: Option<Option<String>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Part of the name, or three or more digits of the phone number.
    q: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

fn validate(
    name: &str,
    phone: Option<PhoneNumber>,
    mail: Option<&str>,
    notes: Option<&str>,
) -> Result<ContactFields, ApiError> {
    Ok(ContactFields {
        name: text("name", name, 1, 200)?,
        phone,
        email: email("email", mail)?,
        notes: optional_text("notes", notes, 10_000)?,
    })
}

fn write_error(e: DbError) -> ApiError {
    match e {
        DbError::Constraint { constraint } if constraint == "contacts_org_phone_key" => {
            ApiError::Conflict {
                code: "phone_taken",
                message: "another contact of this clinic has this phone number".into(),
            }
        }
        e => e.into(),
    }
}

fn missing(m: &Membership, id: ContactId) -> ApiError {
    ApiError::missing(m, "contacts", "id", id.as_uuid())
}

/// The clinic's contacts, newest first; `q` searches names and phone numbers.
#[utoipa::path(get, path = "/contacts", tag = "contacts", params(ListParams), responses((status = 200, body = Page<Contact>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<ListParams>,
) -> Result<Json<Page<Contact>>, ApiError> {
    let (cursor, limit) = parse_page(p.cursor.as_deref(), p.limit.as_deref())?;
    let q = p.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let mut rows = tx
        .list_contacts(q, cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |c| Cursor {
            at: c.created_at,
            id: c.id.as_uuid(),
        })
        .map(Contact::from),
    ))
}

#[utoipa::path(post, path = "/contacts", tag = "contacts", request_body = NewContact, responses((status = 201, body = Contact), (status = 409, description = "`phone_taken`", body = crate::openapi::ErrorBody)))]
pub async fn create(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewContact>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    let fields = validate(
        &body.name,
        body.phone,
        body.email.as_deref(),
        body.notes.as_deref(),
    )?;
    let contact = tx.insert_contact(&fields).await.map_err(write_error)?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(contact.into())))
}

#[utoipa::path(get, path = "/contacts/{id}", tag = "contacts", params(("id" = Uuid, Path)), responses((status = 200, body = Contact)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ContactId>,
) -> Result<Json<Contact>, ApiError> {
    let contact = found::<ContactRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(contact.into()))
}

#[utoipa::path(patch, path = "/contacts/{id}", tag = "contacts", params(("id" = Uuid, Path)), request_body = ContactPatch, responses((status = 200, body = Contact), (status = 409, description = "`phone_taken`", body = crate::openapi::ErrorBody)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ContactId>,
    AppJson(patch): AppJson<ContactPatch>,
) -> Result<Json<Contact>, ApiError> {
    let current = found::<ContactRow>(&mut tx, id).await?;
    let phone = match patch.phone {
        Some(phone) => phone,
        None => current
            .phone
            .as_deref()
            .map(PhoneNumber::parse)
            .transpose()
            .map_err(ApiError::internal)?,
    };
    let fields = validate(
        patch.name.as_deref().unwrap_or(&current.name),
        phone,
        patch.email.unwrap_or(current.email).as_deref(),
        patch.notes.unwrap_or(current.notes).as_deref(),
    )?;
    let contact = tx
        .update_contact(id, &fields)
        .await
        .map_err(write_error)?
        .ok_or_else(|| missing(tx.membership(), id))?;
    tx.commit().await?;
    Ok(Json(contact.into()))
}

#[utoipa::path(delete, path = "/contacts/{id}", tag = "contacts", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted; its calls and appointments keep their history without it"), (status = 409, description = "`legal_hold`: the contact is under a legal hold", body = crate::openapi::ErrorBody)))]
pub async fn delete(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ContactId>,
) -> Result<StatusCode, ApiError> {
    match tx.delete::<ContactRow>(id).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(ApiError::missing(
                tx.membership(),
                "contacts",
                "id",
                id.into(),
            ))
        }
        Err(DbError::Constraint { constraint }) if constraint == "legal_holds_contact_fkey" => {
            return Err(ApiError::Conflict {
                code: "legal_hold",
                message: "this contact is under a legal hold; an admin must release it first"
                    .into(),
            })
        }
        Err(e) => return Err(e.into()),
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How many of each an erasure removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Erasure {
    /// The contact's id, which now resolves to nothing.
    pub contact_id: ContactId,
    pub calls: usize,
    /// Removed from storage.
    pub recordings: usize,
    pub appointments: usize,
    pub sms: usize,
    /// Texts and messages left with the agent, in the inbox.
    pub messages: usize,
    pub leads: usize,
    pub campaign_targets: usize,
    pub campaign_calls: usize,
}

/// Admins only: erases the patient (GDPR Art. 17), everything the clinic holds about them:
/// the contact, every call of it or from its number with transcripts and recordings,
/// appointments, SMS and messages, leads and campaign calls of the number. Kept: the
/// do-not-call entry and consent trail of the number, the clinic's charges (without the
/// call), and the access log (ids only) with a record of the erasure. Refused under a legal
/// hold. (docs/RETENTION.md, "A patient's erasure".)
#[utoipa::path(post, path = "/contacts/{id}/erase", tag = "contacts", params(("id" = Uuid, Path)), responses((status = 200, body = Erasure), (status = 409, description = "`legal_hold`: the contact or one of its calls is under a legal hold", body = crate::openapi::ErrorBody)))]
pub async fn erase(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<ContactId>,
) -> Result<Json<Erasure>, ApiError> {
    ApiError::require_admin(tx.membership(), "only admins erase a patient")?;
    use voxanne_jobs::erase::{erase_contact, ErasePatientError};
    let erased = match erase_contact(&mut tx, state.recordings.as_ref(), id, |_| {}).await {
        Ok(Some(erased)) => erased,
        Ok(None) => return Err(missing(tx.membership(), id)),
        Err(ErasePatientError::Held) => {
            return Err(ApiError::Conflict {
                code: "legal_hold",
                message: "this contact, or one of its calls, is under a legal hold; an admin must \
                          release it first"
                    .into(),
            })
        }
        Err(ErasePatientError::Db(e)) => return Err(e.into()),
        Err(e @ ErasePatientError::Storage(_)) => {
            tracing::warn!(error = %e, "an erasure could not remove a recording");
            return Err(ApiError::Unavailable);
        }
        Err(e @ ErasePatientError::Foreign(_)) => return Err(ApiError::internal(e)),
    };
    tx.commit().await?;
    Ok(Json(Erasure {
        contact_id: id,
        calls: erased.calls,
        recordings: erased.recordings,
        appointments: erased.appointments,
        sms: erased.sms,
        messages: erased.messages,
        leads: erased.leads,
        campaign_targets: erased.campaign_targets,
        campaign_calls: erased.campaign_calls,
    }))
}

/// Admins only: everything the clinic holds about the patient (GDPR Art. 15) as one zip
/// archive: `manifest.json`, one JSON file per table with the patient's rows, and
/// `recordings/`. Its size is sent first (`Content-Length`), so a client shows its progress.
/// The export is recorded in the access log.
#[utoipa::path(get, path = "/contacts/{id}/export", tag = "contacts", params(("id" = Uuid, Path)), responses((status = 200, description = "the archive", content_type = "application/zip", body = Vec<u8>)))]
pub async fn export(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
    Tenant(tx): Tenant,
    AppPath(id): AppPath<ContactId>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use voxanne_jobs::export::{export_contact, ExportError};
    ApiError::require_admin(tx.membership(), "only admins export a patient")?;
    let m = *tx.membership();
    let dir = tempfile::tempdir().map_err(ApiError::internal)?;
    let exported = match export_contact(tx, state.recordings.as_ref(), id, dir.path(), |_| {}).await
    {
        Ok(Some(exported)) => exported,
        Ok(None) => return Err(missing(&m, id)),
        Err(ExportError::Db(e)) => return Err(e.into()),
        Err(e @ ExportError::Storage(_)) => {
            tracing::warn!(error = %e, "an export could not read a recording");
            return Err(ApiError::Unavailable);
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    // Open, the file outlives its directory (removed when this returns).
    let file = tokio::fs::File::open(&exported.path)
        .await
        .map_err(ApiError::internal)?;
    drop(dir);
    let body = futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/zip".to_owned(),
            ),
            (
                axum::http::header::CONTENT_LENGTH,
                exported.bytes.to_string(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"patient-{id}.zip\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(erase))
        .routes(routes!(export))
}
