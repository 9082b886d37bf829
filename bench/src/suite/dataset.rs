//! The suite's clinics and calls, generated straight into the database with `COPY`.
//!
//! Clinic `i` has the id `00000000-0000-4000-8000-{100000000000 + i}` and one owner,
//! `00000000-0000-4000-9000-{100000000000 + i}`: ids a pgbench script can build from a random
//! number, so that its clients rotate over clinics as the API's do. Clinic 0 is the whale: it
//! holds a tenth of all calls; the others share the rest evenly.

use indicatif::{ProgressBar, ProgressStyle};
use sqlx::{Executor, PgConnection};
use std::fmt::Write as _;
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_db::encrypted::{Field, CALL_SUMMARY, CALL_TRANSCRIPT};
use voxanne_domain::OrgId;

/// What pgbench adds to a random clinic number to spell its id's last group.
pub const ID_BASE: u64 = 100_000_000_000;
/// The whale's share of all calls.
const WHALE_SHARE: f64 = 0.1;
/// Calls per `COPY` message.
const CHUNK: u64 = 20_000;

/// `text` encrypted as the server stores the column `field` of the clinic's row `id`
/// (docs/ENCRYPTION.md), written as COPY's text format writes a bytea.
fn copy_encrypted(keyring: &Keyring, field: Field, org: Uuid, id: Uuid, text: &str) -> String {
    let stored = keyring
        .seal_stored(text.as_bytes(), &field.aad(OrgId::from_uuid(org), id))
        .expect("AES-GCM encrypts any text");
    let mut out = String::with_capacity(4 + 2 * stored.len());
    out.push_str("\\\\x");
    for b in stored {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub fn org_id(i: u64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-4000-8000-{}", ID_BASE + i)).expect("a uuid")
}

pub fn user_id(i: u64) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-4000-9000-{}", ID_BASE + i)).expect("a uuid")
}

/// What the database holds: `clinics` clinics, and how many calls each.
#[derive(Debug, Default, Clone)]
pub struct Dataset {
    pub per_clinic: Vec<u64>,
}

impl Dataset {
    pub fn clinics(&self) -> u64 {
        self.per_clinic.len() as u64
    }

    pub fn calls(&self) -> u64 {
        self.per_clinic.iter().sum()
    }

    /// Calls of one small (not the whale) clinic.
    pub fn small_clinic_calls(&self) -> u64 {
        self.per_clinic.get(1).copied().unwrap_or(0)
    }

    pub fn whale_calls(&self) -> u64 {
        self.per_clinic.first().copied().unwrap_or(0)
    }
}

/// Each clinic's share of `calls` among `clinics`.
fn shares(clinics: u64, calls: u64) -> Vec<u64> {
    let whale = ((calls as f64) * WHALE_SHARE).round() as u64;
    let others = clinics.saturating_sub(1).max(1);
    let rest = calls - whale;
    let mut per = vec![whale];
    per.extend((0..others).map(|i| rest / others + u64::from(i < rest % others)));
    per.truncate(clinics as usize);
    per
}

/// Grows `have` to `clinics` clinics holding `calls` calls (a tenth the whale's), adding
/// clinics, their owners and calls, their transcripts and summaries encrypted with `keyring`
/// as the server's own are (and each clinic marked as encrypted with its key, so the server's
/// encryption job has nothing to do); a progress bar on stderr. Ends with ANALYZE.
pub async fn grow(
    admin: &mut PgConnection,
    keyring: &Keyring,
    have: &Dataset,
    clinics: u64,
    calls: u64,
) -> Result<Dataset, Box<dyn std::error::Error>> {
    let want = shares(clinics, calls);
    let first_new = have.clinics();
    if clinics > first_new {
        // Each new clinic and its owner, in one statement.
        sqlx::query(
            "WITH new AS (
                 INSERT INTO organizations (id, name)
                 SELECT ('00000000-0000-4000-8000-' || ($3 + i))::uuid, 'Bench clinic ' || i
                   FROM generate_series($1, $2) i
                 RETURNING id)
             INSERT INTO organization_members (org_id, user_id, role)
             SELECT id, overlay(id::text placing '9' from 20 for 1)::uuid, 'owner' FROM new",
        )
        .bind(i64::try_from(first_new)?)
        .bind(i64::try_from(clinics - 1)?)
        .bind(i64::try_from(ID_BASE)?)
        .execute(&mut *admin)
        .await?;
    }
    let todo: Vec<(u64, u64, u64)> = want
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let had = have.per_clinic.get(i).copied().unwrap_or(0);
            (i as u64, had, n.saturating_sub(had))
        })
        .filter(|(_, _, add)| *add > 0)
        .collect();
    let total: u64 = todo.iter().map(|(_, _, add)| add).sum();
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {human_pos}/{human_len} calls, {per_sec}, {eta} left",
        )?
        .progress_chars("=> "),
    );
    bar.set_message(format!("{clinics} clinics"));
    let base = chrono::DateTime::parse_from_rfc3339("2026-12-01T18:00:00Z")?.to_utc();
    let mut copy = admin
        .copy_in_raw(
            "COPY calls (org_id, id, direction, status, from_number, to_number, started_at,
                         ended_at, duration_seconds, transcript, summary) FROM STDIN",
        )
        .await?;
    const TRANSCRIPT: &str = "Caller: I would like to book a check-up next week, mornings if \
         possible. Agent: Tuesday at 9:30 is free with Dr. Lee. Caller: That works, thank you.";
    let mut buf = String::with_capacity(CHUNK as usize * 600);
    let mut in_buf = 0;
    for (clinic, had, add) in todo {
        let org = org_id(clinic);
        // A clinic's calls go back a minute each from `base`, the newest first: calls
        // added later are older, so a clinic's first page stays the same page.
        for k in had..had + add {
            let started = base - chrono::Duration::minutes(i64::try_from(k)?);
            let ended = started + chrono::Duration::seconds(90 + (k % 240) as i64);
            let (direction, status) = match k % 10 {
                0 => ("outbound", "completed"),
                1 => ("inbound", "missed"),
                _ => ("inbound", "completed"),
            };
            let id = Uuid::new_v4();
            let transcript = copy_encrypted(keyring, CALL_TRANSCRIPT, org, id, TRANSCRIPT);
            let summary = copy_encrypted(keyring, CALL_SUMMARY, org, id, "Booked a check-up.");
            writeln!(
                buf,
                "{org}\t{id}\t{direction}\t{status}\t+1415555{:04}\t+14155550100\t{}\t{}\t{}\t{transcript}\t{summary}",
                k % 10_000,
                started.format("%Y-%m-%d %H:%M:%S+00"),
                ended.format("%Y-%m-%d %H:%M:%S+00"),
                (ended - started).num_seconds(),
            )?;
            in_buf += 1;
            if in_buf == CHUNK {
                copy.send(std::mem::take(&mut buf).into_bytes()).await?;
                bar.inc(in_buf);
                in_buf = 0;
                buf.reserve(CHUNK as usize * 600);
            }
        }
    }
    if in_buf > 0 {
        copy.send(buf.into_bytes()).await?;
        bar.inc(in_buf);
    }
    copy.finish().await?;
    bar.finish_and_clear();
    sqlx::query(
        "UPDATE organizations SET encrypted_with = $1 WHERE encrypted_with IS DISTINCT FROM $1",
    )
    .bind(keyring.current_key_id())
    .execute(&mut *admin)
    .await?;
    admin.execute("ANALYZE").await?;
    Ok(Dataset { per_clinic: want })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_give_the_whale_a_tenth_and_spread_the_rest() {
        let per = shares(100, 10_000);
        assert_eq!(per.len(), 100);
        assert_eq!(per[0], 1_000);
        assert_eq!(per.iter().sum::<u64>(), 10_000);
        assert!(per[1..].iter().all(|&n| n == 90 || n == 91), "{per:?}");
    }

    #[test]
    fn ids_are_what_pgbench_spells() {
        assert_eq!(
            org_id(7).to_string(),
            "00000000-0000-4000-8000-100000000007"
        );
        assert_eq!(
            user_id(12).to_string(),
            "00000000-0000-4000-9000-100000000012"
        );
    }
}
