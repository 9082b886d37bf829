//! One patient's data, to export (GDPR Art. 15) or erase (Art. 17): everything the clinic holds
//! about a contact, across every table, inside the clinic's tenant transaction. What is the patient's: the contact; every call
//! of it or from or to its number, with its transcript lines; their appointments and holds; the
//! SMS of those appointments or to the number, and the patient's messages; leads of the number,
//! their campaign targets and campaign calls. Kept: the do-not-call entry and the consent trail
//! of the number (the law requires honouring an opt-out after the patient is gone; they hold the
//! number alone), the clinic's charges (without the call), and the access log, whose records
//! name ids that now resolve to nothing, plus one record that the erasure happened.
//!
//! [`TenantTx::erasure_scope`] finds it all (and the recordings to remove from storage) under
//! the clinic's purge lock, so that no legal hold is placed meanwhile;
//! [`TenantTx::erase`] then removes the rows. The caller removes the recordings between the
//! two, in the same transaction (voxanne_jobs::erase). [`TenantTx::export_scope`] finds the
//! same without locking, and [`TenantTx::patient_rows`] reads its rows for an export
//! (voxanne_jobs::export).

use crate::access::subject;
use crate::encrypted::FIELDS;
use crate::{Action, DbError, TenantTx};
use uuid::Uuid;
use voxanne_domain::ContactId;

/// What is one patient's: what an erasure removes and an export holds (module docs), found by
/// [`TenantTx::erasure_scope`] or [`TenantTx::export_scope`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientScope {
    pub contact: ContactId,
    pub phone: Option<String>,
    pub calls: Vec<Uuid>,
    /// The storage keys of the calls' recordings.
    pub recordings: Vec<String>,
    pub appointments: Vec<Uuid>,
    pub sms: Vec<Uuid>,
    pub messages: Vec<Uuid>,
    pub leads: Vec<Uuid>,
    pub campaign_targets: Vec<Uuid>,
    pub campaign_calls: Vec<Uuid>,
}

/// How many of each an erasure removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Erased {
    pub calls: usize,
    pub recordings: usize,
    pub appointments: usize,
    pub sms: usize,
    pub messages: usize,
    pub leads: usize,
    pub campaign_targets: usize,
    pub campaign_calls: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("the contact is under a legal hold, or one of its calls is")]
    Held,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for EraseError {
    fn from(e: sqlx::Error) -> Self {
        EraseError::Db(e.into())
    }
}

impl TenantTx {
    /// Everything of contact `id` (module docs), the contact locked (so that nothing new is
    /// linked to it meanwhile); `None` when the clinic has no such contact. Refused while a
    /// legal hold covers the contact or any of its calls.
    pub async fn erasure_scope(
        &mut self,
        id: ContactId,
    ) -> Result<Option<PatientScope>, EraseError> {
        self.lock_purge().await?;
        let org = self.org().as_uuid();
        let contact = id.as_uuid();
        let locked = sqlx::query_scalar!(
            "SELECT id FROM contacts WHERE org_id = $1 AND id = $2 FOR UPDATE",
            org,
            contact
        )
        .fetch_optional(self.conn())
        .await?;
        if locked.is_none() {
            return Ok(None);
        }
        let Some(scope) = self.export_scope(id).await? else {
            return Ok(None);
        };
        let held = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM legal_holds
                               WHERE org_id = $1 AND (contact_id = $2 OR call_id = ANY($3)))
                   AS "held!""#,
            org,
            contact,
            &scope.calls
        )
        .fetch_one(self.conn())
        .await?;
        if held {
            return Err(EraseError::Held);
        }
        Ok(Some(scope))
    }

    /// Everything of contact `id` (module docs), locking nothing; `None` when the clinic has no
    /// such contact.
    pub async fn export_scope(&mut self, id: ContactId) -> Result<Option<PatientScope>, DbError> {
        let org = self.org().as_uuid();
        let contact = id.as_uuid();
        let Some(phone) = sqlx::query_scalar!(
            "SELECT phone FROM contacts WHERE org_id = $1 AND id = $2",
            org,
            contact
        )
        .fetch_optional(self.conn())
        .await?
        else {
            return Ok(None);
        };
        let calls = sqlx::query!(
            "SELECT id, recording_path FROM calls
              WHERE org_id = $1 AND (contact_id = $2 OR from_number = $3 OR to_number = $3)
              ORDER BY id",
            org,
            contact,
            phone.as_deref()
        )
        .fetch_all(self.conn())
        .await?;
        let recordings = calls
            .iter()
            .filter_map(|c| c.recording_path.clone())
            .collect();
        let calls: Vec<Uuid> = calls.into_iter().map(|c| c.id).collect();
        let appointments = sqlx::query_scalar!(
            "SELECT id FROM appointments
              WHERE org_id = $1 AND (contact_id = $2 OR call_id = ANY($3)) ORDER BY id",
            org,
            contact,
            &calls
        )
        .fetch_all(self.conn())
        .await?;
        let sms = sqlx::query_scalar!(
            "SELECT id FROM sms_confirmation_logs
              WHERE org_id = $1 AND (appointment_id = ANY($2) OR to_number = $3) ORDER BY id",
            org,
            &appointments,
            phone.as_deref()
        )
        .fetch_all(self.conn())
        .await?;
        let messages = sqlx::query_scalar!(
            "SELECT id FROM inbox_messages
              WHERE org_id = $1
                AND (contact_id = $2 OR from_number = $3 OR call_id = ANY($4)
                     OR appointment_id = ANY($5) OR reply_to_sms_id = ANY($6))
              ORDER BY id",
            org,
            contact,
            phone.as_deref(),
            &calls,
            &appointments,
            &sms
        )
        .fetch_all(self.conn())
        .await?;
        let leads = sqlx::query_scalar!(
            "SELECT id FROM leads WHERE org_id = $1 AND (contact_id = $2 OR phone = $3) ORDER BY id",
            org,
            contact,
            phone.as_deref()
        )
        .fetch_all(self.conn())
        .await?;
        let campaign_targets = sqlx::query_scalar!(
            "SELECT id FROM campaign_targets
              WHERE org_id = $1 AND (contact_id = $2 OR lead_id = ANY($3) OR phone = $4)
              ORDER BY id",
            org,
            contact,
            &leads,
            phone.as_deref()
        )
        .fetch_all(self.conn())
        .await?;
        let campaign_calls = sqlx::query_scalar!(
            "SELECT id FROM cold_call_logs
              WHERE org_id = $1
                AND (target_id = ANY($2) OR lead_id = ANY($3) OR to_number = $4
                     OR call_id = ANY($5) OR appointment_id = ANY($6))
              ORDER BY id",
            org,
            &campaign_targets,
            &leads,
            phone.as_deref(),
            &calls,
            &appointments
        )
        .fetch_all(self.conn())
        .await?;
        Ok(Some(PatientScope {
            contact: id,
            phone,
            calls,
            recordings,
            appointments,
            sms,
            messages,
            leads,
            campaign_targets,
            campaign_calls,
        }))
    }

    /// Removes the rows of `scope` (its recordings already gone from storage), each table
    /// before what it refers to, and records the erasure.
    pub async fn erase(&mut self, scope: &PatientScope) -> Result<Erased, EraseError> {
        let org = self.org().as_uuid();
        let s = scope;
        let removals: [(&str, &[Uuid]); 10] = [
            (
                "DELETE FROM inbox_messages WHERE org_id = $1 AND id = ANY($2)",
                &s.messages,
            ),
            (
                "DELETE FROM cold_call_logs WHERE org_id = $1 AND id = ANY($2)",
                &s.campaign_calls,
            ),
            (
                "DELETE FROM campaign_targets WHERE org_id = $1 AND id = ANY($2)",
                &s.campaign_targets,
            ),
            (
                "DELETE FROM leads WHERE org_id = $1 AND id = ANY($2)",
                &s.leads,
            ),
            (
                "DELETE FROM sms_confirmation_logs WHERE org_id = $1 AND id = ANY($2)",
                &s.sms,
            ),
            (
                "DELETE FROM appointment_holds WHERE org_id = $1 AND call_id = ANY($2)",
                &s.calls,
            ),
            (
                "DELETE FROM appointments WHERE org_id = $1 AND id = ANY($2)",
                &s.appointments,
            ),
            // The clinic's charges stay, without the call.
            (
                "UPDATE credit_transactions SET call_id = NULL WHERE org_id = $1 AND call_id = ANY($2)",
                &s.calls,
            ),
            (
                "DELETE FROM calls WHERE org_id = $1 AND id = ANY($2)",
                &s.calls,
            ),
            (
                "DELETE FROM appointment_holds WHERE org_id = $1 AND contact_id = ANY($2)",
                &[s.contact.as_uuid()],
            ),
        ];
        for (sql, ids) in removals {
            if ids.is_empty() {
                continue;
            }
            // Dynamic: the statements above, each with the clinic and its ids.
            sqlx::query(sql)
                .bind(org)
                .bind(ids)
                .execute(self.conn())
                .await?;
        }
        sqlx::query!(
            "DELETE FROM contacts WHERE org_id = $1 AND id = $2",
            org,
            s.contact.as_uuid()
        )
        .execute(self.conn())
        .await?;
        // Only that it happened: nothing of the patient but the id.
        self.note_access(
            subject::CONTACT,
            Some(s.contact.as_uuid()),
            Action::Erase,
            Some(s.contact.as_uuid()),
        );
        Ok(Erased {
            calls: s.calls.len(),
            recordings: s.recordings.len(),
            appointments: s.appointments.len(),
            sms: s.sms.len(),
            messages: s.messages.len(),
            leads: s.leads.len(),
            campaign_targets: s.campaign_targets.len(),
            campaign_calls: s.campaign_calls.len(),
        })
    }
}

/// The tables of an export, each with the rows of `scope` it holds (`$1` the clinic, `$2` the
/// ids, `$3` the number), in the archive's order.
fn export_queries(scope: &PatientScope) -> Vec<(&'static str, &'static str, Vec<Uuid>)> {
    let s = scope;
    let by_id = |table: &'static str, ids: &[Uuid]| (table, "id = ANY($2)", ids.to_vec());
    let mut subjects = vec![s.contact.as_uuid()];
    for ids in [&s.calls, &s.appointments, &s.sms, &s.messages] {
        subjects.extend_from_slice(ids);
    }
    vec![
        by_id("contacts", &[s.contact.as_uuid()]),
        by_id("calls", &s.calls),
        (
            "call_transcript_lines",
            "call_id = ANY($2)",
            s.calls.clone(),
        ),
        by_id("appointments", &s.appointments),
        by_id("sms_confirmation_logs", &s.sms),
        by_id("inbox_messages", &s.messages),
        by_id("leads", &s.leads),
        by_id("campaign_targets", &s.campaign_targets),
        by_id("cold_call_logs", &s.campaign_calls),
        ("consent_records", "phone = $3", vec![]),
        ("dnc_list", "phone = $3", vec![]),
        (
            "legal_holds",
            "(contact_id = ($2)[1] OR call_id = ANY($2[2:]))",
            [vec![s.contact.as_uuid()], s.calls.clone()].concat(),
        ),
        (
            "access_log",
            // Sealed records by their index of patients, the others apart (migration 0035).
            "(subject_id = ANY($2) OR (seq IS NOT NULL AND patients && $2[1:1]) \
              OR (seq IS NULL AND patients && $2[1:1]))",
            subjects,
        ),
    ]
}

impl TenantTx {
    /// `row` of `table` (a JSON object of all its columns) with its encrypted patient text
    /// decrypted (encrypted.rs): an export holds the text, not the ciphertext.
    fn open_json_row(&self, table: &str, row: &mut serde_json::Value) -> Result<(), DbError> {
        let id = row
            .get("id")
            .and_then(|id| id.as_str())
            .and_then(|id| id.parse::<Uuid>().ok());
        for field in FIELDS.iter().filter(|f| f.table == table) {
            let (Some(id), Some(value)) = (id, row.get_mut(field.column)) else {
                continue;
            };
            let Some(text) = value.as_str() else {
                continue;
            };
            let stored = crate::encrypted::json_bytea(text).ok_or_else(|| {
                DbError::Corrupt(format!("{}.{} is not bytea", field.table, field.column))
            })?;
            *value = serde_json::Value::String(self.open(*field, id, &stored)?);
        }
        Ok(())
    }

    /// Every row of `scope`, table by table, as JSON objects with all their columns (what an
    /// export holds), and an access record of the export.
    pub async fn patient_rows(
        &mut self,
        scope: &PatientScope,
    ) -> Result<Vec<(&'static str, Vec<serde_json::Value>)>, DbError> {
        let org = self.org().as_uuid();
        let mut tables = Vec::new();
        for (table, filter, ids) in export_queries(scope) {
            // Dynamic: the tables and filters above, with the clinic's id first.
            let sql = format!(
                "SELECT to_jsonb(t) FROM {table} t WHERE t.org_id = $1 AND {filter}
                  ORDER BY coalesce(to_jsonb(t) ->> 'created_at', to_jsonb(t) ->> 'at'),
                           to_jsonb(t) ->> 'id'"
            );
            let mut rows: Vec<serde_json::Value> = sqlx::query_scalar(&sql)
                .bind(org)
                .bind(&ids)
                .bind(scope.phone.as_deref())
                .fetch_all(self.conn())
                .await?;
            for row in &mut rows {
                self.open_json_row(table, row)?;
            }
            tables.push((table, rows));
        }
        let contact = scope.contact.as_uuid();
        self.note_access(
            subject::CONTACT,
            Some(contact),
            Action::Export,
            Some(contact),
        );
        Ok(tables)
    }
}
