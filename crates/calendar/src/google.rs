//! Google Calendar API v3 (`{api}/calendar/v3/...`).
//!
//! An appointment's event id is the appointment's uuid as 32 lowercase hex digits: Google lets
//! a client choose the id (`events.insert`'s `id`: base32hex, `a-v` and `0-9`, 5 to 1024
//! characters), so a retried insert is a 409 `duplicate`, never a second event.

use crate::error::CalendarError;
use crate::request::{endpoint, malformed, rfc3339, send};
use crate::{Busy, CalendarRef, EventWrite, RemoteEvent, Watch};
use chrono::{DateTime, NaiveDate, Utc};
use reqwest::Client;
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use uuid::Uuid;
use voxanne_domain::CalendarProvider;

const P: CalendarProvider = CalendarProvider::Google;
/// The private extended property naming the appointment an event is.
pub(crate) const APPOINTMENT_PROPERTY: &str = "voxanneAppointment";

/// The event id of an appointment.
pub(crate) fn event_id(appointment: Uuid) -> String {
    appointment.simple().to_string()
}

fn url(api: &Url, segments: &[&str]) -> Result<Url, CalendarError> {
    let mut all = vec!["calendar", "v3"];
    all.extend_from_slice(segments);
    endpoint(P, api, &all)
}

fn events(api: &Url, cal: &CalendarRef<'_>, id: Option<&str>) -> Result<Url, CalendarError> {
    match id {
        Some(id) => url(api, &["calendars", cal.calendar_id, "events", id]),
        None => url(api, &["calendars", cal.calendar_id, "events"]),
    }
}

pub(crate) async fn free_busy(
    http: &Client,
    api: &Url,
    cal: &CalendarRef<'_>,
    token: &SecretString,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<Busy>, CalendarError> {
    let body = json!({
        "timeMin": from.to_rfc3339(),
        "timeMax": to.to_rfc3339(),
        "items": [{"id": cal.calendar_id}],
    });
    let answer = send(P, http.post(url(api, &["freeBusy"])?).json(&body), token)
        .await?
        .json(P)?;
    let calendars = answer["calendars"]
        .as_object()
        .ok_or_else(|| malformed(P, "calendars"))?;
    // Keyed by the id asked for; with one calendar asked, its one entry.
    let calendar = calendars
        .get(cal.calendar_id)
        .or_else(|| {
            (calendars.len() == 1)
                .then(|| calendars.values().next())
                .flatten()
        })
        .ok_or_else(|| malformed(P, "the calendar asked about"))?;
    if let Some(errors) = calendar["errors"].as_array().filter(|e| !e.is_empty()) {
        let reasons: Vec<&str> = errors.iter().filter_map(|e| e["reason"].as_str()).collect();
        let message = format!("the calendar's free/busy: {}", reasons.join(","));
        return Err(if reasons.contains(&"notFound") {
            CalendarError::Rejected {
                provider: P,
                status: 404,
                message,
            }
        } else {
            CalendarError::Unavailable {
                provider: P,
                message,
            }
        });
    }
    calendar["busy"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|b| {
            Ok(Busy {
                start: rfc3339(P, &b["start"], "busy.start")?,
                end: rfc3339(P, &b["end"], "busy.end")?,
            })
        })
        .collect()
}

/// The event's resource as this server writes it (confirmed: an update restores an event
/// someone cancelled).
fn resource(event: &EventWrite) -> Value {
    json!({
        "summary": event.summary,
        "description": event.description,
        "start": {"dateTime": event.start.to_rfc3339(), "timeZone": event.time_zone},
        "end": {"dateTime": event.end.to_rfc3339(), "timeZone": event.time_zone},
        "status": "confirmed",
        "extendedProperties": {"private": {APPOINTMENT_PROPERTY: event.appointment_id.to_string()}},
    })
}

fn id_of(answer: &Value) -> Result<String, CalendarError> {
    answer["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| malformed(P, "the event's id"))
}

pub(crate) async fn upsert_event(
    http: &Client,
    api: &Url,
    cal: &CalendarRef<'_>,
    token: &SecretString,
    event: &EventWrite,
) -> Result<String, CalendarError> {
    let body = resource(event);
    if let Some(existing) = &event.existing_event_id {
        let answer = send(
            P,
            http.patch(events(api, cal, Some(existing))?).json(&body),
            token,
        )
        .await?;
        return id_of(&answer.json(P)?);
    }
    let id = event_id(event.appointment_id);
    let mut insert = body.clone();
    insert["id"] = json!(id);
    match send(P, http.post(events(api, cal, None)?).json(&insert), token).await {
        Ok(answer) => id_of(&answer.json(P)?),
        // Written before (an answer lost on the way, or an event since deleted, which Google
        // keeps as cancelled): update that one.
        Err(CalendarError::Rejected { status: 409, .. }) => {
            let answer = send(P, http.put(events(api, cal, Some(&id))?).json(&body), token).await?;
            id_of(&answer.json(P)?)
        }
        Err(e) => Err(e),
    }
}

pub(crate) async fn delete_event(
    http: &Client,
    api: &Url,
    cal: &CalendarRef<'_>,
    token: &SecretString,
    event_id: &str,
) -> Result<(), CalendarError> {
    send(P, http.delete(events(api, cal, Some(event_id))?), token)
        .await
        .map(drop)
}

fn event_time(value: &Value, what: &str) -> Result<DateTime<Utc>, CalendarError> {
    if value["dateTime"].is_string() {
        return rfc3339(P, &value["dateTime"], what);
    }
    // An all-day event: its date, from midnight UTC.
    value["date"]
        .as_str()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
        .ok_or_else(|| malformed(P, what))
}

pub(crate) async fn get_event(
    http: &Client,
    api: &Url,
    cal: &CalendarRef<'_>,
    token: &SecretString,
    event_id: &str,
) -> Result<RemoteEvent, CalendarError> {
    let event = send(P, http.get(events(api, cal, Some(event_id))?), token)
        .await?
        .json(P)?;
    Ok(RemoteEvent {
        id: id_of(&event)?,
        start: event_time(&event["start"], "start")?,
        end: event_time(&event["end"], "end")?,
        cancelled: event["status"].as_str() == Some("cancelled"),
    })
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn watch(
    http: &Client,
    api: &Url,
    cal: &CalendarRef<'_>,
    token: &SecretString,
    address: &Url,
    channel_id: Uuid,
    channel_token: &str,
    expires_at: DateTime<Utc>,
) -> Result<Watch, CalendarError> {
    let body = json!({
        "id": channel_id.to_string(),
        "type": "web_hook",
        "address": address.as_str(),
        "token": channel_token,
        "expiration": expires_at.timestamp_millis().to_string(),
    });
    let channel = send(
        P,
        http.post(url(
            api,
            &["calendars", cal.calendar_id, "events", "watch"],
        )?)
        .json(&body),
        token,
    )
    .await?
    .json(P)?;
    // `expiration` is milliseconds since the epoch, as a string (int64 in JSON).
    let expiration = match &channel["expiration"] {
        Value::String(s) => s.parse::<i64>().ok(),
        other => other.as_i64(),
    }
    .and_then(DateTime::from_timestamp_millis)
    .ok_or_else(|| malformed(P, "the channel's expiration"))?;
    Ok(Watch {
        id: id_of(&channel)?,
        resource_id: channel["resourceId"].as_str().map(str::to_owned),
        expires_at: expiration,
    })
}

pub(crate) async fn stop_watch(
    http: &Client,
    api: &Url,
    token: &SecretString,
    watch: &Watch,
) -> Result<(), CalendarError> {
    let body = json!({"id": watch.id, "resourceId": watch.resource_id});
    send(
        P,
        http.post(url(api, &["channels", "stop"])?).json(&body),
        token,
    )
    .await
    .map(drop)
}
