//! Outbound calling: the clinic's leads, each campaign's audience (its targets: the dialer's
//! queue) and one `cold_call_logs` row per attempt. The dialer's writes are conditional on
//! the claim's attempt, as every job's are; the end-of-call report settles an attempt by the
//! platform's call id, in the clinic's own transaction (another clinic's call id is as
//! unknown as none).

use crate::access::subject;
use crate::encrypted::LEAD_NOTES;
use crate::recordings::AfterFailure;
use crate::rows::{query_row, tenant_row, After, FromStored};
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, NaiveTime, Utc};
use uuid::Uuid;
use voxanne_domain::messages::ConsentChannel;
use voxanne_domain::outreach::{outcome_of, CallOutcome, LeadStatus, TargetStatus};
use voxanne_domain::{
    AppointmentId, CallId, CampaignId, CampaignStatus, CampaignTargetId, ColdCallId, ContactId,
    LeadId, PhoneNumber,
};

/// A row of `leads`, its notes opened; `Lead<Vec<u8>>` as stored, encrypted (encrypted.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct Lead<Text = String> {
    pub id: LeadId,
    pub phone: String,
    pub name: String,
    pub email: Option<String>,
    pub time_zone: Option<String>,
    pub status: LeadStatus,
    pub consent_source: Option<String>,
    pub contact_id: Option<ContactId>,
    pub notes: Text,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type StoredLead = Lead<Vec<u8>>;

impl FromStored<StoredLead> for Lead {
    fn from_stored(tx: &TenantTx, l: StoredLead) -> Result<Self, DbError> {
        Ok(Lead {
            notes: tx.open(LEAD_NOTES, l.id.as_uuid(), &l.notes)?,
            id: l.id,
            phone: l.phone,
            name: l.name,
            email: l.email,
            time_zone: l.time_zone,
            status: l.status,
            consent_source: l.consent_source,
            contact_id: l.contact_id,
            created_at: l.created_at,
            updated_at: l.updated_at,
        })
    }
}

macro_rules! lead_query {
    ($($query:tt)*) => {
        query_row!(
            StoredLead,
            r#"id AS "id: LeadId", phone, name, email, time_zone,
               status AS "status: LeadStatus", consent_source,
               contact_id AS "contact_id: ContactId", notes, created_at, updated_at"#,
            $($query)*
        )
    };
}

// A deleted lead's call attempts keep their history without it.
tenant_row!(
    Lead,
    LeadId,
    "leads",
    lead_query,
    subject = "lead",
    patient = |l| l.contact_id.map(Into::into),
    detach = ["UPDATE cold_call_logs SET lead_id = NULL WHERE org_id = $1 AND lead_id = $2"]
);

/// A lead to import: a number with what is known of it.
#[derive(Debug, Clone)]
pub struct LeadInput {
    pub phone: PhoneNumber,
    pub name: String,
    pub email: Option<String>,
    pub time_zone: Option<String>,
    /// Where the consent to be called came from; `None`: none given.
    pub consent_source: Option<String>,
}

/// What changes on a lead (`None`: unchanged).
#[derive(Debug, Clone, Default)]
pub struct LeadPatch {
    pub name: Option<String>,
    pub email: Option<Option<String>>,
    pub time_zone: Option<Option<String>>,
    pub status: Option<LeadStatus>,
    pub notes: Option<String>,
}

/// A row of `campaign_targets`.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignTarget {
    pub id: CampaignTargetId,
    pub campaign_id: CampaignId,
    pub lead_id: Option<LeadId>,
    pub contact_id: Option<ContactId>,
    pub phone: String,
    pub name: String,
    pub time_zones: Vec<String>,
    pub status: TargetStatus,
    pub outcome: Option<String>,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

macro_rules! target_query {
    ($($query:tt)*) => {
        query_row!(
            CampaignTarget,
            r#"id AS "id: CampaignTargetId", campaign_id AS "campaign_id: CampaignId",
               lead_id AS "lead_id: LeadId", contact_id AS "contact_id: ContactId", phone, name,
               time_zones, status AS "status: TargetStatus", outcome, attempts, next_attempt_at,
               last_error, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    CampaignTarget,
    CampaignTargetId,
    "campaign_targets",
    target_query,
    subject = "campaign_target",
    patient = |t| t.contact_id.map(Into::into),
);

/// One number to add to a campaign's audience, with the zones its callee may be in.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub lead_id: Option<LeadId>,
    pub contact_id: Option<ContactId>,
    pub phone: PhoneNumber,
    pub name: String,
    pub time_zones: Vec<String>,
}

/// A row of `cold_call_logs`: one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdCall {
    pub id: ColdCallId,
    pub target_id: CampaignTargetId,
    pub campaign_id: CampaignId,
    pub lead_id: Option<LeadId>,
    pub attempt: i32,
    pub to_number: String,
    pub from_number: String,
    pub provider_call_id: Option<String>,
    pub call_id: Option<CallId>,
    pub status: String,
    pub outcome: Option<String>,
    pub ended_reason: Option<String>,
    pub appointment_id: Option<AppointmentId>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

macro_rules! cold_call_query {
    ($($query:tt)*) => {
        query_row!(
            ColdCall,
            r#"id AS "id: ColdCallId", target_id AS "target_id: CampaignTargetId",
               campaign_id AS "campaign_id: CampaignId", lead_id AS "lead_id: LeadId", attempt,
               to_number, from_number, provider_call_id, call_id AS "call_id: CallId", status,
               outcome, ended_reason, appointment_id AS "appointment_id: AppointmentId", error,
               created_at, ended_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    ColdCall,
    ColdCallId,
    "cold_call_logs",
    cold_call_query,
    subject = "cold_call",
    patient = |_| None,
);

/// What the dialer needs to know of a claimed target, read in the clinic's transaction.
#[derive(Debug, Clone)]
pub struct CallRoute {
    pub clinic: String,
    pub campaign_name: String,
    pub campaign_status: CampaignStatus,
    /// What the call is about (the campaign's message: the opening line's template).
    pub script: String,
    pub window_start: NaiveTime,
    pub window_end: NaiveTime,
    pub do_not_contact: bool,
    /// The latest consent record of the number for calls: `None` if there is none.
    pub consent: Option<bool>,
    /// The clinic's own numbers, oldest first.
    pub clinic_numbers: Vec<String>,
}

/// How an end-of-call report settled a campaign's attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptEnded {
    pub outcome: CallOutcome,
    /// Whether the target goes back to the queue for another attempt.
    pub retry: bool,
}

impl TenantTx {
    /// A page of the clinic's leads, newest first; of one status if given.
    pub async fn list_leads(
        &mut self,
        status: Option<LeadStatus>,
        after: After,
        limit: u32,
    ) -> Result<Vec<Lead>, DbError> {
        let org = self.org().as_uuid();
        let rows = lead_query!(
            [
                "SELECT ",
                " FROM leads WHERE org_id = $1 AND ($2::text IS NULL OR status = $2)
                   AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                 ORDER BY created_at DESC, id DESC LIMIT $5"
            ],
            org,
            status.map(LeadStatus::as_str),
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let rows: Vec<Lead> = self.opened(rows)?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// Adds a lead, or completes the one with the same number (what the import knows now
    /// fills what is missing; a name replaces a blank one). `true` if it was new. A consent
    /// source records a granted `calls` consent for the number.
    pub async fn import_lead(&mut self, lead: &LeadInput) -> Result<(Lead, bool), DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"INSERT INTO leads AS l (org_id, phone, name, email, time_zone, consent_source)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT ON CONSTRAINT leads_org_phone_key DO UPDATE SET
                   name = CASE WHEN EXCLUDED.name <> '' THEN EXCLUDED.name ELSE l.name END,
                   email = coalesce(EXCLUDED.email, l.email),
                   time_zone = coalesce(EXCLUDED.time_zone, l.time_zone),
                   consent_source = coalesce(EXCLUDED.consent_source, l.consent_source),
                   updated_at = EXCLUDED.updated_at
               RETURNING id AS "id: LeadId", (xmax = 0) AS "created!""#,
            org,
            lead.phone.as_str(),
            lead.name,
            lead.email,
            lead.time_zone,
            lead.consent_source
        )
        .fetch_one(self.conn())
        .await?;
        if let Some(source) = &lead.consent_source {
            self.record_consent(
                lead.phone.as_str(),
                ConsentChannel::Calls,
                true,
                "lead_import",
                Some(source),
            )
            .await?;
        }
        let stored = self
            .find::<Lead>(row.id)
            .await?
            .ok_or_else(|| DbError::Corrupt("an imported lead was not there".into()))?;
        let action = if row.created {
            Action::Create
        } else {
            Action::Update
        };
        self.note_row(&stored, action);
        Ok((stored, row.created))
    }

    /// Changes a lead; `None` if the clinic has no such lead.
    pub async fn update_lead(
        &mut self,
        id: LeadId,
        patch: &LeadPatch,
    ) -> Result<Option<Lead>, DbError> {
        let org = self.org().as_uuid();
        let (email_set, email) = match &patch.email {
            Some(v) => (true, v.clone()),
            None => (false, None),
        };
        let (zone_set, zone) = match &patch.time_zone {
            Some(v) => (true, v.clone()),
            None => (false, None),
        };
        let notes = patch
            .notes
            .as_deref()
            .map(|n| self.seal(LEAD_NOTES, id.as_uuid(), n))
            .transpose()?;
        let row = lead_query!(
            [
                "UPDATE leads SET name = coalesce($3, name),
                        email = CASE WHEN $4 THEN $5 ELSE email END,
                        time_zone = CASE WHEN $6 THEN $7 ELSE time_zone END,
                        status = coalesce($8, status), notes = coalesce($9, notes),
                        updated_at = now()
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            patch.name,
            email_set,
            email,
            zone_set,
            zone,
            patch.status.map(LeadStatus::as_str),
            notes
        )
        .fetch_optional(self.conn())
        .await?;
        let row: Option<Lead> = self.opened_opt(row)?;
        if let Some(row) = &row {
            self.note_row(row, Action::Update);
        }
        Ok(row)
    }

    /// Makes the lead a contact of the clinic (the contact with its number if there is one,
    /// else a new one), links them and marks the lead `converted`. `None`: no such lead.
    pub async fn convert_lead(&mut self, id: LeadId) -> Result<Option<(Lead, ContactId)>, DbError> {
        let Some(lead) = self.find::<Lead>(id).await? else {
            return Ok(None);
        };
        let phone = PhoneNumber::parse(&lead.phone)
            .map_err(|e| DbError::Corrupt(format!("a lead's stored number: {e}")))?;
        let name = if lead.name.trim().is_empty() {
            lead.phone.clone()
        } else {
            lead.name.clone()
        };
        let contact = self.ensure_contact_for_phone(&phone, &name).await?;
        let org = self.org().as_uuid();
        let lead = lead_query!(
            [
                "UPDATE leads SET contact_id = $3, status = 'converted', updated_at = now()
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            contact.id.as_uuid()
        )
        .fetch_one(self.conn())
        .await?;
        let lead = Lead::from_stored(self, lead)?;
        self.note_row(&lead, Action::Update);
        Ok(Some((lead, contact.id)))
    }

    /// The clinic's leads `ids` (all of them when `None`) of status `status` (any when
    /// `None`), oldest first: a campaign's audience in the making.
    pub async fn leads_for_audience(
        &mut self,
        ids: Option<&[LeadId]>,
        status: Option<LeadStatus>,
    ) -> Result<Vec<Lead>, DbError> {
        let org = self.org().as_uuid();
        let ids: Option<Vec<Uuid>> = ids.map(|ids| ids.iter().map(|i| i.as_uuid()).collect());
        let rows = lead_query!(
            [
                "SELECT ",
                " FROM leads WHERE org_id = $1 AND ($2::uuid[] IS NULL OR id = ANY($2))
                   AND ($3::text IS NULL OR status = $3)
                 ORDER BY created_at, id"
            ],
            org,
            ids.as_deref(),
            status.map(LeadStatus::as_str)
        )
        .fetch_all(self.conn())
        .await?;
        let rows: Vec<Lead> = self.opened(rows)?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// Adds numbers to a campaign's audience; a number already in it is left as it is.
    /// Returns how many were added.
    pub async fn add_campaign_targets(
        &mut self,
        campaign: CampaignId,
        targets: &[NewTarget],
    ) -> Result<u64, DbError> {
        self.note_access(subject::CAMPAIGN_TARGET, None, Action::Create, []);
        let org = self.org().as_uuid();
        let mut added = 0;
        for t in targets {
            let done = sqlx::query!(
                "INSERT INTO campaign_targets (org_id, campaign_id, lead_id, contact_id, phone, name,
                                               time_zones)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT ON CONSTRAINT campaign_targets_phone_key DO NOTHING",
                org,
                campaign.as_uuid(),
                t.lead_id.map(Uuid::from),
                t.contact_id.map(Uuid::from),
                t.phone.as_str(),
                t.name.chars().take(200).collect::<String>(),
                &t.time_zones
            )
            .execute(self.conn())
            .await?;
            added += done.rows_affected();
        }
        Ok(added)
    }

    /// A page of a campaign's targets, newest first.
    pub async fn list_campaign_targets(
        &mut self,
        campaign: CampaignId,
        after: After,
        limit: u32,
    ) -> Result<Vec<CampaignTarget>, DbError> {
        let org = self.org().as_uuid();
        let rows = target_query!(
            [
                "SELECT ",
                " FROM campaign_targets WHERE org_id = $1 AND campaign_id = $2
                   AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                 ORDER BY created_at DESC, id DESC LIMIT $5"
            ],
            org,
            campaign.as_uuid(),
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// A page of a campaign's attempts, newest first.
    pub async fn list_cold_calls(
        &mut self,
        campaign: CampaignId,
        after: After,
        limit: u32,
    ) -> Result<Vec<ColdCall>, DbError> {
        let org = self.org().as_uuid();
        let rows = cold_call_query!(
            [
                "SELECT ",
                " FROM cold_call_logs WHERE org_id = $1 AND campaign_id = $2
                   AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                 ORDER BY created_at DESC, id DESC LIMIT $5"
            ],
            org,
            campaign.as_uuid(),
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        self.note_rows(&rows);
        Ok(rows)
    }

    /// What the dialer needs to know of a claimed target of `campaign` calling `phone`.
    pub async fn call_route(
        &mut self,
        campaign: CampaignId,
        phone: &str,
    ) -> Result<Option<CallRoute>, DbError> {
        self.note_access(subject::CAMPAIGN_TARGET, None, Action::Read, []);
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"SELECT o.name AS clinic, c.name AS campaign_name,
                      c.status AS "campaign_status: CampaignStatus", c.message,
                      c.window_start, c.window_end,
                      EXISTS (SELECT 1 FROM dnc_list d WHERE d.org_id = $1 AND d.phone = $3)
                          AS "do_not_contact!",
                      (SELECT r.granted FROM consent_records r
                        WHERE r.org_id = $1 AND r.phone = $3 AND r.channel = 'calls'
                        ORDER BY r.created_at DESC, r.id DESC LIMIT 1) AS consent,
                      ARRAY(SELECT p.number FROM phone_numbers p WHERE p.org_id = $1
                             ORDER BY p.created_at, p.id) AS "clinic_numbers!"
                 FROM campaigns c JOIN organizations o ON o.id = c.org_id
                WHERE c.org_id = $1 AND c.id = $2"#,
            org,
            campaign.as_uuid(),
            phone
        )
        .fetch_optional(self.conn())
        .await?;
        Ok(row.map(|r| CallRoute {
            clinic: r.clinic,
            campaign_name: r.campaign_name,
            campaign_status: r.campaign_status,
            script: r.message,
            window_start: r.window_start,
            window_end: r.window_end,
            do_not_contact: r.do_not_contact,
            consent: r.consent,
            clinic_numbers: r.clinic_numbers,
        }))
    }

    /// The platform took the call: the target waits for its report (holding its place under
    /// the clinic's cap until `lease_until`), and the attempt is logged with the platform's
    /// call id. `false` if the claim no longer holds.
    pub async fn call_placed(
        &mut self,
        target: CampaignTargetId,
        attempt: i32,
        provider_call_id: &str,
        from: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, DbError> {
        self.note_access(
            subject::CAMPAIGN_TARGET,
            Some(target.into()),
            Action::Update,
            [],
        );
        let org = self.org().as_uuid();
        let placed = sqlx::query!(
            "UPDATE campaign_targets SET status = 'calling', lease_until = $4, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'dialing' AND attempts = $3
              RETURNING campaign_id, lead_id, phone",
            org,
            target.as_uuid(),
            attempt,
            lease_until
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(t) = placed else {
            return Ok(false);
        };
        sqlx::query!(
            "INSERT INTO cold_call_logs (org_id, target_id, campaign_id, lead_id, attempt, to_number,
                                         from_number, provider_call_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            org,
            target.as_uuid(),
            t.campaign_id,
            t.lead_id,
            attempt,
            t.phone,
            from,
            provider_call_id
        )
        .execute(self.conn())
        .await?;
        if let Some(lead) = t.lead_id {
            sqlx::query!(
                "UPDATE leads SET status = 'contacted', updated_at = now()
                  WHERE org_id = $1 AND id = $2 AND status = 'new'",
                org,
                lead
            )
            .execute(self.conn())
            .await?;
        }
        Ok(true)
    }

    /// The target is never called: `reason`. A number on the do-not-call list marks its lead
    /// `do_not_call`. `false` if the claim no longer holds.
    pub async fn call_skipped(
        &mut self,
        target: CampaignTargetId,
        attempt: i32,
        reason: &str,
        do_not_call: bool,
    ) -> Result<bool, DbError> {
        self.note_access(
            subject::CAMPAIGN_TARGET,
            Some(target.into()),
            Action::Update,
            [],
        );
        let org = self.org().as_uuid();
        let skipped = sqlx::query_scalar!(
            "UPDATE campaign_targets SET status = 'skipped', last_error = $4, lease_until = NULL,
                    updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'dialing' AND attempts = $3
              RETURNING lead_id",
            org,
            target.as_uuid(),
            attempt,
            reason
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(lead) = skipped else {
            return Ok(false);
        };
        if let (Some(lead), true) = (lead, do_not_call) {
            sqlx::query!(
                "UPDATE leads SET status = 'do_not_call', updated_at = now()
                  WHERE org_id = $1 AND id = $2 AND status <> 'converted'",
                org,
                lead
            )
            .execute(self.conn())
            .await?;
        }
        Ok(true)
    }

    /// Not now (outside the callee's calling hours, or the campaign paused since the claim):
    /// back in the queue, not before `until` (`None`: whenever it is due again), the attempt
    /// not counted. `false` if the claim no longer holds.
    pub async fn call_deferred(
        &mut self,
        target: CampaignTargetId,
        attempt: i32,
        until: Option<DateTime<Utc>>,
    ) -> Result<bool, DbError> {
        self.note_access(
            subject::CAMPAIGN_TARGET,
            Some(target.into()),
            Action::Update,
            [],
        );
        let org = self.org().as_uuid();
        let done = sqlx::query!(
            "UPDATE campaign_targets SET status = 'queued', attempts = attempts - 1,
                    next_attempt_at = $4, lease_until = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'dialing' AND attempts = $3",
            org,
            target.as_uuid(),
            attempt,
            until
        )
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The platform did not take the call: the attempt is logged `failed` with `error`, and
    /// the target goes back to the queue or fails, as `after` says. `false` if the claim no
    /// longer holds.
    pub async fn call_failed(
        &mut self,
        target: CampaignTargetId,
        attempt: i32,
        from: &str,
        error: &str,
        after: AfterFailure,
    ) -> Result<bool, DbError> {
        self.note_access(
            subject::CAMPAIGN_TARGET,
            Some(target.into()),
            Action::Update,
            [],
        );
        let org = self.org().as_uuid();
        let (status, retry_at) = match after {
            AfterFailure::RetryAt(at) => ("queued", Some(at)),
            AfterFailure::GiveUp => ("failed", None),
        };
        let failed = sqlx::query!(
            "UPDATE campaign_targets SET status = $4, next_attempt_at = $5, last_error = $6,
                    outcome = 'failed', lease_until = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2 AND status = 'dialing' AND attempts = $3
              RETURNING campaign_id, lead_id, phone",
            org,
            target.as_uuid(),
            attempt,
            status,
            retry_at,
            error
        )
        .fetch_optional(self.conn())
        .await?;
        let Some(t) = failed else {
            return Ok(false);
        };
        sqlx::query!(
            "INSERT INTO cold_call_logs (org_id, target_id, campaign_id, lead_id, attempt, to_number,
                                         from_number, status, outcome, error, ended_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'failed', 'failed', $8, now())
             ON CONFLICT ON CONSTRAINT cold_call_logs_attempt_key DO NOTHING",
            org,
            target.as_uuid(),
            t.campaign_id,
            t.lead_id,
            attempt,
            t.phone,
            from,
            error
        )
        .execute(self.conn())
        .await?;
        Ok(true)
    }

    /// An end-of-call report for an outbound call `provider_call_id` (the call row `call`):
    /// if it is an attempt of one of the clinic's campaigns still waiting for its report,
    /// settles the attempt (its outcome from `ended_reason`, the agent's `reported` outcome,
    /// and whether an appointment was booked on the call), the target (done, or back in the
    /// queue after the campaign's `retry_minutes` for no answer or busy, while attempts
    /// remain) and the lead (its status; a booked lead is linked to the appointment's
    /// contact). `None`: not a campaign's call, or already settled (a retried report).
    pub async fn campaign_call_ended(
        &mut self,
        provider_call_id: &str,
        call: CallId,
        ended_reason: Option<&str>,
        reported: Option<&str>,
    ) -> Result<Option<AttemptEnded>, DbError> {
        self.note_access(subject::CALL, Some(call.into()), Action::Update, []);
        let org = self.org().as_uuid();
        let Some(attempt) = sqlx::query!(
            r#"SELECT l.id, l.target_id, l.lead_id, t.attempts, c.max_attempts, c.retry_minutes
                 FROM cold_call_logs l
                 JOIN campaign_targets t ON t.org_id = l.org_id AND t.id = l.target_id
                 JOIN campaigns c ON c.org_id = l.org_id AND c.id = l.campaign_id
                WHERE l.org_id = $1 AND l.provider_call_id = $2 AND l.status = 'calling'
                  FOR UPDATE OF l, t"#,
            org,
            provider_call_id
        )
        .fetch_optional(self.conn())
        .await?
        else {
            return Ok(None);
        };
        let booked = sqlx::query!(
            r#"SELECT id, contact_id FROM appointments
                WHERE org_id = $1 AND call_id = $2 AND status = 'booked'
                ORDER BY created_at LIMIT 1"#,
            org,
            call.as_uuid()
        )
        .fetch_optional(self.conn())
        .await?;
        let outcome = outcome_of(ended_reason, reported, booked.is_some());
        let retry = outcome.retries() && attempt.attempts < attempt.max_attempts;
        sqlx::query!(
            "UPDATE cold_call_logs SET status = 'ended', outcome = $3, ended_reason = $4,
                    call_id = $5, appointment_id = $6, ended_at = now()
              WHERE org_id = $1 AND id = $2",
            org,
            attempt.id,
            outcome.as_str(),
            ended_reason,
            call.as_uuid(),
            booked.as_ref().map(|b| b.id)
        )
        .execute(self.conn())
        .await?;
        sqlx::query!(
            "UPDATE campaign_targets
                SET status = CASE WHEN $3 THEN 'queued' ELSE 'done' END,
                    next_attempt_at = now() + CASE WHEN $3 THEN make_interval(mins => $4) END,
                    outcome = $5, lease_until = NULL, updated_at = now()
              WHERE org_id = $1 AND id = $2",
            org,
            attempt.target_id,
            retry,
            attempt.retry_minutes,
            outcome.as_str()
        )
        .execute(self.conn())
        .await?;
        if let Some(lead) = attempt.lead_id {
            sqlx::query!(
                "UPDATE leads SET status = $3, contact_id = coalesce($4, contact_id),
                        updated_at = now()
                  WHERE org_id = $1 AND id = $2 AND status NOT IN ('converted', 'do_not_call')",
                org,
                lead,
                outcome.lead_status().as_str(),
                booked.and_then(|b| b.contact_id)
            )
            .execute(self.conn())
            .await?;
        }
        Ok(Some(AttemptEnded { outcome, retry }))
    }
}
