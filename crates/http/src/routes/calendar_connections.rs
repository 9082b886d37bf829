//! Calendar connections. Tokens go in (encrypted before they reach SQL) and never come out:
//! responses say whether a token is stored, not what it is. Admins link and unlink; staff
//! may look.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::pagination::{Cursor, Page, PageParams};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::calendar_connections::{
    CalendarConnection as CalendarConnectionRow, NewCalendarConnection, UNIQUE_ACCOUNT,
};
use voxanne_db::DbError;
use voxanne_domain::{CalendarConnectionStatus, CalendarProvider};

/// A linked calendar as the API shows it (the row is the database's).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CalendarConnection {
    pub id: voxanne_domain::CalendarConnectionId,
    pub provider: CalendarProvider,
    pub account_email: String,
    pub has_access_token: bool,
    pub has_refresh_token: bool,
    pub token_expires_at: Option<DateTime<Utc>>,
    /// `broken` when the provider refused the grant (revoked, expired): nothing is read from
    /// or written to it until the account is linked again.
    pub status: CalendarConnectionStatus,
    pub broken_reason: Option<String>,
    /// The appointments' resource whose diary this calendar is ("default" unless mapped).
    pub resource: String,
    /// Which of the account's calendars ("primary": its default one).
    pub calendar_id: String,
    /// When its busy times were last read.
    pub busy_synced_at: Option<DateTime<Utc>>,
    /// Why the last sync failed, until one succeeds.
    pub last_sync_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<CalendarConnectionRow> for CalendarConnection {
    fn from(row: CalendarConnectionRow) -> Self {
        Self {
            id: row.id,
            provider: row.provider,
            account_email: row.account_email,
            has_access_token: row.has_access_token,
            has_refresh_token: row.has_refresh_token,
            token_expires_at: row.token_expires_at,
            status: row.status,
            broken_reason: row.broken_reason,
            resource: row.resource,
            calendar_id: row.calendar_id,
            busy_synced_at: row.busy_synced_at,
            last_sync_error: row.last_sync_error,
            created_at: row.created_at,
        }
    }
}

const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Links a calendar account. The tokens are write-only.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "provider": "google",
    "account_email": "frontdesk@clinic.example",
    "access_token": "ya29.a0-example-access-token",
    "refresh_token": "1//0g-example-refresh-token",
    "token_expires_at": "2030-01-01T10:00:00Z"
}))]
pub struct LinkCalendar {
    provider: CalendarProvider,
    account_email: String,
    /// Write-only: stored encrypted, never returned.
    #[schema(value_type = String, write_only)]
    access_token: SecretString,
    /// Write-only: stored encrypted, never returned.
    #[schema(value_type = Option<String>, write_only)]
    refresh_token: Option<SecretString>,
    token_expires_at: Option<DateTime<Utc>>,
}

fn token(field: &str, value: SecretString) -> Result<SecretString, ApiError> {
    let text = value.expose_secret();
    if text.trim().is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if text.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::validation(
            field,
            format!("must be at most {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    Ok(value)
}

pub(crate) fn email(text: &str) -> Result<String, ApiError> {
    let email = text.trim().to_lowercase();
    let valid = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.contains('@')
        });
    if valid {
        Ok(email)
    } else {
        Err(ApiError::validation(
            "account_email",
            "must be an email address, e.g. frontdesk@clinic.example",
        ))
    }
}

impl LinkCalendar {
    fn parse(self) -> Result<NewCalendarConnection, ApiError> {
        Ok(NewCalendarConnection {
            provider: self.provider,
            account_email: email(&self.account_email)?,
            access_token: token("access_token", self.access_token)?,
            refresh_token: self
                .refresh_token
                .map(|t| token("refresh_token", t))
                .transpose()?,
            token_expires_at: self.token_expires_at,
        })
    }
}

/// The clinic's linked calendars, newest first.
#[utoipa::path(get, path = "/calendar-connections", tag = "calendar", params(PageParams), responses((status = 200, body = Page<CalendarConnection>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(params): AppQuery<PageParams>,
) -> Result<Json<Page<CalendarConnection>>, ApiError> {
    let (after, limit) = params.parse()?;
    let mut rows = tx
        .list_calendar_connections(after.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |c| Cursor {
            at: c.created_at,
            id: c.id.as_uuid(),
        })
        .map(CalendarConnection::from),
    ))
}

/// Links a calendar (admins). One link per provider and account.
#[utoipa::path(post, path = "/calendar-connections", tag = "calendar", request_body = LinkCalendar, responses((status = 201, body = CalendarConnection), (status = 409, description = "this account is already linked: `calendar_already_linked`")))]
pub async fn link(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<LinkCalendar>,
) -> Result<(StatusCode, Json<CalendarConnection>), ApiError> {
    ApiError::require_admin(tx.membership(), "staff cannot link or unlink calendars")?;
    let new = body.parse()?;
    let created = match tx.insert_calendar_connection(&state.keyring, &new).await {
        Err(DbError::Constraint { constraint }) if constraint == UNIQUE_ACCOUNT => {
            return Err(ApiError::Conflict {
                code: "calendar_already_linked",
                message: format!(
                    "{} account {} is already linked",
                    new.provider, new.account_email
                ),
            })
        }
        other => other?,
    };
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// One linked calendar.
#[utoipa::path(get, path = "/calendar-connections/{id}", tag = "calendar", params(("id" = Uuid, Path, description = "the connection's id")), responses((status = 200, body = CalendarConnection)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CalendarConnectionId>,
) -> Result<Json<CalendarConnection>, ApiError> {
    let row = tx.get_calendar_connection(id).await?.ok_or_else(|| {
        ApiError::missing(tx.membership(), "calendar_connections", "id", id.as_uuid())
    })?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// Unlinks a calendar (admins): its tokens, busy times and pending writes are deleted with it.
/// Then, best-effort, its push channel or subscription is stopped and the token revoked at
/// the provider where it has a revocation endpoint (Google's; Microsoft has none for one
/// token): a failure there is logged, the link is gone either way.
#[utoipa::path(delete, path = "/calendar-connections/{id}", tag = "calendar", params(("id" = Uuid, Path, description = "the connection's id")), responses((status = 204, description = "unlinked")))]
pub async fn unlink(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CalendarConnectionId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), "staff cannot link or unlink calendars")?;
    // A token that no longer opens (its key was dropped) cannot be used to revoke, but the
    // link is still removed.
    let link = match tx.calendar_link(&state.keyring, id).await {
        Ok(link) => link,
        Err(e) => {
            tracing::warn!(error = %e, "a calendar token to revoke does not open");
            None
        }
    };
    if !tx.delete_calendar_connection(id).await? {
        return Err(ApiError::missing(
            tx.membership(),
            "calendar_connections",
            "id",
            id.as_uuid(),
        ));
    }
    let org = tx.org();
    tx.commit().await?;
    let Some(link) = link else {
        return Ok(StatusCode::NO_CONTENT);
    };
    let provider = link.provider;
    // Its push notifications stop first (the access token is still good), then the grant.
    if let (Some(watch_id), Some(expires_at), Some(access)) = (
        link.watch.id.clone(),
        link.watch.expires_at,
        link.tokens.access_token.as_ref(),
    ) {
        let cal = voxanne_calendar::CalendarRef {
            provider,
            calendar_id: &link.calendar_id,
            account_email: &link.account_email,
        };
        let watch = voxanne_calendar::Watch {
            id: watch_id,
            resource_id: link.watch.resource_id.clone(),
            expires_at,
        };
        if let Err(e) = state.calendar.stop_watch(&cal, access, &watch).await {
            tracing::info!(org_id = %org, %provider, error = %e,
                "stopping an unlinked calendar's notifications failed; they end by themselves");
        }
    }
    let token = link.tokens.refresh_token.or(link.tokens.access_token);
    if let Some(token) = token {
        if let Err(e) = state.calendar.revoke(provider, &token).await {
            tracing::warn!(org_id = %org, %provider, error = %e, "revoking an unlinked calendar's token failed");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Which resource's diary a calendar is, and which of the account's calendars.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"resource": "dr-patel", "calendar_id": "primary"}))]
pub struct MapCalendar {
    /// The appointments' resource (1 to 100 characters): its appointments are written to
    /// this calendar, and this calendar's busy times make it busy.
    resource: Option<String>,
    /// The provider's id of one of the account's calendars, or "primary".
    calendar_id: Option<String>,
}

/// The longest calendar id, in characters (Google's are email-like addresses).
const CALENDAR_ID_CHARS: std::ops::RangeInclusive<usize> = 1..=1024;

/// Maps a linked calendar to a resource and/or one of its account's calendars (admins).
/// Its busy times are read again at once; moving it to another resource moves the events.
#[utoipa::path(patch, path = "/calendar-connections/{id}", tag = "calendar", params(("id" = Uuid, Path, description = "the connection's id")), request_body = MapCalendar, responses((status = 200, body = CalendarConnection)))]
pub async fn map(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<voxanne_domain::CalendarConnectionId>,
    AppJson(body): AppJson<MapCalendar>,
) -> Result<Json<CalendarConnection>, ApiError> {
    ApiError::require_admin(tx.membership(), "staff cannot map calendars")?;
    let resource = body
        .resource
        .as_deref()
        .map(|r| {
            voxanne_domain::booking::resource(Some(r))
                .map_err(|e| ApiError::validation("resource", e.to_string()))
        })
        .transpose()?;
    let calendar_id = body
        .calendar_id
        .as_deref()
        .map(str::trim)
        .map(|c| {
            if CALENDAR_ID_CHARS.contains(&c.chars().count()) && !c.chars().any(char::is_control) {
                Ok(c)
            } else {
                Err(ApiError::validation(
                    "calendar_id",
                    "must be 1 to 1024 characters, without control characters",
                ))
            }
        })
        .transpose()?;
    if !tx
        .map_calendar_connection(id, resource, calendar_id)
        .await?
    {
        return Err(ApiError::missing(
            tx.membership(),
            "calendar_connections",
            "id",
            id.as_uuid(),
        ));
    }
    let row = tx
        .get_calendar_connection(id)
        .await?
        .ok_or_else(|| ApiError::internal("a connection changed and vanished"))?;
    tx.commit().await?;
    Ok(Json(row.into()))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, link))
        .routes(routes!(get, map, unlink))
}
