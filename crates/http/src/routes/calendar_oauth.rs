//! Connecting a calendar with OAuth 2.0 (authorization code + PKCE): an admin's
//! `POST /api/v1/calendar-connections/oauth/start` and the provider's redirect back to
//! `GET /oauth/callback` (the flow itself: `crate::calendar_oauth`).
//!
//! The callback carries no JWT. It is trusted only as far as it proves itself: a state this
//! server signed (else refused before any lookup), still unused (it is taken, deleted, in the
//! same statement that reads it), not expired, and finished in the browser that started it
//! (the `voxanne_oauth` cookie). The clinic and the admin are the state's, never the
//! request's. Every answer is a small HTML page for the browser: linked, or not linked and
//! why in words for a person; never a 500.

use crate::calendar_oauth::{
    browser_hash, clear_cookie, cookie_of, new_browser_secret, same_browser, set_cookie,
    ExchangeError, SignedState, STATE_TTL,
};
use crate::error::ApiError;
use crate::extract::{AppJson, Tenant};
use crate::security_log::Finding;
use crate::AppState;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::json;
use voxanne_db::calendar_connections::NewCalendarConnection;
use voxanne_db::calendar_oauth::{verifier_aad, NewOAuthState};
use voxanne_db::system::{take_calendar_oauth_state, DeniedKind};
use voxanne_domain::CalendarProvider;

const CALLBACK_ROUTE: &str = "GET /oauth/callback";

/// `oauth/start`, under `/api/v1` (the callback is at the root: [`callback`]).
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(start))
}

/// Starts connecting a calendar account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"provider": "google"}))]
pub struct StartOAuth {
    provider: CalendarProvider,
}

/// Where to send the admin's browser.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OAuthStarted {
    /// The provider's consent page; its redirect comes back to `/oauth/callback`.
    pub authorization_url: String,
    /// The flow must be finished by then.
    pub expires_at: DateTime<Utc>,
}

/// Starts linking a Google or Microsoft calendar (admins): answers the provider's consent URL
/// and sets the `voxanne_oauth` cookie (HttpOnly, SameSite=Lax, `Path=/oauth/callback`) that
/// the callback must come back with, in the same browser, within 10 minutes.
#[utoipa::path(post, path = "/calendar-connections/oauth/start", tag = "calendar",
    request_body = StartOAuth,
    responses(
        (status = 200, body = OAuthStarted, headers(("Set-Cookie" = String, description = "`voxanne_oauth`: binds the flow to this browser"))),
        (status = 409, description = "`calendar_provider_not_configured`: this server has no client id for the provider; `public_url_not_set`: VOXANNE_PUBLIC_URL is unset, so there is no redirect URI", body = crate::openapi::ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<StartOAuth>,
) -> Result<Response, ApiError> {
    ApiError::require_admin(tx.membership(), "staff cannot link or unlink calendars")?;
    let provider = body.provider;
    let oauth = &state.calendar;
    if oauth.app(provider).is_none() {
        return Err(ApiError::Conflict {
            code: "calendar_provider_not_configured",
            message: format!(
                "this server has no OAuth client for {provider}: set VOXANNE_{}_CLIENT_ID and VOXANNE_{}_CLIENT_SECRET",
                provider.as_str().to_uppercase(),
                provider.as_str().to_uppercase()
            ),
        });
    }
    if oauth.redirect_uri().is_none() {
        return Err(ApiError::Conflict {
            code: "public_url_not_set",
            message: "this server does not know the address the browser reaches it at, so it has no redirect URI: set VOXANNE_PUBLIC_URL".into(),
        });
    }
    let cookie = new_browser_secret();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(STATE_TTL).map_err(|e| ApiError::internal(e.to_string()))?;
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    let id = tx
        .insert_calendar_oauth_state(
            &state.keyring,
            &NewOAuthState {
                provider,
                verifier: SecretString::from(verifier.secret().as_str()),
                browser_hash: browser_hash(&cookie),
                expires_at,
            },
        )
        .await?;
    let signed = SignedState { org: tx.org(), id }.encode(&state.keyring);
    let url = oauth
        .authorization_url(provider, signed, challenge)
        .ok_or_else(|| ApiError::internal("the provider's endpoints are not valid URLs"))?;
    tx.commit().await?;
    let mut response = Json(OAuthStarted {
        authorization_url: url.to_string(),
        expires_at,
    })
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&set_cookie(
        &cookie,
        crate::calendar_oauth::secure_cookie(oauth),
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Why a callback linked nothing, in words for the person in front of the browser.
enum NotLinked {
    /// Not a state this server issued, unknown, replayed, expired, or another browser's.
    Refused(&'static str),
    /// The person declined at the provider, or the provider refused the code.
    Declined(String),
    /// The provider could not be reached or answered unexpectedly.
    Provider(String),
    /// This server could not finish (database unavailable, a value that does not open).
    Ours,
}

/// Finishes linking a calendar: the provider's redirect back with `code` and `state` (or
/// `error`). Answers an HTML page.
#[utoipa::path(get, path = "/oauth/callback", tag = "calendar",
    params(
        ("state" = Option<String>, Query, description = "the state `oauth/start` gave the provider"),
        ("code" = Option<String>, Query, description = "the authorization code"),
        ("error" = Option<String>, Query, description = "the provider's error, e.g. `access_denied`"),
    ),
    responses(
        (status = 200, description = "linked (HTML)", content_type = "text/html"),
        (status = 400, description = "not linked (HTML): a state that is forged, unknown, already used, expired or started in another browser; consent declined; the provider refused the code", content_type = "text/html"),
        (status = 502, description = "not linked (HTML): the provider could not be reached or answered unexpectedly", content_type = "text/html"),
        (status = 503, description = "not linked (HTML): this server could not finish; start again", content_type = "text/html"),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let secure = crate::calendar_oauth::secure_cookie(&state.calendar);
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let outcome = finish(&state, &headers, get("state"), get("code"), get("error")).await;
    let (status, title, text) = match &outcome {
        Ok((provider, email)) => (
            StatusCode::OK,
            "Calendar linked",
            format!("The {provider} calendar of {email} is now linked to your clinic. You can close this page."),
        ),
        Err(NotLinked::Refused(why)) => (
            StatusCode::BAD_REQUEST,
            "Calendar not linked",
            format!("{why} Start linking again from the dashboard."),
        ),
        Err(NotLinked::Declined(why)) => (
            StatusCode::BAD_REQUEST,
            "Calendar not linked",
            format!("{why} Start linking again from the dashboard."),
        ),
        Err(NotLinked::Provider(why)) => (
            StatusCode::BAD_GATEWAY,
            "Calendar not linked",
            format!("{why} Try again in a moment."),
        ),
        Err(NotLinked::Ours) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Calendar not linked",
            "Voxanne could not finish linking the calendar. Start linking again in a moment."
                .to_owned(),
        ),
    };
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{}</p></body></html>",
        escape(&text)
    );
    let mut response = (status, page).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(value) = HeaderValue::from_str(&clear_cookie(secure)) {
        h.insert(header::SET_COOKIE, value);
    }
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    signed: Option<String>,
    code: Option<String>,
    error: Option<String>,
) -> Result<(CalendarProvider, String), NotLinked> {
    const REFUSED: &str = "This link is not valid (it was already used, has expired, or was started in another browser).";
    let Some(signed) = signed.and_then(|s| SignedState::verify(&state.keyring, &s)) else {
        // Not a state this server issued: its org is not to be believed, so nothing is
        // recorded in one; the operators' log has it, once per power of two (a flood of
        // forgeries is not a flood of lines).
        static FORGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let forged = FORGED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        if forged.is_power_of_two() {
            tracing::warn!(
                route = CALLBACK_ROUTE,
                forged,
                "calendar OAuth callbacks with a state this server did not sign"
            );
        }
        return Err(NotLinked::Refused(REFUSED));
    };
    let attack = |reason: &'static str, user| {
        tracing::warn!(org_id = %signed.org, reason, "calendar OAuth callback refused");
        state.security.report(Finding::Denied {
            org: signed.org,
            user,
            kind: DeniedKind::CalendarOAuthRefused,
            route: CALLBACK_ROUTE.to_owned(),
            detail: json!({"reason": reason}),
        });
    };
    let taken = match take_calendar_oauth_state(&state.db, signed.org, signed.id).await {
        Ok(Some(taken)) => taken,
        Ok(None) => {
            // Signed by this server, and gone: used already (a replay).
            attack("state_replayed", None);
            return Err(NotLinked::Refused(REFUSED));
        }
        Err(e) => {
            tracing::warn!(error = %e, "taking a calendar OAuth state failed");
            return Err(NotLinked::Ours);
        }
    };
    if !same_browser(cookie_of(headers).as_deref(), &taken.browser_hash) {
        attack("browser_mismatch", Some(taken.user));
        return Err(NotLinked::Refused(REFUSED));
    }
    if taken.expires_at <= Utc::now() {
        return Err(NotLinked::Refused(REFUSED));
    }
    if !taken.org_active {
        return Err(NotLinked::Refused("This clinic is suspended."));
    }
    if let Some(error) = error {
        return Err(NotLinked::Declined(if error == "access_denied" {
            format!("Access to the {} calendar was not granted.", taken.provider)
        } else {
            format!("{} answered `{}`.", taken.provider, escape_code(&error))
        }));
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return Err(NotLinked::Declined(format!(
            "{} sent no authorization code.",
            taken.provider
        )));
    };
    let verifier = state
        .keyring
        .open(
            &taken.verifier.key_id,
            &taken.verifier.bytes,
            &verifier_aad(taken.org, signed.id),
        )
        .ok()
        .and_then(|plain| String::from_utf8(plain.to_vec()).ok())
        .ok_or(NotLinked::Ours)?;
    let provider = taken.provider;
    let linked = state
        .calendar
        .exchange(provider, code, SecretString::from(verifier))
        .await
        .map_err(|e| {
            tracing::warn!(org_id = %taken.org, error = %e, "calendar OAuth exchange failed");
            match e {
                ExchangeError::Refused { .. } => NotLinked::Declined(format!(
                    "{provider} did not accept the authorization (it may have expired)."
                )),
                ExchangeError::Unavailable { .. } | ExchangeError::NoEmail { .. } => {
                    NotLinked::Provider(format!(
                        "{provider} could not be reached or answered unexpectedly."
                    ))
                }
            }
        })?;
    let account_email = crate::routes::calendar_connections::email(&linked.account_email)
        .map_err(|_| NotLinked::Provider(format!("{provider} gave no usable email address.")))?;
    // The admin who started it, still a member (and still an admin) of the state's clinic.
    let mut tx = state
        .db
        .tenant(taken.org, taken.user)
        .await
        .map_err(|_| NotLinked::Refused("You are no longer an admin of this clinic."))?;
    if !tx.membership().role.is_admin() {
        return Err(NotLinked::Refused(
            "You are no longer an admin of this clinic.",
        ));
    }
    let new = NewCalendarConnection {
        provider,
        account_email: account_email.clone(),
        access_token: linked.access_token,
        refresh_token: linked.refresh_token,
        token_expires_at: linked
            .expires_in
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() + d),
    };
    let stored = async {
        tx.upsert_calendar_connection(&state.keyring, &new).await?;
        tx.commit().await
    }
    .await;
    if let Err(e) = stored {
        tracing::warn!(org_id = %taken.org, error = %e, "storing a calendar connection failed");
        return Err(NotLinked::Ours);
    }
    tracing::info!(org_id = %taken.org, %provider, "calendar linked");
    Ok((provider, account_email))
}

/// A provider's error code as shown: its documented alphabet only.
fn escape_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}
