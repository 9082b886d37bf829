//! Patient text encrypted at rest (migrations/0033): transcripts, summaries, live transcript
//! lines, contact and appointment notes, SMS bodies and the inbox's messages and replies are
//! stored encrypted with the keyring (`crypto.rs`), each value for its place: the associated
//! data names the table, the column, the clinic and the row, so a value copied into another
//! row or another clinic does not open.
//!
//! Values are encrypted and opened by the tenant transaction only, for its own clinic: the
//! clinic in the associated data is always the transaction's, never a row's or a caller's.

use crate::crypto::CryptoError;
use crate::{DbError, TenantTx};
use uuid::Uuid;
use voxanne_domain::OrgId;

/// A column that holds encrypted patient text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub table: &'static str,
    pub column: &'static str,
}

impl Field {
    const fn new(table: &'static str, column: &'static str) -> Self {
        Self { table, column }
    }

    /// The associated data of the field's value in `org`'s row `row`.
    pub fn aad(self, org: OrgId, row: Uuid) -> String {
        format!("{}.{}|{org}|{row}", self.table, self.column)
    }
}

pub const CALL_TRANSCRIPT: Field = Field::new("calls", "transcript");
pub const CALL_SUMMARY: Field = Field::new("calls", "summary");
pub const TRANSCRIPT_LINE: Field = Field::new("call_transcript_lines", "text");
pub const CONTACT_NOTES: Field = Field::new("contacts", "notes");
pub const APPOINTMENT_NOTES: Field = Field::new("appointments", "notes");
pub const SMS_BODY: Field = Field::new("sms_confirmation_logs", "body");
pub const INBOX_BODY: Field = Field::new("inbox_messages", "body");
pub const INBOX_REPLY: Field = Field::new("inbox_messages", "reply");
pub const LEAD_NOTES: Field = Field::new("leads", "notes");

/// Every encrypted column, in the order the encryption job goes through them (its progress names a
/// place in this list, so new fields go at the end).
/// The encryption job's phase after the text [`FIELDS`]: the clinic's recordings
/// (`crates/jobs/src/encryption.rs`). Migration 0034 resumes finished clinics here, by number.
pub const RECORDINGS: usize = FIELDS.len();
const _: () = assert!(RECORDINGS == 9, "migrations/0034 names this phase 9");

pub const FIELDS: [Field; 9] = [
    CALL_TRANSCRIPT,
    CALL_SUMMARY,
    TRANSCRIPT_LINE,
    CONTACT_NOTES,
    APPOINTMENT_NOTES,
    SMS_BODY,
    INBOX_BODY,
    INBOX_REPLY,
    LEAD_NOTES,
];

impl TenantTx {
    /// `text` encrypted as the value of `field` in this clinic's row `row`.
    pub(crate) fn seal(&self, field: Field, row: Uuid, text: &str) -> Result<Vec<u8>, DbError> {
        let keyring = self.keyring().ok_or(CryptoError::NoKeyring)?;
        Ok(keyring.seal_stored(text.as_bytes(), &field.aad(self.org(), row))?)
    }

    pub(crate) fn seal_opt(
        &self,
        field: Field,
        row: Uuid,
        text: Option<&str>,
    ) -> Result<Option<Vec<u8>>, DbError> {
        text.map(|text| self.seal(field, row, text)).transpose()
    }

    /// The text of `field` in this clinic's row `row`, from its stored value. A value that
    /// does not open (damaged, moved from another row or clinic, or encrypted with a key that is
    /// no longer configured) is an error, never shown.
    pub(crate) fn open(&self, field: Field, row: Uuid, stored: &[u8]) -> Result<String, DbError> {
        let keyring = self.keyring().ok_or(CryptoError::NoKeyring)?;
        let plain = keyring
            .open_stored(stored, &field.aad(self.org(), row))
            .inspect_err(|e| {
                tracing::error!(table = field.table, column = field.column, %row, error = %e,
                    "an encrypted value does not open");
            })?;
        String::from_utf8(plain.to_vec())
            .map_err(|_| DbError::Corrupt(format!("{}.{} is not UTF-8", field.table, field.column)))
    }

    pub(crate) fn open_opt(
        &self,
        field: Field,
        row: Uuid,
        stored: Option<Vec<u8>>,
    ) -> Result<Option<String>, DbError> {
        stored
            .map(|stored| self.open(field, row, &stored))
            .transpose()
    }
}

/// The bytes of a `bytea` as `to_jsonb` writes it (`\\x` and hex digits).
pub fn json_bytea(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix("\\x")?;
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What one step of the encryption job did in one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncryptStep {
    /// Rows looked at.
    pub looked: usize,
    /// Values encrypted (again) with the current key.
    pub encrypted: usize,
    /// The last row looked at: where the next step goes on. `None`: the field is done.
    pub after: Option<Uuid>,
}

impl TenantTx {
    /// Seals with the current key the values of `field` that need it (plaintext of an older
    /// version, or encrypted with an older key) among this clinic's next `limit` rows after
    /// `after`, in id order. A value changed meanwhile is left as it is: the write only
    /// replaces the value it read, and whatever replaced it was encrypted with the current key.
    pub async fn encrypt_step(
        &mut self,
        field: Field,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<EncryptStep, DbError> {
        let org = self.org().as_uuid();
        let Field { table, column } = field;
        // Dynamic: a table and column of FIELDS, never a caller's text.
        let rows: Vec<(Uuid, Option<Vec<u8>>)> = sqlx::query_as(&format!(
            "SELECT id, {column} FROM {table}
              WHERE org_id = $1 AND ($2::uuid IS NULL OR id > $2)
              ORDER BY id LIMIT $3"
        ))
        .bind(org)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(self.conn())
        .await?;
        let keyring = self.keyring().ok_or(CryptoError::NoKeyring)?;
        let mut work = Vec::new();
        for (id, stored) in &rows {
            let Some(stored) = stored.as_deref() else {
                continue;
            };
            if keyring.needs_resealing(stored) {
                let text = self.open(field, *id, stored)?;
                work.push((*id, stored, self.seal(field, *id, &text)?));
            }
        }
        let mut step = EncryptStep {
            looked: rows.len(),
            encrypted: 0,
            after: None,
        };
        let update = format!(
            "UPDATE {table} SET {column} = $4 WHERE org_id = $1 AND id = $2 AND {column} = $3"
        );
        for (id, stored, sealed) in work {
            let done = sqlx::query(&update)
                .bind(org)
                .bind(id)
                .bind(stored)
                .bind(sealed)
                .execute(self.conn())
                .await?;
            step.encrypted += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        if rows.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            step.after = rows.last().map(|(id, _)| *id);
        }
        if step.encrypted > 0 {
            self.note_access(field_subject(field), None, crate::Action::Update, []);
        }
        Ok(step)
    }

    /// Records where claim `claim` of the encryption job stands in this clinic: at `field` (an
    /// index into [`FIELDS`], then [`RECORDINGS`]) after row `after`; with `field` past the
    /// recordings, every patient text and recording of the clinic is encrypted with `key`. `release`: the claim ends here. Whether the
    /// claim still held (if not, another worker has the clinic and nothing is written).
    pub async fn encryption_progress(
        &mut self,
        claim: i32,
        key: &str,
        field: usize,
        after: Option<Uuid>,
        release: bool,
    ) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        let done = field > RECORDINGS;
        let field = i32::try_from(field).unwrap_or(i32::MAX);
        let written = sqlx::query!(
            "UPDATE organizations
                SET encrypted_with = CASE WHEN $5 THEN encrypt_key ELSE encrypted_with END,
                    encrypt_key = CASE WHEN $5 THEN NULL ELSE encrypt_key END,
                    encrypt_field = CASE WHEN $5 THEN NULL ELSE $3::integer END,
                    encrypt_after = CASE WHEN $5 THEN NULL ELSE $4::uuid END,
                    encrypt_lease_until = CASE WHEN $5 OR $6 THEN NULL ELSE encrypt_lease_until END
              WHERE id = $1 AND encrypt_claims = $2 AND encrypt_key = $7",
            org,
            claim,
            field,
            after,
            done,
            release,
            key
        )
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(written > 0)
    }
}

impl TenantTx {
    /// The clinic's secrets that an older key encrypted (its providers' credentials, its
    /// calendars' tokens) encrypted again with the current key; how many rows. Each write
    /// replaces only what it read: a token refreshed meanwhile was written with the current
    /// key anyway. (Calendar OAuth states live ten minutes and are left to expire.)
    pub async fn encrypt_secrets(&mut self) -> Result<usize, DbError> {
        use crate::calendar_connections::token_aad;
        use crate::integrations::secrets_aad;
        let org = self.org();
        let current = self
            .keyring()
            .ok_or(CryptoError::NoKeyring)?
            .current_key_id()
            .to_owned();
        let integrations = sqlx::query!(
            r#"SELECT provider, secrets_enc AS "secrets_enc!", key_id AS "key_id!"
                 FROM integration_settings
                WHERE org_id = $1 AND secrets_enc IS NOT NULL AND key_id IS DISTINCT FROM $2"#,
            org.as_uuid(),
            current
        )
        .fetch_all(self.conn())
        .await?;
        let calendars = sqlx::query!(
            r#"SELECT id, access_token_enc, refresh_token_enc, key_id AS "key_id!"
                 FROM calendar_connections
                WHERE org_id = $1 AND key_id IS DISTINCT FROM $2
                  AND (access_token_enc IS NOT NULL OR refresh_token_enc IS NOT NULL)"#,
            org.as_uuid(),
            current
        )
        .fetch_all(self.conn())
        .await?;
        let keyring = self.keyring().ok_or(CryptoError::NoKeyring)?;
        let again = |key_id: &str, bytes: &[u8], aad: &str| -> Result<Vec<u8>, DbError> {
            let plain = keyring.open(key_id, bytes, aad)?;
            Ok(keyring.seal(&plain, aad)?.bytes)
        };
        let mut integration_work = Vec::new();
        for row in &integrations {
            let provider = row
                .provider
                .parse()
                .map_err(|_| DbError::Corrupt(format!("provider `{}`", row.provider)))?;
            let aad = secrets_aad(org, provider);
            integration_work.push((row, again(&row.key_id, &row.secrets_enc, &aad)?));
        }
        let mut calendar_work = Vec::new();
        for row in &calendars {
            let token = |column: &str, bytes: &Option<Vec<u8>>| {
                bytes
                    .as_deref()
                    .map(|b| again(&row.key_id, b, &token_aad(column, org, row.id)))
                    .transpose()
            };
            calendar_work.push((
                row,
                token("access_token_enc", &row.access_token_enc)?,
                token("refresh_token_enc", &row.refresh_token_enc)?,
            ));
        }
        let mut done = 0;
        for (row, sealed) in integration_work {
            done += sqlx::query!(
                "UPDATE integration_settings SET secrets_enc = $3, key_id = $4
                  WHERE org_id = $1 AND provider = $2 AND key_id = $5 AND secrets_enc = $6",
                org.as_uuid(),
                row.provider,
                sealed,
                current,
                row.key_id,
                row.secrets_enc
            )
            .execute(self.conn())
            .await?
            .rows_affected();
        }
        for (row, access, refresh) in calendar_work {
            done += sqlx::query!(
                "UPDATE calendar_connections
                    SET access_token_enc = $3, refresh_token_enc = $4, key_id = $5
                  WHERE org_id = $1 AND id = $2 AND key_id = $6",
                org.as_uuid(),
                row.id,
                access,
                refresh,
                current,
                row.key_id
            )
            .execute(self.conn())
            .await?
            .rows_affected();
        }
        Ok(usize::try_from(done).unwrap_or(usize::MAX))
    }
}

/// The access log's kind of a field's data.
fn field_subject(field: Field) -> &'static str {
    use crate::access::subject;
    match field.table {
        "calls" | "call_transcript_lines" => subject::TRANSCRIPT,
        "contacts" => subject::CONTACT,
        "appointments" => subject::APPOINTMENT,
        "sms_confirmation_logs" => subject::SMS,
        "inbox_messages" => subject::INBOX_MESSAGE,
        _ => subject::LEAD,
    }
}
