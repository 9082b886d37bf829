//! The token endpoint of Vapi's OAuth 2.0 credential (a clinic's `server_auth` of type
//! `oauth2`): the client credentials grant of RFC 6749 (section 4.4), answered in its format
//! (section 5: `access_token`, `token_type`, `expires_in`; errors `{"error", "error_description"}`)
//! because that is what Vapi reads. The client id is the clinic's organization id, the client
//! secret its `webhook_secret`; the client may authenticate in the form body or with HTTP
//! Basic (section 2.3.1), not both. Like a webhook, a request is checked before anything is
//! decided: an unknown id, a clinic in another mode, a suspended clinic and a wrong secret get
//! the same answer after the same work.

use crate::security_log::Finding;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use chrono::Utc;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::json;
use voxanne_db::integrations::open_sealed;
use voxanne_db::system::{oauth_client_credentials, DeniedKind};
use voxanne_domain::IntegrationProvider;
use voxanne_webhooks::vapi_auth::{same_secret, ServerAuth};
use voxanne_webhooks::voice::{form_params_text, form_value};

const ROUTE: &str = "POST /oauth/vapi/token";

/// RFC 6749 section 4.4.3's request, form-encoded.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `client_credentials`.
    grant_type: String,
    /// The clinic's organization id (or in HTTP Basic).
    client_id: Option<String>,
    /// The clinic's vapi `webhook_secret` (or in HTTP Basic).
    client_secret: Option<String>,
    /// Ignored.
    scope: Option<String>,
}

/// RFC 6749 section 5.1.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    access_token: String,
    /// `Bearer`.
    token_type: &'static str,
    /// Seconds.
    expires_in: i64,
}

/// RFC 6749 section 5.2's error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str, basic: bool) -> Response {
    let mut response = (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if basic && status == StatusCode::UNAUTHORIZED {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"voxanne\""),
        );
    }
    response
}

/// The client's id and secret from HTTP Basic (`None` when the header is not Basic), each
/// form-decoded as section 2.3.1 says.
fn basic(headers: &HeaderMap) -> Option<Result<(String, String), ()>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decode = || {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(drop)?;
        let text = String::from_utf8(bytes).map_err(drop)?;
        let (id, secret) = text.split_once(':').ok_or(())?;
        let unescape = |s: &str| {
            url::form_urlencoded::parse(format!("v={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok((unescape(id), unescape(secret)))
    };
    Some(decode())
}

/// Issues an access token to Vapi for a clinic whose Vapi credential is OAuth 2.0.
#[utoipa::path(post, path = "/oauth/vapi/token", tag = "webhooks",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, body = TokenResponse),
        (status = 400, description = "`invalid_request` or `unsupported_grant_type` (RFC 6749 section 5.2)"),
        (status = 401, description = "`invalid_client`: one answer for an unknown client, a wrong secret, a clinic not in `oauth2` mode, or a suspended clinic"),
        (status = 429, description = "too many token requests for this client id; Retry-After"),
    ))]
pub async fn vapi_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, crate::error::ApiError> {
    let params = form_params_text(&body);
    let get = |name: &str| form_value(&params, name).map(str::to_owned);
    let from_basic = basic(&headers);
    let used_basic = from_basic.is_some();
    let bad = |error: &str, description: &str| {
        Ok(oauth_error(
            StatusCode::BAD_REQUEST,
            error,
            description,
            used_basic,
        ))
    };
    match get("grant_type").as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return bad(
                "unsupported_grant_type",
                "only client_credentials is offered",
            )
        }
        None => return bad("invalid_request", "grant_type is required"),
    }
    let (client_id, client_secret) = match (from_basic, get("client_id"), get("client_secret")) {
        (Some(_), _, Some(_)) => {
            return bad(
                "invalid_request",
                "authenticate with HTTP Basic or in the body, not both",
            )
        }
        (Some(Ok(pair)), _, None) => pair,
        (Some(Err(())), _, None) => {
            return bad("invalid_request", "malformed HTTP Basic credentials")
        }
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => {
            return bad(
                "invalid_request",
                "client_id and client_secret are required",
            )
        }
    };
    if let Some(retry_after) = state.limits.webhooks.hit(&format!("oauth:{client_id}")) {
        return Err(crate::error::ApiError::RateLimited {
            code: "too_many_token_requests",
            message: "too many token requests for this client; retry after the Retry-After seconds"
                .into(),
            retry_after,
        });
    }
    // An id that is not one names no clinic: it is looked up like an unknown one.
    let org_id = client_id.trim().parse().unwrap_or(uuid::Uuid::nil());
    let found = oauth_client_credentials(&state.db, org_id, IntegrationProvider::Vapi).await?;
    let secret = match (&found.org, &found.secrets) {
        (Some((org, _)), Some(sealed)) => {
            open_sealed(sealed, &state.keyring, *org, IntegrationProvider::Vapi)
                .ok()
                .and_then(|mut s| s.remove("webhook_secret"))
        }
        _ => None,
    };
    let plan = match ServerAuth::from_config(&found.config) {
        Ok(ServerAuth::Oauth2(plan)) => Some(plan),
        _ => None,
    };
    let matches = same_secret(
        client_secret.as_bytes(),
        secret
            .as_ref()
            .map_or(b"\0no secret".as_slice(), |s| s.expose_secret().as_bytes()),
    );
    let refused = || {
        Ok(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
            used_basic,
        ))
    };
    let Some((org, active)) = found.org else {
        return refused();
    };
    let (Some(plan), Some(secret), true, true) = (plan, &secret, matches, active) else {
        if active {
            let reason = if !matches {
                "a token request with a wrong client secret"
            } else {
                "a token request, but the clinic's Vapi credential is not oauth2"
            };
            state.security.report(Finding::Denied {
                org,
                user: None,
                kind: DeniedKind::InvalidWebhookSignature,
                route: ROUTE.to_owned(),
                detail: json!({"provider": "vapi", "reason": reason}),
            });
        }
        return refused();
    };
    let (access_token, expires_in) =
        plan.issue(secret.expose_secret().as_bytes(), Utc::now().timestamp());
    let mut response = Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
