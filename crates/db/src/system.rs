//! The named operations that are not confined to one org's tenant transaction. Each one is
//! listed here, does one thing, and is reviewed as such (docs/TENANCY.md section 3); nothing else
//! in the application reads or writes across orgs.
//!
//! Behind a transaction-mode pooler every one of them runs inside a transaction, never as a
//! bare statement on the pool, whose Parse and Bind the pooler could send to two different
//! server connections (`pooler.rs`).

use crate::tenant::ScopedTx;
use crate::{Db, DbError, Membership, Pooler, TenantTx, TxConn};
use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;
use uuid::Uuid;
use voxanne_domain::{
    AppointmentId, CalendarConnectionId, CallId, OrgId, OrgStatus, Role, SmsId, UserId,
};

/// A new org and its first owner.
#[derive(Debug, Clone)]
pub struct NewOrg {
    pub id: OrgId,
    pub name: String,
    pub owner: UserId,
}

/// Provisioning: creates the org and its owner membership, inside the new org's own tenant
/// context (RLS checks both rows), and hands back its tenant transaction, uncommitted, so the
/// caller can seed it in the same transaction.
pub async fn provision_org(db: &Db, new: &NewOrg) -> Result<TenantTx, DbError> {
    let (mut tx, _) = ScopedTx::begin(db, Some(new.id), Some(new.owner), None).await?;
    sqlx::query!(
        "INSERT INTO organizations (id, name) VALUES ($1, $2)",
        new.id.as_uuid(),
        new.name.trim()
    )
    .execute(tx.conn())
    .await?;
    sqlx::query!(
        "INSERT INTO organization_members (org_id, user_id, role) VALUES ($1, $2, 'owner')",
        new.id.as_uuid(),
        new.owner.as_uuid()
    )
    .execute(tx.conn())
    .await?;
    Ok(TenantTx::from_parts(
        db,
        tx,
        Membership {
            org: new.id,
            user: new.owner,
            role: Role::Owner,
        },
    ))
}

/// Where one cross-org statement (a SECURITY DEFINER function, which needs no tenant context)
/// runs. Directly: on a pooled connection, committing on its own, in one round trip. Behind a
/// transaction-mode pooler: in a transaction of its own with an empty tenant context, because
/// sqlx sends the statement's Parse and its Bind with separate Syncs, and between the two the
/// pooler could hand the server connection to another client.
enum OneStatement {
    Direct(PoolConnection<Postgres>),
    InTransaction(ScopedTx),
}

impl OneStatement {
    async fn open(db: &Db) -> Result<Self, DbError> {
        Ok(match db.pooler() {
            Pooler::None => {
                // The pool does not ping on acquire (tenant transactions retry a dead
                // connection instead); a lone statement has no batch to retry, so its
                // connection is checked here, as the pool used to, and replaced once if dead.
                let mut conn = db.pool().acquire().await?;
                if sqlx::Connection::ping(&mut *conn).await.is_err() {
                    let _ = conn.close().await;
                    conn = db.pool().acquire().await?;
                }
                OneStatement::Direct(conn)
            }
            Pooler::Transaction => {
                OneStatement::InTransaction(ScopedTx::begin(db, None, None, None).await?.0)
            }
        })
    }

    fn conn(&mut self) -> TxConn<'_> {
        match self {
            OneStatement::Direct(conn) => TxConn::new(conn, Pooler::None),
            OneStatement::InTransaction(tx) => tx.conn(),
        }
    }

    async fn finish(self) -> Result<(), DbError> {
        match self {
            OneStatement::Direct(_) => Ok(()),
            OneStatement::InTransaction(tx) => Ok(tx.commit().await?),
        }
    }
}

/// One org a user belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgMembership {
    pub org_id: OrgId,
    pub name: String,
    pub status: OrgStatus,
    pub role: Role,
}

/// The orgs `user` belongs to, through the SECURITY DEFINER `app.my_memberships()`, which
/// answers for the user of the transaction's context only.
pub async fn memberships(db: &Db, user: UserId) -> Result<Vec<OrgMembership>, DbError> {
    let (mut tx, _) = ScopedTx::begin(db, None, Some(user), None).await?;
    let rows = sqlx::query_as!(
        OrgMembership,
        r#"SELECT org_id AS "org_id!: OrgId", name AS "name!", status AS "status!: OrgStatus",
                  role AS "role!: Role"
             FROM app.my_memberships()"#
    )
    .fetch_all(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// What a security event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeniedKind {
    /// A user asked to act in an org they are not a member of.
    MembershipDenied,
    /// A token that failed verification named this org (in `X-Org-Id`).
    InvalidToken,
    /// A webhook to one of this org's numbers that was not signed with its secret.
    InvalidWebhookSignature,
    /// A calendar OAuth callback refused as an attack on this org: its state replayed, or
    /// finished in another browser than the one that started it.
    CalendarOAuthRefused,
}

/// Records a security event for `org` from outside its tenant context (the caller is not a
/// member of it), through the SECURITY DEFINER `app.record_security_event`.
pub async fn record_denied(
    db: &Db,
    org: OrgId,
    user: Option<UserId>,
    kind: DeniedKind,
    route: &str,
    detail: serde_json::Value,
) -> Result<(), DbError> {
    let kind = match kind {
        DeniedKind::MembershipDenied => "membership_denied",
        DeniedKind::InvalidToken => "invalid_token",
        DeniedKind::InvalidWebhookSignature => "invalid_webhook_signature",
        DeniedKind::CalendarOAuthRefused => "calendar_oauth_refused",
    };
    let (mut tx, _) = ScopedTx::begin(db, None, user, None).await?;
    sqlx::query!(
        "SELECT app.record_security_event($1, $2, $3, $4)",
        org.as_uuid(),
        kind,
        route,
        detail
    )
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(())
}

/// An id that a member of `org` looked up and did not find in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub org: OrgId,
    pub user: UserId,
    /// Table and key column the id was looked up in.
    pub table: &'static str,
    pub column: &'static str,
    pub id: Uuid,
}

/// Classifies probes off the request path, through the SECURITY DEFINER
/// `app.classify_probes` (migrations/0012): each id that belongs to another org becomes a
/// `cross_tenant_probe` security event of the org that owns it, and an entry of the operators'
/// log naming both. Nothing is written in the prober's org. Returns how many were another
/// org's. `probes` pairs each probe with the route it came through.
pub async fn classify_probes(db: &Db, probes: &[(Probe, String)]) -> Result<u64, DbError> {
    if probes.is_empty() {
        return Ok(0);
    }
    let batch: Vec<serde_json::Value> = probes
        .iter()
        .map(|(p, route)| {
            serde_json::json!({
                "org": p.org, "user": p.user, "table": p.table,
                "column": p.column, "id": p.id, "route": route,
            })
        })
        .collect();
    let mut one = OneStatement::open(db).await?;
    let found = sqlx::query_scalar!(
        r#"SELECT app.classify_probes($1) AS "found!""#,
        serde_json::Value::Array(batch)
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(u64::try_from(found).unwrap_or(0))
}

/// What a webhook to `number` is verified against, read in one statement whoever owns the
/// number (`app.webhook_credentials`, migrations/0013): the owning org and whether it is
/// active, and the sealed secrets and the settings of its `provider` integration.
#[derive(Debug, Clone)]
pub struct WebhookCredentials {
    pub org: Option<(OrgId, bool)>,
    pub secrets: Option<crate::crypto::Sealed>,
    /// The integration's non-secret settings (`{}` when there is none).
    pub config: serde_json::Value,
}

/// A row of `app.webhook_credentials` or `app.oauth_client_credentials`.
struct CredentialsRow {
    org_id: Option<Uuid>,
    status: Option<String>,
    secrets_enc: Option<Vec<u8>>,
    key_id: Option<String>,
    config: Option<serde_json::Value>,
}

impl From<CredentialsRow> for WebhookCredentials {
    fn from(row: CredentialsRow) -> Self {
        WebhookCredentials {
            org: row
                .org_id
                .map(|o| (OrgId::from_uuid(o), row.status.as_deref() == Some("active"))),
            secrets: match (row.secrets_enc, row.key_id) {
                (Some(bytes), Some(key_id)) => Some(crate::crypto::Sealed { key_id, bytes }),
                _ => None,
            },
            config: row.config.unwrap_or_else(|| serde_json::json!({})),
        }
    }
}

pub async fn webhook_credentials(
    db: &Db,
    number: &str,
    provider: voxanne_domain::IntegrationProvider,
) -> Result<WebhookCredentials, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query_as!(
        CredentialsRow,
        "SELECT org_id, status, secrets_enc, key_id, config
           FROM app.webhook_credentials($1, $2)",
        number,
        provider.as_str()
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(row.into())
}

/// How a token request proves its clinic (`app.oauth_client_credentials`, migrations/0015):
/// the same answer as [`webhook_credentials`], for the clinic whose organization id is
/// `client_id`, in one statement whatever the id.
pub async fn oauth_client_credentials(
    db: &Db,
    client_id: Uuid,
    provider: voxanne_domain::IntegrationProvider,
) -> Result<WebhookCredentials, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query_as!(
        CredentialsRow,
        "SELECT org_id, status, secrets_enc, key_id, config
           FROM app.oauth_client_credentials($1, $2)",
        client_id,
        provider.as_str()
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(row.into())
}

/// A recording job, claimed for one worker until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRecording {
    pub org_id: OrgId,
    pub call_id: CallId,
    pub recording_url: Option<String>,
    /// 1 for the first attempt.
    pub attempt: i32,
}

/// Claims the next batch of recording jobs, shared out round-robin across the active orgs
/// that have due work, through the SECURITY DEFINER `app.claim_recordings`
/// (migrations/0007): ONE statement, whatever the number of orgs. The claimed calls are
/// `processing` with a lease of `lease`.
pub async fn claim_recordings(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedRecording>, DbError> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query_as!(
        ClaimedRecording,
        r#"SELECT org_id AS "org_id!: OrgId", call_id AS "call_id!: CallId", recording_url,
                    attempt AS "attempt!"
             FROM app.claim_recordings($1, $2 * interval '1 millisecond')"#,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows)
}

/// Seals up to `batch` unsealed access log records of each of up to `orgs` clinics into their
/// clinics' hash chains (`app.seal_access_log`, migrations/0028). Returns how many.
pub async fn seal_access_log(db: &Db, orgs: u32, batch: u32) -> Result<i64, DbError> {
    let orgs = i32::try_from(orgs).unwrap_or(i32::MAX);
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let mut one = OneStatement::open(db).await?;
    let n = sqlx::query_scalar!(r#"SELECT app.seal_access_log($1, $2) AS "n!""#, orgs, batch)
        .fetch_one(one.conn())
        .await?;
    one.finish().await?;
    Ok(n)
}

/// Puts back in the queue the recordings whose worker died (lease run out), through the
/// SECURITY DEFINER `app.requeue_stale_recordings`. Returns how many.
pub async fn requeue_stale_recordings(db: &Db) -> Result<i64, DbError> {
    let mut one = OneStatement::open(db).await?;
    let n = sqlx::query_scalar!(r#"SELECT app.requeue_stale_recordings() AS "n!""#)
        .fetch_one(one.conn())
        .await?;
    one.finish().await?;
    Ok(n)
}

/// The number of calls per recording status, over all orgs (counts only), through the
/// SECURITY DEFINER `app.recording_queue_depth`: for the metrics.
pub async fn recording_queue_depth(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query!(
        r#"SELECT status AS "status!", depth AS "depth!" FROM app.recording_queue_depth()"#
    )
    .fetch_all(one.conn())
    .await?
    .into_iter()
    .map(|row| (row.status, row.depth))
    .collect();
    one.finish().await?;
    Ok(rows)
}

/// The id of the key that encrypts everything new.
fn current_key_id(db: &Db) -> Result<String, DbError> {
    let keyring = db.keyring().ok_or(crate::crypto::CryptoError::NoKeyring)?;
    Ok(keyring.current_key_id().to_owned())
}

/// The active clinics whose patient text is not yet known to be encrypted with the current
/// key, through the SECURITY DEFINER `app.encryption_backlog`: for the metrics (a rotation is
/// complete at 0).
pub async fn encryption_backlog(db: &Db) -> Result<i64, DbError> {
    let key = current_key_id(db)?;
    let mut one = OneStatement::open(db).await?;
    let n = sqlx::query_scalar!(r#"SELECT app.encryption_backlog($1) AS "n!""#, key)
        .fetch_one(one.conn())
        .await?;
    one.finish().await?;
    Ok(n)
}

/// An SMS confirmation, claimed for one worker until its lease runs out.
#[derive(Clone, PartialEq, Eq)]
pub struct ClaimedSms {
    pub org_id: OrgId,
    pub sms_id: SmsId,
    pub appointment_id: Option<AppointmentId>,
    pub to_number: String,
    /// As stored, encrypted: decrypted in the clinic's tenant transaction
    /// ([`TenantTx::claimed_sms_body`]).
    pub body: Vec<u8>,
    /// 1 for the first attempt.
    pub attempt: i32,
}

impl std::fmt::Debug for ClaimedSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedSms")
            .field("org_id", &self.org_id)
            .field("sms_id", &self.sms_id)
            .field("appointment_id", &self.appointment_id)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

/// Claims the next batch of SMS confirmations to send, shared out round-robin across the
/// active orgs that have due messages, through the SECURITY DEFINER `app.claim_sms`
/// (migrations/0010): ONE statement, whatever the number of orgs. The claimed rows are
/// `sending` with a lease of `lease`.
pub async fn claim_sms(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedSms>, DbError> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query_as!(
        ClaimedSms,
        r#"SELECT org_id AS "org_id!: OrgId", sms_id AS "sms_id!: SmsId",
                  appointment_id AS "appointment_id: AppointmentId",
                  to_number AS "to_number!", body AS "body!", attempt AS "attempt!"
             FROM app.claim_sms($1, $2 * interval '1 millisecond')"#,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows)
}

/// Puts back in the queue the SMS confirmations whose worker died (lease run out), through
/// the SECURITY DEFINER `app.requeue_stale_sms`. Returns how many.
pub async fn requeue_stale_sms(db: &Db) -> Result<i64, DbError> {
    let mut one = OneStatement::open(db).await?;
    let n = sqlx::query_scalar!(r#"SELECT app.requeue_stale_sms() AS "n!""#)
        .fetch_one(one.conn())
        .await?;
    one.finish().await?;
    Ok(n)
}

/// A campaign target claimed by the dialer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCall {
    pub org_id: OrgId,
    pub target_id: voxanne_domain::CampaignTargetId,
    pub campaign_id: voxanne_domain::CampaignId,
    pub phone: String,
    pub name: String,
    /// Every zone the callee may be in.
    pub time_zones: Vec<String>,
    /// 1 for the first attempt.
    pub attempt: i32,
}

/// Claims the next campaign targets to call, through the SECURITY DEFINER `app.claim_calls`
/// (migrations/0022): ONE statement, shared out round-robin across the active orgs, each at
/// most its cap of calls in flight, and only targets whose calling window is open in every
/// zone the callee may be in. The claimed rows are `dialing` with a lease of `lease`.
pub async fn claim_calls(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedCall>, DbError> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query_as!(
        ClaimedCall,
        r#"SELECT org_id AS "org_id!: OrgId",
                  target_id AS "target_id!: voxanne_domain::CampaignTargetId",
                  campaign_id AS "campaign_id!: voxanne_domain::CampaignId",
                  phone AS "phone!", name AS "name!", time_zones AS "time_zones!",
                  attempt AS "attempt!"
             FROM app.claim_calls($1, $2 * interval '1 millisecond')"#,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows)
}

/// Settles the campaign targets whose dialer died (`dialing`: back in the queue) or whose
/// report never came (`calling`: failed), through the SECURITY DEFINER
/// `app.requeue_stale_calls`. Returns how many.
pub async fn requeue_stale_calls(db: &Db) -> Result<i64, DbError> {
    let mut one = OneStatement::open(db).await?;
    let n = sqlx::query_scalar!(r#"SELECT app.requeue_stale_calls() AS "n!""#)
        .fetch_one(one.conn())
        .await?;
    one.finish().await?;
    Ok(n)
}

/// The SMS queue depth (`queued`, `waiting`, `sending`) over all orgs, counts only, through
/// the SECURITY DEFINER `app.sms_queue_depth`: for the metrics.
pub async fn sms_queue_depth(db: &Db) -> Result<Vec<(String, i64)>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let rows =
        sqlx::query!(r#"SELECT status AS "status!", depth AS "depth!" FROM app.sms_queue_depth()"#)
            .fetch_all(one.conn())
            .await?
            .into_iter()
            .map(|row| (row.status, row.depth))
            .collect();
    one.finish().await?;
    Ok(rows)
}

/// Of the stored objects named by `(org, call, key)`, the keys a call row still points at,
/// through the SECURITY DEFINER `app.known_recording_objects` (the orphan sweep).
pub async fn known_recording_objects(
    db: &Db,
    objects: &[(Uuid, Uuid, String)],
) -> Result<Vec<String>, DbError> {
    let orgs: Vec<Uuid> = objects.iter().map(|o| o.0).collect();
    let calls: Vec<Uuid> = objects.iter().map(|o| o.1).collect();
    let keys: Vec<String> = objects.iter().map(|o| o.2.clone()).collect();
    let mut one = OneStatement::open(db).await?;
    let known = sqlx::query_scalar!(
        r#"SELECT app.known_recording_objects($1, $2, $3) AS "key!""#,
        &orgs,
        &calls,
        &keys
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(known)
}

/// A page of stored recordings of active orgs after `after` (by org, then call), through the
/// SECURITY DEFINER `app.stored_recordings` (the orphan sweep).
pub async fn stored_recordings(
    db: &Db,
    after: Option<(Uuid, Uuid)>,
    limit: u32,
) -> Result<Vec<(Uuid, Uuid, String)>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query!(
        r#"SELECT org_id AS "org_id!", call_id AS "call_id!", recording_path AS "recording_path!"
             FROM app.stored_recordings($1, $2, $3)"#,
        after.map(|a| a.0),
        after.map(|a| a.1),
        i32::try_from(limit).unwrap_or(i32::MAX)
    )
    .fetch_all(one.conn())
    .await?
    .into_iter()
    .map(|row| (row.org_id, row.call_id, row.recording_path))
    .collect();
    one.finish().await?;
    Ok(rows)
}

/// The clinic that owns `number`, and whether it is active, through the SECURITY DEFINER
/// `app.org_for_number`: how a webhook, which carries no JWT, finds its clinic.
pub async fn org_for_number(
    db: &Db,
    number: &voxanne_domain::PhoneNumber,
) -> Result<Option<(OrgId, bool)>, DbError> {
    let (mut tx, _) = ScopedTx::begin(db, None, None, None).await?;
    let row = sqlx::query!(
        r#"SELECT org_id AS "org_id!: OrgId", status AS "status!: OrgStatus"
             FROM app.org_for_number($1)"#,
        number.as_str()
    )
    .fetch_optional(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(row.map(|row| (row.org_id, row.status == OrgStatus::Active)))
}

/// A calendar OAuth state as the callback takes it (`app.take_calendar_oauth_state`,
/// migrations/0016): deleted in the same statement that reads it, so it is used once.
#[derive(Debug, Clone)]
pub struct TakenOAuthState {
    pub org: OrgId,
    pub org_active: bool,
    pub user: UserId,
    pub provider: voxanne_domain::CalendarProvider,
    pub verifier: crate::crypto::Sealed,
    pub browser_hash: Vec<u8>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Takes the calendar OAuth state `(org, id)`: `None` when there is none (never made, or
/// already used). The callback that calls this carries no JWT; the MAC of its `state` was
/// checked before, so only ids this server issued reach the database.
pub async fn take_calendar_oauth_state(
    db: &Db,
    org: OrgId,
    id: Uuid,
) -> Result<Option<TakenOAuthState>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query!(
        r#"SELECT org_id AS "org_id!", user_id AS "user_id!", provider AS "provider!",
                  verifier_enc AS "verifier_enc!", key_id AS "key_id!",
                  browser_hash AS "browser_hash!", expires_at AS "expires_at!",
                  org_status AS "org_status!"
             FROM app.take_calendar_oauth_state($1, $2)"#,
        org.as_uuid(),
        id
    )
    .fetch_optional(one.conn())
    .await?;
    one.finish().await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(TakenOAuthState {
        org: OrgId::from_uuid(row.org_id),
        org_active: row.org_status == "active",
        user: UserId::from_uuid(row.user_id),
        provider: row
            .provider
            .parse()
            .map_err(|e: voxanne_domain::UnknownVariant| DbError::Corrupt(e.to_string()))?,
        verifier: crate::crypto::Sealed {
            key_id: row.key_id,
            bytes: row.verifier_enc,
        },
        browser_hash: row.browser_hash,
        expires_at: row.expires_at,
    }))
}

/// A linked calendar whose sync is due, claimed for one worker until its lease runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCalendarSync {
    pub org_id: OrgId,
    pub connection_id: CalendarConnectionId,
    /// The claim's number (`sync_claims`): every write of the claim is conditional on it.
    pub claim: i32,
    /// Failed syncs in a row before this one.
    pub failures: i32,
    /// The `sync_due_at` it was claimed for.
    pub due_at: DateTime<Utc>,
}

/// Claims the next batch of calendar syncs, shared out round-robin across the active orgs
/// with due connections, through the SECURITY DEFINER `app.claim_calendar_syncs`
/// (migrations/0017): ONE statement, whatever the number of orgs.
pub async fn claim_calendar_syncs(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedCalendarSync>, DbError> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query_as!(
        ClaimedCalendarSync,
        r#"SELECT org_id AS "org_id!: OrgId",
                  connection_id AS "connection_id!: CalendarConnectionId",
                  claim AS "claim!", failures AS "failures!", due_at AS "due_at!"
             FROM app.claim_calendar_syncs($1, $2 * interval '1 millisecond')"#,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows)
}

/// One appointment's event write to one calendar, claimed for one worker until its lease
/// runs out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedCalendarWrite {
    pub org_id: OrgId,
    pub appointment_id: AppointmentId,
    pub connection_id: CalendarConnectionId,
    /// The appointment's version this claim writes.
    pub wanted: i32,
    /// 1 for the first attempt.
    pub attempt: i32,
}

/// Claims the next batch of calendar event writes, round-robin across the active orgs,
/// through the SECURITY DEFINER `app.claim_calendar_writes` (migrations/0017): ONE
/// statement. The claimed rows are `writing` with a lease of `lease`.
pub async fn claim_calendar_writes(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedCalendarWrite>, DbError> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query_as!(
        ClaimedCalendarWrite,
        r#"SELECT org_id AS "org_id!: OrgId", appointment_id AS "appointment_id!: AppointmentId",
                  connection_id AS "connection_id!: CalendarConnectionId",
                  wanted AS "wanted!", attempt AS "attempt!"
             FROM app.claim_calendar_writes($1, $2 * interval '1 millisecond')"#,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows)
}

/// Puts back in the queue the event writes whose worker died (lease run out), through the
/// SECURITY DEFINER `app.requeue_stale_calendar_writes`. Returns how many.
pub async fn requeue_stale_calendar_writes(db: &Db) -> Result<i64, DbError> {
    let mut one = OneStatement::open(db).await?;
    let n = sqlx::query_scalar!(r#"SELECT app.requeue_stale_calendar_writes() AS "n!""#)
        .fetch_one(one.conn())
        .await?;
    one.finish().await?;
    Ok(n)
}

/// Linked calendars by state (`connections`: active, broken, stale) and event writes by
/// status (`event_writes`), over all orgs, counts only, through the SECURITY DEFINER
/// `app.calendar_queue_depth`: for the metrics.
pub async fn calendar_queue_depth(db: &Db) -> Result<Vec<(String, String, i64)>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query!(
        r#"SELECT kind AS "kind!", status AS "status!", depth AS "depth!"
             FROM app.calendar_queue_depth()"#
    )
    .fetch_all(one.conn())
    .await?
    .into_iter()
    .map(|row| (row.kind, row.status, row.depth))
    .collect();
    one.finish().await?;
    Ok(rows)
}

/// A push notification for the watch `watch_id` of `provider`, whose secret hashes to
/// `token_hash`: through the SECURITY DEFINER `app.calendar_notified` (migrations/0017), the
/// connection's sync is due at once. Its org and id; `None` when the watch is unknown or the
/// secret is not its own.
pub async fn calendar_notified(
    db: &Db,
    provider: voxanne_domain::CalendarProvider,
    watch_id: &str,
    token_hash: &[u8; 32],
) -> Result<Option<(OrgId, CalendarConnectionId)>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query!(
        r#"SELECT org_id AS "org_id!: OrgId", connection_id AS "connection_id!: CalendarConnectionId"
             FROM app.calendar_notified($1, $2, $3)"#,
        provider.as_str(),
        watch_id,
        token_hash.as_slice()
    )
    .fetch_optional(one.conn())
    .await?
    .map(|row| (row.org_id, row.connection_id));
    one.finish().await?;
    Ok(row)
}

// ---- Built-in accounts (migrations/0019): who one is, before any clinic is chosen. ----

/// An account as signing in needs it.
#[derive(Debug, Clone)]
pub struct SignInAccount {
    pub id: UserId,
    /// A PHC string, or `!` (no password sign-in).
    pub password_hash: String,
}

/// The account of `email`, if there is one (`app.account_for_sign_in`).
pub async fn account_for_sign_in(db: &Db, email: &str) -> Result<Option<SignInAccount>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query!(
        r#"SELECT id AS "id!", password_hash AS "password_hash!"
             FROM app.account_for_sign_in($1)"#,
        email
    )
    .fetch_optional(one.conn())
    .await?;
    one.finish().await?;
    Ok(row.map(|r| SignInAccount {
        id: UserId::from_uuid(r.id),
        password_hash: r.password_hash,
    }))
}

/// Creates an account (with the user id `id` when given); `None` when the address is taken.
pub async fn create_account(
    db: &Db,
    id: Option<UserId>,
    email: &str,
    display_name: Option<&str>,
    password_hash: &str,
) -> Result<Option<UserId>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let id = sqlx::query_scalar!(
        "SELECT app.create_account($1, $2, $3, $4)",
        id.map(Uuid::from),
        email,
        display_name,
        password_hash
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(id.map(UserId::from_uuid))
}

/// Stores a new session of `account` (the sha256 of its cookie's token) until `expires_at`.
pub async fn open_account_session(
    db: &Db,
    account: UserId,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<(), DbError> {
    let mut one = OneStatement::open(db).await?;
    sqlx::query!(
        "SELECT app.open_account_session($1, $2, $3)",
        account.as_uuid(),
        token_hash,
        expires_at
    )
    .execute(one.conn())
    .await?;
    one.finish().await
}

/// The account of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionAccount {
    pub id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    /// The clinic it acts in when a request names none.
    pub active_org: Option<OrgId>,
    pub expires_at: DateTime<Utc>,
}

/// The account whose live session has the token of sha256 `token_hash`.
pub async fn account_of_session(
    db: &Db,
    token_hash: &[u8],
) -> Result<Option<SessionAccount>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query!(
        r#"SELECT id AS "id!", email AS "email!", display_name, active_org,
                  expires_at AS "expires_at!"
             FROM app.account_of_session($1)"#,
        token_hash
    )
    .fetch_optional(one.conn())
    .await?;
    one.finish().await?;
    Ok(row.map(|r| SessionAccount {
        id: UserId::from_uuid(r.id),
        email: r.email,
        display_name: r.display_name,
        active_org: r.active_org.map(OrgId::from_uuid),
        expires_at: r.expires_at,
    }))
}

/// Makes `org` the clinic a session acts in, if its account is a member; whether it did.
pub async fn set_session_org(db: &Db, token_hash: &[u8], org: OrgId) -> Result<bool, DbError> {
    let mut one = OneStatement::open(db).await?;
    let set = sqlx::query_scalar!(
        r#"SELECT app.set_session_org($1, $2) AS "set!""#,
        token_hash,
        org.as_uuid()
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(set)
}

/// Ends a session (signing out).
pub async fn close_account_session(db: &Db, token_hash: &[u8]) -> Result<(), DbError> {
    let mut one = OneStatement::open(db).await?;
    sqlx::query!("SELECT app.close_account_session($1)", token_hash)
        .execute(one.conn())
        .await?;
    one.finish().await
}

/// Stores a reset link for the account of `email`; the account's address, or `None` (then
/// nothing was stored).
pub async fn start_password_reset(
    db: &Db,
    email: &str,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<Option<String>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let to = sqlx::query_scalar!(
        "SELECT app.start_password_reset($1, $2, $3)",
        email,
        token_hash,
        expires_at
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(to)
}

/// Uses a reset link: the password becomes `password_hash` and every session of the account
/// ends. The account, or `None` (an unknown, used or expired link).
pub async fn take_password_reset(
    db: &Db,
    token_hash: &[u8],
    password_hash: &str,
) -> Result<Option<UserId>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let id = sqlx::query_scalar!(
        "SELECT app.take_password_reset($1, $2)",
        token_hash,
        password_hash
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    Ok(id.map(UserId::from_uuid))
}

/// What an invitation's link shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvitationLink {
    pub org_name: String,
    pub email: String,
    pub role: Role,
    /// Unused, unexpired, and the clinic active.
    pub usable: bool,
}

/// The invitation `(org, id)` when `secret_hash` is its secret's.
pub async fn invitation_for_link(
    db: &Db,
    org: OrgId,
    id: Uuid,
    secret_hash: &[u8],
) -> Result<Option<InvitationLink>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query!(
        r#"SELECT org_name AS "org_name!", email AS "email!", role AS "role!", usable AS "usable!"
             FROM app.invitation_for_link($1, $2, $3)"#,
        org.as_uuid(),
        id,
        secret_hash
    )
    .fetch_optional(one.conn())
    .await?;
    one.finish().await?;
    row.map(|r| {
        Ok(InvitationLink {
            org_name: r.org_name,
            email: r.email,
            role: r
                .role
                .parse()
                .map_err(|e: voxanne_domain::UnknownVariant| DbError::Corrupt(e.to_string()))?,
            usable: r.usable,
        })
    })
    .transpose()
}

/// Takes the invitation `(org, id)` for `account`: the role it joined with, or `None` (a
/// wrong secret, used, expired, a suspended clinic, or another address than the invited one).
pub async fn accept_invitation(
    db: &Db,
    org: OrgId,
    id: Uuid,
    secret_hash: &[u8],
    account: UserId,
) -> Result<Option<Role>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let role = sqlx::query_scalar!(
        "SELECT app.accept_invitation($1, $2, $3, $4)",
        org.as_uuid(),
        id,
        secret_hash,
        account.as_uuid()
    )
    .fetch_one(one.conn())
    .await?;
    one.finish().await?;
    role.map(|r| {
        r.parse()
            .map_err(|e: voxanne_domain::UnknownVariant| DbError::Corrupt(e.to_string()))
    })
    .transpose()
}

/// Takes the invitation `(org, id)` with a new account of the invited address: the account
/// and the role it joined with, or `None` (a wrong secret, used, expired, a suspended clinic,
/// or the address has an account already).
pub async fn accept_invitation_as_new_account(
    db: &Db,
    org: OrgId,
    id: Uuid,
    secret_hash: &[u8],
    display_name: &str,
    password_hash: &str,
) -> Result<Option<(UserId, Role)>, DbError> {
    let mut one = OneStatement::open(db).await?;
    let row = sqlx::query!(
        r#"SELECT account_id AS "account_id!", role AS "role!"
             FROM app.accept_invitation_as_new_account($1, $2, $3, $4, $5)"#,
        org.as_uuid(),
        id,
        secret_hash,
        display_name,
        password_hash
    )
    .fetch_optional(one.conn())
    .await?;
    one.finish().await?;
    row.map(|r| {
        Ok((
            UserId::from_uuid(r.account_id),
            r.role
                .parse()
                .map_err(|e: voxanne_domain::UnknownVariant| DbError::Corrupt(e.to_string()))?,
        ))
    })
    .transpose()
}

/// A clinic whose purge is due, claimed for one worker until its lease runs out, with the
/// retention it was claimed under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRetention {
    pub org_id: OrgId,
    /// The claim's number: the purge's last write is conditional on it.
    pub claim: i32,
    pub policy: crate::retention::RetentionPolicy,
}

/// Claims up to `batch` clinics whose purge is due, the longest due first, through the
/// SECURITY DEFINER `app.claim_retention` (migrations/0031): ONE statement.
pub async fn claim_retention(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedRetention>, DbError> {
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query!(
        r#"SELECT org_id AS "org_id!: OrgId", claim AS "claim!",
                  recordings_days AS "recordings_days!", transcripts_days AS "transcripts_days!",
                  sms_days AS "sms_days!", calls_days AS "calls_days!",
                  access_log_days AS "access_log_days!"
             FROM app.claim_retention($1, $2 * interval '1 millisecond')"#,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows
        .into_iter()
        .map(|r| ClaimedRetention {
            org_id: r.org_id,
            claim: r.claim,
            policy: crate::retention::RetentionPolicy {
                recordings_days: r.recordings_days,
                transcripts_days: r.transcripts_days,
                sms_days: r.sms_days,
                calls_days: r.calls_days,
                access_log_days: r.access_log_days,
            },
        })
        .collect())
}

/// A clinic the encryption job claimed, with where its pass stands (encrypted.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedEncryption {
    pub org_id: OrgId,
    /// The claim's number: its writes are conditional on it.
    pub claim: i32,
    /// The key the pass seals with (the current key when it was claimed).
    pub key: String,
    /// Where the pass goes on: an index into [`crate::encrypted::FIELDS`], and the last row done.
    pub field: usize,
    pub after: Option<uuid::Uuid>,
}

/// Claims up to `batch` clinics whose patient text is not known to be sealed with the current
/// key, through the SECURITY DEFINER `app.claim_encryption` (migrations/0033): ONE statement.
pub async fn claim_encryption(
    db: &Db,
    batch: u32,
    lease: std::time::Duration,
) -> Result<Vec<ClaimedEncryption>, DbError> {
    let key = current_key_id(db)?;
    let batch = i32::try_from(batch).unwrap_or(i32::MAX);
    let lease_ms = lease.as_secs_f64() * 1000.0;
    let mut one = OneStatement::open(db).await?;
    let rows = sqlx::query!(
        r#"SELECT org_id AS "org_id!: OrgId", claim AS "claim!", field AS "field!", after
             FROM app.claim_encryption($1, $2, $3 * interval '1 millisecond')"#,
        key,
        batch,
        lease_ms
    )
    .fetch_all(one.conn())
    .await?;
    one.finish().await?;
    Ok(rows
        .into_iter()
        .map(|r| ClaimedEncryption {
            org_id: r.org_id,
            claim: r.claim,
            key: key.clone(),
            field: usize::try_from(r.field).unwrap_or(0),
            after: r.after,
        })
        .collect())
}
