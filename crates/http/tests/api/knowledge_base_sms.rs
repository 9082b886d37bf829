//! The knowledge base (chunked on write, full-text search) and SMS confirmations.

use crate::support::*;
use serde_json::json;

async fn chunk_rows(app: &TestApp, document: &str) -> Vec<(i32, String)> {
    let mut admin = app.t.admin().await;
    sqlx::query_as("SELECT ordinal, content FROM knowledge_base_chunks WHERE document_id = $1::uuid ORDER BY ordinal")
        .bind(document)
        .fetch_all(&mut admin)
        .await
        .expect("chunks")
}

#[tokio::test]
async fn documents_are_chunked_on_write_and_rechunked_on_update() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let owner = app.token(a.owner, Some(a.org));
    let paragraphs: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "Paragraph {i}. {}",
                "Lorem ipsum dolor sit amet. ".repeat(10)
            )
        })
        .collect();
    let created = app
        .post(
            "/api/v1/knowledge-base/documents",
            &owner,
            &json!({"title": "Policies", "body": paragraphs.join("\n\n")}),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    let chunks = chunk_rows(&app, &id).await;
    assert!(chunks.len() >= 2, "a long body is split: {}", chunks.len());
    assert_eq!(created.body["chunk_count"], json!(chunks.len()));
    assert!(chunks
        .iter()
        .all(|(_, c)| c.chars().count() <= voxanne_db::knowledge_base::CHUNK_SIZE));
    assert_eq!(
        chunks.iter().map(|(o, _)| *o).collect::<Vec<_>>(),
        (0..chunks.len() as i32).collect::<Vec<_>>()
    );

    let updated = app
        .patch(
            &format!("/api/v1/knowledge-base/documents/{id}"),
            &owner,
            &json!({"body": "Short now."}),
        )
        .await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["title"], "Policies");
    assert_eq!(
        chunk_rows(&app, &id).await,
        vec![(0, "Short now.".to_owned())]
    );

    assert_eq!(
        app.delete(&format!("/api/v1/knowledge-base/documents/{id}"), &owner)
            .await
            .status,
        204
    );
    assert!(
        chunk_rows(&app, &id).await.is_empty(),
        "chunks go with their document"
    );
}

#[tokio::test]
async fn search_ranks_the_answering_chunk_first_within_the_clinic_only() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    let a_owner = app.token(a.owner, Some(a.org));
    let b_owner = app.token(b.owner, Some(b.org));
    for (title, body) in [
        (
            "Parking",
            "Free parking is available behind the clinic. Parking permits are not needed.",
        ),
        ("Hours", "We are open Monday to Friday from nine to five."),
        (
            "Insurance",
            "We accept most insurance plans, and parking validation is at the desk.",
        ),
    ] {
        assert_eq!(
            app.post(
                "/api/v1/knowledge-base/documents",
                &a_owner,
                &json!({"title": title, "body": body})
            )
            .await
            .status,
            201
        );
    }
    assert_eq!(
        app.post(
            "/api/v1/knowledge-base/documents",
            &b_owner,
            &json!({"title": "B parking", "body": "Clinic B has no parking at all."})
        )
        .await
        .status,
        201
    );

    let staff = app.token(a.staff, Some(a.org));
    let r = app
        .get_as(
            "/api/v1/knowledge-base/search?q=where%20can%20I%20park",
            &staff,
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let titles: Vec<&str> = r.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|h| h["title"].as_str())
        .collect();
    assert_eq!(titles.first(), Some(&"Parking"), "{titles:?}");
    assert!(
        !titles.contains(&"B parking"),
        "Clinic B's knowledge never answers Clinic A"
    );
    assert!(!titles.contains(&"Hours"));

    let none = app
        .get_as("/api/v1/knowledge-base/search?q=dentures", &staff)
        .await;
    assert_eq!(none.body["data"], json!([]));
    let empty = app
        .get_as("/api/v1/knowledge-base/search?q=%20", &staff)
        .await;
    assert_eq!(
        (empty.status.as_u16(), empty.body["error"]["field"].as_str()),
        (422, Some("q"))
    );
    let odd = app
        .get_as(
            "/api/v1/knowledge-base/search?q=%22unclosed%20-%20%26%20%7C",
            &staff,
        )
        .await;
    assert_eq!(
        odd.status, 200,
        "web-search syntax never errors: {:?}",
        odd.body
    );
}

#[tokio::test]
async fn staff_read_the_knowledge_base_but_only_admins_write_it() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let staff = app.token(a.staff, Some(a.org));
    let r = app
        .post(
            "/api/v1/knowledge-base/documents",
            &staff,
            &json!({"title": "T", "body": "B"}),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "forbidden"));
    assert_eq!(
        app.get_as("/api/v1/knowledge-base/documents", &staff)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn sms_confirmations_are_listed_and_read_within_the_clinic() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    for c in [&a, &b] {
        let mut tx = app.t.db.tenant(c.org, c.owner).await.expect("tx");
        voxanne_testkit::fill_remaining_tables(&mut tx).await;
        tx.commit().await.expect("commit");
    }
    let a_token = app.token(a.staff, Some(a.org));
    let list = app.get_as("/api/v1/sms-confirmations", &a_token).await;
    let items = list.body["data"].as_array().expect("data").clone();
    assert_eq!(items.len(), 1);
    let id = items[0]["id"].as_str().expect("id");
    let one = app
        .get_as(&format!("/api/v1/sms-confirmations/{id}"), &a_token)
        .await;
    assert_eq!(one.body, items[0]);
    let theirs = app
        .get_as(
            &format!("/api/v1/sms-confirmations/{id}"),
            &app.token(b.owner, Some(b.org)),
        )
        .await;
    assert_eq!(theirs.status, 404);
}
