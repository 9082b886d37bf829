//! Signing in to the dashboard with a built-in account: sign in and out, the session, password
//! resets by mailed link, taking an invitation (with a new account or the signed-in one), and
//! demo mode's one-click sign-in. Under `/auth`, outside `/api/v1`: these make sessions; the
//! API then accepts the session's cookie (with its CSRF token for writes) as it accepts a JWT.
//!
//! Bodies are JSON only (`Content-Type: application/json`), so another site's form cannot post
//! them; every answer about an address is the same whether it has an account or not.

use crate::accounts::{self, hash_password, new_secret, secret_hash, verify_password, Mail};
use crate::error::ApiError;
use crate::extract::{AppJson, SignedIn};
use crate::routes::me::OrgMembership;
use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;
use voxanne_db::system;
use voxanne_domain::{OrgId, Role, UserId};

/// The signed-in account, what its pages need to write (the CSRF token), and its clinics.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    pub user_id: UserId,
    pub email: String,
    pub display_name: Option<String>,
    /// Send it in `X-CSRF-Token` with every write made with the session's cookie.
    pub csrf_token: String,
    /// The clinic requests act in when they send no `X-Org-Id` (`POST /auth/session/org`).
    pub active_org: Option<OrgId>,
    pub expires_at: DateTime<Utc>,
    /// Every clinic the account belongs to; the dashboard sends the one it acts in as
    /// `X-Org-Id`.
    pub orgs: Vec<OrgMembership>,
}

async fn session_view(
    state: &AppState,
    account: &system::SessionAccount,
    token: &str,
) -> Result<Session, ApiError> {
    let orgs = system::memberships(&state.db, account.id)
        .await?
        .into_iter()
        .map(OrgMembership::from)
        .collect();
    Ok(Session {
        user_id: account.id,
        email: account.email.clone(),
        display_name: account.display_name.clone(),
        csrf_token: accounts::csrf_token(token),
        active_org: account.active_org,
        expires_at: account.expires_at,
        orgs,
    })
}

/// Opens a session for `account`, acting in `org` (else its first clinic, if any), and
/// answers with it and its cookie.
async fn signed_in(
    state: &AppState,
    account: UserId,
    org: Option<OrgId>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let token = new_secret();
    let hash = secret_hash(&token);
    let ttl = chrono::Duration::from_std(state.accounts.session_ttl).map_err(ApiError::internal)?;
    system::open_account_session(&state.db, account, &hash, Utc::now() + ttl).await?;
    let org = match org {
        Some(org) => Some(org),
        None => system::memberships(&state.db, account)
            .await?
            .first()
            .map(|m| m.org_id),
    };
    if let Some(org) = org {
        system::set_session_org(&state.db, &hash, org).await?;
    }
    let session = system::account_of_session(&state.db, &hash)
        .await?
        .ok_or_else(|| ApiError::internal("a session just opened is not there"))?;
    let view = session_view(state, &session, &token).await?;
    Ok((
        status,
        [(header::SET_COOKIE, state.accounts.session_cookie(&token))],
        Json(view),
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "owner@clinic-a.example", "password": "a long passphrase"}))]
pub struct SignIn {
    #[schema(max_length = 320)]
    email: String,
    #[schema(max_length = 256)]
    password: String,
}

fn too_many(code: &'static str, retry_after: u64) -> ApiError {
    ApiError::RateLimited {
        code,
        message: "too many attempts; retry after the Retry-After seconds".into(),
        retry_after,
    }
}

/// Signs in with an email address and password: the session, and its cookie (HttpOnly,
/// SameSite=Lax, Secure on https). Failed attempts are limited per client address and per
/// email address.
#[utoipa::path(post, path = "/auth/sign-in", tag = "auth", request_body = SignIn,
    responses((status = 200, body = Session),
              (status = 401, description = "`invalid_credentials`", body = crate::openapi::ErrorBody),
              (status = 429, description = "`too_many_auth_failures` (this client), `too_many_sign_ins` (this address)", body = crate::openapi::ErrorBody)))]
pub async fn sign_in(
    State(state): State<AppState>,
    parts: axum::http::request::Parts,
    AppJson(body): AppJson<SignIn>,
) -> Result<Response, ApiError> {
    let email = body.email.trim().to_lowercase();
    let client = state.limits.client_ip(&parts);
    if let Some(retry) = client.and_then(|ip| state.limits.auth_failures.over(&ip)) {
        return Err(too_many("too_many_auth_failures", retry));
    }
    if let Some(retry) = state.accounts.sign_in_failures.over(&email) {
        return Err(too_many("too_many_sign_ins", retry));
    }
    let account = if email.len() > 320 || body.password.len() > accounts::MAX_PASSWORD {
        None
    } else {
        system::account_for_sign_in(&state.db, &email).await?
    };
    let ok = verify_password(
        body.password.chars().take(accounts::MAX_PASSWORD).collect(),
        account.as_ref().map(|a| a.password_hash.clone()),
    )
    .await;
    match account {
        Some(account) if ok => signed_in(&state, account.id, None, StatusCode::OK).await,
        _ => {
            if let Some(ip) = client {
                state.limits.auth_failures.hit(&ip);
            }
            state.accounts.sign_in_failures.hit(&email);
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// The session the cookie is of.
#[utoipa::path(get, path = "/auth/session", tag = "auth",
    responses((status = 200, body = Session),
              (status = 401, description = "`invalid_session` or `unauthenticated`", body = crate::openapi::ErrorBody)))]
pub async fn session(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(
        session_view(&state, &signed_in.account, &signed_in.session).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"org_id": "0a000000-0000-4000-8000-00000000000a"}))]
pub struct SwitchOrg {
    org_id: OrgId,
}

/// The switcher: the clinic the session acts in when a request sends no `X-Org-Id`. Only a
/// clinic the account is a member of (and every request checks the membership again).
#[utoipa::path(post, path = "/auth/session/org", tag = "auth", request_body = SwitchOrg,
    responses((status = 200, body = Session),
              (status = 403, description = "`not_a_member`, or `csrf_failed`", body = crate::openapi::ErrorBody)))]
pub async fn switch_org(
    State(state): State<AppState>,
    signed_in: SignedIn,
    AppJson(body): AppJson<SwitchOrg>,
) -> Result<Json<Session>, ApiError> {
    let hash = secret_hash(&signed_in.session);
    if !system::set_session_org(&state.db, &hash, body.org_id).await? {
        return Err(ApiError::NotAMember);
    }
    let account = system::account_of_session(&state.db, &hash)
        .await?
        .ok_or(ApiError::InvalidSession)?;
    Ok(Json(
        session_view(&state, &account, &signed_in.session).await?,
    ))
}

/// Signs out: the session ends, and the cookie is cleared. Needs the CSRF token.
#[utoipa::path(post, path = "/auth/sign-out", tag = "auth",
    responses((status = 204, description = "signed out"),
              (status = 403, description = "`csrf_failed`", body = crate::openapi::ErrorBody)))]
pub async fn sign_out(
    State(state): State<AppState>,
    signed_in: SignedIn,
) -> Result<Response, ApiError> {
    system::close_account_session(&state.db, &secret_hash(&signed_in.session)).await?;
    Ok((
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, state.accounts.cleared_cookie())],
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "owner@clinic-a.example"}))]
pub struct ResetRequest {
    #[schema(max_length = 320)]
    email: String,
}

/// Mails a password reset link (valid one hour, used once) to the address if it has an
/// account. The answer is the same either way.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = ResetRequest,
    responses((status = 202, description = "if the address has an account, a link is on its way"),
              (status = 429, description = "`too_many_sign_ins`", body = crate::openapi::ErrorBody)))]
pub async fn password_reset(
    State(state): State<AppState>,
    AppJson(body): AppJson<ResetRequest>,
) -> Result<StatusCode, ApiError> {
    let email = body.email.trim().to_lowercase();
    if let Some(retry) = state.accounts.reset_requests.over(&email) {
        return Err(too_many("too_many_sign_ins", retry));
    }
    state.accounts.reset_requests.hit(&email);
    if email.len() > 320 {
        return Ok(StatusCode::ACCEPTED);
    }
    let token = new_secret();
    let ttl = chrono::Duration::from_std(state.accounts.reset_ttl).map_err(ApiError::internal)?;
    if let Some(to) =
        system::start_password_reset(&state.db, &email, &secret_hash(&token), Utc::now() + ttl)
            .await?
    {
        let link = state.accounts.link("/reset-password", &token);
        let mail = Mail {
            to,
            subject: "Reset your Voxanne password".into(),
            body: format!(
                "Someone (we hope you) asked to reset the password of your Voxanne account.\n\n\
                 Choose a new one here, within the hour:\n{link}\n\n\
                 If it was not you, ignore this mail: your password stays as it is."
            ),
        };
        // Sent off the request: the answer must not take longer for a known address.
        let mailer = state.accounts.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.mailer.send(mail).await {
                tracing::error!(error = %e, "a password reset mail could not be sent");
            }
        });
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "<from the link>", "password": "a new long passphrase"}))]
pub struct ResetConfirm {
    #[schema(max_length = 100)]
    token: String,
    /// 10 to 256 characters.
    #[schema(min_length = 10, max_length = 256)]
    password: String,
}

fn password_field(password: &str) -> Result<String, ApiError> {
    let n = password.chars().count();
    if !(accounts::MIN_PASSWORD..=accounts::MAX_PASSWORD).contains(&n) {
        return Err(ApiError::validation(
            "password",
            format!(
                "must be {} to {} characters",
                accounts::MIN_PASSWORD,
                accounts::MAX_PASSWORD
            ),
        ));
    }
    Ok(password.to_owned())
}

/// Sets a new password with a reset link's token. Every session of the account ends.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = ResetConfirm,
    responses((status = 204, description = "the password is changed: sign in with it"),
              (status = 410, description = "`link_invalid`: unknown, used or expired", body = crate::openapi::ErrorBody)))]
pub async fn password_reset_confirm(
    State(state): State<AppState>,
    AppJson(body): AppJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    let password = password_field(&body.password)?;
    let hash = hash_password(password).await.map_err(ApiError::internal)?;
    match system::take_password_reset(&state.db, &secret_hash(body.token.trim()), &hash).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(link_invalid()),
    }
}

fn link_invalid() -> ApiError {
    ApiError::Gone {
        code: "link_invalid",
        message: "this link is unknown, used or expired: ask for a new one".into(),
    }
}

/// An invitation link's token: `{org}.{invitation}.{secret}`.
fn invitation_token(token: &str) -> Option<(OrgId, Uuid, Vec<u8>)> {
    let mut parts = token.trim().splitn(3, '.');
    let org = parts.next()?.parse().ok()?;
    let id = parts.next()?.parse().ok()?;
    let secret = parts.next().filter(|s| !s.is_empty())?;
    Some((org, id, secret_hash(secret)))
}

/// The token an invitation's link carries.
pub(crate) fn invitation_link_token(org: OrgId, id: Uuid, secret: &str) -> String {
    format!("{org}.{id}.{secret}")
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "<from the link>"}))]
pub struct InvitationToken {
    #[schema(max_length = 200)]
    token: String,
}

/// What an invitation link is for.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationInfo {
    pub org_name: String,
    pub email: String,
    pub role: Role,
    /// False when used, expired, or the clinic is suspended.
    pub usable: bool,
}

/// What the invitation of a link is: the clinic, the address invited and the role.
#[utoipa::path(post, path = "/auth/invitation", tag = "auth", request_body = InvitationToken,
    responses((status = 200, body = InvitationInfo),
              (status = 410, description = "`link_invalid`", body = crate::openapi::ErrorBody)))]
pub async fn invitation(
    State(state): State<AppState>,
    AppJson(body): AppJson<InvitationToken>,
) -> Result<Json<InvitationInfo>, ApiError> {
    let (org, id, hash) = invitation_token(&body.token).ok_or_else(link_invalid)?;
    let link = system::invitation_for_link(&state.db, org, id, &hash)
        .await?
        .ok_or_else(link_invalid)?;
    Ok(Json(InvitationInfo {
        org_name: link.org_name,
        email: link.email,
        role: link.role,
        usable: link.usable,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"token": "<from the link>", "display_name": "Sam Lee", "password": "a long passphrase"}))]
pub struct AcceptInvitation {
    #[schema(max_length = 200)]
    token: String,
    /// With a new account: its name (the address is the invited one).
    #[schema(max_length = 200)]
    display_name: Option<String>,
    /// With a new account: its password, 10 to 256 characters. Without: the signed-in
    /// account joins (its address must be the invited one).
    #[schema(max_length = 256)]
    password: Option<String>,
}

/// Joined: the clinic and the role.
#[derive(Debug, Serialize, ToSchema)]
pub struct Joined {
    pub org_id: OrgId,
    pub role: Role,
}

/// Takes an invitation, once: with a new account (name and password; answers signed in, with
/// the session's cookie), or as the signed-in account (its session's cookie and CSRF token).
#[utoipa::path(post, path = "/auth/invitation/accept", tag = "auth", request_body = AcceptInvitation,
    responses((status = 200, description = "joined as the signed-in account", body = Joined),
              (status = 201, description = "a new account, joined and signed in", body = Session),
              (status = 409, description = "`account_exists`: the invited address has an account; sign in with it and take the invitation again", body = crate::openapi::ErrorBody),
              (status = 410, description = "`link_invalid`: unknown, used, expired, or for another address", body = crate::openapi::ErrorBody)))]
pub async fn accept_invitation(
    State(state): State<AppState>,
    headers: HeaderMap,
    mut parts: axum::http::request::Parts,
    AppJson(body): AppJson<AcceptInvitation>,
) -> Result<Response, ApiError> {
    let (org, id, hash) = invitation_token(&body.token).ok_or_else(link_invalid)?;
    if let Some(password) = &body.password {
        let password = password_field(password)?;
        let name = crate::fields::text(
            "display_name",
            body.display_name.as_deref().unwrap_or(""),
            1,
            200,
        )?;
        let password_hash = hash_password(password).await.map_err(ApiError::internal)?;
        return match system::accept_invitation_as_new_account(
            &state.db,
            org,
            id,
            &hash,
            &name,
            &password_hash,
        )
        .await?
        {
            Some((account, _)) => signed_in(&state, account, Some(org), StatusCode::CREATED).await,
            None => match system::invitation_for_link(&state.db, org, id, &hash).await? {
                Some(link) if link.usable => Err(ApiError::Conflict {
                    code: "account_exists",
                    message: "the invited address has an account: sign in with it, then open \
                              the invitation link again"
                        .into(),
                }),
                _ => Err(link_invalid()),
            },
        };
    }
    if accounts::session_token(&headers).is_none() {
        return Err(ApiError::validation(
            "password",
            "sign in first, or give a display_name and password for a new account",
        ));
    }
    let signed_in = <SignedIn as axum::extract::FromRequestParts<AppState>>::from_request_parts(
        &mut parts, &state,
    )
    .await?;
    match system::accept_invitation(&state.db, org, id, &hash, signed_in.account.id).await? {
        Some(role) => Ok(Json(Joined { org_id: org, role }).into_response()),
        None => Err(link_invalid()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"user_id": "0a000000-0000-4000-8000-0000000a0001"}))]
pub struct DemoSignIn {
    user_id: UserId,
}

/// Demo mode only: the users the sign-in page offers one click for.
#[utoipa::path(get, path = "/auth/demo", tag = "auth",
    responses((status = 200, body = Vec<accounts::DemoUser>),
              (status = 404, description = "`no_route`: not in demo mode", body = crate::openapi::ErrorBody)))]
pub async fn demo_users(
    State(state): State<AppState>,
) -> Result<Json<Vec<accounts::DemoUser>>, ApiError> {
    if state.accounts.demo_users.is_empty() {
        return Err(ApiError::NoRoute);
    }
    Ok(Json(state.accounts.demo_users.clone()))
}

/// Demo mode only: signs in as one of the demo users, without a password.
#[utoipa::path(post, path = "/auth/demo", tag = "auth", request_body = DemoSignIn,
    responses((status = 200, body = Session),
              (status = 404, description = "`no_route`: not in demo mode, or not a demo user", body = crate::openapi::ErrorBody)))]
pub async fn demo_sign_in(
    State(state): State<AppState>,
    AppJson(body): AppJson<DemoSignIn>,
) -> Result<Response, ApiError> {
    let Some(user) = state
        .accounts
        .demo_users
        .iter()
        .find(|u| u.user_id == body.user_id)
    else {
        return Err(ApiError::NoRoute);
    };
    signed_in(&state, user.user_id, Some(user.org_id), StatusCode::OK).await
}

/// Demo mode only: the mails the server would have sent (newest first), as the development
/// outbox keeps them.
#[utoipa::path(get, path = "/auth/outbox", tag = "auth",
    responses((status = 200, body = Vec<OutboxMail>),
              (status = 404, description = "`no_route`: not in demo mode", body = crate::openapi::ErrorBody)))]
pub async fn outbox(State(state): State<AppState>) -> Result<Json<Vec<OutboxMail>>, ApiError> {
    if state.accounts.demo_users.is_empty() {
        return Err(ApiError::NoRoute);
    }
    Ok(Json(
        state
            .accounts
            .mailer
            .outbox_mails()
            .into_iter()
            .map(|m| OutboxMail {
                to: m.to,
                subject: m.subject,
                body: m.body,
            })
            .collect(),
    ))
}

/// A mail in the development outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxMail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The routes under `/auth`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_in))
        .routes(routes!(session))
        .routes(routes!(switch_org))
        .routes(routes!(sign_out))
        .routes(routes!(password_reset))
        .routes(routes!(password_reset_confirm))
        .routes(routes!(invitation))
        .routes(routes!(accept_invitation))
        .routes(routes!(demo_users, demo_sign_in))
        .routes(routes!(outbox))
}
