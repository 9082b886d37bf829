//! The functions the voice agent calls during a call. Each tool call runs in its own tenant
//! transaction of the proved clinic, through the same code as the REST API (`slot_request`,
//! `insert_hold`, `confirm_hold`, `free_slots`, …), so the database's no-double-booking rule
//! holds for the agent as for the staff. A tool that writes claims the platform's
//! `toolCallId` as an idempotency key: a retried call replays its first answer instead of
//! booking twice. Answers are short sentences the agent can read out; a refusal is an answer
//! too (its transaction is rolled back and nothing is kept).

use super::CallContext;
use crate::routes::appointments::slot_request;
use crate::AppState;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};
use uuid::Uuid;
use voxanne_db::appointments::{Appointment, BookingError};
use voxanne_db::call_events::CallEvent;
use voxanne_db::idempotency::Claim;
use voxanne_db::system::Probe;
use voxanne_db::{DbError, TenantError, TenantTx, SYSTEM_ACTOR};
use voxanne_domain::availability::{free_slots, Span};
use voxanne_domain::{AppointmentId, CallDirection, CallId, CallStatus, HoldId, PhoneNumber};
use voxanne_webhooks::vapi::ToolCall;

/// The resource the agent books.
const RESOURCE: &str = "default";
/// How long the agent's hold keeps a slot while the caller makes up their mind.
const HOLD_SECONDS: u32 = 300;
/// Free times read out per availability answer.
const SLOTS_PER_ANSWER: usize = 6;
/// How far ahead availability looks when no date is given.
const LOOKAHEAD_DAYS: i64 = 14;
const DEFAULT_MINUTES: u32 = 30;

const UNAVAILABLE: &str = "Sorry, this clinic can't take bookings right now.";
const TROUBLE: &str = "Sorry, something went wrong on our side. Please try again in a moment.";

/// A tool the agent is given.
#[derive(Debug)]
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    /// Its arguments, as a JSON schema.
    pub parameters: fn() -> Value,
    /// Writes: its `toolCallId` is claimed as an idempotency key.
    pub writes: bool,
}

fn phone_parameter() -> Value {
    json!({"type": "object", "properties": {
        "phone": {"type": "string", "description": "E.164; default: the caller's number"}}})
}

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "find_contact",
        description: "Look the caller up in the clinic's contacts by the number they are calling from; says their name and upcoming appointments.",
        // The caller's own number only: a caller never learns about another patient.
        parameters: || json!({"type": "object", "properties": {}}),
        writes: false,
    },
    Tool {
        name: "check_availability",
        description: "Free appointment times on a date (or the next free ones), in the clinic's time zone.",
        parameters: || {
            json!({"type": "object", "properties": {
                "date": {"type": "string", "description": "YYYY-MM-DD, in the clinic's time zone; default: the next free times"},
                "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "default 30"}}})
        },
        writes: false,
    },
    Tool {
        name: "hold_slot",
        description: "Hold a free time for the caller for five minutes while they confirm.",
        parameters: || {
            json!({"type": "object", "required": ["starts_at"], "properties": {
                "starts_at": {"type": "string", "description": "as given by check_availability, or YYYY-MM-DDTHH:MM in the clinic's time zone"},
                "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 480, "description": "default 30"},
                "patient_name": {"type": "string", "description": "the caller's name, if they are not a contact yet"}}})
        },
        writes: true,
    },
    Tool {
        name: "confirm_booking",
        description: "Book the time held by hold_slot, once the caller has said yes.",
        parameters: || {
            json!({"type": "object", "required": ["hold_id"], "properties": {
                "hold_id": {"type": "string", "description": "from hold_slot"},
                "notes": {"type": "string", "description": "the reason for the visit"}}})
        },
        writes: true,
    },
    Tool {
        name: "cancel_appointment",
        description: "Cancel one of the caller's own appointments (default: their next one).",
        parameters: || {
            json!({"type": "object", "properties": {
                "appointment_id": {"type": "string", "description": "from find_contact; default: the caller's next appointment"}}})
        },
        writes: true,
    },
    Tool {
        name: "reschedule_appointment",
        description: "Move one of the caller's own appointments (default: their next one) to a free time.",
        parameters: || {
            json!({"type": "object", "required": ["starts_at"], "properties": {
                "appointment_id": {"type": "string", "description": "from find_contact; default: the caller's next appointment"},
                "starts_at": {"type": "string", "description": "the new time, as given by check_availability"}}})
        },
        writes: true,
    },
    Tool {
        name: "search_knowledge_base",
        description: "Search the clinic's own notes (prices, parking, insurance, preparation) to answer a question.",
        parameters: || {
            json!({"type": "object", "required": ["query"], "properties": {
                "query": {"type": "string"}}})
        },
        writes: false,
    },
    Tool {
        name: "check_dnc",
        description: "Whether a number is on the clinic's do-not-call list.",
        parameters: phone_parameter,
        writes: false,
    },
];

/// Why a tool did not do what was asked.
#[derive(Debug)]
enum Refusal {
    /// Said to the caller; nothing is kept.
    Say(String),
    /// Logged; the caller hears [`TROUBLE`].
    Internal(String),
    /// Said to the caller, like `Say`: the agent named an id (`table`.id) that this clinic
    /// does not have. If it is another clinic's, that is a security event (docs/TENANCY.md §4).
    Probe {
        say: String,
        table: &'static str,
        id: Uuid,
    },
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        Refusal::Internal(e.to_string())
    }
}

impl From<BookingError> for Refusal {
    fn from(e: BookingError) -> Self {
        let say = |s: &str| Refusal::Say(s.to_owned());
        match e {
            BookingError::SlotTaken => {
                say("Sorry, that time has just been taken. Let's find another one.")
            }
            BookingError::HoldExpired => {
                say("The hold on that time ran out. Let's check the free times again.")
            }
            BookingError::HoldAlreadyConfirmed => say("That time is already booked for you."),
            BookingError::NotBooked(status) => Refusal::Say(format!(
                "That appointment is {status} and can't be changed."
            )),
            BookingError::EmptyRange => say("That time range isn't valid."),
            BookingError::NotFound | BookingError::InvalidReference { .. } => {
                say("I couldn't find that.")
            }
            BookingError::Db(e) => Refusal::Internal(e.to_string()),
        }
    }
}

type Answer = Result<String, Refusal>;

fn say<T>(text: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Say(text.into()))
}

/// The reply to a `tool-calls` message: one result per call, in order. Each call runs in its
/// own transaction, so one refusal does not undo another call's work.
pub async fn run_tool_calls(state: &AppState, call: &CallContext, calls: &[ToolCall]) -> Value {
    let mut results = Vec::with_capacity(calls.len());
    for tool_call in calls {
        let result = run_one(state, call, tool_call).await;
        results.push(tool_result(tool_call, &result));
    }
    json!({ "results": results })
}

/// The reply for a clinic that is not taking calls: no tool runs, nothing is read.
pub fn unavailable_results(calls: &[ToolCall]) -> Value {
    json!({ "results": calls.iter()
        .map(|c| tool_result(c, UNAVAILABLE))
        .collect::<Vec<_>>() })
}

/// One of Vapi's `ToolCallResult`s: `name` and `toolCallId` (both required by Vapi's schema),
/// and the `result` as one line (Vapi's tool guide: line breaks break its parsing).
fn tool_result(tool_call: &ToolCall, result: &str) -> Value {
    let line: String = result
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    json!({"name": tool_call.name, "toolCallId": tool_call.id, "result": line})
}

/// The idempotency key of a tool call: the platform's id, within the clinic.
fn idempotency_key(call: &CallContext, tool_call: &ToolCall) -> String {
    let key = format!("tool-call:{}:{}", call.provider, tool_call.id);
    if key.len() <= 200 && key.bytes().all(|b| b.is_ascii_graphic()) {
        key
    } else {
        // Too long or not printable: the same id still gives the same key.
        let digest = sha256_hex(tool_call.id.as_bytes());
        format!("tool-call:{}:sha256:{digest}", call.provider)
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn run_one(state: &AppState, call: &CallContext, tool_call: &ToolCall) -> String {
    let Some(tool) = TOOLS.iter().find(|t| t.name == tool_call.name) else {
        return format!("There is no tool called {}.", tool_call.name);
    };
    let mut tx = match state.db.job_tenant(call.org).await {
        Ok(tx) => tx,
        Err(TenantError::Suspended | TenantError::NotMember) => return UNAVAILABLE.to_owned(),
        Err(e) => {
            tracing::error!(error = %e, tool = tool.name, "agent tool: no transaction");
            return TROUBLE.to_owned();
        }
    };
    let key = tool.writes.then(|| idempotency_key(call, tool_call));
    if let Some(key) = &key {
        let request = json!({"op": "agent_tool", "tool": tool.name,
            "arguments": tool_call.arguments, "call": call.provider_call_id});
        match tx.claim_idempotency_key(key, &request).await {
            Ok(Claim::New) => {}
            Ok(Claim::Replay { body, .. }) => {
                return body
                    .as_str()
                    .map_or_else(|| TROUBLE.to_owned(), str::to_owned)
            }
            Ok(Claim::Reused) => {
                return "That request id was already used for a different request.".to_owned()
            }
            Err(e) => {
                tracing::error!(error = %e, tool = tool.name, "agent tool: idempotency key");
                return TROUBLE.to_owned();
            }
        }
    }
    let answer = run(&mut tx, call, tool.name, &tool_call.arguments).await;
    let finish = async {
        let text = answer?;
        if let Some(key) = &key {
            tx.record_response(key, 200, &json!(text)).await?;
        }
        tx.commit().await?;
        Ok::<_, Refusal>(text)
    };
    match finish.await {
        Ok(text) => text,
        Err(Refusal::Say(text)) => text,
        Err(Refusal::Probe { say, table, id }) => {
            let probe = Probe {
                org: call.org,
                user: SYSTEM_ACTOR,
                table,
                column: "id",
                id,
            };
            let route = format!("POST /webhooks/voice/{} tool {}", call.provider, tool.name);
            state
                .security
                .report(crate::security_log::Finding::Probe { probe, route });
            say
        }
        Err(Refusal::Internal(e)) => {
            tracing::error!(error = %e, tool = tool.name, "agent tool failed");
            TROUBLE.to_owned()
        }
    }
}

async fn run(tx: &mut TenantTx, call: &CallContext, name: &str, args: &Value) -> Answer {
    match name {
        "find_contact" => find_contact(tx, call).await,
        "check_availability" => check_availability(tx, args).await,
        "hold_slot" => hold_slot(tx, call, args).await,
        "confirm_booking" => confirm_booking(tx, call, args).await,
        "cancel_appointment" => cancel_appointment(tx, call, args).await,
        "reschedule_appointment" => reschedule_appointment(tx, call, args).await,
        "search_knowledge_base" => search_knowledge_base(tx, args).await,
        "check_dnc" => check_dnc(tx, call, args).await,
        other => Err(Refusal::Internal(format!(
            "tool {other} has no implementation"
        ))),
    }
}

/// A string argument, trimmed; absent, null and empty are all `None`.
fn text<'a>(args: &'a Value, name: &str) -> Option<&'a str> {
    args.get(name)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

fn minutes(args: &Value) -> Result<Duration, Refusal> {
    let value = match args.get("duration_minutes") {
        None | Some(Value::Null) => return Ok(Duration::minutes(i64::from(DEFAULT_MINUTES))),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    match value.filter(|m| (5..=480).contains(m)) {
        Some(m) => Ok(Duration::minutes(m as i64)),
        None => say("The length must be a number of minutes from 5 to 480."),
    }
}

/// An id argument, as the id type it names (`HoldId`, `AppointmentId`).
fn uuid_arg<T: From<Uuid>>(args: &Value, name: &str) -> Result<Option<T>, Refusal> {
    match text(args, name) {
        None => Ok(None),
        Some(t) => match Uuid::parse_str(t) {
            Ok(id) => Ok(Some(T::from(id))),
            Err(_) => say(format!("{name} must be the id I gave you earlier.")),
        },
    }
}

/// The number asked about, or the caller's.
fn phone_arg(args: &Value, call: &CallContext) -> Result<PhoneNumber, Refusal> {
    match text(args, "phone") {
        Some(p) => PhoneNumber::parse(p)
            .or_else(|_| say("That isn't a phone number I can read (use +country code).")),
        None => call
            .caller
            .clone()
            .ok_or_else(|| Refusal::Say("I can't see the caller's number.".into())),
    }
}

/// An instant from RFC 3339, or a local `YYYY-MM-DDTHH:MM[:SS]` in the clinic's zone.
fn parse_time(input: &str, tz: Tz) -> Result<DateTime<Utc>, Refusal> {
    if let Ok(t) = DateTime::parse_from_rfc3339(input) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(input, format) {
            return match tz.from_local_datetime(&local).earliest() {
                Some(t) => Ok(t.with_timezone(&Utc)),
                None => say("That time doesn't exist on that day (the clocks change)."),
            };
        }
    }
    say(format!(
        "I couldn't read the time {input:?}; use a time from check_availability."
    ))
}

/// "Tuesday 3 March at 09:00".
fn spoken(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .format("%A %-d %B at %H:%M")
        .to_string()
}

/// The instant as the agent passes it back: RFC 3339 in the clinic's offset.
fn machine(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn clinic_zone(tx: &mut TenantTx) -> Result<Tz, Refusal> {
    let config = tx.get_agent_configuration().await?;
    config
        .time_zone
        .as_str()
        .parse()
        .map_err(|_| Refusal::Internal(format!("unknown time zone {}", config.time_zone.as_str())))
}

/// The call row of this call, created on the first tool that needs it (the end-of-call
/// report completes it later; events never move it backwards).
async fn call_row(tx: &mut TenantTx, call: &CallContext) -> Result<CallId, Refusal> {
    Ok(tx
        .apply_call_event(&CallEvent {
            provider: call.provider,
            provider_call_id: call.provider_call_id.chars().take(200).collect(),
            direction: CallDirection::Inbound,
            status: CallStatus::InProgress,
            is_final_report: false,
            from_number: call
                .caller
                .as_ref()
                .map_or_else(|| "unknown".to_owned(), |c| c.as_str().to_owned()),
            to_number: call.clinic_number.as_str().to_owned(),
            started_at: None,
            ended_at: None,
            duration_seconds: None,
            transcript: None,
            summary: None,
            ended_reason: None,
            recording_url: None,
        })
        .await
        .map(CallId::from)?)
}

/// Refuses a slot the agent may not offer: in the past, or outside the opening hours.
async fn check_bookable(tx: &mut TenantTx, span: Span, tz: Tz) -> Result<(), Refusal> {
    let schedule = tx.schedule(RESOURCE, span).await?;
    if span.start < schedule.now {
        return say("That time has already passed.");
    }
    let open = schedule
        .opening_hours
        .as_ref()
        .map(|hours| hours.spans(tz, span))
        .unwrap_or_default();
    if !open
        .iter()
        .any(|o| o.start <= span.start && span.end <= o.end)
    {
        return say("The clinic isn't open at that time.");
    }
    Ok(())
}

async fn find_contact(tx: &mut TenantTx, call: &CallContext) -> Answer {
    let Some(phone) = call.caller.as_ref() else {
        return Ok("The caller's number is withheld, so I can't look them up.".into());
    };
    let Some(contact) = tx.find_contact_by_phone(phone).await? else {
        return Ok(format!("No contact on file for {}.", phone.as_str()));
    };
    let tz = clinic_zone(tx).await?;
    let upcoming = tx.upcoming_appointments_of_contact(contact.id, 3).await?;
    let mut answer = format!("This is {}, a patient on file.", contact.name);
    if upcoming.is_empty() {
        answer.push_str(" No upcoming appointments.");
    } else {
        let list: Vec<String> = upcoming
            .iter()
            .map(|a| format!("{} (appointment_id {})", spoken(a.starts_at, tz), a.id))
            .collect();
        answer.push_str(&format!(" Upcoming: {}.", list.join("; ")));
    }
    Ok(answer)
}

async fn check_availability(tx: &mut TenantTx, args: &Value) -> Answer {
    let length = minutes(args)?;
    let tz = clinic_zone(tx).await?;
    let now = Utc::now();
    let (window, day) = match text(args, "date") {
        Some(date) => {
            let Ok(date) = NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
                return say("The date must look like 2031-03-03.");
            };
            let start = |d: NaiveDate| {
                tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default())
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            };
            match (start(date), date.succ_opt().and_then(start)) {
                (Some(start), Some(end)) => (Span { start, end }, Some(date)),
                _ => return say("I can't look at that date."),
            }
        }
        None => (
            Span {
                start: now,
                end: now + Duration::days(LOOKAHEAD_DAYS),
            },
            None,
        ),
    };
    let schedule = tx.schedule(RESOURCE, window).await?;
    let Some(hours) = &schedule.opening_hours else {
        return Ok("The clinic has not set its opening hours, so I can't offer times.".into());
    };
    let slots = free_slots(hours, tz, window, length, &schedule.busy, schedule.now);
    let when = day.map_or_else(
        || "in the next two weeks".to_owned(),
        |d| format!("on {}", d.format("%A %-d %B")),
    );
    if slots.is_empty() {
        return Ok(format!(
            "No free {}-minute times {when}.",
            length.num_minutes()
        ));
    }
    let list: Vec<String> = slots
        .iter()
        .take(SLOTS_PER_ANSWER)
        .map(|s| {
            format!(
                "{} (starts_at {})",
                spoken(s.start, tz),
                machine(s.start, tz)
            )
        })
        .collect();
    Ok(format!(
        "Free {}-minute times {when}: {}.",
        length.num_minutes(),
        list.join("; ")
    ))
}

async fn hold_slot(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let Some(starts_at) = text(args, "starts_at") else {
        return say("Which time? Give starts_at from check_availability.");
    };
    let length = minutes(args)?;
    let tz = clinic_zone(tx).await?;
    let start = parse_time(starts_at, tz)?;
    let span = Span {
        start,
        end: start + length,
    };
    check_bookable(tx, span, tz).await?;
    let contact = match &call.caller {
        Some(phone) => {
            let name = text(args, "patient_name")
                .map(|n| n.chars().take(200).collect::<String>())
                .unwrap_or_else(|| format!("Caller {}", phone.as_str()));
            Some(tx.ensure_contact_for_phone(phone, &name).await?)
        }
        None => None,
    };
    let call_id = call_row(tx, call).await?;
    if let Some(contact) = &contact {
        tx.link_call_to_contact(call_id, contact.id).await?;
    }
    let slot = slot_request(
        contact.as_ref().map(|c| c.id),
        Some(call_id),
        Some(RESOURCE),
        span.start,
        span.end,
    )
    .map_err(|e| Refusal::Say(e.to_string()))?;
    let hold = tx.insert_hold(&slot, HOLD_SECONDS).await?;
    Ok(format!(
        "I've held {} for five minutes. Once the caller agrees, book it with confirm_booking, hold_id {}.",
        spoken(hold.starts_at, tz),
        hold.id
    ))
}

async fn confirm_booking(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let Some(hold_id): Option<HoldId> = uuid_arg(args, "hold_id")? else {
        return say("Which hold? Give the hold_id from hold_slot.");
    };
    let notes = text(args, "notes").map(|n| n.chars().take(2000).collect::<String>());
    let call_id = call_row(tx, call).await?;
    // Only a hold made on this call: another caller's hold is not this caller's to book.
    let refusal = "I couldn't find that hold on this call; it may have run out. Let's check the free times again.";
    match tx.get_hold(hold_id).await? {
        Some(hold) if hold.call_id == Some(call_id) => {}
        Some(_) => return say(refusal),
        None => {
            return Err(Refusal::Probe {
                say: refusal.into(),
                table: "appointment_holds",
                id: hold_id.as_uuid(),
            })
        }
    }
    let tz = clinic_zone(tx).await?;
    let appointment: Appointment = tx.confirm_hold(hold_id, notes.as_deref()).await?;
    Ok(format!(
        "Booked for {}. The appointment id is {}.",
        spoken(appointment.starts_at, tz),
        appointment.id
    ))
}

/// The caller's own booked appointment: the one named, if it is theirs, or their next one.
async fn callers_appointment(
    tx: &mut TenantTx,
    call: &CallContext,
    args: &Value,
) -> Result<Appointment, Refusal> {
    let named: Option<AppointmentId> = uuid_arg(args, "appointment_id")?;
    let not_found = || {
        let say = "I couldn't find an upcoming appointment under your number.".to_owned();
        match named {
            Some(id) => Refusal::Probe {
                say,
                table: "appointments",
                id: id.as_uuid(),
            },
            None => Refusal::Say(say),
        }
    };
    let caller = call.caller.as_ref().ok_or_else(|| {
        Refusal::Say("I can only change appointments when I can see the caller's number.".into())
    })?;
    let contact = tx
        .find_contact_by_phone(caller)
        .await?
        .ok_or_else(not_found)?;
    let upcoming = tx.upcoming_appointments_of_contact(contact.id, 50).await?;
    match named {
        Some(id) => upcoming.into_iter().find(|a| a.id == id),
        None => upcoming.into_iter().next(),
    }
    .ok_or_else(not_found)
}

async fn cancel_appointment(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let appointment = callers_appointment(tx, call, args).await?;
    let tz = clinic_zone(tx).await?;
    let cancelled = tx.cancel_appointment(appointment.id).await?;
    Ok(format!(
        "Cancelled the appointment on {}.",
        spoken(cancelled.starts_at, tz)
    ))
}

async fn reschedule_appointment(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let Some(starts_at) = text(args, "starts_at") else {
        return say("To which time? Give starts_at from check_availability.");
    };
    let appointment = callers_appointment(tx, call, args).await?;
    let tz = clinic_zone(tx).await?;
    let start = parse_time(starts_at, tz)?;
    let span = Span {
        start,
        end: start + (appointment.ends_at - appointment.starts_at),
    };
    check_bookable(tx, span, tz).await?;
    let moved = tx
        .reschedule_appointment(appointment.id, Some(span.start), Some(span.end), None)
        .await?;
    Ok(format!(
        "Moved the appointment from {} to {}.",
        spoken(appointment.starts_at, tz),
        spoken(moved.starts_at, tz)
    ))
}

async fn search_knowledge_base(tx: &mut TenantTx, args: &Value) -> Answer {
    let Some(query) = text(args, "query") else {
        return say("What should I look up?");
    };
    let query: String = query.chars().take(500).collect();
    let hits = tx.search_knowledge_base(&query, 3).await?;
    if hits.is_empty() {
        return Ok("The clinic's notes don't cover that.".into());
    }
    let notes: Vec<String> = hits
        .iter()
        .map(|h| {
            let mut content: String = h.content.chars().take(400).collect();
            if content.len() < h.content.len() {
                content.push('…');
            }
            format!("{}: {}", h.title, content)
        })
        .collect();
    Ok(format!("From the clinic's notes: {}", notes.join(" | ")))
}

async fn check_dnc(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let phone = phone_arg(args, call)?;
    Ok(if tx.is_on_dnc(&phone).await? {
        format!("{} is on the clinic's do-not-call list.", phone.as_str())
    } else {
        format!("{} is not on the do-not-call list.", phone.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_in_the_clinics_zone() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        let t = parse_time("2031-03-04T09:30", tz).expect("local");
        assert_eq!(t.to_rfc3339(), "2031-03-04T14:30:00+00:00");
        assert_eq!(parse_time(&machine(t, tz), tz).expect("round trip"), t);
        assert_eq!(spoken(t, tz), "Tuesday 4 March at 09:30");
        assert!(matches!(parse_time("tomorrow", tz), Err(Refusal::Say(_))));
        // 02:30 on the spring-forward day does not exist in New York.
        assert!(matches!(
            parse_time("2031-03-09T02:30", tz),
            Err(Refusal::Say(_))
        ));
    }

    #[test]
    fn every_tool_has_an_object_schema_and_an_implementation_name() {
        let mut names: Vec<_> = TOOLS.iter().map(|t| t.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TOOLS.len());
        for tool in TOOLS {
            assert_eq!((tool.parameters)()["type"], "object", "{}", tool.name);
        }
    }

    #[test]
    fn arguments_are_checked() {
        assert!(minutes(&json!({})).is_ok());
        assert_eq!(
            minutes(&json!({"duration_minutes": "45"})).ok(),
            Some(Duration::minutes(45))
        );
        assert!(minutes(&json!({"duration_minutes": 4})).is_err());
        assert!(minutes(&json!({"duration_minutes": [1]})).is_err());
        assert!(uuid_arg::<HoldId>(&json!({"hold_id": "nope"}), "hold_id").is_err());
        assert_eq!(
            uuid_arg::<HoldId>(&json!({"hold_id": "  "}), "hold_id").ok(),
            Some(None)
        );
    }
}
