//! Microsoft Graph v1.0 calendars (`{graph}/v1.0/...`).
//!
//! Times are sent and asked for in UTC (`Prefer: outlook.timezone="UTC"`), so no Windows
//! time zone name is ever needed. A create carries the appointment as `transactionId`, Graph's
//! documented guard against a retried POST making a second event.

use crate::error::CalendarError;
use crate::request::{endpoint, graph_time, malformed, send};
use crate::{Busy, CalendarRef, EventWrite, RemoteEvent, Watch};
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Client, RequestBuilder};
use secrecy::SecretString;
use serde_json::{json, Value};
use url::Url;
use voxanne_domain::CalendarProvider;

const P: CalendarProvider = CalendarProvider::Microsoft;
const PREFER_UTC: &str = "outlook.timezone=\"UTC\"";

fn url(api: &Url, segments: &[&str]) -> Result<Url, CalendarError> {
    let mut all = vec!["v1.0"];
    all.extend_from_slice(segments);
    endpoint(P, api, &all)
}

/// `me/calendar` (the default calendar) or `me/calendars/{id}`, then `rest`.
fn calendar(api: &Url, cal: &CalendarRef<'_>, rest: &str) -> Result<Url, CalendarError> {
    if cal.is_primary() {
        url(api, &["me", "calendar", rest])
    } else {
        url(api, &["me", "calendars", cal.calendar_id, rest])
    }
}

fn utc(request: RequestBuilder) -> RequestBuilder {
    request.header("Prefer", PREFER_UTC)
}

/// A `dateTimeTimeZone` in UTC.
fn at(time: DateTime<Utc>) -> Value {
    json!({
        "dateTime": time.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string(),
        "timeZone": "UTC",
    })
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
        "schedules": [cal.account_email],
        "startTime": at(from),
        "endTime": at(to),
        "availabilityViewInterval": 15,
    });
    let answer = send(
        P,
        utc(http.post(calendar(api, cal, "getSchedule")?)).json(&body),
        token,
    )
    .await?
    .json(P)?;
    let schedules = answer["value"]
        .as_array()
        .ok_or_else(|| malformed(P, "value"))?;
    let schedule = schedules
        .iter()
        .find(|s| {
            s["scheduleId"]
                .as_str()
                .is_some_and(|id| id.eq_ignore_ascii_case(cal.account_email))
        })
        .or_else(|| (schedules.len() == 1).then(|| &schedules[0]))
        .ok_or_else(|| malformed(P, "the schedule asked about"))?;
    if let Some(error) = schedule.get("error").filter(|e| !e.is_null()) {
        return Err(CalendarError::Unavailable {
            provider: P,
            message: crate::error::truncate(&format!(
                "the schedule: {}: {}",
                error["responseCode"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or_default()
            )),
        });
    }
    schedule["scheduleItems"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        // Tentative, busy, oof, workingElsewhere, unknown: anything but free may be busy.
        .filter(|item| {
            !item["status"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case("free"))
        })
        .map(|item| {
            Ok(Busy {
                start: graph_time(P, &item["start"], "scheduleItem.start")?,
                end: graph_time(P, &item["end"], "scheduleItem.end")?,
            })
        })
        .collect()
}

fn resource(event: &EventWrite) -> Value {
    json!({
        "subject": event.summary,
        "body": {"contentType": "text", "content": event.description},
        "start": at(event.start),
        "end": at(event.end),
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
    let mut body = resource(event);
    let request = match &event.existing_event_id {
        Some(existing) => http.patch(url(api, &["me", "events", existing])?),
        None => {
            body["transactionId"] = json!(event.appointment_id.to_string());
            http.post(calendar(api, cal, "events")?)
        }
    };
    let answer = send(P, utc(request).json(&body), token).await?;
    id_of(&answer.json(P)?)
}

pub(crate) async fn delete_event(
    http: &Client,
    api: &Url,
    token: &SecretString,
    event_id: &str,
) -> Result<(), CalendarError> {
    send(
        P,
        http.delete(url(api, &["me", "events", event_id])?),
        token,
    )
    .await
    .map(drop)
}

pub(crate) async fn get_event(
    http: &Client,
    api: &Url,
    token: &SecretString,
    event_id: &str,
) -> Result<RemoteEvent, CalendarError> {
    let mut endpoint = url(api, &["me", "events", event_id])?;
    endpoint
        .query_pairs_mut()
        .append_pair("$select", "id,start,end,isCancelled");
    let event = send(P, utc(http.get(endpoint)), token).await?.json(P)?;
    Ok(RemoteEvent {
        id: id_of(&event)?,
        start: graph_time(P, &event["start"], "start")?,
        end: graph_time(P, &event["end"], "end")?,
        cancelled: event["isCancelled"].as_bool().unwrap_or(false),
    })
}

pub(crate) async fn watch(
    http: &Client,
    api: &Url,
    cal: &CalendarRef<'_>,
    token: &SecretString,
    address: &Url,
    client_state: &str,
    expires_at: DateTime<Utc>,
) -> Result<Watch, CalendarError> {
    let resource = if cal.is_primary() {
        "me/events".to_owned()
    } else {
        format!("me/calendars/{}/events", cal.calendar_id)
    };
    let body = json!({
        "changeType": "created,updated,deleted",
        "notificationUrl": address.as_str(),
        "resource": resource,
        "expirationDateTime": expires_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "clientState": client_state,
    });
    let subscription = send(
        P,
        http.post(url(api, &["subscriptions"])?).json(&body),
        token,
    )
    .await?
    .json(P)?;
    Ok(Watch {
        id: id_of(&subscription)?,
        resource_id: None,
        expires_at: crate::request::rfc3339(
            P,
            &subscription["expirationDateTime"],
            "the subscription's expirationDateTime",
        )?,
    })
}

pub(crate) async fn stop_watch(
    http: &Client,
    api: &Url,
    token: &SecretString,
    watch: &Watch,
) -> Result<(), CalendarError> {
    send(
        P,
        http.delete(url(api, &["subscriptions", &watch.id])?),
        token,
    )
    .await
    .map(drop)
}
