//! The tools that only read: who the caller is, what the clinic's notes say, and the
//! do-not-call list.

use crate::arguments::{phone_arg, text};
use crate::booking::clinic_zone;
use crate::dispatch::{say, Answer};
use crate::speech::spoken;
use crate::CallContext;
use serde_json::Value;
use voxanne_db::TenantTx;

pub(crate) async fn find_contact(tx: &mut TenantTx, call: &CallContext) -> Answer {
    let Some(phone) = call.caller.as_ref() else {
        return Ok("The caller's number is withheld, so I can't look them up.".into());
    };
    let Some(contact) = tx.find_contact_by_phone(phone).await? else {
        return Ok(format!("No contact on file for {}.", phone.as_str()));
    };
    let tz = clinic_zone(tx).await?;
    let upcoming = tx.upcoming_appointments_of_contact(contact.id, 3).await?;
    let mut answer = format!("This is {}, a patient on file.", contact.name);
    if upcoming.is_empty() {
        answer.push_str(" No upcoming appointments.");
    } else {
        let list: Vec<String> = upcoming
            .iter()
            .map(|a| format!("{} (appointment_id {})", spoken(a.starts_at, tz), a.id))
            .collect();
        answer.push_str(&format!(" Upcoming: {}.", list.join("; ")));
    }
    Ok(answer)
}

pub(crate) async fn search_knowledge_base(tx: &mut TenantTx, args: &Value) -> Answer {
    let Some(query) = text(args, "query") else {
        return say("What should I look up?");
    };
    let query: String = query.chars().take(500).collect();
    let hits = tx.search_knowledge_base(&query, 3).await?;
    if hits.is_empty() {
        return Ok("The clinic's notes don't cover that.".into());
    }
    let notes: Vec<String> = hits
        .iter()
        .map(|h| {
            let mut content: String = h.content.chars().take(400).collect();
            if content.len() < h.content.len() {
                content.push('…');
            }
            format!("{}: {}", h.title, content)
        })
        .collect();
    Ok(format!("From the clinic's notes: {}", notes.join(" | ")))
}

pub(crate) async fn check_dnc(tx: &mut TenantTx, call: &CallContext, args: &Value) -> Answer {
    let phone = phone_arg(args, call)?;
    Ok(if tx.is_on_dnc(&phone).await? {
        format!("{} is on the clinic's do-not-call list.", phone.as_str())
    } else {
        format!("{} is not on the do-not-call list.", phone.as_str())
    })
}
