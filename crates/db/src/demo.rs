//! Demo data: two clinics, "Clinic A" and "Clinic B", each with an owner and a staff user,
//! contacts, calls in both directions and several statuses, and appointments. The ids are
//! fixed so that seeding again is a no-op and tokens printed earlier stay meaningful.

use crate::calls::NewCall;
use crate::system::{provision_org, NewOrg};
use crate::{Db, DbError, TenantError, TenantTx};
use chrono::{Duration, DurationRound, Utc};
use uuid::Uuid;
use voxanne_domain::{CallDirection, CallStatus, OrgId, PhoneNumber, RecordingStatus, UserId};

#[derive(Debug, Clone)]
pub struct DemoClinic {
    pub name: &'static str,
    pub org: OrgId,
    pub owner: UserId,
    pub staff: UserId,
    /// The clinic's own phone number (the number patients call).
    pub number: &'static str,
}

fn id(text: &str) -> Uuid {
    // Only called with the literals below.
    Uuid::parse_str(text).unwrap_or_default()
}

pub fn clinics() -> [DemoClinic; 2] {
    [
        DemoClinic {
            name: "Clinic A",
            org: OrgId::from_uuid(id("0a000000-0000-4000-8000-00000000000a")),
            owner: UserId::from_uuid(id("0a000000-0000-4000-8000-0000000a0001")),
            staff: UserId::from_uuid(id("0a000000-0000-4000-8000-0000000a0002")),
            number: "+14155550100",
        },
        DemoClinic {
            name: "Clinic B",
            org: OrgId::from_uuid(id("0b000000-0000-4000-8000-00000000000b")),
            owner: UserId::from_uuid(id("0b000000-0000-4000-8000-0000000b0001")),
            staff: UserId::from_uuid(id("0b000000-0000-4000-8000-0000000b0002")),
            number: "+442079460100",
        },
    ]
}

/// Seeds both clinics unless they are there already. Returns them.
pub async fn seed(db: &Db) -> Result<[DemoClinic; 2], DbError> {
    let clinics = clinics();
    for clinic in &clinics {
        match db.tenant(clinic.org, clinic.owner).await {
            Ok(_) => continue, // seeded before; the dropped transaction rolls back
            Err(TenantError::NotMember) => {}
            Err(TenantError::Suspended | TenantError::Busy) => continue,
            Err(TenantError::Db(e)) => return Err(e),
        }
        let mut tx = provision_org(
            db,
            &NewOrg {
                id: clinic.org,
                name: clinic.name.to_owned(),
                owner: clinic.owner,
            },
        )
        .await?;
        tx.set_actor(crate::ActorKind::Cli);
        tx.set_origin("voxanne demo", None, None);
        seed_clinic(&mut tx, clinic).await?;
        tx.commit().await?;
    }
    for clinic in &clinics {
        for (user, email, name) in demo_accounts(clinic) {
            // Idempotent: an existing account is kept. No password (`!`): demo mode signs
            // them in with one click; a password reset gives them one.
            crate::system::create_account(db, Some(user), &email, Some(&name), "!").await?;
        }
    }
    Ok(clinics)
}

/// The built-in accounts of a demo clinic's owner and staff member: (user, email, name).
pub fn demo_accounts(clinic: &DemoClinic) -> [(UserId, String, String); 2] {
    let slug = clinic.name.to_lowercase().replace(' ', "-");
    [
        (
            clinic.owner,
            format!("owner@{slug}.example"),
            format!("{} owner", clinic.name),
        ),
        (
            clinic.staff,
            format!("staff@{slug}.example"),
            format!("{} staff", clinic.name),
        ),
    ]
}

fn phone(text: &str) -> Result<PhoneNumber, DbError> {
    PhoneNumber::parse(text).map_err(|e| DbError::Corrupt(e.to_string()))
}

async fn seed_clinic(tx: &mut TenantTx, clinic: &DemoClinic) -> Result<(), DbError> {
    let org = tx.org().as_uuid();
    let (prefix, patients): (&str, [&str; 3]) = if clinic.name.ends_with('A') {
        ("+1415555", ["Ada Lovelace", "Alan Turing", "Grace Hopper"])
    } else {
        ("+4420794", ["Bea Baker", "Bob Brown", "Bill Blake"])
    };
    sqlx::query!(
        "INSERT INTO organization_members (org_id, user_id, role) VALUES ($1, $2, 'staff')",
        org,
        clinic.staff.as_uuid()
    )
    .execute(tx.conn())
    .await?;
    sqlx::query!(
        "INSERT INTO app.phone_number_directory (number, org_id) VALUES ($1, $2)",
        clinic.number,
        org
    )
    .execute(tx.conn())
    .await?;
    sqlx::query!(
        "INSERT INTO phone_numbers (org_id, number, label) VALUES ($1, $2, 'Front desk')",
        org,
        clinic.number
    )
    .execute(tx.conn())
    .await?;
    sqlx::query!(
        "INSERT INTO agent_configurations (org_id, greeting, opening_hours, time_zone)
         VALUES ($1, $2, $3, $4)",
        org,
        format!("Thank you for calling {}. How can I help?", clinic.name),
        serde_json::json!({
            "mon": [["09:00", "17:00"]], "tue": [["09:00", "17:00"]], "wed": [["09:00", "17:00"]],
            "thu": [["09:00", "17:00"]], "fri": [["09:00", "13:00"]]
        }),
        if clinic.name.ends_with('A') {
            "America/Los_Angeles"
        } else {
            "Europe/London"
        }
    )
    .execute(tx.conn())
    .await?;

    let mut contacts = Vec::new();
    for (i, name) in patients.iter().enumerate() {
        let contact: Uuid = sqlx::query_scalar!(
            "INSERT INTO contacts (org_id, name, phone) VALUES ($1, $2, $3) RETURNING id",
            org,
            name,
            format!("{prefix}{:04}", 1001 + i)
        )
        .fetch_one(tx.conn())
        .await?;
        contacts.push((contact, format!("{prefix}{:04}", 1001 + i)));
    }

    let now = Utc::now()
        .duration_trunc(Duration::minutes(1))
        .unwrap_or_else(|_| Utc::now());
    let plan = [
        (
            CallDirection::Inbound,
            CallStatus::Completed,
            0,
            RecordingStatus::Stored,
        ),
        (
            CallDirection::Inbound,
            CallStatus::Missed,
            1,
            RecordingStatus::None,
        ),
        (
            CallDirection::Outbound,
            CallStatus::Completed,
            2,
            RecordingStatus::Queued,
        ),
        (
            CallDirection::Inbound,
            CallStatus::Voicemail,
            0,
            RecordingStatus::Queued,
        ),
        (
            CallDirection::Outbound,
            CallStatus::Failed,
            1,
            RecordingStatus::None,
        ),
        (
            CallDirection::Inbound,
            CallStatus::Completed,
            2,
            RecordingStatus::None,
        ),
        (
            CallDirection::Outbound,
            CallStatus::Missed,
            0,
            RecordingStatus::None,
        ),
        (
            CallDirection::Inbound,
            CallStatus::InProgress,
            1,
            RecordingStatus::None,
        ),
    ];
    let mut first_call = None;
    for (n, (direction, status, who, recording)) in plan.into_iter().enumerate() {
        let (contact, number) = &contacts[who];
        let started_at = now - Duration::hours(6 * (plan.len() - n) as i64);
        let (from, to) = match direction {
            CallDirection::Inbound => (number.as_str(), clinic.number),
            CallDirection::Outbound => (clinic.number, number.as_str()),
        };
        let ended = matches!(status, CallStatus::Completed | CallStatus::Voicemail)
            .then(|| started_at + Duration::seconds(95 + 40 * n as i64));
        let call = tx
            .insert_call(&NewCall {
                contact_id: Some(voxanne_domain::ContactId::from(*contact)),
                direction,
                status,
                from_number: phone(from)?,
                to_number: phone(to)?,
                started_at,
                ended_at: ended,
                recording_status: recording,
                recording_url: (recording != RecordingStatus::None)
                    .then(|| format!("https://recordings.example.invalid/{}/{n}.wav", clinic.org)),
                transcript: ended.map(|_| "Caller asked to book a check-up.".to_owned()),
                summary: ended.map(|_| format!("{} called about an appointment.", patients[who])),
            })
            .await?;
        first_call.get_or_insert(call);
    }

    for (day, (contact, _)) in contacts.iter().take(2).enumerate() {
        let starts_at = (now + Duration::days(day as i64 + 1))
            .duration_trunc(Duration::hours(1))
            .unwrap_or(now);
        let id = Uuid::new_v4();
        let notes = tx.seal(
            crate::encrypted::APPOINTMENT_NOTES,
            id,
            "Booked by the voice agent",
        )?;
        sqlx::query!(
            "INSERT INTO appointments (org_id, id, contact_id, call_id, starts_at, ends_at, notes)
             VALUES ($1, $6, $2, $3, $4, $5, $7)",
            org,
            contact,
            first_call.map(Uuid::from),
            starts_at,
            starts_at + Duration::minutes(30),
            id,
            notes
        )
        .execute(tx.conn())
        .await?;
    }
    Ok(())
}
