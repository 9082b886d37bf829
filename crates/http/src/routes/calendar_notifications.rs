//! Push notifications from the calendar providers: a linked calendar changed, so its sync is
//! due now (the sync job reads the busy times again and compares the upcoming events with
//! their appointments). They carry no JWT and no clinic: the watch id names the connection
//! and the secret given when the watch was started must come back with it
//! (`app.calendar_notified`, one statement). A notification never says what changed, and
//! nothing in it is trusted beyond "look again".
//!
//! - Google (`events.watch` channels): an empty POST whose headers are the message,
//!   `X-Goog-Channel-ID` (our channel id) and `X-Goog-Channel-Token` (our secret); the first
//!   one, `X-Goog-Resource-State: sync`, only says the channel works.
//! - Microsoft Graph (subscriptions): first the validation request, a POST with
//!   `?validationToken=…` to be echoed as `text/plain` within 10 seconds; then change
//!   notifications, `{"value": [{"subscriptionId", "clientState", …}]}`, answered 202.

use crate::error::ApiError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use voxanne_db::system::calendar_notified;
use voxanne_domain::CalendarProvider;

/// A Graph validation token longer than this is not one.
const MAX_VALIDATION_TOKEN: usize = 1024;
/// Notifications read from one Graph request, at most.
const MAX_NOTIFICATIONS: usize = 100;

/// The connection watched by `watch_id` is due for a sync, if `token` is its secret.
async fn notified(
    state: &AppState,
    provider: CalendarProvider,
    watch_id: &str,
    token: &str,
) -> Result<bool, ApiError> {
    if watch_id.is_empty() || watch_id.len() > 1024 || token.is_empty() || token.len() > 1024 {
        return Ok(false);
    }
    let hash = voxanne_db::calendar_sync::watch_token_hash(token);
    match calendar_notified(&state.db, provider, watch_id, &hash).await? {
        Some((org, connection)) => {
            tracing::debug!(org_id = %org, connection_id = %connection, %provider,
                "calendar change notification");
            Ok(true)
        }
        None => {
            tracing::warn!(%provider, "a calendar notification for an unknown watch or with \
                another secret was refused");
            Ok(false)
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .unwrap_or_default()
}

/// Google Calendar's push notification for a channel Voxanne started.
#[utoipa::path(post, path = "/webhooks/calendar/google", tag = "calendar",
    params(
        ("X-Goog-Channel-ID" = String, Header, description = "the channel's id, as Voxanne started it"),
        ("X-Goog-Channel-Token" = String, Header, description = "the channel's secret"),
        ("X-Goog-Resource-State" = Option<String>, Header, description = "`sync`, `exists` or `not_exists`"),
    ),
    responses(
        (status = 200, description = "taken: the calendar is synced again"),
        (status = 401, description = "an unknown channel, or not its secret: `invalid_signature`"),
    ))]
pub async fn google(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let channel = header_text(&headers, "x-goog-channel-id");
    let token = header_text(&headers, "x-goog-channel-token");
    if header_text(&headers, "x-goog-resource-state") == "sync" {
        // The channel's first message: it works; nothing changed.
        return Ok(StatusCode::OK);
    }
    if notified(&state, CalendarProvider::Google, channel, token).await? {
        Ok(StatusCode::OK)
    } else {
        Err(ApiError::InvalidSignature)
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GraphValidation {
    /// Graph's validation request: echoed back as text/plain.
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

/// Graph's change notifications (the fields Voxanne reads; the others are ignored).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"value": [{"subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
    "clientState": "the secret given when the subscription was created",
    "changeType": "updated", "resource": "Users/{user-id}/Events/{event-id}",
    "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95"}]}))]
pub struct GraphNotifications {
    #[serde(default)]
    value: Vec<GraphNotification>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GraphNotification {
    #[serde(default)]
    subscription_id: String,
    /// The secret given when the subscription was created.
    #[serde(default)]
    client_state: Option<String>,
}

/// Microsoft Graph's validation request and change notifications for a subscription
/// Voxanne created.
#[utoipa::path(post, path = "/webhooks/calendar/microsoft", tag = "calendar",
    params(GraphValidation),
    request_body(content = GraphNotifications, description = "Graph's change notifications (none with `validationToken`)", content_type = "application/json"),
    responses(
        (status = 200, description = "the validation token, echoed as text/plain"),
        (status = 202, description = "taken: the calendars notified are synced again"),
        (status = 400, description = "not a change notification: `invalid_notification`"),
        (status = 401, description = "no notification of a known subscription with its secret: `invalid_signature`"),
    ))]
pub async fn microsoft(
    State(state): State<AppState>,
    Query(validation): Query<GraphValidation>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if let Some(token) = validation.validation_token {
        if token.is_empty() || token.len() > MAX_VALIDATION_TOKEN {
            return Err(ApiError::BadRequest {
                code: "invalid_notification",
                message: "the validation token is empty or too long".to_owned(),
            });
        }
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            token,
        )
            .into_response());
    }
    let notifications: GraphNotifications =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest {
            code: "invalid_notification",
            message: format!("not a Graph change notification: {e}"),
        })?;
    let mut taken = 0usize;
    for n in notifications.value.iter().take(MAX_NOTIFICATIONS) {
        let secret = n.client_state.as_deref().unwrap_or_default();
        if notified(
            &state,
            CalendarProvider::Microsoft,
            &n.subscription_id,
            secret,
        )
        .await?
        {
            taken += 1;
        }
    }
    if taken == 0 {
        return Err(ApiError::InvalidSignature);
    }
    Ok(StatusCode::ACCEPTED.into_response())
}
