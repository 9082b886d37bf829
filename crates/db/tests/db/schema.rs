//! The schema's tenancy rules, checked from the catalog after all migrations, so that a future
//! migration that forgets one fails here (docs/TENANCY.md section 3).

use sqlx::PgConnection;
use voxanne_db::migrate::{APP_ROLE, OWNER_ROLE, SYSTEM_ROLE};
use voxanne_testkit::{tenant_tables, TestDb};

const REQUIRED_TABLES: [&str; 19] = [
    "organizations",
    "organization_members",
    "contacts",
    "calls",
    "appointments",
    "appointment_holds",
    "calendar_connections",
    "integration_settings",
    "agent_configurations",
    "campaigns",
    "sms_confirmation_logs",
    "dnc_list",
    "knowledge_base_documents",
    "knowledge_base_chunks",
    "phone_numbers",
    "credit_transactions",
    "failed_recording_uploads",
    "security_events",
    "idempotency_keys",
];

async fn scalar_bool(admin: &mut PgConnection, sql: &str, table: &str) -> bool {
    sqlx::query_scalar(sql)
        .bind(table)
        .fetch_one(admin)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test]
async fn every_tenant_table_follows_the_tenancy_rules() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let tables = tenant_tables(&mut admin).await;
    let names: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
    for required in REQUIRED_TABLES {
        assert!(names.contains(&required), "missing tenant table {required}");
    }

    let mut problems = Vec::new();
    for (table, column) in &tables {
        let t = table.as_str();
        let checks: [(&str, &str); 4] = [
            (
                "RLS enabled and forced",
                "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = $1::regclass",
            ),
            (
                "owned by voxanne_owner",
                "SELECT pg_get_userbyid(relowner) = 'voxanne_owner' FROM pg_class WHERE oid = $1::regclass",
            ),
            (
                "at least one policy",
                "SELECT count(*) > 0 FROM pg_policy WHERE polrelid = $1::regclass",
            ),
            (
                "no policy is trivially true or reads user_metadata",
                "SELECT coalesce(bool_and(
                     coalesce(pg_get_expr(polqual, polrelid), '') NOT IN ('true', '(true)')
                     AND coalesce(pg_get_expr(polwithcheck, polrelid), '') NOT IN ('true', '(true)')
                     AND coalesce(pg_get_expr(polqual, polrelid), '') NOT ILIKE '%user_metadata%'
                     AND coalesce(pg_get_expr(polwithcheck, polrelid), '') NOT ILIKE '%user_metadata%'), true)
                   FROM pg_policy WHERE polrelid = $1::regclass",
            ),
        ];
        for (rule, sql) in checks {
            if !scalar_bool(&mut admin, sql, t).await {
                let policies: Vec<String> = sqlx::query_scalar(
                    "SELECT format('%s USING %s WITH CHECK %s', polname,
                                   pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid))
                       FROM pg_policy WHERE polrelid = $1::regclass",
                )
                .bind(t)
                .fetch_all(&mut admin)
                .await
                .expect("policies");
                problems.push(format!("{t}: {rule} (policies: {policies:?})"));
            }
        }

        let tenant_column_rules = [
            (
                "every policy is exactly `tenant column = app.current_org_id()` in USING and WITH CHECK",
                "SELECT coalesce(bool_and(
                     pg_get_expr(polqual, polrelid) = format('(%I = app.current_org_id())', $2::text)
                     AND (polcmd IN ('r', 'd') OR pg_get_expr(polwithcheck, polrelid)
                          = format('(%I = app.current_org_id())', $2::text))), false)
                   FROM pg_policy WHERE polrelid = $1::regclass",
            ),
            (
                "tenant column NOT NULL",
                "SELECT coalesce((SELECT attnotnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2), false)",
            ),
            (
                "an index leading with the tenant column",
                "SELECT EXISTS (SELECT 1 FROM pg_index i
                                 WHERE i.indrelid = $1::regclass
                                   AND i.indkey[0] = (SELECT attnum FROM pg_attribute
                                                       WHERE attrelid = $1::regclass AND attname = $2))",
            ),
        ];
        for (rule, sql) in tenant_column_rules {
            let ok: bool = sqlx::query_scalar(sql)
                .bind(t)
                .bind(column)
                .fetch_one(&mut admin)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            if !ok {
                problems.push(format!("{t}: {rule}"));
            }
        }

        if t != "organizations" {
            let cascades: bool = scalar_bool(
                &mut admin,
                "SELECT EXISTS (
                   SELECT 1 FROM pg_constraint c
                    WHERE c.conrelid = $1::regclass AND c.contype = 'f'
                      AND c.confrelid = 'organizations'::regclass AND c.confdeltype = 'c'
                      AND c.conkey = ARRAY[(SELECT attnum FROM pg_attribute
                                             WHERE attrelid = $1::regclass AND attname = 'org_id')])",
                t,
            )
            .await;
            if !cascades {
                problems.push(format!(
                    "{t}: org_id REFERENCES organizations(id) ON DELETE CASCADE"
                ));
            }
        }
    }

    // Every foreign key from one tenant table to another (other than to organizations)
    // includes org_id on both sides, so no row can point across clinics.
    let crossing: Vec<String> = sqlx::query_scalar(
        "SELECT c.conname::text FROM pg_constraint c
           WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
             AND c.confrelid <> 'organizations'::regclass
             AND NOT (
               (SELECT attnum FROM pg_attribute WHERE attrelid = c.conrelid AND attname = 'org_id') = ANY (c.conkey)
               AND (SELECT attnum FROM pg_attribute WHERE attrelid = c.confrelid AND attname = 'org_id') = ANY (c.confkey)
               AND array_position(c.conkey, (SELECT attnum FROM pg_attribute WHERE attrelid = c.conrelid AND attname = 'org_id'))
                 = array_position(c.confkey, (SELECT attnum FROM pg_attribute WHERE attrelid = c.confrelid AND attname = 'org_id')))",
    )
    .fetch_all(&mut admin)
    .await
    .expect("foreign keys");
    for name in crossing {
        problems.push(format!(
            "foreign key {name} does not pair org_id with org_id"
        ));
    }

    // Every foreign key has a supporting index (its columns lead some index).
    let unindexed: Vec<String> = sqlx::query_scalar(
        "SELECT c.conname::text FROM pg_constraint c
          WHERE c.contype = 'f' AND c.connamespace = 'public'::regnamespace
            AND NOT EXISTS (
              SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.conrelid
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] @> c.conkey
                 AND (i.indkey::int2[])[0:cardinality(c.conkey) - 1] <@ c.conkey)",
    )
    .fetch_all(&mut admin)
    .await
    .expect("foreign key indexes");
    for name in unindexed {
        problems.push(format!("foreign key {name} has no supporting index"));
    }

    assert!(
        problems.is_empty(),
        "tenancy rules broken:\n  {}",
        problems.join("\n  ")
    );
}

#[tokio::test]
async fn the_application_role_owns_nothing_and_cannot_bypass_rls() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let (login, superuser, bypass): (bool, bool, bool) = sqlx::query_as(
        "SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
    )
    .bind(APP_ROLE)
    .fetch_one(&mut admin)
    .await
    .expect("app role");
    assert!(login && !superuser && !bypass);

    let owned: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid)
              + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid)
              + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid)
           FROM pg_roles r WHERE rolname = $1",
    )
    .bind(APP_ROLE)
    .fetch_one(&mut admin)
    .await
    .expect("ownership");
    assert_eq!(owned, 0, "{APP_ROLE} owns objects");

    // The owner is bound by FORCE RLS and cannot log in; the BYPASSRLS role cannot log in.
    for (role, may_bypass) in [(OWNER_ROLE, false), (SYSTEM_ROLE, true)] {
        let (login, superuser, bypass): (bool, bool, bool) = sqlx::query_as(
            "SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1",
        )
        .bind(role)
        .fetch_one(&mut admin)
        .await
        .expect("role");
        assert!(!login && !superuser && bypass == may_bypass, "{role}");
    }

    // Nothing is granted to PUBLIC on tenant tables; the app role has DML only.
    let public_grants: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.role_table_grants
          WHERE table_schema = 'public' AND grantee = 'PUBLIC'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("grants");
    assert_eq!(public_grants, 0);
    let app_privileges: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT privilege_type::text FROM information_schema.role_table_grants
          WHERE table_schema = 'public' AND grantee = $1 ORDER BY 1",
    )
    .bind(APP_ROLE)
    .fetch_all(&mut admin)
    .await
    .expect("grants");
    assert_eq!(app_privileges, ["DELETE", "INSERT", "SELECT", "UPDATE"]);

    // SECURITY DEFINER functions have a fixed search_path.
    let unpinned: Vec<String> = sqlx::query_scalar(
        "SELECT p.oid::regprocedure::text FROM pg_proc p
          WHERE p.prosecdef AND p.pronamespace IN ('app'::regnamespace, 'public'::regnamespace)
            AND NOT coalesce(p.proconfig::text[] && ARRAY['search_path=pg_catalog, pg_temp'], false)",
    )
    .fetch_all(&mut admin)
    .await
    .expect("functions");
    assert!(
        unpinned.is_empty(),
        "SECURITY DEFINER without a fixed search_path: {unpinned:?}"
    );
}
