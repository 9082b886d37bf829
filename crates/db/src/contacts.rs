//! Contacts: the clinic's patients and callers.

use crate::encrypted::CONTACT_NOTES;
use crate::rows::{query_row, tenant_row, After, FromStored};
use crate::{Action, DbError, TenantTx};
use chrono::{DateTime, Utc};
use voxanne_domain::{ContactId, PhoneNumber};

/// A row of `contacts` (the API's view of a contact is the HTTP layer's), its notes opened;
/// `Contact<Vec<u8>>` as stored, encrypted (encrypted.rs).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact<Text = String> {
    pub id: ContactId,
    pub name: String,
    /// E.164.
    pub phone: Option<String>,
    pub email: Option<String>,
    pub notes: Option<Text>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

type StoredContact = Contact<Vec<u8>>;

impl FromStored<StoredContact> for Contact {
    fn from_stored(tx: &TenantTx, c: StoredContact) -> Result<Self, DbError> {
        Ok(Contact {
            notes: tx.open_opt(CONTACT_NOTES, c.id.as_uuid(), c.notes)?,
            id: c.id,
            name: c.name,
            phone: c.phone,
            email: c.email,
            created_at: c.created_at,
            updated_at: c.updated_at,
        })
    }
}

/// A contact's writable fields, already validated.
#[derive(Debug, Clone)]
pub struct ContactFields {
    pub name: String,
    pub phone: Option<PhoneNumber>,
    pub email: Option<String>,
    pub notes: Option<String>,
}

/// `query_as!` for [`Contact`]: the column list goes between the first two SQL pieces.
macro_rules! contact_query {
    ($($query:tt)*) => {
        query_row!(StoredContact, "id, name, phone, email, notes, created_at, updated_at", $($query)*)
    };
}

// A deleted contact's calls, appointments, messages and leads keep their history without it.
tenant_row!(
    Contact,
    ContactId,
    "contacts",
    contact_query,
    subject = "contact",
    patient = |c| Some(c.id.into()),
    detach = [
        "UPDATE calls SET contact_id = NULL WHERE org_id = $1 AND contact_id = $2",
        "UPDATE appointments SET contact_id = NULL WHERE org_id = $1 AND contact_id = $2",
        "UPDATE inbox_messages SET contact_id = NULL WHERE org_id = $1 AND contact_id = $2",
        "UPDATE leads SET contact_id = NULL WHERE org_id = $1 AND contact_id = $2",
    ]
);

/// `text` for use inside LIKE, with its wildcards escaped.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

impl TenantTx {
    /// Newest first. `search` matches the name (case-insensitively, anywhere) or, when it has
    /// three digits or more, the digits of the phone number.
    pub async fn list_contacts(
        &mut self,
        search: Option<&str>,
        after: After,
        limit: u32,
    ) -> Result<Vec<Contact>, DbError> {
        let org = self.org().as_uuid();
        let name = search.map(|s| format!("%{}%", like_escape(s.trim())));
        let digits: Option<String> = search
            .map(|s| s.chars().filter(char::is_ascii_digit).collect::<String>())
            .filter(|d| d.len() >= 3)
            .map(|d| format!("%{d}%"));
        let rows = contact_query!(
            [
                "SELECT ",
                " FROM contacts
                  WHERE org_id = $1
                    AND ($2::text IS NULL OR name ILIKE $2 OR phone LIKE $3)
                    AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5))
                  ORDER BY created_at DESC, id DESC
                  LIMIT $6"
            ],
            org,
            name,
            digits,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        let rows: Vec<Contact> = self.opened(rows)?;
        self.note_rows(&rows);
        Ok(rows)
    }

    pub async fn insert_contact(&mut self, fields: &ContactFields) -> Result<Contact, DbError> {
        let org = self.org().as_uuid();
        let id = uuid::Uuid::new_v4();
        let notes = self.seal_opt(CONTACT_NOTES, id, fields.notes.as_deref())?;
        let contact = contact_query!(
            [
                "INSERT INTO contacts (org_id, id, name, phone, email, notes)
                 VALUES ($1, $6, $2, $3, $4, $5) RETURNING ",
                ""
            ],
            org,
            fields.name,
            fields.phone.as_ref().map(PhoneNumber::as_str),
            fields.email,
            notes,
            id
        )
        .fetch_one(self.conn())
        .await?;
        let contact = Contact::from_stored(self, contact)?;
        self.note_row(&contact, Action::Create);
        Ok(contact)
    }

    pub async fn update_contact(
        &mut self,
        id: ContactId,
        fields: &ContactFields,
    ) -> Result<Option<Contact>, DbError> {
        let org = self.org().as_uuid();
        let notes = self.seal_opt(CONTACT_NOTES, id.as_uuid(), fields.notes.as_deref())?;
        let contact = contact_query!(
            [
                "UPDATE contacts SET name = $3, phone = $4, email = $5, notes = $6, updated_at = now()
                  WHERE org_id = $1 AND id = $2 RETURNING ",
                ""
            ],
            org,
            id.as_uuid(),
            fields.name,
            fields.phone.as_ref().map(PhoneNumber::as_str),
            fields.email,
            notes
        )
        .fetch_optional(self.conn())
        .await?;
        let contact: Option<Contact> = self.opened_opt(contact)?;
        if let Some(contact) = &contact {
            self.note_row(contact, Action::Update);
        }
        Ok(contact)
    }

    /// The contact with this phone number (a number is on at most one contact per org).
    pub async fn find_contact_by_phone(
        &mut self,
        phone: &PhoneNumber,
    ) -> Result<Option<Contact>, DbError> {
        let org = self.org().as_uuid();
        let contact = contact_query!(
            ["SELECT ", " FROM contacts WHERE org_id = $1 AND phone = $2"],
            org,
            phone.as_str()
        )
        .fetch_optional(self.conn())
        .await?;
        let contact: Option<Contact> = self.opened_opt(contact)?;
        if let Some(contact) = &contact {
            self.note_row(contact, Action::Read);
        }
        Ok(contact)
    }

    /// The contact with this phone number, created with `name` if there is none. Safe against
    /// a concurrent creation of the same number (the org's unique phone key decides).
    pub async fn ensure_contact_for_phone(
        &mut self,
        phone: &PhoneNumber,
        name: &str,
    ) -> Result<Contact, DbError> {
        let org = self.org().as_uuid();
        let created = contact_query!(
            [
                "INSERT INTO contacts (org_id, name, phone) VALUES ($1, $2, $3)
                 ON CONFLICT ON CONSTRAINT contacts_org_phone_key DO NOTHING
                 RETURNING ",
                ""
            ],
            org,
            name,
            phone.as_str()
        )
        .fetch_optional(self.conn())
        .await?;
        match self.opened_opt::<_, Contact>(created)? {
            Some(contact) => {
                self.note_row(&contact, Action::Create);
                Ok(contact)
            }
            None => self.find_contact_by_phone(phone).await?.ok_or_else(|| {
                DbError::Corrupt("a contact's phone conflicted, then was not there".into())
            }),
        }
    }
}
