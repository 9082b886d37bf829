//! The booking tools: free times, holding one, booking the hold, and cancelling or moving the
//! caller's own appointments. Every slot a caller is offered follows the booking rule
//! (`voxanne_domain::booking`), the REST API's own; the writes are the REST API's too
//! (`insert_hold`, `confirm_hold`, …), so the database refuses a double booking from either.

use crate::arguments::{minutes, parse_time, phone_arg, text, uuid_arg};
use crate::dispatch::{say, Answer, Refusal};
use crate::speech::{machine, spoken};
use crate::CallContext;
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use voxanne_db::appointments::{Appointment, SlotRequest};
use voxanne_db::call_events::CallEvent;
use voxanne_db::scheduling::Bookable;
use voxanne_db::TenantTx;
use voxanne_domain::availability::Span;
use voxanne_domain::booking::{self, DEFAULT_RESOURCE, MAX_NOTES_CHARS};
use voxanne_domain::{AppointmentId, CallDirection, CallId, CallStatus, HoldId};

/// The resource the agent books.
const RESOURCE: &str = DEFAULT_RESOURCE;
/// How long the agent's hold keeps a slot while the caller makes up their mind.
const HOLD_SECONDS: u32 = 300;
/// Free times read out per availability answer.
const SLOTS_PER_ANSWER: usize = 6;
/// How far ahead availability looks when no date is given.
const LOOKAHEAD_DAYS: i64 = 14;

/// The clinic's time zone, in which times are read and said.
pub(crate) async fn clinic_zone(tx: &mut TenantTx) -> Result<Tz, Refusal> {
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
    let other = call
        .caller
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |c| c.as_str().to_owned());
    let clinic = call.clinic_number.as_str().to_owned();
    let (from, to) = match call.direction {
        CallDirection::Outbound => (clinic, other),
        CallDirection::Inbound => (other, clinic),
    };
    Ok(tx
        .apply_call_event(&CallEvent {
            provider: call.provider,
            provider_call_id: call.provider_call_id.chars().take(200).collect(),
            direction: call.direction,
            status: CallStatus::InProgress,
            is_final_report: false,
            from_number: from,
            to_number: to,
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

/// Refuses a slot of `resource` the agent may not offer a caller (the booking rule: not
/// started, inside the opening hours; and not on a closure), by the database's clock.
async fn check_offerable(
    tx: &mut TenantTx,
    resource: &str,
    span: Span,
    tz: Tz,
) -> Result<(), Refusal> {
    let schedule = tx.schedule(resource, span).await?;
    booking::offerable(span, schedule.now, schedule.opening_hours.as_ref(), tz)?;
    if schedule.busy.iter().any(|b| b.overlaps(&span)) {
        // Taken, closed that day, or busy in the clinic's calendar: said as the database's
        // own refusal of a taken slot is.
        return Err(voxanne_db::appointments::BookingError::SlotTaken.into());
    }
    Ok(())
}

/// What the caller wants to book: whose times, and how long.
struct Wanted {
    /// The resources to look at, with the practitioner each one is.
    resources: Vec<(String, Option<Bookable>)>,
    length: Duration,
    /// Kept free after each appointment of the service.
    buffer: Duration,
    /// The service's name, when one was asked for.
    service: Option<String>,
    /// Its id: what the hold and the appointment are booked as.
    service_id: Option<voxanne_domain::ServiceId>,
}

/// A practitioner of the clinic named by `asked` (their name or resource, any case).
async fn find_practitioner(tx: &mut TenantTx, asked: &str) -> Result<Bookable, Refusal> {
    let all = tx.bookables(None, None).await?;
    if let Some(found) = all
        .iter()
        .find(|b| b.name.eq_ignore_ascii_case(asked) || b.resource.eq_ignore_ascii_case(asked))
    {
        return Ok(found.clone());
    }
    let names: Vec<&str> = all.iter().map(|b| b.name.as_str()).collect();
    say(format!(
        "There is no practitioner called {asked} here. The practitioners are: {}.",
        names.join(", ")
    ))
}

/// Reads `service`, `practitioner` and `duration_minutes`: the times of every practitioner
/// who gives the service (or the one named), of its length; without a service, the named
/// practitioner's or the clinic's default diary, of `duration_minutes`.
async fn wanted(tx: &mut TenantTx, args: &Value) -> Result<Wanted, Refusal> {
    let practitioner = match text(args, "practitioner") {
        Some(asked) => Some(find_practitioner(tx, asked).await?),
        None => None,
    };
    let Some(asked) = text(args, "service") else {
        let length = minutes(args)?;
        let resources = match practitioner {
            Some(p) => vec![(p.resource.clone(), Some(p))],
            None => vec![(RESOURCE.to_owned(), None)],
        };
        return Ok(Wanted {
            resources,
            length,
            buffer: Duration::zero(),
            service: None,
            service_id: None,
        });
    };
    let services = tx.active_services().await?;
    let Some(service) = services.iter().find(|s| s.name.eq_ignore_ascii_case(asked)) else {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        return say(if names.is_empty() {
            format!("The clinic has no list of services; book {asked} without one.")
        } else {
            format!(
                "The clinic does not offer {asked}. It offers: {}.",
                names.join(", ")
            )
        });
    };
    let givers = tx
        .bookables(
            Some(service.id),
            practitioner.as_ref().map(|p| p.practitioner_id),
        )
        .await?;
    if givers.is_empty() {
        return say(match &practitioner {
            Some(p) => format!("{} does not do {}.", p.name, service.name),
            None => format!("Nobody does {} at the moment.", service.name),
        });
    }
    Ok(Wanted {
        resources: givers
            .into_iter()
            .map(|b| (b.resource.clone(), Some(b)))
            .collect(),
        length: Duration::minutes(i64::from(service.duration_minutes)),
        buffer: Duration::minutes(i64::from(service.buffer_minutes)),
        service: Some(service.name.clone()),
        service_id: Some(service.id),
    })
}

pub(crate) async fn check_availability(tx: &mut TenantTx, args: &Value) -> Answer {
    let wanted = wanted(tx, args).await?;
    let length = wanted.length;
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
    let offers = tx
        .offers(&wanted.resources, window, length, wanted.buffer)
        .await?;
    if !offers.stale_calendars.is_empty() {
        tracing::warn!(org_id = %tx.org(), calendars = ?offers.stale_calendars,
            "the agent offered times from calendar busy times that are not current");
    }
    let what = match &wanted.service {
        Some(service) => format!("{service} ({} minutes)", length.num_minutes()),
        None => format!("{}-minute", length.num_minutes()),
    };
    let when = day.map_or_else(
        || "in the next two weeks".to_owned(),
        |d| format!("on {}", d.format("%A %-d %B")),
    );
    if offers.offers.is_empty() {
        return Ok(format!("No free {what} times {when}."));
    }
    let list: Vec<String> = offers
        .offers
        .iter()
        .take(SLOTS_PER_ANSWER)
        .map(|o| match &o.practitioner {
            Some(p) if wanted.resources.len() > 1 || wanted.service.is_some() => format!(
                "{} with {} (starts_at {}, practitioner {})",
                spoken(o.span.start, tz),
                p.name,
                machine(o.span.start, tz),
                p.resource
            ),
            _ => format!(
                "{} (starts_at {})",
                spoken(o.span.start, tz),
                machine(o.span.start, tz)
            ),
        })
        .collect();
    Ok(format!("Free {what} times {when}: {}.", list.join("; ")))
}

pub(crate) async fn hold_slot(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let Some(starts_at) = text(args, "starts_at") else {
        return say("Which time? Give starts_at from check_availability.");
    };
    let wanted = wanted(tx, args).await?;
    let tz = clinic_zone(tx).await?;
    let start = parse_time(starts_at, tz)?;
    // The first of the practitioners asked for who is free then.
    let mut chosen = None;
    let mut refusal = None;
    for (resource, practitioner) in &wanted.resources {
        let slot = booking::requested_slot(Some(resource), start, start + wanted.length)?;
        let kept = Span {
            start: slot.span.start,
            end: slot.span.end + wanted.buffer,
        };
        match check_offerable(tx, resource, kept, tz).await {
            Ok(()) => {
                chosen = Some((slot, practitioner.clone()));
                break;
            }
            Err(e) => refusal = Some(e),
        }
    }
    let Some((slot, practitioner)) = chosen else {
        return Err(refusal.unwrap_or_else(|| Refusal::Say("That time is not free.".into())));
    };
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
    let slot = SlotRequest::new(contact.as_ref().map(|c| c.id), Some(call_id), slot)
        .for_service(wanted.service_id);
    let hold = tx.insert_hold(&slot, HOLD_SECONDS).await?;
    let with = practitioner
        .map(|p| format!(" with {}", p.name))
        .unwrap_or_default();
    Ok(format!(
        "I've held {}{with} for five minutes. Once the caller agrees, book it with confirm_booking, hold_id {}.",
        spoken(hold.starts_at, tz),
        hold.id
    ))
}

pub(crate) async fn confirm_booking(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let Some(hold_id): Option<HoldId> = uuid_arg(args, "hold_id")? else {
        return say("Which hold? Give the hold_id from hold_slot.");
    };
    let notes = text(args, "notes").map(|n| n.chars().take(MAX_NOTES_CHARS).collect::<String>());
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

pub(crate) async fn cancel_appointment(
    tx: &mut TenantTx,
    call: &CallContext,
    args: &Value,
) -> Answer {
    let appointment = callers_appointment(tx, call, args).await?;
    let tz = clinic_zone(tx).await?;
    let cancelled = tx.cancel_appointment(appointment.id).await?;
    Ok(format!(
        "Cancelled the appointment on {}.",
        spoken(cancelled.starts_at, tz)
    ))
}

pub(crate) async fn reschedule_appointment(
    tx: &mut TenantTx,
    call: &CallContext,
    args: &Value,
) -> Answer {
    let Some(starts_at) = text(args, "starts_at") else {
        return say("To which time? Give starts_at from check_availability.");
    };
    let appointment = callers_appointment(tx, call, args).await?;
    let tz = clinic_zone(tx).await?;
    let start = parse_time(starts_at, tz)?;
    let span = booking::span(start, start + (appointment.ends_at - appointment.starts_at))?;
    let schedule = tx.schedule(&appointment.resource, span).await?;
    booking::offerable(span, schedule.now, schedule.opening_hours.as_ref(), tz)?;
    // Its own current time is not a collision.
    let own = Span {
        start: appointment.starts_at,
        end: appointment.ends_at,
    };
    if schedule.busy.iter().any(|b| *b != own && b.overlaps(&span)) {
        return Err(voxanne_db::appointments::BookingError::SlotTaken.into());
    }
    let moved = tx
        .reschedule_appointment(appointment.id, Some(span.start), Some(span.end), None)
        .await?;
    Ok(format!(
        "Moved the appointment from {} to {}.",
        spoken(appointment.starts_at, tz),
        spoken(moved.starts_at, tz)
    ))
}

/// A message or callback request for the clinic's inbox, linked to this call.
pub(crate) async fn take_message(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let Some(message) = text(args, "message") else {
        return say("What is the message for the clinic?");
    };
    let callback = args
        .get("callback")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let phone = match text(args, "phone") {
        Some(_) => Some(phone_arg(args, call)?),
        None => call.caller.clone(),
    };
    if callback && phone.is_none() {
        return say("Which number should the clinic call back?");
    }
    let call_id = call_row(tx, call).await?;
    tx.take_message(
        Some(call_id),
        phone.as_ref().map_or("unknown", |p| p.as_str()),
        Some(call.clinic_number.as_str()),
        text(args, "name"),
        message,
        callback,
    )
    .await?;
    Ok(if callback {
        format!(
            "Noted: the clinic will call back on {}.",
            phone.as_ref().map_or("unknown", |p| p.as_str())
        )
    } else {
        "Noted: the clinic's staff will read the message.".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_hold_is_one_the_booking_rule_allows() {
        assert_eq!(booking::hold_seconds(Some(HOLD_SECONDS)), Ok(HOLD_SECONDS));
        assert!(booking::resource(Some(RESOURCE)).is_ok());
    }
}
