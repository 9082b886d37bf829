//! A small typed client of the API, for tests that read as the behaviour they check:
//! `app.api(&token).book(slot).await` is an `Appointment` or a `Failure` (status, code,
//! field). Answers are read into the shapes the API documents, so a field that goes missing
//! or changes type fails the test that reads it. Every request still goes through
//! `TestApp::send`, so every answer is also checked against the OpenAPI document.

use super::{Response, TestApp};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

/// A refused request: its status, its error code, and the field it names (422s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub code: String,
    pub field: Option<String>,
}

impl Failure {
    /// `(status, code)`, for one `assert_eq!`.
    pub fn said(&self) -> (u16, &str) {
        (self.status, self.code.as_str())
    }
}

pub type Answer<T> = Result<T, Failure>;

#[derive(Debug, Clone, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Appointment {
    pub id: Uuid,
    pub org_id: Uuid,
    pub contact_id: Option<Uuid>,
    pub call_id: Option<Uuid>,
    pub hold_id: Option<Uuid>,
    pub resource: String,
    pub starts_at: String,
    pub ends_at: String,
    pub status: String,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Contact {
    pub id: Uuid,
    pub name: String,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub notes: Option<String>,
}

/// One member's view of the API: every call carries their token.
pub struct Api<'a> {
    app: &'a TestApp,
    token: String,
}

impl TestApp {
    pub fn api(&self, token: &str) -> Api<'_> {
        Api {
            app: self,
            token: token.to_owned(),
        }
    }
}

fn answer<T: DeserializeOwned>(r: Response, expected: u16) -> Answer<T> {
    if r.status.as_u16() == expected {
        return Ok(serde_json::from_value(r.body.clone()).unwrap_or_else(|e| {
            panic!(
                "a {expected} that is not the documented shape ({e}): {}",
                r.body
            )
        }));
    }
    assert!(
        !r.status.is_success(),
        "expected {expected}, got {}: {}",
        r.status,
        r.body
    );
    Err(Failure {
        status: r.status.as_u16(),
        code: r.code().to_owned(),
        field: r.body["error"]["field"].as_str().map(str::to_owned),
    })
}

impl Api<'_> {
    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Answer<T> {
        let r = self.app.send(method, path, &self.token, body, &[]).await;
        answer(r, expected)
    }

    /// `POST /appointments`: `slot` is the request body (`starts_at`, `ends_at`, …).
    pub async fn book(&self, slot: &Value) -> Answer<Appointment> {
        self.call("POST", "/api/v1/appointments", Some(slot), 201)
            .await
    }

    pub async fn appointment(&self, id: Uuid) -> Answer<Appointment> {
        self.call("GET", &format!("/api/v1/appointments/{id}"), None, 200)
            .await
    }

    /// `GET /appointments?{query}`, every page followed to the end: the ids in order.
    pub async fn appointments(&self, query: &str) -> Answer<Vec<Appointment>> {
        let mut all = Vec::new();
        let mut path = format!("/api/v1/appointments?{query}");
        loop {
            let page: Page<Appointment> = self.call("GET", &path, None, 200).await?;
            all.extend(page.data);
            match page.next_cursor {
                Some(cursor) => path = format!("/api/v1/appointments?{query}&cursor={cursor}"),
                None => return Ok(all),
            }
        }
    }

    /// `PATCH /appointments/{id}` with `changes`.
    pub async fn reschedule(&self, id: Uuid, changes: &Value) -> Answer<Appointment> {
        self.call(
            "PATCH",
            &format!("/api/v1/appointments/{id}"),
            Some(changes),
            200,
        )
        .await
    }

    pub async fn cancel(&self, id: Uuid) -> Answer<Appointment> {
        self.call(
            "POST",
            &format!("/api/v1/appointments/{id}/cancel"),
            Some(&json!({})),
            200,
        )
        .await
    }

    /// `POST /contacts` with a name and, if given, a phone number.
    pub async fn add_contact(&self, name: &str, phone: Option<&str>) -> Answer<Contact> {
        let mut body = json!({ "name": name });
        if let Some(phone) = phone {
            body["phone"] = json!(phone);
        }
        self.call("POST", "/api/v1/contacts", Some(&body), 201)
            .await
    }

    pub async fn contact(&self, id: Uuid) -> Answer<Contact> {
        self.call("GET", &format!("/api/v1/contacts/{id}"), None, 200)
            .await
    }
}
