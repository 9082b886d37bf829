//! The access log's writer (migrations/0028, 0029): every read and change of patient data in a
//! tenant transaction is noted on the transaction ([`TenantTx::note_access`]), and the notes are
//! written when it commits, in the same round trip as the COMMIT. A transaction that rolls back
//! showed nothing and changed nothing, and leaves no record; one that commits cannot commit
//! without its records.
//!
//! The queries of this crate note what they read and change (the generic rows of `rows.rs`
//! for every patient table, and each named query), so every caller is covered: the API and the
//! dashboard, the voice agent, the jobs and the CLI. Who opened the transaction says who acts
//! and how ([`TenantTx::set_origin`], [`TenantTx::set_actor`]).

use crate::{DbError, TenantTx};
use chrono::{DateTime, Utc};
use std::fmt::Write as _;
use std::net::IpAddr;
use uuid::Uuid;
use voxanne_domain::OrgId;

/// Who acts: a member (the user of the transaction), the voice agent, a background job, an
/// operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    User,
    Agent,
    System,
    Cli,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::System => "system",
            ActorKind::Cli => "cli",
        }
    }
}

/// What was done to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Read,
    List,
    Create,
    Update,
    Delete,
    Export,
    Erase,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::List => "list",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Export => "export",
            Action::Erase => "erase",
        }
    }
}

/// The kinds of patient data, as the log names them.
pub mod subject {
    pub const CONTACT: &str = "contact";
    pub const CALL: &str = "call";
    pub const TRANSCRIPT: &str = "transcript";
    pub const RECORDING: &str = "recording";
    pub const APPOINTMENT: &str = "appointment";
    pub const HOLD: &str = "hold";
    pub const INBOX_MESSAGE: &str = "inbox_message";
    pub const SMS: &str = "sms";
    pub const CONSENT: &str = "consent";
    pub const LEAD: &str = "lead";
    pub const CAMPAIGN_TARGET: &str = "campaign_target";
    pub const COLD_CALL: &str = "cold_call";
    pub const LEGAL_HOLD: &str = "legal_hold";
    /// The log itself: who read whose access records.
    pub const ACCESS_LOG: &str = "access_log";
}

/// How and from where: the route or tool, the client's address, the request id. Text is kept
/// to a safe alphabet when it is set, so that the record can travel as literal SQL in the
/// COMMIT's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub(crate) actor: ActorKind,
    pub(crate) actor_id: Option<Uuid>,
    pub(crate) via: String,
    pub(crate) client_addr: Option<IpAddr>,
    pub(crate) request_id: Option<String>,
}

impl Origin {
    pub(crate) fn new(actor: ActorKind, actor_id: Option<Uuid>, via: &str) -> Self {
        Self {
            actor,
            actor_id,
            via: clean_via(via),
            client_addr: None,
            request_id: None,
        }
    }
}

/// At most 300 characters of `via`, every character outside letters, digits and ` /{}_.:-`
/// replaced by `_`.
pub(crate) fn clean_via(via: &str) -> String {
    let cleaned: String = via
        .chars()
        .take(300)
        .map(|c| {
            if c.is_ascii_alphanumeric() || " /{}_.:-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unspecified".to_owned()
    } else {
        cleaned
    }
}

/// A request id the log can keep: 1 to 200 letters, digits and `._:-`. Any other is not kept
/// (a client chooses its request id).
pub(crate) fn clean_request_id(id: &str) -> Option<String> {
    let ok = (1..=200).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    ok.then(|| id.to_owned())
}

/// One noted access, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) kind: &'static str,
    pub(crate) id: Option<Uuid>,
    pub(crate) action: Action,
    pub(crate) patients: Vec<Uuid>,
}

/// The notes of one transaction: the same access twice (a row read, then updated, is two;
/// read twice is one) is kept once, its patients merged.
#[derive(Debug, Default)]
pub(crate) struct Notes(Vec<Note>);

impl Notes {
    pub(crate) fn add(
        &mut self,
        kind: &'static str,
        id: Option<Uuid>,
        action: Action,
        patients: impl IntoIterator<Item = Uuid>,
    ) {
        debug_assert!(
            !kind.is_empty()
                && kind.len() <= 40
                && kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "a subject kind is [a-z_]{{1,40}}: {kind}"
        );
        let at = match self
            .0
            .iter()
            .position(|n| n.kind == kind && n.id == id && n.action == action)
        {
            Some(at) => at,
            None => {
                self.0.push(Note {
                    kind,
                    id,
                    action,
                    patients: Vec::new(),
                });
                self.0.len() - 1
            }
        };
        let note = &mut self.0[at];
        for p in patients {
            if !note.patients.contains(&p) && note.patients.len() < 1000 {
                note.patients.push(p);
            }
        }
    }

    /// Whether there are notes and every one is of a read (a list or an export is one): such
    /// a transaction changed no patient data, and its records may be written after it
    /// commits, by the access writer, before it answers (access_writer.rs).
    pub(crate) fn only_reads(&self) -> bool {
        !self.0.is_empty()
            && self
                .0
                .iter()
                .all(|n| matches!(n.action, Action::Read | Action::List | Action::Export))
    }

    pub(crate) fn into_vec(self) -> Vec<Note> {
        self.0
    }

    /// The INSERT of every note, as one statement of literal SQL: the values are uuids, an
    /// address, fixed words and text of the safe alphabets above (no quote, no backslash), so
    /// nothing needs escaping. `None` when there is nothing to write.
    pub(crate) fn insert_sql(&self, org: OrgId, origin: &Origin) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let text = literal;
        let actor_id = text(origin.actor_id.map(|u| u.to_string()).as_deref());
        let addr = text(origin.client_addr.map(|a| a.to_string()).as_deref());
        let request_id = text(origin.request_id.as_deref());
        let mut sql = String::from(
            "INSERT INTO access_log (org_id, actor_kind, actor_id, subject_kind, subject_id, \
             action, via, client_addr, request_id, patients) VALUES ",
        );
        for (i, note) in self.0.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let patients = if note.patients.is_empty() {
                "NULL".to_owned()
            } else {
                let list: Vec<String> = note.patients.iter().map(Uuid::to_string).collect();
                format!("'{{{}}}'::uuid[]", list.join(","))
            };
            let _ = write!(
                sql,
                "('{org}', '{}', {actor_id}, '{}', {}, '{}', '{}', {addr}::inet, {request_id}, {patients})",
                origin.actor.as_str(),
                note.kind,
                text(note.id.map(|u| u.to_string()).as_deref()),
                note.action.as_str(),
                origin.via,
            );
        }
        Some(sql)
    }
}

/// A value of a record as literal SQL: quoted, or NULL. Only for the log's values (uuids,
/// addresses, fixed words, text of the safe alphabets above), which hold no quote.
pub(crate) fn literal(v: Option<&str>) -> String {
    v.map_or_else(|| "NULL".to_owned(), |v| format!("'{v}'"))
}

/// A record of the access log, as the clinic's admins read it.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRecord {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub subject_kind: String,
    pub subject_id: Option<Uuid>,
    pub action: String,
    pub via: String,
    /// The client's address, as text.
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
    pub patients: Option<Vec<Uuid>>,
    /// The record's place in its clinic's chain, once sealed.
    pub seq: Option<i64>,
}

/// Which records: about one patient (a contact: its own record, or any that names it), by one
/// user, in `[from, to)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccessFilter {
    pub patient: Option<Uuid>,
    pub user: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TenantTx {
    /// The clinic's access records matching `filter`, newest first by `(at, id)`, after the
    /// keyset position `after`; up to `limit`. Reading the log is itself recorded.
    pub async fn list_access_log(
        &mut self,
        filter: &AccessFilter,
        after: Option<(DateTime<Utc>, Uuid)>,
        limit: u32,
        action: Action,
    ) -> Result<Vec<AccessRecord>, DbError> {
        let org = self.org().as_uuid();
        let rows = sqlx::query_as!(
            AccessRecord,
            r#"SELECT id, at, actor_kind, actor_id, subject_kind, subject_id, action, via,
                      host(client_addr) AS client_addr, request_id, patients, seq
                 FROM access_log
                WHERE org_id = $1
                  AND ($2::uuid IS NULL
                       OR (subject_kind = 'contact' AND subject_id = $2)
                       -- Sealed records by their index of patients, the others apart (0035).
                       OR (seq IS NOT NULL AND patients @> ARRAY[$2])
                       OR (seq IS NULL AND patients @> ARRAY[$2]))
                  AND ($3::uuid IS NULL OR actor_id = $3)
                  AND ($4::timestamptz IS NULL OR at >= $4)
                  AND ($5::timestamptz IS NULL OR at < $5)
                  AND ($6::timestamptz IS NULL OR (at, id) < ($6, $7))
                ORDER BY at DESC, id DESC
                LIMIT $8"#,
            org,
            filter.patient,
            filter.user,
            filter.from,
            filter.to,
            after.map(|a| a.0),
            after.map(|a| a.1),
            i64::from(limit)
        )
        .fetch_all(self.conn())
        .await?;
        self.note_access(subject::ACCESS_LOG, None, action, filter.patient);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_and_request_ids_keep_to_their_alphabets() {
        assert_eq!(
            clean_via("GET /api/v1/calls/{id}"),
            "GET /api/v1/calls/{id}"
        );
        assert_eq!(
            clean_via("x'; DROP TABLE calls; --\\"),
            "x__ DROP TABLE calls_ --_"
        );
        assert_eq!(clean_via(""), "unspecified");
        assert_eq!(clean_via(&"a".repeat(400)).len(), 300);
        assert_eq!(
            clean_request_id("5b1e-4c:x.y_z").as_deref(),
            Some("5b1e-4c:x.y_z")
        );
        assert_eq!(clean_request_id("a'b"), None);
        assert_eq!(clean_request_id(""), None);
        assert_eq!(clean_request_id(&"a".repeat(201)), None);
    }

    #[test]
    fn the_same_access_is_noted_once_with_its_patients_merged() {
        let (p, q) = (Uuid::new_v4(), Uuid::new_v4());
        let id = Some(Uuid::new_v4());
        let mut notes = Notes::default();
        notes.add(subject::CALL, id, Action::Read, [p]);
        notes.add(subject::CALL, id, Action::Read, [p, q]);
        notes.add(subject::CALL, id, Action::Update, []);
        assert_eq!(notes.0.len(), 2);
        assert_eq!(notes.0[0].patients, vec![p, q]);
        let origin = Origin::new(ActorKind::User, Some(Uuid::nil()), "GET /calls/{id}");
        let sql = notes
            .insert_sql(OrgId::from_uuid(Uuid::nil()), &origin)
            .expect("sql");
        assert_eq!(sql.matches("('").count(), 2, "{sql}");
        assert!(sql.contains(&format!("'{{{p},{q}}}'::uuid[]")), "{sql}");
    }
}
