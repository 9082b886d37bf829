//! Patients' messages: the clinic's messaging settings and reminder rules, its inbox (what
//! patients texted and callers left with the agent), and the consent record.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::{hhmm, optional_text, time_field};
use crate::found::found;
use crate::pagination::{Cursor, Page, PageParams};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::messages::{
    ConsentRecord as ConsentRow, InboxMessage as InboxRow, MessagingSettings as SettingsRow,
    NewReminderRule,
};
use voxanne_domain::messages::{
    check_template, ConsentChannel, InboxChannel, InboxKind, InboxStatus, QuietHours,
};
use voxanne_domain::{
    AppointmentId, CallId, ContactId, InboxMessageId, PhoneNumber, ReminderRuleId, ServiceId, SmsId,
};

/// No reminder goes out between `start` and `end`, the clinic's local time (its agent
/// configuration's time zone); the window may cross midnight; equal times: no quiet hours.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHoursBody {
    /// `HH:MM`.
    #[schema(example = "21:00")]
    pub start: String,
    /// `HH:MM`.
    #[schema(example = "08:00")]
    pub end: String,
}

/// One reminder rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReminderRule {
    pub id: ReminderRuleId,
    /// Counted on the clinic's clock: 1440 is the same local time the day before.
    pub minutes_before: i32,
    /// Only appointments of this service; absent: every appointment.
    pub service_id: Option<ServiceId>,
    /// The text, with `{clinic}`, `{date}`, `{time}`, `{place}`, `{practitioner}`; absent:
    /// the default.
    pub template: Option<String>,
}

/// A clinic's messaging settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagingSettings {
    pub quiet_hours: QuietHoursBody,
    /// What HELP is answered with; absent: the default (the clinic's name, the keywords, its
    /// number).
    pub help_text: Option<String>,
    /// Longest first.
    pub reminders: Vec<ReminderRule>,
    /// How many of the clinic's campaign calls may be in flight at once.
    pub max_concurrent_calls: i32,
}

impl From<SettingsRow> for MessagingSettings {
    fn from(row: SettingsRow) -> Self {
        Self {
            quiet_hours: QuietHoursBody {
                start: hhmm(row.quiet_hours.start),
                end: hhmm(row.quiet_hours.end),
            },
            help_text: row.help_text,
            reminders: row
                .reminders
                .into_iter()
                .map(|r| ReminderRule {
                    id: r.id,
                    minutes_before: r.minutes_before,
                    service_id: r.service_id,
                    template: r.template,
                })
                .collect(),
            max_concurrent_calls: row.max_concurrent_calls,
        }
    }
}

/// A reminder rule to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReminder {
    /// 15 to 43200 (30 days).
    #[schema(minimum = 15, maximum = 43200)]
    pub minutes_before: i32,
    pub service_id: Option<ServiceId>,
    #[schema(max_length = 480)]
    pub template: Option<String>,
}

/// The whole of a clinic's messaging settings: what is not given takes its default, and the
/// reminder rules replace the clinic's (appointments already booked keep theirs).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"quiet_hours": {"start": "21:00", "end": "08:00"},
    "help_text": "Sunrise Dental: reply C to confirm, R to reschedule. Call +14155550100.",
    "reminders": [{"minutes_before": 1440}, {"minutes_before": 120,
        "template": "{clinic}: see you at {time} today at {place}."}]}))]
pub struct MessagingSettingsBody {
    pub quiet_hours: Option<QuietHoursBody>,
    #[schema(max_length = 320)]
    pub help_text: Option<String>,
    #[serde(default)]
    #[schema(max_items = 10)]
    pub reminders: Vec<NewReminder>,
    /// 1 to 50; default 2.
    #[schema(minimum = 1, maximum = 50)]
    pub max_concurrent_calls: Option<i32>,
}

/// At most this many reminder rules.
const MAX_RULES: usize = 10;

#[utoipa::path(get, path = "/messaging-settings", tag = "messages",
    responses((status = 200, body = MessagingSettings)))]
pub async fn get_settings(Tenant(mut tx): Tenant) -> Result<Json<MessagingSettings>, ApiError> {
    let settings = tx.messaging_settings().await?;
    tx.commit().await?;
    Ok(Json(settings.into()))
}

/// Admins only.
#[utoipa::path(put, path = "/messaging-settings", tag = "messages",
    request_body = MessagingSettingsBody,
    responses((status = 200, body = MessagingSettings),
        (status = 422, description = "`validation_failed`: a time, a template's placeholder, too many rules, or a service the clinic does not have (`field` names it)", body = crate::openapi::ErrorBody)))]
pub async fn put_settings(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<MessagingSettingsBody>,
) -> Result<Json<MessagingSettings>, ApiError> {
    let m = *tx.membership();
    ApiError::require_admin(&m, "staff cannot change the clinic's messaging settings")?;
    let quiet = match &body.quiet_hours {
        Some(q) => QuietHours {
            start: time_field("quiet_hours.start", &q.start)?,
            end: time_field("quiet_hours.end", &q.end)?,
        },
        None => voxanne_db::messages::default_quiet_hours(),
    };
    let help = optional_text("help_text", body.help_text.as_deref(), 320)?;
    if body.reminders.len() > MAX_RULES {
        return Err(ApiError::validation(
            "reminders",
            format!("at most {MAX_RULES} reminder rules"),
        ));
    }
    let mut rules = Vec::with_capacity(body.reminders.len());
    for (i, r) in body.reminders.iter().enumerate() {
        if !(15..=43200).contains(&r.minutes_before) {
            return Err(ApiError::validation(
                format!("reminders[{i}].minutes_before"),
                "from 15 to 43200 minutes (30 days)",
            ));
        }
        let template = optional_text(
            &format!("reminders[{i}].template"),
            r.template.as_deref(),
            480,
        )?;
        if let Some(t) = &template {
            check_template(t)
                .map_err(|e| ApiError::validation(format!("reminders[{i}].template"), e.0))?;
        }
        if let Some(service) = r.service_id {
            if tx.service_length(service).await?.is_none() {
                return Err(ApiError::invalid_reference(
                    &m,
                    &format!("reminders[{i}].service_id"),
                    "services",
                    service.as_uuid(),
                ));
            }
        }
        rules.push(NewReminderRule {
            minutes_before: r.minutes_before,
            service_id: r.service_id,
            template,
        });
    }
    let cap = body
        .max_concurrent_calls
        .unwrap_or(voxanne_db::messages::DEFAULT_MAX_CONCURRENT_CALLS);
    if !(1..=50).contains(&cap) {
        return Err(ApiError::validation(
            "max_concurrent_calls",
            "from 1 to 50 calls at once",
        ));
    }
    let settings = tx
        .put_messaging_settings(quiet, help.as_deref(), &rules, cap)
        .await?;
    tx.commit().await?;
    Ok(Json(settings.into()))
}

/// A message of the clinic's inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxMessage {
    pub id: InboxMessageId,
    /// `sms` (a patient texted) or `call` (left with the agent).
    pub channel: InboxChannel,
    pub kind: InboxKind,
    pub status: InboxStatus,
    pub from_number: String,
    /// The clinic's number it reached.
    pub to_number: Option<String>,
    pub body: String,
    pub caller_name: Option<String>,
    /// What Voxanne texted back, if anything.
    pub reply: Option<String>,
    pub contact_id: Option<ContactId>,
    /// The appointment a "C" or "R" was about.
    pub appointment_id: Option<AppointmentId>,
    /// The confirmation or reminder it answered.
    pub reply_to_sms_id: Option<SmsId>,
    pub call_id: Option<CallId>,
    pub handled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl From<InboxRow> for InboxMessage {
    fn from(r: InboxRow) -> Self {
        Self {
            id: r.id,
            channel: r.channel,
            kind: r.kind,
            status: r.status,
            from_number: r.from_number,
            to_number: r.to_number,
            body: r.body,
            caller_name: r.caller_name,
            reply: r.reply,
            contact_id: r.contact_id,
            appointment_id: r.appointment_id,
            reply_to_sms_id: r.reply_to_sms_id,
            call_id: r.call_id,
            handled_at: r.handled_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InboxParams {
    /// `open`: only what still needs the clinic; absent: everything.
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[utoipa::path(get, path = "/inbox", tag = "messages", params(InboxParams),
    responses((status = 200, body = Page<InboxMessage>)))]
pub async fn list_inbox(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<InboxParams>,
) -> Result<Json<Page<InboxMessage>>, ApiError> {
    let open_only = match p.status.as_deref() {
        None => false,
        Some("open") => true,
        Some(_) => return Err(ApiError::validation("status", "`open`, or leave it out")),
    };
    let (cursor, limit) = PageParams {
        cursor: p.cursor,
        limit: p.limit,
    }
    .parse()?;
    let mut rows = tx
        .list_inbox(open_only, cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |m| Cursor {
            at: m.created_at,
            id: m.id.as_uuid(),
        })
        .map(InboxMessage::from),
    ))
}

#[utoipa::path(get, path = "/inbox/{id}", tag = "messages", params(("id" = Uuid, Path)),
    responses((status = 200, body = InboxMessage)))]
pub async fn get_inbox(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<InboxMessageId>,
) -> Result<Json<InboxMessage>, ApiError> {
    let message = found::<InboxRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(message.into()))
}

/// Marks a message done (or open again).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "done"}))]
pub struct InboxChange {
    pub status: InboxStatus,
}

#[utoipa::path(patch, path = "/inbox/{id}", tag = "messages", params(("id" = Uuid, Path)),
    request_body = InboxChange, responses((status = 200, body = InboxMessage)))]
pub async fn update_inbox(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<InboxMessageId>,
    AppJson(body): AppJson<InboxChange>,
) -> Result<Json<InboxMessage>, ApiError> {
    let m = *tx.membership();
    let message = tx
        .set_inbox_status(id, body.status)
        .await?
        .ok_or_else(|| ApiError::missing(&m, "inbox_messages", "id", id.as_uuid()))?;
    tx.commit().await?;
    Ok(Json(message.into()))
}

/// A change of a number's consent to be texted or called.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentRecord {
    pub id: uuid::Uuid,
    pub phone: String,
    pub channel: ConsentChannel,
    pub granted: bool,
    /// `sms_keyword` (STOP, START), `carrier` (the provider reported the recipient
    /// unsubscribed), `staff`, `lead_import`.
    pub source: String,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<ConsentRow> for ConsentRecord {
    fn from(r: ConsentRow) -> Self {
        Self {
            id: r.id,
            phone: r.phone,
            channel: r.channel,
            granted: r.granted,
            source: r.source,
            detail: r.detail,
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsentParams {
    /// Only this number's records (any common notation).
    phone: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

/// Newest first: the first record of a number and channel is the consent in force.
#[utoipa::path(get, path = "/consent-records", tag = "messages", params(ConsentParams),
    responses((status = 200, body = Page<ConsentRecord>)))]
pub async fn list_consent(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<ConsentParams>,
) -> Result<Json<Page<ConsentRecord>>, ApiError> {
    let phone = p
        .phone
        .as_deref()
        .map(PhoneNumber::parse)
        .transpose()
        .map_err(|e| ApiError::validation("phone", e.to_string()))?;
    let (cursor, limit) = PageParams {
        cursor: p.cursor,
        limit: p.limit,
    }
    .parse()?;
    let mut rows = tx
        .list_consent_records(
            phone.as_ref().map(|p| p.as_str()),
            cursor.map(|c| (c.at, c.id)),
            limit + 1,
        )
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |r| Cursor {
            at: r.created_at,
            id: r.id,
        })
        .map(ConsentRecord::from),
    ))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_settings, put_settings))
        .routes(routes!(list_inbox))
        .routes(routes!(get_inbox, update_inbox))
        .routes(routes!(list_consent))
}
