//! The scheduling model in availability and booking: a service's times across the
//! practitioners who give it, each with their own hours (or their location's, or the
//! clinic's), minus closures, with the service's buffer kept free; another clinic's service
//! or practitioner is never readable. Rows are made as the superuser (their API is tested in
//! practitioners.rs); everything else goes through the API.

use crate::support::*;
use serde_json::Value;
use uuid::Uuid;
use voxanne_db::demo::DemoClinic;

/// Monday 3 March 2031 (UTC hours are set for the test).
const MONDAY: &str = "2031-03-03";

struct Clinic {
    lee: Uuid,
    patel: Uuid,
    cleaning: Uuid,
    xray: Uuid,
}

/// Clinic `c`: open 09:00-17:00 UTC; Dr Lee works 09:00-11:00 Mondays, Dr Patel the hours of
/// the North location, 13:00-15:00 Mondays. Both do a 45-minute cleaning (15 minutes'
/// buffer); only Dr Lee does X-rays (20 minutes).
async fn clinic(app: &TestApp, c: &DemoClinic) -> Clinic {
    let mut admin = app.t.admin().await;
    let org = c.org.as_uuid();
    sqlx::query(
        r#"UPDATE agent_configurations SET time_zone = 'UTC',
               opening_hours = '{"mon": [["09:00","17:00"]]}' WHERE org_id = $1"#,
    )
    .bind(org)
    .execute(&mut admin)
    .await
    .expect("hours");
    let north: Uuid = sqlx::query_scalar(
        r#"INSERT INTO locations (org_id, name, opening_hours)
           VALUES ($1, 'North', '{"mon": [["13:00","15:00"]]}') RETURNING id"#,
    )
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .expect("location");
    let lee: Uuid = sqlx::query_scalar(
        r#"INSERT INTO practitioners (org_id, name, resource, opening_hours)
           VALUES ($1, 'Dr Lee', 'dr-lee', '{"mon": [["09:00","11:00"]]}') RETURNING id"#,
    )
    .bind(org)
    .fetch_one(&mut admin)
    .await
    .expect("lee");
    let patel: Uuid = sqlx::query_scalar(
        "INSERT INTO practitioners (org_id, name, resource, location_id)
         VALUES ($1, 'Dr Patel', 'dr-patel', $2) RETURNING id",
    )
    .bind(org)
    .bind(north)
    .fetch_one(&mut admin)
    .await
    .expect("patel");
    let service = |name: &'static str, minutes: i32, buffer: i32| {
        sqlx::query_scalar::<_, Uuid>(
            "INSERT INTO services (org_id, name, duration_minutes, buffer_minutes)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(org)
        .bind(name)
        .bind(minutes)
        .bind(buffer)
    };
    let cleaning = service("Cleaning", 45, 15)
        .fetch_one(&mut admin)
        .await
        .expect("cleaning");
    let xray = service("X-ray", 20, 0)
        .fetch_one(&mut admin)
        .await
        .expect("xray");
    for (p, s) in [(lee, cleaning), (patel, cleaning), (lee, xray)] {
        sqlx::query(
            "INSERT INTO practitioner_services (org_id, practitioner_id, service_id) VALUES ($1, $2, $3)",
        )
        .bind(org)
        .bind(p)
        .bind(s)
        .execute(&mut admin)
        .await
        .expect("gives");
    }
    Clinic {
        lee,
        patel,
        cleaning,
        xray,
    }
}

async fn availability(app: &TestApp, c: &DemoClinic, query: &str) -> crate::support::Response {
    app.get_as(
        &format!("/api/v1/availability?from={MONDAY}&to={MONDAY}&{query}"),
        &app.token(c.staff, Some(c.org)),
    )
    .await
}

/// (start time, practitioner name) of each slot.
fn slots(body: &Value) -> Vec<(String, String)> {
    body["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .map(|s| {
            (
                s["starts_at"].as_str().expect("start")[11..16].to_owned(),
                s["practitioner_name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn a_services_times_span_its_practitioners_own_hours_with_its_buffer() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let ca = clinic(&app, &a).await;
    let cb = clinic(&app, &b).await;

    // 45 minutes + 15 of buffer: an hour's grid in each practitioner's hours.
    let r = availability(&app, &a, &format!("service_id={}", ca.cleaning)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        slots(&r.body),
        pairs(&[
            ("09:00", "Dr Lee"),
            ("10:00", "Dr Lee"),
            ("13:00", "Dr Patel"),
            ("14:00", "Dr Patel")
        ])
    );
    assert_eq!(r.body["duration"], 45);
    assert_eq!(r.body["slots"][0]["ends_at"], "2031-03-03T09:45:00Z");
    assert_eq!(r.body["slots"][0]["resource"], "dr-lee");
    assert_eq!(r.body["slots"][2]["practitioner_id"], ca.patel.to_string());

    // Only Dr Lee does X-rays; one practitioner asked for.
    let r = availability(&app, &a, &format!("service_id={}", ca.xray)).await;
    assert!(slots(&r.body).iter().all(|(_, p)| p == "Dr Lee"));
    assert_eq!(slots(&r.body).len(), 6, "{:?}", r.body);
    let r = availability(
        &app,
        &a,
        &format!("service_id={}&practitioner_id={}", ca.cleaning, ca.patel),
    )
    .await;
    assert_eq!(
        slots(&r.body),
        pairs(&[("13:00", "Dr Patel"), ("14:00", "Dr Patel")])
    );
    // A practitioner's resource alone has their hours too.
    let r = availability(&app, &a, "resource=dr-patel&duration=60").await;
    assert_eq!(slots(&r.body).len(), 2, "{:?}", r.body);

    // The buffer is kept free too: with Dr Lee booked 09:50-10:00, a 09:00 cleaning (over at
    // 09:45) would leave no 15 minutes after it, so it is not offered.
    let r = app
        .post(
            "/api/v1/appointments",
            &app.token(a.staff, Some(a.org)),
            &serde_json::json!({"resource": "dr-lee", "starts_at": "2031-03-03T09:50:00Z",
                                "ends_at": "2031-03-03T10:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let r = availability(&app, &a, &format!("service_id={}", ca.cleaning)).await;
    assert_eq!(
        slots(&r.body),
        pairs(&[
            ("10:00", "Dr Lee"),
            ("13:00", "Dr Patel"),
            ("14:00", "Dr Patel")
        ])
    );

    // Another clinic's service or practitioner is not readable, and reads like no such thing.
    for query in [
        format!("service_id={}", cb.cleaning),
        format!("service_id={}", Uuid::new_v4()),
    ] {
        let r = availability(&app, &a, &query).await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (422, "validation_failed"),
            "{:?}",
            r.body
        );
        assert_eq!(r.body["error"]["field"], "service_id");
    }
    let r = availability(&app, &a, &format!("practitioner_id={}&duration=30", cb.lee)).await;
    assert_eq!(r.body["error"]["field"], "practitioner_id", "{:?}", r.body);
    let r = availability(
        &app,
        &a,
        &format!("service_id={}&resource=dr-lee", ca.cleaning),
    )
    .await;
    assert_eq!(r.body["error"]["field"], "resource", "{:?}", r.body);
    // B's own times are B's own (its Dr Lee is not A's).
    let r = availability(&app, &b, &format!("service_id={}", cb.cleaning)).await;
    assert_eq!(slots(&r.body).len(), 4, "{:?}", r.body);
}

#[tokio::test]
async fn closures_and_inactive_practitioners_take_times_away() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let ca = clinic(&app, &a).await;
    let mut admin = app.t.admin().await;
    let org = a.org.as_uuid();
    // Dr Patel is off that Monday.
    sqlx::query(
        "INSERT INTO closures (org_id, practitioner_id, starts_on, ends_on, reason)
         VALUES ($1, $2, '2031-03-03', '2031-03-03', 'Conference')",
    )
    .bind(org)
    .bind(ca.patel)
    .execute(&mut admin)
    .await
    .expect("closure");
    let r = availability(&app, &a, &format!("service_id={}", ca.cleaning)).await;
    assert_eq!(
        slots(&r.body),
        pairs(&[("09:00", "Dr Lee"), ("10:00", "Dr Lee")])
    );
    // Staff may still book it by hand (the REST API leaves hours to them, as before); the
    // agent may not (voice_agent.rs).
    let r = app
        .post(
            "/api/v1/appointment-holds",
            &app.token(a.staff, Some(a.org)),
            &serde_json::json!({"resource": "dr-patel", "starts_at": "2031-03-03T13:00:00Z",
                                "ends_at": "2031-03-03T13:45:00Z"}),
        )
        .await;
    assert_eq!(
        r.status, 201,
        "staff may still hold it by hand: {:?}",
        r.body
    );
    // Dr Lee stops practising: no times at all; then the clinic closes for the week.
    sqlx::query("UPDATE practitioners SET active = false WHERE id = $1")
        .bind(ca.lee)
        .execute(&mut admin)
        .await
        .expect("inactive");
    let r = availability(&app, &a, &format!("service_id={}", ca.cleaning)).await;
    assert_eq!(slots(&r.body), vec![], "{:?}", r.body);
    let r = availability(&app, &a, "resource=dr-lee&duration=30").await;
    assert_eq!(
        slots(&r.body),
        vec![],
        "an inactive practitioner has no hours"
    );
    sqlx::query(
        "INSERT INTO closures (org_id, starts_on, ends_on, reason)
         VALUES ($1, '2031-03-01', '2031-03-07', 'Holiday')",
    )
    .bind(org)
    .execute(&mut admin)
    .await
    .expect("clinic closure");
    let r = availability(&app, &a, "duration=30").await;
    assert_eq!(
        slots(&r.body),
        vec![],
        "the whole clinic is closed: {:?}",
        r.body
    );
}
