//! `Db::job_tenant`: the background jobs' entry point to one org's data.

use voxanne_db::{demo, TenantError, SYSTEM_ACTOR};
use voxanne_testkit::TestDb;

#[tokio::test]
async fn a_job_tenant_transaction_sees_only_its_org_and_is_refused_for_a_suspended_or_unknown_org()
{
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seed");
    let mut tx = t.db.job_tenant(a.org).await.expect("job tenant");
    assert_eq!(tx.membership().user, SYSTEM_ACTOR);
    // Without the WHERE org_id the queries carry, RLS alone still confines it to A.
    let orgs: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT DISTINCT org_id FROM calls")
        .fetch_all(tx.conn())
        .await
        .expect("calls");
    assert_eq!(orgs, vec![a.org.as_uuid()]);
    drop(tx);

    let mut admin = t.admin().await;
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(b.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    assert!(matches!(
        t.db.job_tenant(b.org).await,
        Err(TenantError::Suspended)
    ));
    let unknown = voxanne_domain::OrgId::new_random();
    assert!(matches!(
        t.db.job_tenant(unknown).await,
        Err(TenantError::NotMember)
    ));
}
