//! Organizations and members: onboarding, the active org, erasing a clinic, and membership
//! changes with their roles and the one-owner-at-least invariant.

use crate::support::*;
use serde_json::{json, Value};
use uuid::Uuid;
use voxanne_db::demo::DemoClinic;
use voxanne_domain::{OrgId, UserId};

fn member_path(user: impl std::fmt::Display) -> String {
    format!("/api/v1/members/{user}")
}

async fn members(app: &TestApp, token: &str) -> Vec<Value> {
    let r = app.get_as("/api/v1/members?limit=100", token).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().cloned().unwrap_or_default()
}

fn role_of(members: &[Value], user: UserId) -> Option<String> {
    members
        .iter()
        .find(|m| m["user_id"] == json!(user))
        .and_then(|m| m["role"].as_str().map(str::to_owned))
}

/// Adds a fresh user to `clinic` with `role` (by its owner); returns the user and a token.
async fn add_member(app: &TestApp, clinic: &DemoClinic, role: &str) -> (UserId, String) {
    let user = UserId::new_random();
    let owner = app.token(clinic.owner, Some(clinic.org));
    let r = app
        .post(
            "/api/v1/members",
            &owner,
            &json!({ "user_id": user, "role": role }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (user, app.token(user, Some(clinic.org)))
}

#[tokio::test]
async fn onboarding_creates_an_org_whose_creator_is_its_owner() {
    let app = TestApp::spawn().await;
    let user = UserId::new_random();
    let token = app.token(user, None);
    let r = app
        .post(
            "/api/v1/organizations",
            &token,
            &json!({ "name": "  Riverside Dental " }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["name"], "Riverside Dental");
    assert_eq!(r.body["status"], "active");
    let org = r.body["id"].as_str().expect("id").to_owned();

    let got = app
        .get("/api/v1/organization", Some(&token), &[("x-org-id", &org)])
        .await;
    assert_eq!(got.status, 200, "{:?}", got.body);
    assert_eq!(got.body, r.body);
    let listed = app
        .get("/api/v1/members", Some(&token), &[("x-org-id", &org)])
        .await;
    assert_eq!(listed.status, 200);
    let data = listed.body["data"].as_array().expect("data");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["user_id"], json!(user));
    assert_eq!(data[0]["role"], "owner");
}

#[tokio::test]
async fn onboarding_needs_a_token_and_a_valid_name_and_refuses_an_org_id() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let token = app.token(UserId::new_random(), None);
    for name in [json!(""), json!("   "), json!("x".repeat(201)), json!(7)] {
        let r = app
            .post("/api/v1/organizations", &token, &json!({ "name": name }))
            .await;
        assert_eq!(r.status, 422, "{name}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "name");
    }
    let r = app
        .post(
            "/api/v1/organizations",
            &token,
            &json!({ "name": "Mine", "org_id": a.org }),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"]["field"], "org_id");
    let r = app
        .client
        .post(format!("{}/api/v1/organizations", app.base))
        .json(&json!({ "name": "Mine" }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let mut admin = app.t.admin().await;
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(orgs, 2, "no org was created by a refused request");
}

#[tokio::test]
async fn onboarding_is_documented_with_bearer_auth_and_without_the_org_header() {
    let doc = serde_json::to_value(voxanne_http::openapi()).expect("json");
    let op = &doc["paths"]["/api/v1/organizations"]["post"];
    assert_eq!(op["security"][0]["bearer"], json!([]));
    let params = op["parameters"].as_array().cloned().unwrap_or_default();
    assert!(params.iter().all(|p| p["name"] != "X-Org-Id"), "{params:?}");
    assert!(op["responses"].get("201").is_some());
    assert!(op["responses"].get("422").is_some());
}

#[tokio::test]
async fn any_member_reads_the_org_and_admins_rename_it() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let staff = app.token(a.staff, Some(a.org));
    let r = app.get_as("/api/v1/organization", &staff).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["id"], json!(a.org));
    assert_eq!(r.body["name"], "Clinic A");

    let (_, admin) = add_member(&app, &a, "admin").await;
    let r = app
        .patch(
            "/api/v1/organization",
            &admin,
            &json!({ "name": " Clinic A+ " }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "Clinic A+");
    let r = app
        .patch("/api/v1/organization", &admin, &json!({ "name": "" }))
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        app.get_as("/api/v1/organization", &staff).await.body["name"],
        "Clinic A+"
    );
}

#[tokio::test]
async fn staff_cannot_rename_or_erase_the_org_and_admins_cannot_erase_it() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let before = app.snapshot(a.org).await;
    let staff = app.token(a.staff, Some(a.org));
    let r = app
        .patch(
            "/api/v1/organization",
            &staff,
            &json!({ "name": "Mine now" }),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let r = app.delete("/api/v1/organization", &staff).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));

    let (admin_user, admin) = add_member(&app, &a, "admin").await;
    let r = app.delete("/api/v1/organization", &admin).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));

    // Nothing changed but the admin's own membership.
    let mut after = app.snapshot(a.org).await;
    for (table, rows) in after.iter_mut() {
        if table == "organization_members" {
            rows.retain(|m| m["user_id"] != json!(admin_user));
        }
    }
    assert_eq!(before, after);
}

#[tokio::test]
async fn erasing_an_org_removes_every_row_of_it_in_every_table_and_nothing_of_another() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    for clinic in [&a, &b] {
        let mut tx = app
            .t
            .db
            .tenant(clinic.org, clinic.owner)
            .await
            .expect("tenant");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    let mut admin = app.t.admin().await;
    let tables = voxanne_testkit::tenant_tables(&mut admin).await;
    assert!(tables.len() >= 18, "{tables:?}");
    let count =
        |table: &str, column: &str| format!("SELECT count(*) FROM {table} WHERE {column} = $1");
    for (table, column) in &tables {
        let n: i64 = sqlx::query_scalar(&count(table, column))
            .bind(a.org.as_uuid())
            .fetch_one(&mut admin)
            .await
            .expect("count");
        assert!(
            n > 0,
            "{table} has no row of Clinic A: the test would prove nothing"
        );
    }
    let b_before = app.snapshot(b.org).await;
    let owner = app.token(a.owner, Some(a.org));
    let staff = app.token(a.staff, Some(a.org));

    let r = app.delete("/api/v1/organization", &owner).await;
    assert_eq!(r.status, 204, "{:?}", r.body);

    for (table, column) in &tables {
        let n: i64 = sqlx::query_scalar(&count(table, column))
            .bind(a.org.as_uuid())
            .fetch_one(&mut admin)
            .await
            .expect("count");
        assert_eq!(n, 0, "{table} still holds rows of the erased clinic");
    }
    assert_eq!(app.snapshot(b.org).await, b_before, "Clinic B changed");
    for token in [&owner, &staff] {
        for path in ["/api/v1/organization", "/api/v1/calls", "/api/v1/members"] {
            let r = app.get_as(path, token).await;
            assert_eq!(
                (r.status.as_u16(), r.code()),
                (403, "not_a_member"),
                "{path}"
            );
        }
    }
    let b_token = app.token(b.owner, Some(b.org));
    assert_eq!(app.get_as("/api/v1/calls", &b_token).await.status, 200);
}

#[tokio::test]
async fn admins_add_change_and_remove_members_and_removal_takes_effect_at_once() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let (_, admin) = add_member(&app, &a, "admin").await;
    let user = UserId::new_random();
    let token = app.token(user, Some(a.org));
    assert_eq!(app.get_as("/api/v1/calls", &token).await.status, 403);

    let r = app
        .post(
            "/api/v1/members",
            &admin,
            &json!({ "user_id": user, "role": "staff" }),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["role"], "staff");
    let r = app
        .post(
            "/api/v1/members",
            &admin,
            &json!({ "user_id": user, "role": "admin" }),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "already_a_member"));
    assert_eq!(app.get_as("/api/v1/calls", &token).await.status, 200);

    let r = app
        .patch(&member_path(user), &admin, &json!({ "role": "admin" }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        role_of(&members(&app, &admin).await, user).as_deref(),
        Some("admin")
    );
    assert_eq!(
        app.get_as("/api/v1/security-events", &token).await.status,
        200
    );

    let r = app.delete(&member_path(user), &admin).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(role_of(&members(&app, &admin).await, user), None);
    let r = app.get_as("/api/v1/calls", &token).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_a_member"));

    let r = app.delete(&member_path(user), &admin).await;
    assert_eq!(r.status, 404);
    let r = app
        .patch(
            &member_path(Uuid::new_v4()),
            &admin,
            &json!({ "role": "staff" }),
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .post(
            "/api/v1/members",
            &admin,
            &json!({ "user_id": user, "role": "root" }),
        )
        .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["error"]["field"], "role");
}

#[tokio::test]
async fn the_members_list_is_paginated_oldest_first() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    for _ in 0..3 {
        add_member(&app, &a, "staff").await;
    }
    let token = app.token(a.staff, Some(a.org));
    let all = members(&app, &token).await;
    assert_eq!(all.len(), 5);
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/api/v1/members?limit=2".to_owned(),
            Some(c) => format!("/api/v1/members?limit=2&cursor={c}"),
        };
        let r = app.get_as(&path, &token).await;
        assert_eq!(r.status, 200);
        paged.extend(r.body["data"].as_array().cloned().unwrap_or_default());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, all);
    assert_eq!(all[0]["role"], "owner", "the founder comes first");
}

#[tokio::test]
async fn staff_manage_no_members_but_may_leave() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let (other, _) = add_member(&app, &a, "staff").await;
    let staff = app.token(a.staff, Some(a.org));
    let r = app
        .post(
            "/api/v1/members",
            &staff,
            &json!({ "user_id": Uuid::new_v4(), "role": "staff" }),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let r = app
        .patch(&member_path(a.staff), &staff, &json!({ "role": "admin" }))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let r = app
        .patch(&member_path(other), &staff, &json!({ "role": "admin" }))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let r = app.delete(&member_path(other), &staff).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));

    let r = app.delete(&member_path(a.staff), &staff).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(app.get_as("/api/v1/calls", &staff).await.status, 403);
    let owner = app.token(a.owner, Some(a.org));
    assert_eq!(
        role_of(&members(&app, &owner).await, other).as_deref(),
        Some("staff")
    );
}

#[tokio::test]
async fn only_owners_grant_revoke_add_or_remove_owners() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let (admin_user, admin) = add_member(&app, &a, "admin").await;
    let (second_owner, _) = add_member(&app, &a, "owner").await;
    let owner = app.token(a.owner, Some(a.org));

    let r = app
        .post(
            "/api/v1/members",
            &admin,
            &json!({ "user_id": Uuid::new_v4(), "role": "owner" }),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    for (user, role) in [
        (admin_user, "owner"),
        (a.staff, "owner"),
        (second_owner, "admin"),
    ] {
        let r = app
            .patch(&member_path(user), &admin, &json!({ "role": role }))
            .await;
        assert_eq!(
            (r.status.as_u16(), r.code()),
            (403, "forbidden"),
            "{user} -> {role}"
        );
    }
    let r = app.delete(&member_path(second_owner), &admin).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    let r = app
        .post(
            "/api/v1/members",
            &admin,
            &json!({ "user_id": Uuid::new_v4(), "role": "admin" }),
        )
        .await;
    assert_eq!(r.status, 201, "admins do add non-owners");

    let listed = members(&app, &owner).await;
    assert_eq!(role_of(&listed, admin_user).as_deref(), Some("admin"));
    assert_eq!(role_of(&listed, second_owner).as_deref(), Some("owner"));

    let r = app
        .patch(
            &member_path(admin_user),
            &owner,
            &json!({ "role": "owner" }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app
        .patch(
            &member_path(second_owner),
            &owner,
            &json!({ "role": "staff" }),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.delete(&member_path(admin_user), &owner).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
}

#[tokio::test]
async fn the_last_owner_can_be_neither_demoted_nor_removed() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    for role in ["admin", "staff"] {
        let r = app
            .patch(&member_path(a.owner), &owner, &json!({ "role": role }))
            .await;
        assert_eq!((r.status.as_u16(), r.code()), (409, "last_owner"));
    }
    let r = app.delete(&member_path(a.owner), &owner).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "last_owner"));
    assert_eq!(
        role_of(&members(&app, &owner).await, a.owner).as_deref(),
        Some("owner")
    );

    // With a second owner, the first may step down.
    let (second, second_token) = add_member(&app, &a, "owner").await;
    let r = app.delete(&member_path(a.owner), &owner).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = app.delete(&member_path(second), &second_token).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "last_owner"));
}

async fn owners(app: &TestApp, org: OrgId) -> Vec<Uuid> {
    let mut admin = app.t.admin().await;
    sqlx::query_scalar(
        "SELECT user_id FROM organization_members WHERE org_id = $1 AND role = 'owner'",
    )
    .bind(org.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("owners")
}

#[tokio::test]
async fn two_owners_stepping_down_at_once_leave_exactly_one_owner() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let (second, second_token) = add_member(&app, &a, "owner").await;
    let first_token = app.token(a.owner, Some(a.org));
    for round in 0..6 {
        let staff = json!({ "role": "staff" });
        let (first_path, second_path) = (member_path(a.owner), member_path(second));
        let (one, two) = tokio::join!(
            app.patch(&first_path, &first_token, &staff),
            app.patch(&second_path, &second_token, &staff),
        );
        let mut statuses = [one.status.as_u16(), two.status.as_u16()];
        statuses.sort_unstable();
        assert_eq!(
            statuses,
            [200, 409],
            "round {round}: {:?} {:?}",
            one.body,
            two.body
        );
        let loser = if one.status == 409 { &one } else { &two };
        assert_eq!(loser.code(), "last_owner");
        let remaining = owners(&app, a.org).await;
        assert_eq!(remaining.len(), 1, "round {round}");
        // The remaining owner makes the other an owner again for the next round.
        let (stayed, demoted) = if remaining[0] == a.owner.as_uuid() {
            (&first_token, second.as_uuid())
        } else {
            (&second_token, a.owner.as_uuid())
        };
        let r = app
            .patch(&member_path(demoted), stayed, &json!({ "role": "owner" }))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_leave_exactly_one_owner() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let (second, second_token) = add_member(&app, &a, "owner").await;
    let first_token = app.token(a.owner, Some(a.org));
    for round in 0..6 {
        let admin = json!({ "role": "admin" });
        let (first_path, second_path) = (member_path(a.owner), member_path(second));
        let (one, two) = tokio::join!(
            app.patch(&second_path, &first_token, &admin),
            app.patch(&first_path, &second_token, &admin),
        );
        let ok = [&one, &two].iter().filter(|r| r.status == 200).count();
        assert_eq!(ok, 1, "round {round}: {:?} {:?}", one.body, two.body);
        let remaining = owners(&app, a.org).await;
        assert_eq!(remaining.len(), 1, "round {round}");
        let (stayed, demoted) = if remaining[0] == a.owner.as_uuid() {
            (&first_token, second.as_uuid())
        } else {
            (&second_token, a.owner.as_uuid())
        };
        let r = app
            .patch(&member_path(demoted), stayed, &json!({ "role": "owner" }))
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
}

#[tokio::test]
async fn another_clinics_admin_cannot_touch_our_members() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_before = app.data_snapshot(a.org).await;
    let b_owner = app.token(b.owner, Some(b.org));
    let r = app
        .patch(&member_path(a.staff), &b_owner, &json!({ "role": "owner" }))
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"));
    let r = app.delete(&member_path(a.owner), &b_owner).await;
    assert_eq!((r.status.as_u16(), r.code()), (404, "not_found"));
    assert!(role_of(&members(&app, &b_owner).await, a.staff).is_none());
    // Adding A's user to B is B's business only: A is unchanged.
    let r = app
        .post(
            "/api/v1/members",
            &b_owner,
            &json!({ "user_id": a.staff, "role": "staff" }),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(app.data_snapshot(a.org).await, a_before, "Clinic A changed");

    // The attempts on A's members are recorded for A, whose members they are; B, which
    // asked, records nothing.
    let probes = app.probe_events(&a).await;
    assert_eq!(probes.len(), 2, "{probes:?}");
    assert!(app.security_events(&b).await.is_empty());

    // Naming Clinic A as the active org does not help.
    let a_org = a.org.to_string();
    let r = app
        .send(
            "PATCH",
            &member_path(a.staff),
            &b_owner,
            Some(&json!({ "role": "owner" })),
            &[("x-org-id", &a_org)],
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_a_member"));
    let r = app
        .send(
            "DELETE",
            "/api/v1/organization",
            &b_owner,
            None,
            &[("x-org-id", &a_org)],
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "not_a_member"));
}

#[tokio::test]
async fn a_body_that_names_an_org_is_refused() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let before = app.snapshot(b.org).await;
    let cases = [
        (
            "POST",
            "/api/v1/members".to_owned(),
            json!({ "user_id": Uuid::new_v4(), "role": "staff", "org_id": b.org }),
        ),
        (
            "PATCH",
            member_path(a.staff),
            json!({ "role": "admin", "org_id": b.org }),
        ),
        (
            "PATCH",
            "/api/v1/organization".to_owned(),
            json!({ "name": "B's now", "org_id": b.org }),
        ),
    ];
    for (method, path, body) in cases {
        let r = app.send(method, &path, &owner, Some(&body), &[]).await;
        assert_eq!(r.status, 422, "{method} {path}: {:?}", r.body);
        assert_eq!(r.body["error"]["field"], "org_id");
    }
    assert_eq!(app.snapshot(b.org).await, before);
    assert_eq!(
        app.get_as("/api/v1/organization", &owner).await.body["name"],
        "Clinic A"
    );
}
