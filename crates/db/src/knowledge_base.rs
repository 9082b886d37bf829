//! The knowledge base the voice agent answers from: documents, split into chunks on write,
//! searched with PostgreSQL full-text search.

use crate::rows::{query_row, After};
use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::DocumentId;

/// Chunks of at most this many characters.
pub const CHUNK_SIZE: usize = 800;

/// A row of `knowledge_base_documents` (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: voxanne_domain::DocumentId,
    pub title: String,
    pub body: String,
    /// How many chunks the body was split into.
    pub chunk_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A search hit (the API's view is the HTTP layer's).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub document_id: voxanne_domain::DocumentId,
    pub title: String,
    /// Position of the chunk in its document, from 0.
    pub ordinal: i32,
    pub content: String,
    /// Higher is better.
    pub rank: f32,
}

/// `query_as!` for [`Document`] (`d`, with its chunk count): the column list goes between the
/// first two SQL pieces.
macro_rules! document_query {
    ($($query:tt)*) => {
        query_row!(
            Document,
            r#"d.id, d.title, d.body, d.created_at, d.updated_at,
               (SELECT count(*) FROM knowledge_base_chunks c
                 WHERE c.org_id = d.org_id AND c.document_id = d.id) AS "chunk_count!""#,
            $($query)*
        )
    };
}

impl TenantTx {
    pub async fn list_documents(
        &mut self,
        after: After,
        limit: u32,
    ) -> Result<Vec<Document>, DbError> {
        let org = self.org().as_uuid();
        Ok(document_query!(
            [
                "SELECT ",
                " FROM knowledge_base_documents d
                  WHERE d.org_id = $1
                    AND ($2::timestamptz IS NULL OR (d.created_at, d.id) < ($2, $3))
                  ORDER BY d.created_at DESC, d.id DESC LIMIT $4"
            ],
            org,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?)
    }

    pub async fn get_document(
        &mut self,
        id: voxanne_domain::DocumentId,
    ) -> Result<Option<Document>, DbError> {
        let org = self.org().as_uuid();
        Ok(document_query!(
            [
                "SELECT ",
                " FROM knowledge_base_documents d WHERE d.org_id = $1 AND d.id = $2"
            ],
            org,
            id.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?)
    }

    pub async fn insert_document(&mut self, title: &str, body: &str) -> Result<Document, DbError> {
        let org = self.org().as_uuid();
        let id = sqlx::query_scalar!(
            r#"INSERT INTO knowledge_base_documents (org_id, title, body) VALUES ($1, $2, $3)
               RETURNING id AS "id: DocumentId""#,
            org,
            title,
            body
        )
        .fetch_one(self.conn())
        .await?;
        self.write_chunks(id, body).await?;
        self.get_document(id).await?.ok_or(DbError::NotFound)
    }

    /// Replaces title and body, and the chunks with them.
    pub async fn update_document(
        &mut self,
        id: voxanne_domain::DocumentId,
        title: &str,
        body: &str,
    ) -> Result<Option<Document>, DbError> {
        let org = self.org().as_uuid();
        let updated = sqlx::query!(
            "UPDATE knowledge_base_documents SET title = $3, body = $4, updated_at = now()
              WHERE org_id = $1 AND id = $2",
            org,
            id.as_uuid(),
            title,
            body
        )
        .execute(self.conn())
        .await?;
        if updated.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query!(
            "DELETE FROM knowledge_base_chunks WHERE org_id = $1 AND document_id = $2",
            org,
            id.as_uuid()
        )
        .execute(self.conn())
        .await?;
        self.write_chunks(id, body).await?;
        self.get_document(id).await
    }

    async fn write_chunks(
        &mut self,
        document: voxanne_domain::DocumentId,
        body: &str,
    ) -> Result<(), DbError> {
        let org = self.org().as_uuid();
        let chunks = voxanne_domain::chunks(body, CHUNK_SIZE);
        sqlx::query!(
            // RETURNING: see calendar_sync.rs (an INSERT … SELECT on Citus).
            "INSERT INTO knowledge_base_chunks (org_id, document_id, ordinal, content)
             SELECT $1, $2, (t.ordinal - 1)::int, t.content
               FROM unnest($3::text[]) WITH ORDINALITY AS t(content, ordinal)
             RETURNING ordinal",
            org,
            document.as_uuid(),
            &chunks
        )
        .fetch_all(self.conn())
        .await?;
        Ok(())
    }

    /// Chunks are deleted with their document (composite foreign key, cascade).
    pub async fn delete_document(
        &mut self,
        id: voxanne_domain::DocumentId,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let done = sqlx::query!(
            "DELETE FROM knowledge_base_documents WHERE org_id = $1 AND id = $2",
            org,
            id.as_uuid()
        )
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The best chunks for a question, in web-search syntax (`parking -street "opening hours"`).
    pub async fn search_knowledge_base(
        &mut self,
        query: &str,
        limit: u32,
    ) -> Result<Vec<SearchHit>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_as!(
            SearchHit,
            r#"SELECT c.document_id, d.title, c.ordinal, c.content, ts_rank(c.tsv, q) AS "rank!"
                 FROM knowledge_base_chunks c
                 JOIN knowledge_base_documents d ON d.org_id = c.org_id AND d.id = c.document_id,
                      websearch_to_tsquery('english', $2) AS q
                WHERE c.org_id = $1 AND c.tsv @@ q
                ORDER BY 5 DESC, c.document_id, c.ordinal
                LIMIT $3"#,
            org,
            query,
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?)
    }
}
