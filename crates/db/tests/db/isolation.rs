//! Tenant isolation at the database level, connected as the application role: the QA checks
//! of the hardening report, composite foreign keys, the empty tenant context, pool safety.

use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;
use voxanne_db::demo::{self, DemoClinic};
use voxanne_db::migrate::APP_ROLE;
use voxanne_db::{Db, TenantError};
use voxanne_testkit::{fill_remaining_tables, tenant_tables, TestDb};

/// Two seeded clinics with a row in every tenant table.
async fn two_clinics() -> (TestDb, [DemoClinic; 2]) {
    let t = TestDb::new().await;
    let clinics = demo::seed(&t.db).await.expect("seeding");
    for c in &clinics {
        let mut tx = t.db.tenant(c.org, c.owner).await.expect("owner tenant tx");
        fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    (t, clinics)
}

/// Rows per org in `table`, counted by the superuser (no RLS): the truth to compare with.
async fn true_count(admin: &mut PgConnection, table: &str, column: &str, org: Uuid) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE {column} = $1"))
        .bind(org)
        .fetch_one(admin)
        .await
        .expect("counting")
}

#[tokio::test]
async fn a_clinic_sees_all_of_its_rows_and_none_of_the_other_in_every_tenant_table() {
    let (t, [a, b]) = two_clinics().await;
    let mut admin = t.admin().await;
    let tables = tenant_tables(&mut admin).await;
    assert!(tables.len() >= 18, "tenant tables found: {tables:?}");

    for (me, other) in [(&a, &b), (&b, &a)] {
        let mut tx = t.db.tenant(me.org, me.owner).await.expect("tenant tx");
        for (table, column) in &tables {
            // No WHERE clause: what a handler that forgot the filter would get.
            let row = sqlx::query(&format!(
                "SELECT count(*) AS total, count(*) FILTER (WHERE {column} = $1) AS mine FROM {table}"
            ))
            .bind(me.org.as_uuid())
            .fetch_one(tx.conn())
            .await
            .expect("counting under RLS");
            let (total, mine): (i64, i64) = (row.get("total"), row.get("mine"));
            let expected = true_count(&mut admin, table, column, me.org.as_uuid()).await;
            let others = true_count(&mut admin, table, column, other.org.as_uuid()).await;
            assert!(
                expected > 0 && others > 0,
                "{table}: the fixture must fill it for both orgs"
            );
            assert_eq!(total, mine, "{table}: {} sees another org's rows", me.name);
            assert_eq!(
                mine, expected,
                "{table}: {} does not see all of its own rows",
                me.name
            );
        }
    }
}

#[tokio::test]
async fn deleting_an_org_removes_its_rows_from_every_table_and_leaves_the_other() {
    let (t, [a, b]) = two_clinics().await;
    let mut admin = t.admin().await;
    let tables = tenant_tables(&mut admin).await;
    let mut before_b = Vec::new();
    for (table, column) in &tables {
        before_b.push(true_count(&mut admin, table, column, b.org.as_uuid()).await);
    }

    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant tx");
    let deleted = sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(tx.conn())
        .await
        .expect("deleting the org");
    assert_eq!(deleted.rows_affected(), 1);
    tx.commit().await.expect("commit");

    for ((table, column), b_rows) in tables.iter().zip(before_b) {
        assert_eq!(
            true_count(&mut admin, table, column, a.org.as_uuid()).await,
            0,
            "{table} kept rows of the deleted org"
        );
        assert_eq!(
            true_count(&mut admin, table, column, b.org.as_uuid()).await,
            b_rows,
            "{table} lost rows of the other org"
        );
    }
}

#[tokio::test]
async fn a_row_without_org_id_is_rejected() {
    let (t, [a, _]) = two_clinics().await;
    let insert = "INSERT INTO contacts (name, phone) VALUES ('No Org', '+14155550777')";
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant tx");
    let err = sqlx::query(insert)
        .execute(tx.conn())
        .await
        .expect_err("insert without org_id must fail");
    // Row level security answers first (a NULL org is not the current org); on Citus, the
    // coordinator refuses first a row without the column it routes by.
    let expected = if voxanne_testkit::citus_mode() {
        "22004"
    } else {
        "42501"
    };
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some(expected),
        "{err}"
    );
    drop(tx);

    // ...and below it NOT NULL holds even for the superuser, who bypasses RLS.
    let mut admin = t.admin().await;
    let err = sqlx::query(insert)
        .execute(&mut admin)
        .await
        .expect_err("NOT NULL org_id");
    let db_err = err.as_database_error().expect("a database error");
    if voxanne_testkit::citus_mode() {
        assert_eq!(db_err.code().as_deref(), Some("22004"), "{db_err}");
    } else {
        assert_eq!(db_err.code().as_deref(), Some("23502"), "{db_err}");
        assert!(db_err.message().contains("org_id"), "{db_err}");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM contacts WHERE name = 'No Org'")
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_composite_foreign_key_rejects_a_row_pointing_at_another_clinics_contact() {
    let (t, [a, b]) = two_clinics().await;
    let mut admin = t.admin().await;
    let b_contact: Uuid = sqlx::query_scalar("SELECT id FROM contacts WHERE org_id = $1 LIMIT 1")
        .bind(b.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("a contact of B");

    let insert = "INSERT INTO appointments (org_id, contact_id, starts_at, ends_at)
                  VALUES ($1, $2, now(), now() + interval '30 minutes')";
    let mut tx = t.db.tenant(a.org, a.owner).await.expect("tenant tx");
    let err = sqlx::query(insert)
        .bind(a.org.as_uuid())
        .bind(b_contact)
        .execute(tx.conn())
        .await
        .expect_err("A's appointment must not reference B's contact");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23503"),
        "{err}"
    );
    drop(tx);

    // Not RLS hiding the contact: even the superuser, who bypasses RLS, is stopped by the key.
    let err = sqlx::query(insert)
        .bind(a.org.as_uuid())
        .bind(b_contact)
        .execute(&mut admin)
        .await
        .expect_err("the composite key must reject it for anyone");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23503"),
        "{err}"
    );
}

/// A copy of one of `org`'s rows of `table` with a fresh id, as JSON, read by the superuser.
async fn copy_of_a_row(
    admin: &mut PgConnection,
    table: &str,
    column: &str,
    org: Uuid,
) -> serde_json::Value {
    let mut row: serde_json::Value = sqlx::query_scalar(&format!(
        "SELECT to_jsonb(t) FROM {table} t WHERE {column} = $1 LIMIT 1"
    ))
    .bind(org)
    .fetch_one(admin)
    .await
    .expect("a row to copy");
    if let Some(id) = row.get_mut("id") {
        *id = serde_json::json!(Uuid::new_v4());
    }
    row
}

/// `INSERT INTO table SELECT ... FROM jsonb_populate_record(...)`, generated columns and those
/// the application role may not insert left out (the column list is read by `admin`).
async fn insert_json<'c>(
    admin: &mut PgConnection,
    conn: impl sqlx::Executor<'c, Database = sqlx::Postgres>,
    table: &str,
    row: &serde_json::Value,
) -> Result<u64, sqlx::Error> {
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(attname) FROM pg_attribute
          WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
            AND (has_column_privilege('voxanne_app', attrelid, attnum, 'INSERT')
                 OR NOT has_any_column_privilege('voxanne_app', attrelid, 'INSERT'))
          ORDER BY attnum",
    )
    .bind(table)
    .fetch_all(admin)
    .await?;
    // (A table the application may not insert into at all, every column: refused outright.)
    let columns = columns.join(", ");
    sqlx::query(&format!(
        // RETURNING: on Citus the row then reaches the shard as an INSERT, under its row
        // level security, rather than as a COPY (refused outright: docs/SCALING.md).
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM jsonb_populate_record(NULL::{table}, $1) RETURNING 1"
    ))
    .bind(row)
    .execute(conn)
    .await
    .map(|r| r.rows_affected())
}

fn is_rls_violation(result: &Result<u64, sqlx::Error>) -> bool {
    matches!(result, Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501"))
}

#[tokio::test]
async fn without_a_tenant_context_the_app_role_sees_nothing_and_writes_nothing() {
    let (t, [a, _]) = two_clinics().await;
    let mut admin = t.admin().await;
    let mut app = t.app_conn().await;
    let who: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut app)
        .await
        .expect("whoami");
    assert_eq!(who, APP_ROLE);

    for (table, column) in tenant_tables(&mut admin).await {
        let seen: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut app)
            .await
            .expect("count");
        assert_eq!(seen, 0, "{table}: rows visible without a tenant context");

        // An append-only table (the access log) refuses UPDATE and DELETE outright.
        let writable: bool =
            sqlx::query_scalar("SELECT has_table_privilege(current_user, $1, 'UPDATE, DELETE')")
                .bind(&table)
                .fetch_one(&mut app)
                .await
                .expect("privileges");
        let updated = sqlx::query(&format!("UPDATE {table} SET {column} = {column}"))
            .execute(&mut app)
            .await
            .map(|r| r.rows_affected());
        let deleted = sqlx::query(&format!("DELETE FROM {table}"))
            .execute(&mut app)
            .await
            .map(|r| r.rows_affected());
        if writable {
            assert_eq!(
                updated.expect("update"),
                0,
                "{table}: update without a tenant context"
            );
            assert_eq!(
                deleted.expect("delete"),
                0,
                "{table}: delete without a tenant context"
            );
        } else {
            assert!(
                is_rls_violation(&updated),
                "{table}: update gave {updated:?}"
            );
            assert!(
                is_rls_violation(&deleted),
                "{table}: delete gave {deleted:?}"
            );
        }

        let row = copy_of_a_row(&mut admin, &table, &column, a.org.as_uuid()).await;
        let inserted = insert_json(&mut admin, &mut app, &table, &row).await;
        assert!(
            is_rls_violation(&inserted),
            "{table}: insert without a tenant context gave {inserted:?}"
        );
    }
}

#[tokio::test]
async fn inside_one_clinics_context_no_row_of_another_clinic_can_be_written() {
    let (t, [a, b]) = two_clinics().await;
    let mut admin = t.admin().await;
    for (table, column) in tenant_tables(&mut admin).await {
        let row = copy_of_a_row(&mut admin, &table, &column, a.org.as_uuid()).await;
        let mut tx = t.db.tenant(b.org, b.owner).await.expect("tenant tx");
        let inserted = insert_json(&mut admin, tx.conn(), &table, &row).await;
        assert!(
            is_rls_violation(&inserted),
            "{table}: B inserted a row of A: {inserted:?}"
        );
    }
}

#[tokio::test]
async fn a_pool_of_one_connection_alternating_two_orgs_never_returns_the_other_orgs_rows() {
    let (t, [a, b]) = two_clinics().await;
    let db = Db::connect(t.app_options(), 1).await.expect("pool of one");
    for round in 0..40 {
        let me = if round % 2 == 0 { &a } else { &b };
        let mut tx = db.tenant(me.org, me.owner).await.expect("tenant tx");
        // Read without any org filter, so only the tenant context decides what comes back.
        let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT org_id FROM calls")
            .fetch_all(tx.conn())
            .await
            .expect("calls");
        assert_eq!(orgs, vec![me.org.as_uuid()], "round {round}");
        let setting: String = sqlx::query_scalar("SELECT current_setting('app.org_id')")
            .fetch_one(tx.conn())
            .await
            .expect("setting");
        assert_eq!(setting, me.org.to_string());
        // Half the rounds end in commit, half in a dropped (rolled back) transaction.
        if round % 4 < 2 {
            tx.commit().await.expect("commit");
        }
    }
    // And after the last transaction, the pooled connection carries no tenant at all.
    let mut conn = PgConnection::connect_with(&t.app_options())
        .await
        .expect("conn");
    let leftover: Option<String> =
        sqlx::query_scalar("SELECT nullif(current_setting('app.org_id', true), '')")
            .fetch_one(&mut conn)
            .await
            .expect("setting");
    assert_eq!(leftover, None);
}

#[tokio::test]
async fn membership_and_org_status_are_checked_on_every_tenant_transaction() {
    let (t, [a, b]) = two_clinics().await;
    assert!(matches!(
        t.db.tenant(a.org, b.owner).await,
        Err(TenantError::NotMember)
    ));
    let unknown = voxanne_domain::OrgId::new_random();
    assert!(matches!(
        t.db.tenant(unknown, a.owner).await,
        Err(TenantError::NotMember)
    ));

    let mut admin = t.admin().await;
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(a.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    assert!(matches!(
        t.db.tenant(a.org, a.owner).await,
        Err(TenantError::Suspended)
    ));

    sqlx::query("DELETE FROM organization_members WHERE org_id = $1 AND user_id = $2")
        .bind(b.org.as_uuid())
        .bind(b.staff.as_uuid())
        .execute(&mut admin)
        .await
        .expect("remove member");
    assert!(matches!(
        t.db.tenant(b.org, b.staff).await,
        Err(TenantError::NotMember)
    ));
    assert!(t.db.tenant(b.org, b.owner).await.is_ok());
}

#[tokio::test]
async fn a_dropped_tenant_transaction_is_rolled_back_never_committed_by_the_next_request() {
    let (t, [a, b]) = two_clinics().await;
    let db = Db::connect(t.app_options(), 1).await.expect("pool of one");
    for round in 0..10 {
        let mut tx = db.tenant(a.org, a.owner).await.expect("tenant tx");
        sqlx::query("INSERT INTO contacts (org_id, name) VALUES ($1, $2)")
            .bind(a.org.as_uuid())
            .bind(format!("abandoned {round}"))
            .execute(tx.conn())
            .await
            .expect("insert");
        drop(tx); // an error path: `?` before commit

        // The next request on the same (only) connection commits its own work.
        let mut tx = db.tenant(b.org, b.owner).await.expect("tenant tx");
        sqlx::query("INSERT INTO dnc_list (org_id, phone) VALUES ($1, $2)")
            .bind(b.org.as_uuid())
            .bind(format!("+1415555{:04}", 2000 + round))
            .execute(tx.conn())
            .await
            .expect("insert");
        tx.commit().await.expect("commit");
    }
    let mut admin = t.admin().await;
    let abandoned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM contacts WHERE name LIKE 'abandoned %'")
            .fetch_one(&mut admin)
            .await
            .expect("count");
    let committed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM dnc_list WHERE org_id = $1 AND phone LIKE '+14155552%'",
    )
    .bind(b.org.as_uuid())
    .fetch_one(&mut admin)
    .await
    .expect("count");
    assert_eq!((abandoned, committed), (0, 10));
}
