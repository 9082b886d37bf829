//! Recordings in S3-compatible storage: a fake S3 on loopback that speaks the wire format the
//! client uses (path-style PUT / GET / HEAD / DELETE, ListObjectsV2, DeleteObjects), behind
//! the same API.

mod support;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use support::*;

type Objects = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

const LAST_MODIFIED: &str = "Mon, 23 Nov 2026 05:00:00 GMT";

fn etag(bytes: &[u8]) -> String {
    format!(
        "\"{:x}-{}\"",
        bytes.iter().map(|b| *b as u64).sum::<u64>(),
        bytes.len()
    )
}

/// `/{bucket}/{key}` for objects, `/{bucket}?list-type=2&prefix=…` for listings.
async fn s3(
    State(objects): State<Objects>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let mut objects = objects.lock().expect("lock");
    if method == Method::GET && query.get("list-type").map(String::as_str) == Some("2") {
        let bucket = path.trim_end_matches('/');
        let prefix = query.get("prefix").cloned().unwrap_or_default();
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{bucket}</Name><Prefix>{prefix}</Prefix><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>"
        );
        let start = format!("{bucket}/{prefix}");
        let mut count = 0;
        for (full, bytes) in objects
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
        {
            let key = &full[bucket.len() + 1..];
            xml.push_str(&format!(
                "<Contents><Key>{key}</Key><LastModified>2026-11-23T05:00:00.000Z</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                etag(bytes).replace('"', "&quot;"),
                bytes.len()
            ));
            count += 1;
        }
        xml.push_str(&format!("<KeyCount>{count}</KeyCount></ListBucketResult>"));
        return ([("content-type", "application/xml")], xml).into_response();
    }
    // DeleteObjects: POST /{bucket}?delete with <Delete><Object><Key>…</Key></Object>…</Delete>.
    if method == Method::POST && query.contains_key("delete") {
        let bucket = path.trim_end_matches('/');
        let text = String::from_utf8_lossy(&body);
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
        for part in text.split("<Key>").skip(1) {
            let key = part.split("</Key>").next().unwrap_or_default();
            objects.remove(&format!("{bucket}/{key}"));
            xml.push_str(&format!("<Deleted><Key>{key}</Key></Deleted>"));
        }
        xml.push_str("</DeleteResult>");
        return ([("content-type", "application/xml")], xml).into_response();
    }
    match method {
        Method::PUT => {
            let tag = etag(&body);
            objects.insert(path, body.to_vec());
            (StatusCode::OK, [("etag", tag)]).into_response()
        }
        Method::GET | Method::HEAD => match objects.get(&path) {
            Some(bytes) => {
                let mut headers = HeaderMap::new();
                headers.insert("etag", etag(bytes).parse().expect("etag"));
                headers.insert("last-modified", LAST_MODIFIED.parse().expect("date"));
                headers.insert("content-length", bytes.len().into());
                let body = if method == Method::GET { bytes.clone() } else { Vec::new() };
                (StatusCode::OK, headers, body).into_response()
            }
            None => (
                StatusCode::NOT_FOUND,
                [("content-type", "application/xml")],
                "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>not found</Message></Error>",
            )
                .into_response(),
        },
        Method::DELETE => {
            objects.remove(&path);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::METHOD_NOT_ALLOWED.into_response(),
    }
}

async fn fake_s3() -> (String, Objects) {
    let objects: Objects = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::any(s3))
        .with_state(objects.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, objects)
}

#[tokio::test]
async fn recordings_in_s3_compatible_storage_are_stored_under_the_prefix_served_and_erased() {
    let (endpoint, objects) = fake_s3().await;
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test-key")
        .with_secret_access_key("test-secret");
    let store =
        voxanne_http::storage::open_with("s3://clinic-audio/voxanne", s3).expect("s3 store");
    let app = TestApp::spawn_on(None, Some(store.clone())).await;
    let [a, b] = app.clinics().await;

    // A recording of each clinic, stored as the worker stores them.
    let mut admin = app.t.admin().await;
    let mut keys = Vec::new();
    for clinic in [&a, &b] {
        let call: uuid::Uuid = sqlx::query_scalar(
            "SELECT id FROM calls WHERE org_id = $1 ORDER BY started_at LIMIT 1",
        )
        .bind(clinic.org.as_uuid())
        .fetch_one(&mut admin)
        .await
        .expect("call");
        let key = format!("{}/recordings/{call}.wav", clinic.org);
        let audio = format!("RIFF audio of {}", clinic.name).into_bytes();
        store
            .put(
                &object_store::path::Path::from(key.as_str()),
                PutPayload::from(audio.clone()),
            )
            .await
            .expect("put");
        sqlx::query(
            "UPDATE calls SET recording_status = 'stored', recording_path = $2 WHERE id = $1",
        )
        .bind(call)
        .bind(&key)
        .execute(&mut admin)
        .await
        .expect("mark stored");
        keys.push((call, key, audio));
    }
    let stored: Vec<String> = objects.lock().expect("lock").keys().cloned().collect();
    assert_eq!(stored.len(), 2);
    assert!(
        stored
            .iter()
            .all(|k| k.starts_with("clinic-audio/voxanne/")),
        "bucket and prefix: {stored:?}"
    );

    // Clinic A's recording streams from S3 to Clinic A only.
    let (a_call, _, a_audio) = &keys[0];
    let a_token = app.token(a.owner, Some(a.org));
    let url = format!("{}/api/v1/calls/{a_call}/recording", app.base);
    let response = app
        .client
        .get(&url)
        .bearer_auth(&a_token)
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), *a_audio);
    let theirs = app
        .get_as(
            &format!("/api/v1/calls/{a_call}/recording"),
            &app.token(b.owner, Some(b.org)),
        )
        .await;
    assert_eq!(theirs.status, 404);

    // Listing by a clinic's prefix (what the erase and the orphan sweep do) finds its objects.
    let listed = voxanne_jobs_list(&store, &a.org.to_string()).await;
    assert_eq!(listed, vec![keys[0].1.clone()]);

    // Erasing Clinic A removes its objects from the bucket, and only its objects.
    assert_eq!(
        app.delete("/api/v1/organization", &a_token).await.status,
        204
    );
    let left: Vec<String> = objects.lock().expect("lock").keys().cloned().collect();
    assert_eq!(left, vec![format!("clinic-audio/voxanne/{}", keys[1].1)]);
}

async fn voxanne_jobs_list(
    store: &Arc<dyn object_store::ObjectStore>,
    prefix: &str,
) -> Vec<String> {
    use futures_util::TryStreamExt;
    let listed: Vec<object_store::ObjectMeta> = store
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .expect("list");
    listed.into_iter().map(|m| m.location.to_string()).collect()
}

#[test]
fn storage_locations_are_checked() {
    for bad in ["s3://", "ftp://host/dir", ""] {
        assert!(voxanne_http::storage::open(bad).is_err(), "{bad}");
    }
    let dir = tempfile::tempdir().expect("dir");
    let nested = dir.path().join("a/b");
    assert!(voxanne_http::storage::open(&nested.display().to_string()).is_ok());
    assert!(nested.is_dir(), "a local location is created");
    assert!(voxanne_http::storage::open(&format!("file://{}", dir.path().display())).is_ok());
}
