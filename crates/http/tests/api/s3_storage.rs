//! Recordings in S3-compatible storage: a fake S3 on loopback that speaks the wire format the
//! client uses (path-style PUT / GET / HEAD / DELETE, ListObjectsV2, DeleteObjects, and the
//! multipart upload: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload), behind the same API; and the worker streaming into it.

use crate::support::recordings::*;
use crate::support::*;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// The fake bucket: objects by `{bucket}/{key}`, multipart uploads in progress by id, and a
/// count of each request by its S3 operation name.
#[derive(Default)]
struct S3 {
    objects: BTreeMap<String, Vec<u8>>,
    uploads: HashMap<String, Upload>,
    next_upload: u64,
    calls: HashMap<&'static str, usize>,
    /// The server-side encryption each object-creating request asked for: the operation and
    /// its `x-amz-server-side-encryption`, `…-aws-kms-key-id` and `…-bucket-key-enabled`
    /// headers.
    encryption: Vec<(&'static str, [Option<String>; 3])>,
}

struct Upload {
    key: String,
    parts: BTreeMap<usize, Vec<u8>>,
}

impl S3 {
    fn count(&self, operation: &str) -> usize {
        self.calls.get(operation).copied().unwrap_or(0)
    }
}

type Objects = Arc<Mutex<S3>>;

const LAST_MODIFIED: &str = "Mon, 23 Nov 2026 05:00:00 GMT";
/// Amazon's minimum for every part but the last.
const MIN_PART: usize = 5 * 1024 * 1024;

fn etag(bytes: &[u8]) -> String {
    format!(
        "\"{:x}-{}\"",
        bytes.iter().map(|b| *b as u64).sum::<u64>(),
        bytes.len()
    )
}

fn s3_error(status: StatusCode, code: &str) -> Response {
    (
        status,
        [("content-type", "application/xml")],
        format!(
            "<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>"
        ),
    )
        .into_response()
}

/// The text of each `<{tag}>…</{tag}>` in `xml`, in order.
fn elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split(close.as_str()).next())
        .collect()
}

/// The multipart upload: `POST ?uploads` starts one, `PUT ?partNumber&uploadId` uploads a
/// part, `POST ?uploadId` completes it from the listed parts, `DELETE ?uploadId` aborts it.
fn multipart(
    s3: &mut S3,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Option<Response> {
    let xml = |body: String| ([("content-type", "application/xml")], body).into_response();
    let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
    if *method == Method::POST && query.contains_key("uploads") {
        *s3.calls.entry("CreateMultipartUpload").or_default() += 1;
        s3.next_upload += 1;
        let id = format!("upload-{}", s3.next_upload);
        s3.uploads.insert(
            id.clone(),
            Upload {
                key: path.to_owned(),
                parts: BTreeMap::new(),
            },
        );
        return Some(xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>{bucket}</Bucket><Key>{key}</Key><UploadId>{id}</UploadId></InitiateMultipartUploadResult>"
        )));
    }
    let id = query.get("uploadId")?;
    let Some(upload) = s3.uploads.get_mut(id).filter(|u| u.key == path) else {
        return Some(s3_error(StatusCode::NOT_FOUND, "NoSuchUpload"));
    };
    if *method == Method::PUT {
        let Some(n) = query.get("partNumber").and_then(|n| n.parse().ok()) else {
            return Some(s3_error(StatusCode::BAD_REQUEST, "InvalidArgument"));
        };
        let tag = etag(body);
        upload.parts.insert(n, body.to_vec());
        *s3.calls.entry("UploadPart").or_default() += 1;
        return Some((StatusCode::OK, [("etag", tag)]).into_response());
    }
    if *method == Method::DELETE {
        s3.uploads.remove(id);
        *s3.calls.entry("AbortMultipartUpload").or_default() += 1;
        return Some(StatusCode::NO_CONTENT.into_response());
    }
    if *method == Method::POST {
        let request = String::from_utf8_lossy(body);
        let listed = elements(&request, "Part");
        let mut object = Vec::new();
        for (i, part) in listed.iter().enumerate() {
            let number: usize = elements(part, "PartNumber")
                .first()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let tag = elements(part, "ETag")
                .first()
                .map(|t| t.replace("&quot;", "\""));
            let Some(bytes) = upload.parts.get(&number) else {
                return Some(s3_error(StatusCode::BAD_REQUEST, "InvalidPart"));
            };
            if tag.as_deref() != Some(etag(bytes).as_str()) {
                return Some(s3_error(StatusCode::BAD_REQUEST, "InvalidPart"));
            }
            if i + 1 < listed.len() && bytes.len() < MIN_PART {
                return Some(s3_error(StatusCode::BAD_REQUEST, "EntityTooSmall"));
            }
            object.extend_from_slice(bytes);
        }
        if listed.is_empty() {
            return Some(s3_error(StatusCode::BAD_REQUEST, "MalformedXML"));
        }
        let tag = etag(&object);
        s3.uploads.remove(id);
        s3.objects.insert(path.to_owned(), object);
        *s3.calls.entry("CompleteMultipartUpload").or_default() += 1;
        return Some(xml(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>http://s3.local/{path}</Location><Bucket>{bucket}</Bucket><Key>{key}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
            tag.replace('"', "&quot;")
        )));
    }
    Some(StatusCode::METHOD_NOT_ALLOWED.into_response())
}

/// `/{bucket}/{key}` for objects, `/{bucket}?list-type=2&prefix=…` for listings.
async fn s3(
    State(state): State<Objects>,
    method: Method,
    Path(path): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut guard = state.lock().expect("lock");
    let state: &mut S3 = &mut guard;
    // SSE headers as the PutObject and CreateMultipartUpload references define them
    // (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html,
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CreateMultipartUpload.html).
    let creates = match method {
        Method::PUT if !query.contains_key("partNumber") => Some("PutObject"),
        Method::POST if query.contains_key("uploads") => Some("CreateMultipartUpload"),
        _ => None,
    };
    if let Some(operation) = creates {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        state.encryption.push((
            operation,
            [
                header("x-amz-server-side-encryption"),
                header("x-amz-server-side-encryption-aws-kms-key-id"),
                header("x-amz-server-side-encryption-bucket-key-enabled"),
            ],
        ));
    }
    if let Some(response) = multipart(state, &method, &path, &query, &body) {
        return response;
    }
    let objects = &mut state.objects;
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
            *state.calls.entry("PutObject").or_default() += 1;
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

/// The S3 client's settings for the fake at `endpoint`.
fn s3_builder(endpoint: &str) -> AmazonS3Builder {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_region("us-east-1")
        .with_access_key_id("test-key")
        .with_secret_access_key("test-secret")
}

async fn fake_s3() -> (String, Objects) {
    let objects: Objects = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::any(s3))
        // Parts are 5 MiB and more.
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(objects.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, objects)
}

#[tokio::test]
async fn recordings_in_s3_compatible_storage_are_stored_under_the_prefix_served_and_erased() {
    let (endpoint, objects) = fake_s3().await;
    let s3 = s3_builder(&endpoint);
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
    let stored: Vec<String> = objects
        .lock()
        .expect("lock")
        .objects
        .keys()
        .cloned()
        .collect();
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
    let left: Vec<String> = objects
        .lock()
        .expect("lock")
        .objects
        .keys()
        .cloned()
        .collect();
    assert_eq!(left, vec![format!("clinic-audio/voxanne/{}", keys[1].1)]);
}

/// The fake S3, and the store over it that the server and the worker use.
async fn s3_store() -> (Objects, Arc<dyn object_store::ObjectStore>) {
    let (endpoint, objects) = fake_s3().await;
    let s3 = s3_builder(&endpoint);
    let store =
        voxanne_http::storage::open_with("s3://clinic-audio/voxanne", s3).expect("s3 store");
    (objects, store)
}

#[tokio::test]
async fn a_large_recording_is_uploaded_to_s3_in_parts_and_stored_intact_a_small_one_in_one_put() {
    let (s3, store) = s3_store().await;
    let app = TestApp::spawn_on(None, Some(store.clone())).await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let size = 20 * 1024 * 1024 + 12_345;
    let ids = queue(
        &app,
        a.org,
        &[
            provider.big_url("big", size, "large"),
            provider.url("ok", "small"),
        ],
    )
    .await;
    let w = worker_on(&app, store, large_config(64 * 1024 * 1024));
    drain(&app, &w).await;
    let mut keys = Vec::new();
    for id in &ids {
        let (status, path, _) = call_state(&app, *id).await;
        assert_eq!(status, "stored");
        keys.push(format!("clinic-audio/voxanne/{}", path.expect("path")));
    }
    {
        let s3 = s3.lock().expect("lock");
        // Stored encrypted for the clinic, under the key the store is given (the prefix is
        // the store's).
        let open = |n: usize| {
            let key = keys[n].trim_start_matches("clinic-audio/voxanne/");
            voxanne_testkit::open_recording(a.org, key, &s3.objects[&keys[n]])
        };
        let large = open(0);
        assert_eq!(large.len(), size);
        assert_eq!(sha256_hex(&large), sha256_hex(&big_audio(size)));
        assert_eq!(open(1), audio_for("/ok/small.wav"));
        // 20 MiB and a bit in 5 MiB parts: five parts, one upload; the small one in one PUT.
        assert_eq!(
            (
                s3.count("CreateMultipartUpload"),
                s3.count("UploadPart"),
                s3.count("CompleteMultipartUpload"),
                s3.count("AbortMultipartUpload"),
                s3.count("PutObject"),
            ),
            (1, 5, 1, 0, 1)
        );
        assert!(s3.uploads.is_empty());
    }
    // And it is served back whole.
    let response = app
        .client
        .get(format!("{}/api/v1/calls/{}/recording", app.base, ids[0]))
        .bearer_auth(app.token(a.owner, Some(a.org)))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status(), 200);
    let served = response.bytes().await.expect("bytes");
    assert_eq!(sha256_hex(&served), sha256_hex(&big_audio(size)));
}

#[tokio::test]
async fn an_s3_upload_over_the_size_limit_or_cut_short_is_aborted_and_leaves_no_object() {
    let (s3, store) = s3_store().await;
    let app = TestApp::spawn_on(None, Some(store.clone())).await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let limit = 16 * 1024 * 1024;
    let size = 12 * 1024 * 1024;
    // Both fail only after a part has been uploaded.
    let ids = queue(
        &app,
        a.org,
        &[
            provider.big_url("bigchunked", 20 * 1024 * 1024, "unsized"),
            provider.big_url("bigtruncate", size, "cut"),
        ],
    )
    .await;
    let w = worker_on(&app, store, large_config(limit as u64));
    drain(&app, &w).await;
    let expected = [
        format!("larger than {limit} bytes"),
        format!("truncated: {} of {size} bytes", size / 2),
    ];
    for (id, expected) in ids.iter().zip(expected) {
        let (status, path, _) = call_state(&app, *id).await;
        assert_eq!((status.as_str(), path), ("failed", None));
        let error = last_error(&app, *id).await;
        assert!(error.contains(&expected), "{error}");
    }
    let s3 = s3.lock().expect("lock");
    assert!(
        s3.objects.keys().all(|k| !k.contains("/recordings/")),
        "a partial recording was stored: {:?}",
        s3.objects.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        (
            s3.count("CreateMultipartUpload"),
            s3.count("AbortMultipartUpload"),
            s3.count("CompleteMultipartUpload"),
        ),
        (2, 2, 0),
        "each upload was started while streaming, and aborted"
    );
    assert!(s3.uploads.is_empty(), "parts left behind in the bucket");
}

/// The S3 store's server-side encryption settings (the `AWS_SERVER_SIDE_ENCRYPTION`,
/// `AWS_SSE_KMS_KEY_ID` and `AWS_SSE_BUCKET_KEY_ENABLED` variables, here given to the builder
/// by the same names) reach every request that creates an object, the single PUT and the
/// multipart upload alike; recordings are encrypted by Voxanne underneath as well.
#[tokio::test]
async fn server_side_encryption_settings_reach_every_upload() {
    let (endpoint, s3) = fake_s3().await;
    let config = |name: &str| name.parse().expect("an S3 setting");
    let builder = s3_builder(&endpoint)
        .with_config(config("aws_server_side_encryption"), "aws:kms")
        .with_config(
            config("aws_sse_kms_key_id"),
            "arn:aws:kms:us-east-1:111122223333:key/clinic-audio",
        )
        .with_config(config("aws_sse_bucket_key_enabled"), "true");
    let store =
        voxanne_http::storage::open_with("s3://clinic-audio/voxanne", builder).expect("s3 store");
    let app = TestApp::spawn_on(None, Some(store.clone())).await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let size = 6 * 1024 * 1024;
    let ids = queue(
        &app,
        a.org,
        &[
            provider.big_url("big", size, "large"),
            provider.url("ok", "small"),
        ],
    )
    .await;
    let w = worker_on(&app, store, large_config(64 * 1024 * 1024));
    drain(&app, &w).await;
    for id in &ids {
        assert_eq!(call_state(&app, *id).await.0, "stored");
    }
    let s3 = s3.lock().expect("lock");
    let asked = [
        Some("aws:kms".to_owned()),
        Some("arn:aws:kms:us-east-1:111122223333:key/clinic-audio".to_owned()),
        Some("true".to_owned()),
    ];
    let mut operations: Vec<&str> = s3.encryption.iter().map(|(op, _)| *op).collect();
    operations.sort_unstable();
    assert_eq!(operations, ["CreateMultipartUpload", "PutObject"]);
    assert!(
        s3.encryption.iter().all(|(_, headers)| *headers == asked),
        "{:?}",
        s3.encryption
    );
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
