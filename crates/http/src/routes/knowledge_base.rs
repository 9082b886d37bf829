use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::text;
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::knowledge_base::{Document as DocumentRow, SearchHit as SearchHitRow};
use voxanne_db::Membership;

/// A search hit as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct SearchHit {
    pub document_id: voxanne_domain::DocumentId,
    pub title: String,
    /// Position of the chunk in its document, from 0.
    pub ordinal: i32,
    pub content: String,
    /// Higher is better.
    pub rank: f32,
}

impl From<SearchHitRow> for SearchHit {
    fn from(row: SearchHitRow) -> Self {
        Self {
            document_id: row.document_id,
            title: row.title,
            ordinal: row.ordinal,
            content: row.content,
            rank: row.rank,
        }
    }
}

/// A knowledge-base document as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Document {
    pub id: voxanne_domain::DocumentId,
    pub title: String,
    pub body: String,
    /// How many chunks the body was split into.
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<DocumentRow> for Document {
    fn from(row: DocumentRow) -> Self {
        Self {
            id: row.id,
            title: row.title,
            body: row.body,
            chunk_count: row.chunk_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const MAX_BODY_CHARS: usize = 200_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"title": "Parking", "body": "Free parking is behind the clinic.\n\nThe entrance is on Elm Street."}))]
pub struct NewDocument {
    #[schema(min_length = 1, max_length = 300, pattern = "\\S")]
    title: String,
    #[schema(min_length = 1, max_length = 200_000, pattern = "\\S")]
    body: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"body": "Free parking is behind the clinic, and two spaces are reserved for wheelchair users."}))]
pub struct DocumentPatch {
    #[schema(min_length = 1, max_length = 300, pattern = "\\S")]
    title: Option<String>,
    #[schema(min_length = 1, max_length = 200_000, pattern = "\\S")]
    body: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The question, in web-search syntax: words, "quoted phrases", -excluded.
    #[param(min_length = 1, max_length = 500, pattern = "\\S")]
    q: String,
    /// 1 to 50, default 10.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 50)]
    limit: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub data: Vec<SearchHit>,
}

fn missing(m: &Membership, id: voxanne_domain::DocumentId) -> ApiError {
    ApiError::missing(m, "knowledge_base_documents", "id", id.as_uuid())
}

#[utoipa::path(get, path = "/knowledge-base/documents", tag = "knowledge-base", params(PageParams), responses((status = 200, body = Page<Document>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<PageParams>,
) -> Result<Json<Page<Document>>, ApiError> {
    let (cursor, limit) = p.parse()?;
    let mut rows = tx
        .list_documents(cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |d| Cursor {
            at: d.created_at,
            id: d.id.as_uuid(),
        })
        .map(Document::from),
    ))
}

/// Admins only. The body is split into chunks for search.
#[utoipa::path(post, path = "/knowledge-base/documents", tag = "knowledge-base", request_body = NewDocument, responses((status = 201, body = Document)))]
pub async fn create(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<NewDocument>,
) -> Result<(StatusCode, Json<Document>), ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "what the agent tells callers is written by admins",
    )?;
    let title = text("title", &body.title, 1, 300)?;
    let content = text("body", &body.body, 1, MAX_BODY_CHARS)?;
    let document = tx.insert_document(&title, &content).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(document.into())))
}

#[utoipa::path(get, path = "/knowledge-base/documents/{id}", tag = "knowledge-base", params(("id" = Uuid, Path)), responses((status = 200, body = Document)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::DocumentId>,
) -> Result<Json<Document>, ApiError> {
    let document = tx
        .get_document(id)
        .await?
        .ok_or_else(|| missing(tx.membership(), id))?;
    tx.commit().await?;
    Ok(Json(document.into()))
}

/// Admins only. A new body is split into chunks again.
#[utoipa::path(patch, path = "/knowledge-base/documents/{id}", tag = "knowledge-base", params(("id" = Uuid, Path)), request_body = DocumentPatch, responses((status = 200, body = Document)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::DocumentId>,
    AppJson(patch): AppJson<DocumentPatch>,
) -> Result<Json<Document>, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "what the agent tells callers is written by admins",
    )?;
    let current = tx
        .get_document(id)
        .await?
        .ok_or_else(|| missing(tx.membership(), id))?;
    let title = text(
        "title",
        patch.title.as_deref().unwrap_or(&current.title),
        1,
        300,
    )?;
    let content = text(
        "body",
        patch.body.as_deref().unwrap_or(&current.body),
        1,
        MAX_BODY_CHARS,
    )?;
    let document = tx
        .update_document(id, &title, &content)
        .await?
        .ok_or_else(|| missing(tx.membership(), id))?;
    tx.commit().await?;
    Ok(Json(document.into()))
}

/// Admins only.
#[utoipa::path(delete, path = "/knowledge-base/documents/{id}", tag = "knowledge-base", params(("id" = Uuid, Path)), responses((status = 204, description = "deleted with its chunks")))]
pub async fn delete(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::DocumentId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(
        tx.membership(),
        "what the agent tells callers is written by admins",
    )?;
    if !tx.delete_document(id).await? {
        return Err(missing(tx.membership(), id));
    }
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The chunks that best answer `q`, best first (PostgreSQL full-text search).
#[utoipa::path(get, path = "/knowledge-base/search", tag = "knowledge-base", params(SearchParams), responses((status = 200, body = SearchResults)))]
pub async fn search(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<SearchParams>,
) -> Result<Json<SearchResults>, ApiError> {
    let q = text("q", &p.q, 1, 500)?;
    let limit = match p.limit.as_deref() {
        None => 10,
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=50).contains(l))
            .ok_or_else(|| ApiError::validation("limit", "must be an integer from 1 to 50"))?,
    };
    let data = tx.search_knowledge_base(&q, limit).await?;
    tx.commit().await?;
    Ok(Json(SearchResults {
        data: data.into_iter().map(SearchHit::from).collect(),
    }))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get, update, delete))
        .routes(routes!(search))
}
