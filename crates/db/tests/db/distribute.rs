//! The preconditions of distributing the schema by clinic (crates/schema/src/distribute.rs),
//! read from the catalog: they need no Citus, so they are checked on every run.

use sqlx::Executor;
use voxanne_db::distribute::{preconditions, Violation};
use voxanne_testkit::TestDb;

fn named(violations: &[Violation]) -> Vec<(String, String)> {
    violations
        .iter()
        .map(|v| (v.table.clone(), v.constraint.clone()))
        .collect()
}

#[tokio::test]
async fn the_schema_breaks_no_precondition_but_the_global_number_key() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    let found = preconditions(&mut admin).await.expect("preconditions");
    // One number, one clinic: the last global key, whose new home is the next step of the
    // distributed mode (docs/SCALING.md).
    assert_eq!(
        named(&found),
        [(
            "public.phone_numbers".to_owned(),
            "phone_numbers_number_key".to_owned()
        )],
        "{found:#?}"
    );
}

#[tokio::test]
async fn every_kind_of_defect_is_named_with_its_table_and_constraint() {
    let t = TestDb::new().await;
    let mut admin = t.admin().await;
    admin
        .execute(
            "CREATE TABLE public.fx_defects (
                 org_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                 id         uuid NOT NULL,
                 code       text CONSTRAINT fx_code_key UNIQUE,
                 contact_id uuid,
                 other_id   uuid,
                 during     tstzrange,
                 PRIMARY KEY (org_id, id),
                 CONSTRAINT fx_set_null FOREIGN KEY (org_id, contact_id)
                     REFERENCES contacts (org_id, id) ON DELETE SET NULL (contact_id),
                 CONSTRAINT fx_unpaired FOREIGN KEY (other_id, contact_id)
                     REFERENCES contacts (org_id, id),
                 CONSTRAINT fx_overlap EXCLUDE USING gist (during WITH &&)
             );
             CREATE TABLE public.fx_global (
                 id     int PRIMARY KEY,
                 org    uuid,
                 person uuid,
                 CONSTRAINT fx_global_refers FOREIGN KEY (org, person) REFERENCES contacts (org_id, id)
             );
             CREATE TABLE public.fx_clean (
                 org_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
                 id     uuid NOT NULL,
                 contact_id uuid,
                 during tstzrange,
                 PRIMARY KEY (org_id, id),
                 FOREIGN KEY (org_id, contact_id) REFERENCES contacts (org_id, id) ON DELETE CASCADE,
                 EXCLUDE USING gist (org_id WITH =, during WITH &&)
             );",
        )
        .await
        .expect("planting the defects");
    let found = preconditions(&mut admin).await.expect("preconditions");
    let found: Vec<_> = named(&found)
        .into_iter()
        .filter(|(table, _)| table != "public.phone_numbers")
        .collect();
    let expected: Vec<(String, String)> = [
        ("public.fx_defects", "fx_code_key"),
        ("public.fx_defects", "fx_overlap"),
        ("public.fx_defects", "fx_set_null"),
        ("public.fx_defects", "fx_unpaired"),
        ("public.fx_global", "fx_global_refers"),
    ]
    .iter()
    .map(|(t, c)| (t.to_string(), c.to_string()))
    .collect();
    assert_eq!(found, expected);
}
