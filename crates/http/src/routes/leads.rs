//! The clinic's leads: people it may call who are not (yet) its patients. Imported from CSV
//! (one row per number: a number twice is one lead), with where their consent to be called
//! came from; a campaign calls them (`/campaigns/{id}/targets`); a lead becomes a contact.

use crate::error::ApiError;
use crate::extract::{AppJson, AppPath, AppQuery, Tenant};
use crate::fields::{nullable, optional_text, text};
use crate::found::{delete_found, found};
use crate::pagination::{Cursor, Page, PageParams};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use voxanne_db::outreach::{Lead as LeadRow, LeadInput, LeadPatch as LeadChange};
use voxanne_domain::outreach::LeadStatus;
use voxanne_domain::{ContactId, LeadId, PhoneNumber};

const ADMINS_ONLY: &str = "leads are who the clinic's campaigns call: admins manage them";

/// A lead as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Lead {
    pub id: LeadId,
    pub phone: String,
    pub name: String,
    pub email: Option<String>,
    /// IANA; absent: the number's country decides the calling hours.
    pub time_zone: Option<String>,
    pub status: LeadStatus,
    /// Where the consent to be called came from; absent: none recorded with the lead.
    pub consent_source: Option<String>,
    /// The contact it became.
    pub contact_id: Option<ContactId>,
    pub notes: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<LeadRow> for Lead {
    fn from(r: LeadRow) -> Self {
        Self {
            id: r.id,
            phone: r.phone,
            name: r.name,
            email: r.email,
            time_zone: r.time_zone,
            status: r.status,
            consent_source: r.consent_source,
            contact_id: r.contact_id,
            notes: r.notes,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LeadParams {
    /// Only leads of this status.
    status: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 25.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
}

#[utoipa::path(get, path = "/leads", tag = "leads", params(LeadParams),
    responses((status = 200, body = Page<Lead>)))]
pub async fn list(
    Tenant(mut tx): Tenant,
    AppQuery(p): AppQuery<LeadParams>,
) -> Result<Json<Page<Lead>>, ApiError> {
    let status = p
        .status
        .as_deref()
        .map(|s| {
            s.parse::<LeadStatus>()
                .map_err(|e| ApiError::validation("status", e.to_string()))
        })
        .transpose()?;
    let (cursor, limit) = PageParams {
        cursor: p.cursor,
        limit: p.limit,
    }
    .parse()?;
    let mut rows = tx
        .list_leads(status, cursor.map(|c| (c.at, c.id)), limit + 1)
        .await?;
    tx.commit().await?;
    Ok(Json(
        Page::from_overfetch(&mut rows, limit, |l| Cursor {
            at: l.created_at,
            id: l.id.as_uuid(),
        })
        .map(Lead::from),
    ))
}

/// A CSV lead list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"csv": "phone,name,time_zone,consent_source\n+14155550123,Ada Lovelace,America/Los_Angeles,web form 2026-11-02\n",
    "consent_source": "open day sign-up sheet"}))]
pub struct LeadImport {
    /// CSV text with a header row. Columns (any order; only `phone` is required): `phone`
    /// (E.164), `name`, `email`, `time_zone` (IANA), `consent_source`. At most 10,000 rows
    /// and 1,000,000 characters.
    #[schema(max_length = 1000000)]
    csv: String,
    /// The consent source of every row that gives none.
    #[schema(max_length = 500)]
    consent_source: Option<String>,
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    /// Data rows read.
    pub rows: u32,
    pub created: u32,
    /// Leads already there, completed with what the file knew.
    pub updated: u32,
    /// Rows whose number came earlier in the same file (merged into it).
    pub duplicates: u32,
    /// Leads with a consent source recorded (a granted `calls` consent record each).
    pub with_consent: u32,
}

/// At most this many data rows in one import.
const MAX_IMPORT_ROWS: usize = 10_000;
/// At most this many characters of CSV in one import (the request body limit is 1 MiB).
const MAX_CSV_CHARS: usize = 1_000_000;

/// One row of the file, checked.
fn lead_of(
    record: &csv::StringRecord,
    columns: &BTreeMap<String, usize>,
    line: u64,
    default_consent: Option<&str>,
) -> Result<LeadInput, ApiError> {
    let get = |name: &str| {
        columns
            .get(name)
            .and_then(|i| record.get(*i))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let field = |name: &str| format!("csv line {line}: {name}");
    let phone_text =
        get("phone").ok_or_else(|| ApiError::validation(field("phone"), "is empty"))?;
    let phone = PhoneNumber::parse(phone_text)
        .map_err(|e| ApiError::validation(field("phone"), e.to_string()))?;
    let name = text(&field("name"), get("name").unwrap_or(""), 0, 200)?;
    let email = optional_text(&field("email"), get("email"), 320)?;
    let time_zone = match get("time_zone") {
        Some(zone) => {
            zone.parse::<chrono_tz::Tz>().map_err(|_| {
                ApiError::validation(
                    field("time_zone"),
                    format!("{zone:?} is not an IANA time zone"),
                )
            })?;
            Some(zone.to_owned())
        }
        None => None,
    };
    let consent_source = optional_text(
        &field("consent_source"),
        get("consent_source").or(default_consent),
        500,
    )?;
    Ok(LeadInput {
        phone,
        name,
        email,
        time_zone,
        consent_source,
    })
}

/// Imports a CSV lead list, deduplicated by number (E.164): a number already a lead is
/// completed with what the file knows, a number twice in the file is one lead. All or
/// nothing: a row that does not read (its line named in the error) imports none. A consent
/// source records a granted `calls` consent for the number. Admins only.
#[utoipa::path(post, path = "/leads/import", tag = "leads", request_body = LeadImport,
    responses((status = 200, body = ImportReport)))]
pub async fn import(
    Tenant(mut tx): Tenant,
    AppJson(body): AppJson<LeadImport>,
) -> Result<Json<ImportReport>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    if body.csv.chars().count() > MAX_CSV_CHARS {
        return Err(ApiError::validation(
            "csv",
            format!("must be at most {MAX_CSV_CHARS} characters: split the file"),
        ));
    }
    let default_consent = optional_text("consent_source", body.consent_source.as_deref(), 500)?;
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body.csv.as_bytes());
    let columns: BTreeMap<String, usize> = reader
        .headers()
        .map_err(|e| {
            ApiError::validation("csv line 1", format!("the header row does not read: {e}"))
        })?
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_ascii_lowercase(), i))
        .collect();
    if !columns.contains_key("phone") {
        return Err(ApiError::validation(
            "csv line 1",
            "the header row has no `phone` column",
        ));
    }
    let mut leads: Vec<LeadInput> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut report = ImportReport {
        rows: 0,
        created: 0,
        updated: 0,
        duplicates: 0,
        with_consent: 0,
    };
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            ApiError::validation(format!("csv line {line}"), e.to_string())
        })?;
        if record.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        report.rows += 1;
        if leads.len() + usize::try_from(report.duplicates).unwrap_or(0) >= MAX_IMPORT_ROWS {
            return Err(ApiError::validation(
                "csv",
                format!("at most {MAX_IMPORT_ROWS} rows in one import"),
            ));
        }
        let line = record.position().map_or(0, |p| p.line());
        let lead = lead_of(&record, &columns, line, default_consent.as_deref())?;
        match seen.get(lead.phone.as_str()) {
            Some(&i) => {
                // The same number again: what this row adds completes the first.
                report.duplicates += 1;
                let first = &mut leads[i];
                if first.name.is_empty() {
                    first.name = lead.name;
                }
                first.email = first.email.take().or(lead.email);
                first.time_zone = first.time_zone.take().or(lead.time_zone);
                first.consent_source = first.consent_source.take().or(lead.consent_source);
            }
            None => {
                seen.insert(lead.phone.as_str().to_owned(), leads.len());
                leads.push(lead);
            }
        }
    }
    for lead in &leads {
        let (_, created) = tx.import_lead(lead).await?;
        if created {
            report.created += 1;
        } else {
            report.updated += 1;
        }
        if lead.consent_source.is_some() {
            report.with_consent += 1;
        }
    }
    tx.commit().await?;
    Ok(Json(report))
}

#[utoipa::path(get, path = "/leads/{id}", tag = "leads", params(("id" = Uuid, Path)),
    responses((status = 200, body = Lead)))]
pub async fn get(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LeadId>,
) -> Result<Json<Lead>, ApiError> {
    let lead = found::<LeadRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(Json(lead.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"status": "not_interested", "notes": "Asked not to be called about flu shots."}))]
pub struct LeadPatch {
    #[schema(max_length = 200)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>, max_length = 320)]
    email: Option<Option<String>>,
    /// IANA; `null` clears it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    time_zone: Option<Option<String>>,
    status: Option<LeadStatus>,
    #[schema(max_length = 2000)]
    notes: Option<String>,
}

/// Admins only.
#[utoipa::path(patch, path = "/leads/{id}", tag = "leads", params(("id" = Uuid, Path)),
    request_body = LeadPatch, responses((status = 200, body = Lead)))]
pub async fn update(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LeadId>,
    AppJson(patch): AppJson<LeadPatch>,
) -> Result<Json<Lead>, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    let time_zone = match patch.time_zone {
        Some(Some(zone)) => {
            let zone = zone.trim().to_owned();
            zone.parse::<chrono_tz::Tz>().map_err(|_| {
                ApiError::validation("time_zone", format!("{zone:?} is not an IANA time zone"))
            })?;
            Some(Some(zone))
        }
        other => other,
    };
    let change = LeadChange {
        name: patch
            .name
            .as_deref()
            .map(|n| text("name", n, 0, 200))
            .transpose()?,
        email: patch
            .email
            .map(|e| optional_text("email", e.as_deref(), 320))
            .transpose()?,
        time_zone,
        status: patch.status,
        notes: patch
            .notes
            .as_deref()
            .map(|n| text("notes", n, 0, 2000))
            .transpose()?,
    };
    let lead = tx
        .update_lead(id, &change)
        .await?
        .ok_or_else(|| ApiError::missing(tx.membership(), "leads", "id", id.as_uuid()))?;
    tx.commit().await?;
    Ok(Json(lead.into()))
}

/// Admins only.
#[utoipa::path(delete, path = "/leads/{id}", tag = "leads", params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted")))]
pub async fn delete(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LeadId>,
) -> Result<StatusCode, ApiError> {
    ApiError::require_admin(tx.membership(), ADMINS_ONLY)?;
    delete_found::<LeadRow>(&mut tx, id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A lead that became a contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct Converted {
    pub lead: Lead,
    pub contact_id: ContactId,
}

/// Makes the lead a contact (the clinic's contact with its number, if it has one), and
/// marks it `converted`.
#[utoipa::path(post, path = "/leads/{id}/convert", tag = "leads", params(("id" = Uuid, Path)),
    responses((status = 200, body = Converted)))]
pub async fn convert(
    Tenant(mut tx): Tenant,
    AppPath(id): AppPath<LeadId>,
) -> Result<Json<Converted>, ApiError> {
    let (lead, contact_id) = tx
        .convert_lead(id)
        .await?
        .ok_or_else(|| ApiError::missing(tx.membership(), "leads", "id", id.as_uuid()))?;
    tx.commit().await?;
    Ok(Json(Converted {
        lead: lead.into(),
        contact_id,
    }))
}

/// This resource's routes, each with its OpenAPI operation (registered under `/api/v1`).
pub fn routes() -> OpenApiRouter<crate::AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(import))
        .routes(routes!(get, update, delete))
        .routes(routes!(convert))
}
