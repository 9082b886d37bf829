//! Calls in progress, live: `GET /api/v1/live` is a server-sent event stream of the active
//! clinic's calls in progress with their transcripts as the voice platform streams them.
//!
//! The stream carries nothing but what a tenant transaction of the clinic reads: a webhook
//! that changes a call only wakes the clinic's streams (the wake-up names the clinic, no
//! data), and each stream then reads its clinic's calls again in a transaction of its own, with
//! the membership checked again. A member removed, or a clinic suspended, ends the stream at the
//! next read. Streams read at least every few seconds (a webhook handled by another server
//! process wakes nobody here), and end after a while; browsers reconnect by themselves.

use crate::error::ApiError;
use crate::extract::Tenant;
use crate::AppState;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use futures_util::stream::Stream;
use serde::Serialize;
use std::convert::Infallible;
use std::time::Duration;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::live::LiveCall as LiveCallRow;
use voxanne_domain::{CallDirection, CallId, CallStatus, OrgId, UserId};

/// Wakes the streams of a clinic when one of its calls changes.
#[derive(Debug)]
pub struct LiveHub {
    wake: tokio::sync::broadcast::Sender<OrgId>,
}

impl Default for LiveHub {
    fn default() -> Self {
        Self {
            wake: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl LiveHub {
    /// Something of `org`'s calls changed.
    pub fn changed(&self, org: OrgId) {
        let _ = self.wake.send(org);
    }
}

/// How often a stream reads again without a wake-up, and how long it lasts.
const POLL: Duration = Duration::from_secs(3);
const LIFETIME: Duration = Duration::from_secs(15 * 60);

/// A line of a live transcript.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TranscriptLine {
    pub id: i64,
    /// `user` (the caller) or `assistant` (the agent).
    pub role: String,
    pub text: String,
    pub created_at: DateTime<Utc>,
}

/// A call in progress and its transcript so far (its last 200 lines).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiveCall {
    pub id: CallId,
    pub direction: CallDirection,
    pub status: CallStatus,
    pub from_number: String,
    pub to_number: String,
    pub started_at: DateTime<Utc>,
    pub lines: Vec<TranscriptLine>,
}

/// The `calls` event: every call in progress (at most 20, newest first).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiveCalls {
    pub calls: Vec<LiveCall>,
}

fn view(rows: Vec<LiveCallRow>) -> LiveCalls {
    LiveCalls {
        calls: rows
            .into_iter()
            .map(|c| LiveCall {
                id: c.id,
                direction: c.direction,
                status: c.status,
                from_number: c.from_number,
                to_number: c.to_number,
                started_at: c.started_at,
                lines: c
                    .lines
                    .into_iter()
                    .map(|l| TranscriptLine {
                        id: l.id,
                        role: l.role,
                        text: l.text,
                        created_at: l.created_at,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// The clinic's calls in progress as they change: `text/event-stream` of `calls` events (a
/// [`LiveCalls`] each time something changed, the first at once), and a final `end` event
/// when the stream's membership no longer holds or its time is up (reconnect).
#[utoipa::path(get, path = "/live", tag = "calls",
    responses((status = 200, description = "server-sent events: `calls` (data: LiveCalls), `end`", content_type = "text/event-stream", body = LiveCalls)))]
pub async fn live(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
) -> Result<impl IntoResponse, ApiError> {
    let first = view(tx.live_calls().await?);
    let m = *tx.membership();
    let origin = tx.origin();
    tx.commit().await?;
    let stream = stream(state, m.org, m.user, origin, first);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Watch {
    state: AppState,
    org: OrgId,
    user: UserId,
    /// The request's, for the access records of the polls.
    origin: voxanne_db::access::Origin,
    wake: tokio::sync::broadcast::Receiver<OrgId>,
    last: Option<LiveCalls>,
    first: Option<LiveCalls>,
    until: tokio::time::Instant,
    done: bool,
}

fn event(calls: &LiveCalls) -> Event {
    Event::default()
        .event("calls")
        .json_data(calls)
        .unwrap_or_else(|_| Event::default().event("calls").data("{\"calls\":[]}"))
}

fn stream(
    state: AppState,
    org: OrgId,
    user: UserId,
    origin: voxanne_db::access::Origin,
    first: LiveCalls,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let watch = Watch {
        wake: state.live.wake.subscribe(),
        state,
        org,
        user,
        origin,
        last: None,
        first: Some(first),
        until: tokio::time::Instant::now() + LIFETIME,
        done: false,
    };
    futures_util::stream::unfold(watch, |mut w| async move {
        if w.done {
            return None;
        }
        if let Some(first) = w.first.take() {
            let e = event(&first);
            w.last = Some(first);
            return Some((Ok(e), w));
        }
        loop {
            // A wake-up for this clinic, or the poll interval, whichever comes first.
            let deadline = tokio::time::Instant::now() + POLL;
            loop {
                match tokio::time::timeout_at(deadline, w.wake.recv()).await {
                    Ok(Ok(org)) if org != w.org => continue,
                    _ => break,
                }
            }
            if tokio::time::Instant::now() >= w.until {
                w.done = true;
                return Some((Ok(Event::default().event("end").data("reconnect")), w));
            }
            let read = async {
                let mut tx = w.state.db.tenant(w.org, w.user).await.ok()?;
                tx.adopt_origin(&w.origin);
                let calls = tx.live_calls().await.ok()?;
                tx.commit().await.ok()?;
                Some(view(calls))
            }
            .await;
            let Some(calls) = read else {
                // No longer a member, the clinic suspended, or the database away: the
                // stream ends; a reconnect is checked like any request.
                w.done = true;
                return Some((Ok(Event::default().event("end").data("gone")), w));
            };
            if w.last.as_ref() != Some(&calls) {
                let e = event(&calls);
                w.last = Some(calls);
                return Some((Ok(e), w));
            }
        }
    })
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live))
}
