//! A fake of Vapi's REST API: a real HTTP server on loopback that speaks the shapes of Vapi's
//! OpenAPI document (api.vapi.ai/api-json): `Authorization: Bearer <private key>`;
//! `GET /phone-number` answers a plain array of `PhoneNumber` objects; `POST /credential`
//! takes a `CreateCustomCredentialDTO` (`provider: "custom-credential"`, `name` of at most 40
//! characters, an `authenticationPlan` of type `bearer`, `hmac` or `oauth2`) and answers the
//! `CustomCredential` with its `id`; `PATCH /credential/{id}` and `PATCH /phone-number/{id}`
//! update them; `POST /call` takes a `CreateCallDTO` (an `assistant` or `assistantId`, the
//! `phoneNumberId` of one of the account's numbers, a `customer` with an E.164 `number`) and
//! answers the `Call`, `type: "outboundPhoneCall"`, `status: "queued"`, with its `id`. Errors have Vapi's NestJS shape, `{"message", "error", "statusCode"}` (the
//! 401 message is Vapi's own), and a 400 for a property the DTO does not have, as Vapi's
//! validation answers ("property x should not exist").

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

pub const KEY: &str = "vapi-private-key-0f3c9a7e";

/// A request the fake received: method, path, and JSON body (`Null` for none).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub body: Value,
}

#[derive(Default)]
struct Account {
    numbers: Vec<Value>,
    credentials: Vec<Value>,
    seen: Vec<Seen>,
    /// Answer this many requests 429 before serving again.
    limited: u32,
    created: u32,
    /// The outbound calls placed (`POST /call` bodies), in order.
    calls: Vec<Value>,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Account>>);

pub struct FakeVapi {
    pub base: String,
    state: Fake,
}

fn error(status: StatusCode, message: Value) -> Response {
    let reason = status.canonical_reason().unwrap_or("Error");
    (
        status,
        Json(json!({"message": message, "error": reason, "statusCode": status.as_u16()})),
    )
        .into_response()
}

/// A twilio `PhoneNumber` as Vapi lists it, with no server of its own and an assistant fixed.
pub fn twilio_number(id: &str, number: &str) -> Value {
    json!({
        "id": id, "orgId": "4b7d2c3e-8f1a-4e6b-9c2d-1a2b3c4d5e6f", "provider": "twilio",
        "number": number, "name": "Front desk", "status": "active",
        "twilioAccountSid": "AC0123456789abcdef0123456789abcdef",
        "assistantId": "0b8f9a9e-5e0a-4b8e-9d1e-2f3a4b5c6d7e",
        "createdAt": "2026-11-01T09:00:00.000Z", "updatedAt": "2026-11-01T09:00:00.000Z"
    })
}

impl FakeVapi {
    pub async fn spawn(numbers: Vec<Value>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Fake::default();
        state.0.lock().expect("lock").numbers = numbers;
        let app = axum::Router::new()
            .route("/phone-number", axum::routing::get(list_numbers))
            .route("/phone-number/{id}", axum::routing::patch(update_number))
            .route("/credential", axum::routing::post(create_credential))
            .route("/credential/{id}", axum::routing::patch(update_credential))
            .route("/call", axum::routing::post(create_call))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { base, state }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.0.lock().expect("lock").seen.clone()
    }

    pub fn numbers(&self) -> Vec<Value> {
        self.state.0.lock().expect("lock").numbers.clone()
    }

    pub fn credentials(&self) -> Vec<Value> {
        self.state.0.lock().expect("lock").credentials.clone()
    }

    /// Forgets the credentials (as if deleted in Vapi's dashboard).
    pub fn delete_credentials(&self) {
        self.state.0.lock().expect("lock").credentials.clear();
    }

    /// The outbound calls placed so far (their `CreateCallDTO` bodies).
    pub fn calls(&self) -> Vec<Value> {
        self.state.0.lock().expect("lock").calls.clone()
    }

    /// The next `n` requests are answered 429.
    pub fn limit(&self, n: u32) {
        self.state.0.lock().expect("lock").limited = n;
    }
}

/// Records the request; the refusal, if it is not one Vapi would serve.
fn admit(
    fake: &Fake,
    method: Method,
    path: String,
    headers: &HeaderMap,
    body: &Value,
) -> Option<Response> {
    let mut account = fake.0.lock().expect("lock");
    account.seen.push(Seen {
        method: method.to_string(),
        path,
        body: body.clone(),
    });
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {KEY}")) {
        // Vapi's own words (support.vapi.ai).
        return Some(error(
            StatusCode::UNAUTHORIZED,
            json!("Invalid Key. Hot tip, you may be using the private key instead of the public key, or vice versa."),
        ));
    }
    if account.limited > 0 {
        account.limited -= 1;
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, json!("Too Many Requests"));
        r.headers_mut()
            .insert("retry-after", "7".parse().expect("header"));
        return Some(r);
    }
    None
}

/// A 400 listing the properties a DTO does not have, as Vapi's validation answers.
fn unknown_properties(body: &Value, allowed: &[&str]) -> Option<Response> {
    let extra: Vec<Value> = body
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| !allowed.contains(&k.as_str()))
                .map(|k| json!(format!("property {k} should not exist")))
                .collect()
        })
        .unwrap_or_default();
    (!extra.is_empty()).then(|| error(StatusCode::BAD_REQUEST, Value::Array(extra)))
}

async fn list_numbers(State(fake): State<Fake>, method: Method, headers: HeaderMap) -> Response {
    if let Some(refused) = admit(
        &fake,
        method,
        "/phone-number".into(),
        &headers,
        &Value::Null,
    ) {
        return refused;
    }
    Json(Value::Array(fake.0.lock().expect("lock").numbers.clone())).into_response()
}

async fn update_number(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = admit(
        &fake,
        method,
        format!("/phone-number/{id}"),
        &headers,
        &body,
    ) {
        return refused;
    }
    // UpdateTwilioPhoneNumberDTO (the fields this fake knows of).
    let allowed = [
        "provider",
        "name",
        "server",
        "assistantId",
        "squadId",
        "workflowId",
        "fallbackDestination",
        "hooks",
        "smsEnabled",
        "twilioAccountSid",
        "twilioAuthToken",
    ];
    if let Some(bad) = unknown_properties(&body, &allowed) {
        return bad;
    }
    if let Some(server) = body.get("server") {
        if let Some(bad) = unknown_properties(
            server,
            &[
                "url",
                "credentialId",
                "timeoutSeconds",
                "headers",
                "staticIpAddressesEnabled",
                "backoffPlan",
            ],
        ) {
            return bad;
        }
    }
    let mut account = fake.0.lock().expect("lock");
    let Some(number) = account.numbers.iter_mut().find(|n| n["id"] == id) else {
        return error(StatusCode::NOT_FOUND, json!("Phone Number not found"));
    };
    for (k, v) in body.as_object().into_iter().flatten() {
        number[k] = v.clone();
    }
    Json(number.clone()).into_response()
}

async fn create_call(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = admit(&fake, method, "/call".into(), &headers, &body) {
        return refused;
    }
    // CreateCallDTO's properties.
    let allowed = [
        "customers",
        "name",
        "schedulePlan",
        "transport",
        "assistantId",
        "assistant",
        "assistantOverrides",
        "squadId",
        "squad",
        "workflowId",
        "workflow",
        "workflowOverrides",
        "phoneNumberId",
        "phoneNumber",
        "customerId",
        "customer",
    ];
    if let Some(bad) = unknown_properties(&body, &allowed) {
        return bad;
    }
    if body["assistant"].is_null() && body["assistantId"].is_null() {
        return error(
            StatusCode::BAD_REQUEST,
            json!(["assistant or assistantId must be provided"]),
        );
    }
    if body["name"]
        .as_str()
        .is_some_and(|n| n.chars().count() > 40)
    {
        return error(
            StatusCode::BAD_REQUEST,
            json!(["name must be shorter than or equal to 40 characters"]),
        );
    }
    let number = body["customer"]["number"].as_str().unwrap_or_default();
    let e164 = number.starts_with('+')
        && (8..=16).contains(&number.len())
        && number[1..].bytes().all(|b| b.is_ascii_digit());
    if !e164 {
        return error(
            StatusCode::BAD_REQUEST,
            json!(["customer.number must be a valid phone number in the E.164 format"]),
        );
    }
    let mut account = fake.0.lock().expect("lock");
    let known = account
        .numbers
        .iter()
        .any(|n| n["id"] == body["phoneNumberId"]);
    if !known {
        return error(
            StatusCode::BAD_REQUEST,
            json!("phoneNumberId is not a phone number of this account"),
        );
    }
    account.calls.push(body.clone());
    let id = format!("call-{}", account.calls.len());
    (
        StatusCode::CREATED,
        Json(json!({
            "id": id, "orgId": "4b7d2c3e-8f1a-4e6b-9c2d-1a2b3c4d5e6f",
            "type": "outboundPhoneCall", "status": "queued",
            "phoneNumberId": body["phoneNumberId"], "customer": body["customer"],
            "createdAt": "2026-12-03T10:00:00.000Z", "updatedAt": "2026-12-03T10:00:00.000Z"
        })),
    )
        .into_response()
}

fn check_plan(plan: &Value) -> Option<Response> {
    let required: &[&str] = match plan["type"].as_str() {
        Some("bearer") => &["token"],
        Some("hmac") => &["secretKey", "algorithm"],
        Some("oauth2") => &["url", "clientId", "clientSecret"],
        _ => {
            return Some(error(
                StatusCode::BAD_REQUEST,
                json!([
                "authenticationPlan.type must be one of the following values: oauth2, hmac, bearer"
            ]),
            ))
        }
    };
    let missing: Vec<Value> = required
        .iter()
        .filter(|k| plan[**k].as_str().is_none_or(str::is_empty))
        .map(|k| json!(format!("authenticationPlan.{k} should not be empty")))
        .collect();
    (!missing.is_empty()).then(|| error(StatusCode::BAD_REQUEST, Value::Array(missing)))
}

async fn create_credential(
    State(fake): State<Fake>,
    method: Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = admit(&fake, method, "/credential".into(), &headers, &body) {
        return refused;
    }
    if let Some(bad) = unknown_properties(
        &body,
        &["provider", "name", "authenticationPlan", "encryptionPlan"],
    ) {
        return bad;
    }
    if body["provider"] != "custom-credential" {
        return error(
            StatusCode::BAD_REQUEST,
            json!(["provider must be one of the following values: custom-credential"]),
        );
    }
    if body["name"]
        .as_str()
        .is_some_and(|n| n.chars().count() > 40)
    {
        return error(
            StatusCode::BAD_REQUEST,
            json!(["name must be shorter than or equal to 40 characters"]),
        );
    }
    if let Some(bad) = check_plan(&body["authenticationPlan"]) {
        return bad;
    }
    let mut account = fake.0.lock().expect("lock");
    account.created += 1;
    let id = format!("5f0e3a1c-2d4b-4c6e-8a9f-{:012}", account.created);
    let mut credential = body.clone();
    credential["id"] = json!(id);
    credential["orgId"] = json!("4b7d2c3e-8f1a-4e6b-9c2d-1a2b3c4d5e6f");
    credential["createdAt"] = json!("2026-12-02T10:00:00.000Z");
    credential["updatedAt"] = json!("2026-12-02T10:00:00.000Z");
    credential["authenticationSession"] = json!({});
    account.credentials.push(credential.clone());
    (StatusCode::CREATED, Json(credential)).into_response()
}

async fn update_credential(
    State(fake): State<Fake>,
    Path(id): Path<String>,
    method: Method,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = admit(&fake, method, format!("/credential/{id}"), &headers, &body) {
        return refused;
    }
    if let Some(bad) = unknown_properties(&body, &["name", "authenticationPlan", "encryptionPlan"])
    {
        return bad;
    }
    if let Some(bad) = check_plan(&body["authenticationPlan"]) {
        return bad;
    }
    let mut account = fake.0.lock().expect("lock");
    let Some(credential) = account.credentials.iter_mut().find(|c| c["id"] == id) else {
        return error(StatusCode::NOT_FOUND, json!("Credential not found"));
    };
    for (k, v) in body.as_object().into_iter().flatten() {
        credential[k] = v.clone();
    }
    Json(credential.clone()).into_response()
}
