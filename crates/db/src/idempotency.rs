//! `Idempotency-Key`: the first response to a key is replayed for the same request; the same
//! key with another request is refused (migrations/0006_booking.sql has the table).

use crate::{DbError, TenantTx};

/// What a key means for the request at hand.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First use: this transaction owns the key; do the work, then [`TenantTx::record_response`].
    New,
    /// Seen with the same request: answer this, do nothing.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// Seen with a different request.
    Reused,
}

/// Keys are kept this long (the `interval '24 hours'` below); an older key counts as new.
pub const RETENTION_HOURS: u32 = 24;

impl TenantTx {
    /// Claims `key` for `request` (any JSON naming the operation and its input; compared by
    /// its canonical jsonb form). A concurrent transaction that claimed the key first makes
    /// this wait until it ends: then its response is replayed, or, if it rolled back, the key
    /// is ours.
    pub async fn claim_idempotency_key(
        &mut self,
        key: &str,
        request: &serde_json::Value,
    ) -> Result<Claim, DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "DELETE FROM idempotency_keys
              WHERE org_id = $1 AND created_at < now() - make_interval(hours => $2)",
            org,
            RETENTION_HOURS as i32
        )
        .execute(self.conn())
        .await?;
        // Twice at most: a key seen as taken can vanish (retention) before we read it.
        for _ in 0..2 {
            let claimed = sqlx::query_scalar!(
                r#"INSERT INTO idempotency_keys (org_id, key, request_hash)
                   VALUES ($1, $2, encode(sha256(convert_to($3::jsonb::text, 'UTF8')), 'hex'))
                   ON CONFLICT (org_id, key) DO NOTHING
                   RETURNING true AS "claimed!""#,
                org,
                key,
                request
            )
            .fetch_optional(self.conn())
            .await?;
            if claimed.is_some() {
                return Ok(Claim::New);
            }
            let seen = sqlx::query!(
                r#"SELECT request_hash = encode(sha256(convert_to($3::jsonb::text, 'UTF8')), 'hex')
                            AS "same!",
                          status, response
                     FROM idempotency_keys WHERE org_id = $1 AND key = $2"#,
                org,
                key,
                request
            )
            .fetch_optional(self.conn())
            .await?
            .map(|row| (row.same, row.status, row.response));
            match seen {
                None => continue,
                Some((false, _, _)) => return Ok(Claim::Reused),
                Some((true, Some(status), Some(body))) => {
                    return Ok(Claim::Replay {
                        status: u16::try_from(status)
                            .map_err(|e| DbError::Corrupt(e.to_string()))?,
                        body,
                    })
                }
                Some((true, _, _)) => {
                    return Err(DbError::Corrupt(format!(
                        "idempotency key `{key}` was committed without its response"
                    )))
                }
            }
        }
        Err(DbError::Corrupt(format!(
            "idempotency key `{key}` could be neither claimed nor read"
        )))
    }

    /// The response to the request whose key this transaction claimed.
    pub async fn record_response(
        &mut self,
        key: &str,
        status: u16,
        body: &serde_json::Value,
    ) -> Result<(), DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "UPDATE idempotency_keys SET status = $3, response = $4 WHERE org_id = $1 AND key = $2",
            org,
            key,
            i16::try_from(status).map_err(|e| DbError::Corrupt(e.to_string()))?,
            body
        )
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
