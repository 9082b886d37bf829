//! The calendar providers' HTTP clients, for the HTTP server (linking a calendar) and the
//! background jobs (refreshing tokens, reading busy times, writing appointments as events):
//!
//! - `oauth.rs`: OAuth 2.0 with Google and Microsoft (consent URL, code exchange, refresh,
//!   revocation) and the providers' settings;
//! - `google.rs`: Google Calendar API v3 (`freeBusy`, `events`, `events.watch`,
//!   `channels.stop`);
//! - `microsoft.rs`: Microsoft Graph v1.0 calendars (`getSchedule`, `events`,
//!   `subscriptions`);
//! - `error.rs`: what a provider's answer comes to ([`CalendarError`]).
//!
//! Every call goes through [`CalendarOAuth`]'s one `reqwest` client (timeouts, no
//! redirects), with the access token it is given: refreshing is the caller's decision, on
//! [`CalendarError::Unauthorized`]. Tokens never reach an error message.

mod error;
mod google;
mod microsoft;
pub mod oauth;
mod request;

pub use error::CalendarError;
pub use oauth::{CalendarOAuth, ExchangeError, Linked, ProviderApp};

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::time::Duration;
use url::Url;
use uuid::Uuid;
pub use voxanne_domain::CalendarProvider;

/// The calendar id that means the account's default calendar: Google's `primary`, Graph's
/// `/me/calendar`.
pub const PRIMARY: &str = "primary";

/// Which calendar of a linked account.
#[derive(Debug, Clone, Copy)]
pub struct CalendarRef<'a> {
    /// The account's provider.
    pub provider: CalendarProvider,
    /// [`PRIMARY`] for the account's default calendar, else the provider's calendar id.
    pub calendar_id: &'a str,
    /// The account's address: the schedule Graph's `getSchedule` is asked about.
    pub account_email: &'a str,
}

impl CalendarRef<'_> {
    fn is_primary(&self) -> bool {
        self.calendar_id == PRIMARY
    }
}

/// What a refresh gave.
#[derive(Debug)]
pub struct Tokens {
    /// The new access token.
    pub access_token: SecretString,
    /// `Some` when the provider rotated the refresh token (Microsoft): keep this one.
    pub refresh_token: Option<SecretString>,
    /// How long the access token lives.
    pub expires_in: Option<Duration>,
}

/// A time the calendar is busy, within the window asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Busy {
    /// Start (inclusive).
    pub start: DateTime<Utc>,
    /// End (exclusive).
    pub end: DateTime<Utc>,
}

/// An appointment as an event in the clinic's calendar.
#[derive(Debug, Clone)]
pub struct EventWrite {
    /// The appointment: the event's idempotency key (Google's event id, Graph's
    /// `transactionId`).
    pub appointment_id: Uuid,
    /// The provider's id of the event written before, if any.
    pub existing_event_id: Option<String>,
    /// The event's title.
    pub summary: String,
    /// The event's text.
    pub description: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// The clinic's IANA time zone (Google shows the event in it).
    pub time_zone: String,
}

/// An event as the provider has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteEvent {
    /// The provider's id.
    pub id: String,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Cancelled (Google keeps a deleted event as `status: cancelled`; Graph's `isCancelled`).
    pub cancelled: bool,
}

/// A push channel (Google) or subscription (Graph) on a calendar's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    /// Google: the channel id (ours); Graph: the subscription id (theirs).
    pub id: String,
    /// Google's `resourceId` of the watched calendar (needed to stop the channel).
    pub resource_id: Option<String>,
    /// When the provider ends it.
    pub expires_at: DateTime<Utc>,
}

impl CalendarOAuth {
    fn api(&self, provider: CalendarProvider) -> Result<&Url, CalendarError> {
        self.app(provider)
            .map(|a| &a.api_url)
            .ok_or(CalendarError::NotConfigured { provider })
    }

    /// The calendar's busy times from `from` to `to`, clipped to that window, in order.
    /// Graph: every status but `free` is busy (tentative, busy, oof, workingElsewhere), so a
    /// possibly busy time is never offered.
    pub async fn free_busy(
        &self,
        cal: &CalendarRef<'_>,
        access_token: &SecretString,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Busy>, CalendarError> {
        let api = self.api(cal.provider)?;
        let busy = match cal.provider {
            CalendarProvider::Google => {
                google::free_busy(&self.http, api, cal, access_token, from, to).await?
            }
            CalendarProvider::Microsoft => {
                microsoft::free_busy(&self.http, api, cal, access_token, from, to).await?
            }
        };
        let mut clipped: Vec<Busy> = busy
            .into_iter()
            .map(|b| Busy {
                start: b.start.max(from),
                end: b.end.min(to),
            })
            .filter(|b| b.start < b.end)
            .collect();
        clipped.sort();
        Ok(clipped)
    }

    /// Writes the appointment as an event and returns the provider's event id. Idempotent:
    /// called again (a retry after a lost answer, or a change) it leaves one event. With an
    /// `existing_event_id` the event is patched; [`CalendarError::NotFound`] then means it is
    /// gone, and the caller creates it again without one.
    pub async fn upsert_event(
        &self,
        cal: &CalendarRef<'_>,
        access_token: &SecretString,
        event: &EventWrite,
    ) -> Result<String, CalendarError> {
        let api = self.api(cal.provider)?;
        match cal.provider {
            CalendarProvider::Google => {
                google::upsert_event(&self.http, api, cal, access_token, event).await
            }
            CalendarProvider::Microsoft => {
                microsoft::upsert_event(&self.http, api, cal, access_token, event).await
            }
        }
    }

    /// Deletes the event. An event already gone (404, 410) is no error.
    pub async fn delete_event(
        &self,
        cal: &CalendarRef<'_>,
        access_token: &SecretString,
        event_id: &str,
    ) -> Result<(), CalendarError> {
        let api = self.api(cal.provider)?;
        let deleted = match cal.provider {
            CalendarProvider::Google => {
                google::delete_event(&self.http, api, cal, access_token, event_id).await
            }
            CalendarProvider::Microsoft => {
                microsoft::delete_event(&self.http, api, access_token, event_id).await
            }
        };
        match deleted {
            Err(CalendarError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// The event as the provider has it now; `None` when it is gone (404, 410).
    pub async fn get_event(
        &self,
        cal: &CalendarRef<'_>,
        access_token: &SecretString,
        event_id: &str,
    ) -> Result<Option<RemoteEvent>, CalendarError> {
        let api = self.api(cal.provider)?;
        let event = match cal.provider {
            CalendarProvider::Google => {
                google::get_event(&self.http, api, cal, access_token, event_id).await
            }
            CalendarProvider::Microsoft => {
                microsoft::get_event(&self.http, api, access_token, event_id).await
            }
        };
        match event {
            Err(CalendarError::NotFound { .. }) => Ok(None),
            other => other.map(Some),
        }
    }

    /// Asks the provider to notify `address` of changes to the calendar's events until
    /// `expires_at` (the provider may shorten it: the answer says). Google: a `web_hook`
    /// channel with id `channel_id` whose notifications carry `token` in
    /// `X-Goog-Channel-Token`; Graph: a subscription whose notifications carry `token` as
    /// `clientState` (Graph first checks `address` answers its validation request).
    #[allow(clippy::too_many_arguments)]
    pub async fn watch(
        &self,
        cal: &CalendarRef<'_>,
        access_token: &SecretString,
        address: &Url,
        channel_id: Uuid,
        token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Watch, CalendarError> {
        let api = self.api(cal.provider)?;
        match cal.provider {
            CalendarProvider::Google => {
                google::watch(
                    &self.http,
                    api,
                    cal,
                    access_token,
                    address,
                    channel_id,
                    token,
                    expires_at,
                )
                .await
            }
            CalendarProvider::Microsoft => {
                microsoft::watch(
                    &self.http,
                    api,
                    cal,
                    access_token,
                    address,
                    token,
                    expires_at,
                )
                .await
            }
        }
    }

    /// Ends a watch. One already ended (404) is no error.
    pub async fn stop_watch(
        &self,
        cal: &CalendarRef<'_>,
        access_token: &SecretString,
        watch: &Watch,
    ) -> Result<(), CalendarError> {
        let api = self.api(cal.provider)?;
        let stopped = match cal.provider {
            CalendarProvider::Google => {
                google::stop_watch(&self.http, api, access_token, watch).await
            }
            CalendarProvider::Microsoft => {
                microsoft::stop_watch(&self.http, api, access_token, watch).await
            }
        };
        match stopped {
            Err(CalendarError::NotFound { .. }) => Ok(()),
            other => other,
        }
    }
}
