//! The OpenAPI document, generated from the routes themselves (utoipa-axum registers a route
//! and its operation together, so the document cannot miss one). `Conventions` then adds,
//! once for all, what every operation of a kind shares: bearer auth and `X-Org-Id` on tenant
//! routes, and the error responses the error policy can produce.

use serde::Serialize;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, ToSchema};

/// Every error answer: `{"error":{"code":"…","message":"…"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: e.g. `not_found`, `validation_failed`, `not_a_member`.
    #[schema(example = "not_found")]
    pub code: String,
    /// For people; may change.
    pub message: String,
    /// The request field that failed validation (422 only).
    pub field: Option<String>,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Voxanne API",
        description = "The clinic API of Voxanne, an AI phone receptionist. Every /api/v1 route \
            but /api/v1/openapi.json needs a bearer JWT; tenant routes act in the org of the \
            `X-Org-Id` header, else of the token's `app_metadata.org_id`, and only for a live \
            member of an active org."
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "me", description = "The caller"),
        (name = "auth", description = "Built-in accounts: signing in to the dashboard, sessions, password resets, invitations (the API accepts the session's cookie, with `X-CSRF-Token` on writes, as it accepts a JWT)"),
        (name = "calls", description = "The voice agent's phone calls"),
        (name = "contacts", description = "Patients and callers"),
        (name = "campaigns", description = "Outbound calling campaigns, their audiences and their calls (admins manage them)"),
        (name = "leads", description = "People the clinic may call who are not yet its patients: CSV import, statuses, conversion into contacts"),
        (name = "dnc", description = "The do-not-call list"),
        (name = "knowledge-base", description = "What the voice agent answers from (admins write it)"),
        (name = "sms-confirmations", description = "SMS confirmations and reminders sent for appointments"),
        (name = "messages", description = "Patients' messages: reminder rules and quiet hours, the inbox (texts, replies, messages left with the agent), consent records"),
        (name = "appointments", description = "Appointments, holds and availability"),
        (name = "scheduling", description = "Practitioners, the services they give, locations and closures (admins change them)"),
        (name = "phone-numbers", description = "The numbers the clinic owns (admins manage them)"),
        (name = "security", description = "Security events of the clinic"),
        (name = "access-log", description = "Who read or changed which patient's data: the access log, for admins"),
        (name = "retention", description = "How long the clinic keeps each kind of patient data, what the purge removed, and legal holds that suspend it (admins change them)"),
        (name = "organizations", description = "Creating a clinic (onboarding), and the active clinic itself"),
        (name = "members", description = "The clinic's members and their roles"),
        (name = "calendar", description = "Linked calendars (tokens are write-only, encrypted at rest)"),
        (name = "integrations", description = "Telephony and SMS providers (secrets are write-only, encrypted at rest)"),
        (name = "agent", description = "The voice agent's configuration"),
        (name = "webhooks", description = "Signed events from the voice and SMS platforms (no JWT: the clinic's number and the clinic's own secret decide)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Paths outside the bearer-protected API.
fn is_public(path: &str) -> bool {
    !path.starts_with("/api/v1/") || path == "/api/v1/openapi.json"
}

/// Paths that need a verified user but no active org.
fn needs_no_org(path: &str) -> bool {
    path == "/api/v1/me" || !uses_org(path)
}

/// Paths that never act in an org, so `X-Org-Id` means nothing to them: onboarding creates
/// one. (`/api/v1/me` reports on the org it is sent, so it takes the header.)
pub fn uses_org(path: &str) -> bool {
    path != "/api/v1/organizations"
}

pub struct Conventions;

impl Modify for Conventions {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A Supabase-style JWT: HS256, or RS256/ES256 through the configured JWKS.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Cookie(
                utoipa::openapi::security::ApiKeyValue::with_description(
                    crate::accounts::SESSION_COOKIE,
                    "A dashboard session (`POST /auth/sign-in`); writes also need its CSRF \
                     token in `X-CSRF-Token`",
                ),
            )),
        );
        for (path, item) in api.paths.paths.iter_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                apply(path, operation);
            }
        }
    }
}

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

fn apply(path: &str, operation: &mut Operation) {
    add(
        operation,
        "500",
        "internal error (details only in the server log, under the request id)",
    );
    add(
        operation,
        "503",
        "try again shortly: the database is unavailable (`unavailable`), the request ran out of \
         time and was rolled back (`timeout`), or the server is at its connection cap \
         (`too_many_connections`)",
    );
    if path.starts_with("/webhooks/") || path.starts_with("/oauth/") {
        add(operation, "429", "too many requests for this number (webhooks) or client (token requests) this minute: `rate_limited`, with `Retry-After`");
    }
    if takes_header(operation, "Idempotency-Key") {
        add(operation, "422", "the `Idempotency-Key` is malformed, or was used with a different request: `validation_failed`, `idempotency_key_reused`");
    }
    if path.starts_with("/auth/") {
        add(operation, "429", "too many attempts from this client or for this address: `too_many_auth_failures`, `too_many_sign_ins`, with `Retry-After`");
        add(
            operation,
            "401",
            "no live session: `unauthenticated`, `invalid_session`",
        );
        add(
            operation,
            "403",
            "a write with the session's cookie but not its CSRF token: `csrf_failed`",
        );
        if operation.request_body.is_some() {
            add(operation, "400", "malformed request: `invalid_json`");
            add(operation, "413", "body too large: `payload_too_large`");
            add(
                operation,
                "415",
                "body is not application/json: `unsupported_media_type`",
            );
            add(operation, "422", "a field failed validation, or an unknown field was sent: `validation_failed`, with `field`");
        }
        return;
    }
    if is_public(path) {
        return;
    }
    add(operation, "429", "too many failed authentications from this address (`rate_limited`), or the clinic's share of the database is in use (`org_busy`): with `Retry-After`");
    add(operation, "401", "missing, malformed, expired or badly signed token, or an ended session: `unauthenticated`, `invalid_token`, `token_expired`, `invalid_session`");
    operation.security = Some(vec![
        SecurityRequirement::new("bearer", Vec::<String>::new()),
        SecurityRequirement::new("session", Vec::<String>::new()),
    ]);
    add(
        operation,
        "400",
        "malformed request: `invalid_query`, `invalid_org_header`, `invalid_json`",
    );
    if uses_org(path) {
        let org_header = ParameterBuilder::new()
            .name("X-Org-Id")
            .parameter_in(ParameterIn::Header)
            .description(Some(
                "The org to act in (a uuid); default: the token's app_metadata.org_id",
            ))
            .schema(Some(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::Uuid,
                    ))),
            ))
            .build();
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(org_header);
        add(operation, "403", "no active org, not a member, suspended org, or role too low: `org_required`, `not_a_member`, `org_suspended`, `forbidden`; a write with a session's cookie but not its CSRF token: `csrf_failed`");
    }
    if path.contains('{') {
        add(operation, "404", "no such object in the active org (another org's object answers exactly the same): `not_found`");
    }
    if operation.request_body.is_some() {
        add(operation, "413", "body too large: `payload_too_large`");
        add(
            operation,
            "415",
            "body is not application/json: `unsupported_media_type`",
        );
        add(operation, "422", "a field failed validation, or an unknown field (such as org_id) was sent: `validation_failed`, with `field`");
    } else if !needs_no_org(path)
        && operation
            .parameters
            .iter()
            .flatten()
            .any(|p| p.parameter_in == ParameterIn::Query)
    {
        add(
            operation,
            "422",
            "a query parameter failed validation: `validation_failed`, with `field`",
        );
    }
}

fn takes_header(operation: &Operation, name: &str) -> bool {
    operation
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case(name))
}

/// Documents an error response, unless the operation documents that status itself.
fn add(operation: &mut Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error(description));
}
