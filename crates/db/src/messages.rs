//! Patients' messages in a clinic's tenant transaction: its messaging settings and reminder
//! rules, reminders queued with a booking, inbound texts (keywords, replies, the inbox), and
//! the consent record. The meaning of a text and the timing of a reminder are the domain's
//! (`voxanne_domain::messages`); this module reads and writes the rows.

use crate::access::subject;
use crate::encrypted::{INBOX_BODY, INBOX_REPLY, SMS_BODY};
use crate::rows::{query_row, tenant_row, After, FromStored};
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;
use voxanne_domain::messages::{
    self, ConsentChannel, InboxChannel, InboxKind, InboxStatus, Intent, QuietHours, ReminderFacts,
};
use voxanne_domain::{
    AppointmentId, CallId, ContactId, InboxMessageId, ReminderRuleId, ServiceId, SmsId,
};

/// A reminder rule of the clinic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReminderRule {
    pub id: ReminderRuleId,
    pub minutes_before: i32,
    /// Only appointments of this service; `None`: every appointment.
    pub service_id: Option<ServiceId>,
    /// `None`: the default text.
    pub template: Option<String>,
}

/// A clinic's messaging settings (the defaults when it never set them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessagingSettings {
    pub quiet_hours: QuietHours,
    /// `None`: the default help text.
    pub help_text: Option<String>,
    pub reminders: Vec<ReminderRule>,
    /// How many of the clinic's outbound (campaign) calls may be in flight at once.
    pub max_concurrent_calls: i32,
}

/// The outbound calls a clinic may have in flight at once when it never said.
pub const DEFAULT_MAX_CONCURRENT_CALLS: i32 = 2;

/// A reminder rule to write.
#[derive(Debug, Clone)]
pub struct NewReminderRule {
    pub minutes_before: i32,
    pub service_id: Option<ServiceId>,
    pub template: Option<String>,
}

/// The default quiet hours: 21:00 to 08:00.
pub fn default_quiet_hours() -> QuietHours {
    QuietHours {
        start: NaiveTime::from_hms_opt(21, 0, 0).expect("a valid time"),
        end: NaiveTime::from_hms_opt(8, 0, 0).expect("a valid time"),
    }
}

/// A row of `inbox_messages`, its body and reply opened; `InboxMessage<Vec<u8>>` as stored,
/// sealed (encrypted.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct InboxMessage<Text = String> {
    pub id: InboxMessageId,
    pub channel: InboxChannel,
    pub kind: InboxKind,
    pub status: InboxStatus,
    pub from_number: String,
    pub to_number: Option<String>,
    pub body: Text,
    pub caller_name: Option<String>,
    pub reply: Option<Text>,
    pub contact_id: Option<ContactId>,
    pub appointment_id: Option<AppointmentId>,
    pub reply_to_sms_id: Option<SmsId>,
    pub call_id: Option<CallId>,
    pub handled_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

type StoredInboxMessage = InboxMessage<Vec<u8>>;

impl FromStored<StoredInboxMessage> for InboxMessage {
    fn from_stored(tx: &TenantTx, m: StoredInboxMessage) -> Result<Self, DbError> {
        let id = m.id.as_uuid();
        Ok(InboxMessage {
            body: tx.open(INBOX_BODY, id, &m.body)?,
            reply: tx.open_opt(INBOX_REPLY, id, m.reply)?,
            id: m.id,
            channel: m.channel,
            kind: m.kind,
            status: m.status,
            from_number: m.from_number,
            to_number: m.to_number,
            caller_name: m.caller_name,
            contact_id: m.contact_id,
            appointment_id: m.appointment_id,
            reply_to_sms_id: m.reply_to_sms_id,
            call_id: m.call_id,
            handled_at: m.handled_at,
            created_at: m.created_at,
        })
    }
}

macro_rules! inbox_query {
    ($($query:tt)*) => {
        query_row!(
            StoredInboxMessage,
            r#"id, channel AS "channel: InboxChannel", kind AS "kind: InboxKind",
               status AS "status: InboxStatus", from_number, to_number, body, caller_name, reply,
               contact_id AS "contact_id: ContactId", appointment_id AS "appointment_id: AppointmentId",
               reply_to_sms_id AS "reply_to_sms_id: SmsId", call_id AS "call_id: CallId",
               handled_at, created_at"#,
            $($query)*
        )
    };
}

tenant_row!(
    InboxMessage,
    InboxMessageId,
    "inbox_messages",
    inbox_query,
    subject = "inbox_message",
    patient = |m| m.contact_id.map(Into::into),
);

/// A row of `consent_records`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRecord {
    pub id: Uuid,
    pub phone: String,
    pub channel: ConsentChannel,
    pub granted: bool,
    pub source: String,
    pub detail: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// An inbound text as the provider reported it.
#[derive(Debug, Clone)]
pub struct InboundText<'a> {
    /// Twilio's `MessageSid`.
    pub provider_message_id: &'a str,
    pub from: &'a str,
    /// The clinic's number it reached.
    pub to: &'a str,
    pub body: &'a str,
    /// What the provider already made of it (Twilio's `OptOutType`: a keyword the clinic's
    /// Messaging Service is set up for), if anything.
    pub provider_intent: Option<Intent>,
}

/// What an inbound text did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundOutcome {
    pub message_id: InboxMessageId,
    pub kind: InboxKind,
    /// What to text back, if anything.
    pub reply: Option<String>,
    /// The provider had already delivered this message: nothing was done again.
    pub repeated: bool,
}

/// Why a number opts out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptOutSource {
    /// The patient texted a STOP keyword.
    Keyword,
    /// The provider refused a message: the recipient unsubscribed (Twilio's 21610).
    Carrier,
}

impl OptOutSource {
    fn dnc_source(self) -> &'static str {
        match self {
            OptOutSource::Keyword => "sms_opt_out",
            OptOutSource::Carrier => "carrier_opt_out",
        }
    }

    fn consent_source(self) -> &'static str {
        match self {
            OptOutSource::Keyword => "sms_keyword",
            OptOutSource::Carrier => "carrier",
        }
    }
}

/// A reply that answers one of the clinic's messages: the latest confirmation or reminder
/// sent to the number, for an appointment still booked and still to come.
struct Pending {
    sms_id: Uuid,
    appointment_id: Uuid,
    starts_at: DateTime<Utc>,
}

/// Characters of an inbound body kept.
const MAX_BODY_CHARS: usize = 2000;

impl TenantTx {
    /// The clinic's messaging settings and reminder rules (the defaults if never set).
    pub async fn messaging_settings(&mut self) -> Result<MessagingSettings, DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            "SELECT quiet_start, quiet_end, help_text, max_concurrent_calls
               FROM messaging_settings WHERE org_id = $1",
            org
        )
        .fetch_optional(self.conn())
        .await?;
        let reminders = sqlx::query_as!(
            ReminderRule,
            r#"SELECT id AS "id: ReminderRuleId", minutes_before,
                      service_id AS "service_id: ServiceId", template
                 FROM reminder_rules WHERE org_id = $1
                ORDER BY minutes_before DESC, created_at, id"#,
            org
        )
        .fetch_all(self.conn())
        .await?;
        Ok(match row {
            Some(row) => MessagingSettings {
                quiet_hours: QuietHours {
                    start: row.quiet_start,
                    end: row.quiet_end,
                },
                help_text: row.help_text,
                reminders,
                max_concurrent_calls: row.max_concurrent_calls,
            },
            None => MessagingSettings {
                quiet_hours: default_quiet_hours(),
                help_text: None,
                reminders,
                max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            },
        })
    }

    /// Replaces the clinic's messaging settings and all its reminder rules. A rule's service
    /// must be one of the clinic's (`ForeignKeyViolation` otherwise: another clinic's service
    /// is as unknown as none). Appointments already booked keep the reminders they have.
    pub async fn put_messaging_settings(
        &mut self,
        quiet_hours: QuietHours,
        help_text: Option<&str>,
        rules: &[NewReminderRule],
        max_concurrent_calls: i32,
    ) -> Result<MessagingSettings, DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "INSERT INTO messaging_settings (org_id, quiet_start, quiet_end, help_text,
                                             max_concurrent_calls)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (org_id) DO UPDATE
                SET quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end,
                    help_text = EXCLUDED.help_text,
                    max_concurrent_calls = EXCLUDED.max_concurrent_calls, updated_at = EXCLUDED.updated_at",
            org,
            quiet_hours.start,
            quiet_hours.end,
            help_text,
            max_concurrent_calls
        )
        .execute(self.conn())
        .await?;
        sqlx::query!("DELETE FROM reminder_rules WHERE org_id = $1", org)
            .execute(self.conn())
            .await?;
        for rule in rules {
            sqlx::query!(
                "INSERT INTO reminder_rules (org_id, minutes_before, service_id, template)
                 VALUES ($1, $2, $3, $4)",
                org,
                rule.minutes_before,
                rule.service_id.map(Uuid::from),
                rule.template.as_deref()
            )
            .execute(self.conn())
            .await?;
        }
        self.messaging_settings().await
    }

    /// Queues the reminders of an appointment just booked or moved to `starts_at`, in that
    /// change's transaction, by the clinic's rules (those for every appointment and those for
    /// its service): each at the time `voxanne_domain::messages::reminder_due` gives, or not
    /// at all. Returns how many were queued.
    pub(crate) async fn queue_reminders(
        &mut self,
        appointment_id: AppointmentId,
        phone: &str,
        clinic: &str,
        time_zone: &str,
        starts_at: DateTime<Utc>,
    ) -> Result<usize, DbError> {
        let org = self.org().as_uuid();
        let settings = self.messaging_settings().await?;
        if settings.reminders.is_empty() {
            return Ok(0);
        }
        let facts = sqlx::query!(
            r#"SELECT a.service_id, p.name AS "practitioner?",
                      CASE WHEN l.address IS NULL THEN l.name ELSE l.name || ', ' || l.address END
                        AS "place?"
                 FROM appointments a
                 LEFT JOIN practitioners p ON p.org_id = a.org_id AND p.resource = a.resource
                 LEFT JOIN locations l ON l.org_id = p.org_id AND l.id = p.location_id
                WHERE a.org_id = $1 AND a.id = $2"#,
            org,
            appointment_id.as_uuid()
        )
        .fetch_one(self.conn())
        .await?;
        let tz: Tz = time_zone.parse().unwrap_or(Tz::UTC);
        let now = Utc::now();
        let mut queued = 0;
        for rule in &settings.reminders {
            if rule
                .service_id
                .is_some_and(|s| Some(s.as_uuid()) != facts.service_id)
            {
                continue;
            }
            let Some(due) = messages::reminder_due(
                starts_at,
                rule.minutes_before,
                tz,
                settings.quiet_hours,
                now,
            ) else {
                continue;
            };
            let body = messages::reminder_body(
                rule.template.as_deref(),
                &ReminderFacts {
                    clinic,
                    starts_at,
                    time_zone: tz,
                    place: facts.place.as_deref(),
                    practitioner: facts.practitioner.as_deref(),
                },
            );
            let id = Uuid::new_v4();
            let body = self.seal(SMS_BODY, id, &body)?;
            sqlx::query!(
                "INSERT INTO sms_confirmation_logs
                        (org_id, id, appointment_id, to_number, body, appointment_starts_at, kind,
                         scheduled_for, next_attempt_at)
                 VALUES ($1, $7, $2, $3, $4, $5, 'reminder', $6, $6)",
                org,
                appointment_id.as_uuid(),
                phone,
                body,
                starts_at,
                due,
                id
            )
            .execute(self.conn())
            .await?;
            queued += 1;
        }
        Ok(queued)
    }

    /// The clinic's contact with number `phone`, if any. (A query of its own: Citus plans no
    /// subquery inside an INSERT's values.)
    async fn contact_of_number(&mut self, phone: &str) -> Result<Option<Uuid>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_scalar!(
            "SELECT id FROM contacts WHERE org_id = $1 AND phone = $2
              ORDER BY created_at DESC, id DESC LIMIT 1",
            org,
            phone
        )
        .fetch_optional(self.conn())
        .await?)
    }

    /// Whether `phone` is opted out with the clinic now (on its do-not-call list).
    async fn opted_out(&mut self, phone: &str) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM dnc_list WHERE org_id = $1 AND phone = $2) AS "on!""#,
            org,
            phone
        )
        .fetch_one(self.conn())
        .await?)
    }

    /// Opts `phone` out of the clinic's texts and calls: a do-not-call entry (if it has none)
    /// and a consent record for each channel. Queued messages to it are then suppressed when
    /// their turn comes.
    pub async fn opt_out(
        &mut self,
        phone: &str,
        source: OptOutSource,
        detail: &str,
    ) -> Result<(), DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "INSERT INTO dnc_list (org_id, phone, reason, source) VALUES ($1, $2, $3, $4)
             ON CONFLICT (org_id, phone) DO NOTHING",
            org,
            phone,
            format!("opted out: {detail}"),
            source.dnc_source()
        )
        .execute(self.conn())
        .await?;
        for channel in [ConsentChannel::Sms, ConsentChannel::Calls] {
            self.record_consent(phone, channel, false, source.consent_source(), Some(detail))
                .await?;
        }
        Ok(())
    }

    /// Opts `phone` back in after START: removes the do-not-call entry that an opt-out made
    /// (one the clinic's staff added stays), and records consent to texts. Whether the number
    /// may now be texted.
    pub async fn opt_in(&mut self, phone: &str, detail: &str) -> Result<bool, DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "DELETE FROM dnc_list WHERE org_id = $1 AND phone = $2
                AND source IN ('sms_opt_out', 'carrier_opt_out')",
            org,
            phone
        )
        .execute(self.conn())
        .await?;
        self.record_consent(
            phone,
            ConsentChannel::Sms,
            true,
            "sms_keyword",
            Some(detail),
        )
        .await?;
        Ok(!self.opted_out(phone).await?)
    }

    /// Appends a consent record.
    pub async fn record_consent(
        &mut self,
        phone: &str,
        channel: ConsentChannel,
        granted: bool,
        source: &str,
        detail: Option<&str>,
    ) -> Result<(), DbError> {
        let org = self.org().as_uuid();
        sqlx::query!(
            "INSERT INTO consent_records (org_id, phone, channel, granted, source, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
            org,
            phone,
            channel.as_str(),
            granted,
            source,
            detail.map(|d| d.chars().take(500).collect::<String>())
        )
        .execute(self.conn())
        .await?;
        self.note_access(subject::CONSENT, None, Action::Create, []);
        Ok(())
    }

    /// The consent records of the clinic, newest first; of one number if `phone` is given.
    pub async fn list_consent_records(
        &mut self,
        phone: Option<&str>,
        after: After,
        limit: u32,
    ) -> Result<Vec<ConsentRecord>, DbError> {
        let org = self.org().as_uuid();
        self.note_access(subject::CONSENT, None, Action::List, []);
        Ok(sqlx::query_as!(
            ConsentRecord,
            r#"SELECT id, phone, channel AS "channel: ConsentChannel", granted, source, detail,
                      created_at
                 FROM consent_records
                WHERE org_id = $1 AND ($2::text IS NULL OR phone = $2)
                  AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4))
                ORDER BY created_at DESC, id DESC LIMIT $5"#,
            org,
            phone,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?)
    }

    /// The latest confirmation or reminder sent to `phone` for an appointment of this clinic
    /// still booked and still to come.
    async fn pending_for(&mut self, phone: &str) -> Result<Option<Pending>, DbError> {
        let org = self.org().as_uuid();
        Ok(sqlx::query!(
            r#"SELECT s.id, a.id AS appointment_id, a.starts_at
                 FROM sms_confirmation_logs s
                 JOIN appointments a ON a.org_id = s.org_id AND a.id = s.appointment_id
                WHERE s.org_id = $1 AND s.to_number = $2
                  AND s.status IN ('sent', 'delivered')
                  AND a.status = 'booked' AND a.starts_at > now()
                ORDER BY s.updated_at DESC, s.created_at DESC, s.id DESC
                LIMIT 1"#,
            org,
            phone
        )
        .fetch_optional(self.conn())
        .await?
        .map(|row| Pending {
            sms_id: row.id,
            appointment_id: row.appointment_id,
            starts_at: row.starts_at,
        }))
    }

    /// An inbound text to one of the clinic's numbers, once: a MessageSid already recorded
    /// is answered as it was the first time and changes nothing. Otherwise its meaning is
    /// acted on in this transaction: an opt-out keyword opts the number out, START opts it
    /// back in, HELP is answered with the clinic's help text, "C" confirms and "R" asks for a
    /// reschedule of the appointment the patient's latest pending message is about (this
    /// clinic's only), and anything else is left open in the inbox.
    pub async fn receive_text(
        &mut self,
        text: &InboundText<'_>,
    ) -> Result<InboundOutcome, DbError> {
        let org = self.org().as_uuid();
        let body: String = text.body.chars().take(MAX_BODY_CHARS).collect();
        let new_id = Uuid::new_v4();
        let sealed = self.seal(INBOX_BODY, new_id, &body)?;
        let contact = self.contact_of_number(text.from).await?;
        let inserted = sqlx::query_scalar!(
            r#"INSERT INTO inbox_messages (org_id, id, channel, kind, from_number, to_number, body,
                                           provider_message_id, contact_id)
               VALUES ($1, $6, 'sms', 'message', $2, $3, $4, $5, $7)
               ON CONFLICT (org_id, provider_message_id) WHERE provider_message_id IS NOT NULL
               DO NOTHING
               RETURNING id AS "id: InboxMessageId""#,
            org,
            text.from,
            text.to,
            sealed,
            text.provider_message_id,
            new_id,
            contact
        )
        .fetch_optional(self.conn())
        .await?;
        if let Some(id) = inserted {
            self.note_access(subject::INBOX_MESSAGE, Some(id.into()), Action::Create, []);
        }
        let Some(message_id) = inserted else {
            let seen = sqlx::query!(
                r#"SELECT id AS "id: InboxMessageId", kind AS "kind: InboxKind", reply
                     FROM inbox_messages WHERE org_id = $1 AND provider_message_id = $2"#,
                org,
                text.provider_message_id
            )
            .fetch_one(self.conn())
            .await?;
            return Ok(InboundOutcome {
                reply: self.open_opt(INBOX_REPLY, seen.id.as_uuid(), seen.reply)?,
                message_id: seen.id,
                kind: seen.kind,
                repeated: true,
            });
        };
        let opted_out = self.opted_out(text.from).await?;
        let intent = text
            .provider_intent
            .unwrap_or_else(|| messages::intent(&body, opted_out));
        let clinic = self.clinic_name_and_zone().await?;
        let mut appointment = None;
        let mut answered = None;
        let (kind, reply) = match intent {
            Intent::OptOut => {
                self.opt_out(text.from, OptOutSource::Keyword, body.trim())
                    .await?;
                // The provider answers STOP itself and refuses anything more to the number.
                (InboxKind::OptedOut, None)
            }
            Intent::OptIn => {
                self.opt_in(text.from, body.trim()).await?;
                (InboxKind::OptedIn, None)
            }
            Intent::Help => {
                let settings = self.messaging_settings().await?;
                let help = settings
                    .help_text
                    .unwrap_or_else(|| messages::default_help_text(&clinic.0, text.to));
                (InboxKind::Help, (!opted_out).then_some(help))
            }
            Intent::Confirm | Intent::Reschedule => match self.pending_for(text.from).await? {
                None => (InboxKind::Message, None),
                Some(pending) => {
                    appointment = Some(pending.appointment_id);
                    answered = Some(pending.sms_id);
                    if intent == Intent::Confirm {
                        sqlx::query!(
                            "UPDATE appointments SET confirmed_at = now()
                              WHERE org_id = $1 AND id = $2 AND confirmed_at IS NULL",
                            org,
                            pending.appointment_id
                        )
                        .execute(self.conn())
                        .await?;
                        let tz: Tz = clinic.1.parse().unwrap_or(Tz::UTC);
                        (
                            InboxKind::Confirmed,
                            Some(messages::confirmed_reply(&clinic.0, pending.starts_at, tz)),
                        )
                    } else {
                        (
                            InboxKind::RescheduleRequest,
                            Some(messages::reschedule_reply(&clinic.0)),
                        )
                    }
                }
            },
            Intent::Message => (InboxKind::Message, None),
        };
        let reply = if opted_out && intent != Intent::OptIn {
            None
        } else {
            reply
        };
        let status = match kind {
            InboxKind::Message | InboxKind::RescheduleRequest | InboxKind::CallbackRequest => {
                InboxStatus::Open
            }
            _ => InboxStatus::Done,
        };
        let sealed_reply = self.seal_opt(INBOX_REPLY, message_id.as_uuid(), reply.as_deref())?;
        // now() outside the CASE (see set_inbox_status).
        sqlx::query!(
            "UPDATE inbox_messages
                SET kind = $3, status = $4, reply = $5, appointment_id = $6, reply_to_sms_id = $7,
                    handled_at = now() + CASE WHEN $4 = 'done' THEN interval '0' END
              WHERE org_id = $1 AND id = $2",
            org,
            message_id.as_uuid(),
            kind.as_str(),
            status.as_str(),
            sealed_reply,
            appointment,
            answered
        )
        .execute(self.conn())
        .await?;
        Ok(InboundOutcome {
            message_id,
            kind,
            reply,
            repeated: false,
        })
    }

    /// The clinic's name and time zone (its agent configuration's, else UTC).
    async fn clinic_name_and_zone(&mut self) -> Result<(String, String), DbError> {
        let org = self.org().as_uuid();
        let row = sqlx::query!(
            r#"SELECT o.name, coalesce(a.time_zone, 'UTC') AS "time_zone!"
                 FROM organizations o
                 LEFT JOIN agent_configurations a ON a.org_id = o.id
                WHERE o.id = $1"#,
            org
        )
        .fetch_one(self.conn())
        .await?;
        Ok((row.name, row.time_zone))
    }

    /// A message or callback request a caller left with the agent, open in the inbox.
    pub async fn take_message(
        &mut self,
        call_id: Option<CallId>,
        from_number: &str,
        to_number: Option<&str>,
        caller_name: Option<&str>,
        body: &str,
        callback: bool,
    ) -> Result<InboxMessageId, DbError> {
        let org = self.org().as_uuid();
        let kind = if callback {
            InboxKind::CallbackRequest
        } else {
            InboxKind::Message
        };
        let id = Uuid::new_v4();
        let body = body.chars().take(MAX_BODY_CHARS).collect::<String>();
        let body = self.seal(INBOX_BODY, id, &body)?;
        let contact = self.contact_of_number(from_number).await?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO inbox_messages (org_id, id, channel, kind, from_number, to_number, body,
                                           caller_name, call_id, contact_id)
               VALUES ($1, $8, 'call', $2, $3, $4, $5, $6, $7, $9)
               RETURNING id AS "id: InboxMessageId""#,
            org,
            kind.as_str(),
            from_number,
            to_number,
            body,
            caller_name.map(|n| n.chars().take(200).collect::<String>()),
            call_id.map(Uuid::from),
            id,
            contact
        )
        .fetch_one(self.conn())
        .await?;
        self.note_access(subject::INBOX_MESSAGE, Some(id.into()), Action::Create, []);
        Ok(id)
    }

    /// A page of the inbox, newest first; only open messages if `open_only`.
    pub async fn list_inbox(
        &mut self,
        open_only: bool,
        after: After,
        limit: u32,
    ) -> Result<Vec<InboxMessage>, DbError> {
        if !open_only {
            return self.page::<InboxMessage>(after, limit).await;
        }
        let org = self.org().as_uuid();
        let rows = inbox_query!(
            [
                "SELECT ",
                " FROM inbox_messages
                  WHERE org_id = $1 AND status = 'open'
                    AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3))
                  ORDER BY created_at DESC, id DESC LIMIT $4"
            ],
            org,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let rows: Vec<InboxMessage> = self.opened(rows)?;
        self.note_rows(&rows);
        Ok(rows)
    }

    pub async fn get_inbox_message(
        &mut self,
        id: InboxMessageId,
    ) -> Result<Option<InboxMessage>, DbError> {
        self.find::<InboxMessage>(id).await
    }

    /// Marks an inbox message open or done; the message, if the clinic has it.
    pub async fn set_inbox_status(
        &mut self,
        id: InboxMessageId,
        status: InboxStatus,
    ) -> Result<Option<InboxMessage>, DbError> {
        let org = self.org().as_uuid();
        // now() stays outside CASE and COALESCE, which Citus refuses it inside: done keeps
        // the first time it was handled (least ignores a NULL), open clears it.
        let message = inbox_query!(
            [
                "UPDATE inbox_messages
                    SET status = $3,
                        handled_at = least(CASE WHEN $3 = 'done' THEN handled_at END,
                                           now() + CASE WHEN $3 = 'done' THEN interval '0' END)
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            status.as_str()
        )
        .fetch_optional(self.conn())
        .await?;
        let message: Option<InboxMessage> = self.opened_opt(message)?;
        if let Some(message) = &message {
            self.note_row(message, Action::Update);
        }
        Ok(message)
    }
}
