//! The encryption job's recordings phase (migrations/0034): objects stored before recordings
//! were encrypted, and objects whose data key an older key encrypted, are written again
//! encrypted with the current key, in a real directory store; the audio stays what it was, an
//! object already current is left as it is, and a recording purged while the job writes it
//! again does not come back.

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use sqlx::PgConnection;
use std::sync::{Arc, Mutex};
use uuid::Uuid;
use voxanne_db::crypto::Keyring;
use voxanne_db::envelope::{self, Header};
use voxanne_db::{demo, Db};
use voxanne_domain::OrgId;
use voxanne_jobs::{objects, EncryptionConfig, EncryptionJob, Job, Metrics, Schedule};
use voxanne_testkit::{TestDb, ENCRYPTION_KEY, ENCRYPTION_KEYS_OLD};

/// Three chunks and a bit.
const AUDIO_LEN: usize = 2 * envelope::CHUNK + 3000;

fn audio(seed: u8) -> Vec<u8> {
    (0..AUDIO_LEN)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn ring(current: &str) -> Keyring {
    Keyring::from_config(&secrecy::SecretString::from(current.to_owned()), None).expect("keyring")
}

fn job(db: &Db, store: Arc<dyn ObjectStore>) -> EncryptionJob {
    EncryptionJob::new(
        db.clone(),
        store,
        EncryptionConfig {
            schedule: Schedule {
                batch: 4,
                ..Schedule::default()
            },
            step: 500,
            // One recording a step, two steps a claim: the recordings take several claims.
            steps: 2,
            recordings_step: 1,
        },
        Arc::new(Metrics::default()),
    )
}

/// A call of `org` whose recording is stored at its key, with `key_id` as the row says; the
/// key.
async fn stored_call(admin: &mut PgConnection, org: OrgId, key_id: Option<&str>) -> String {
    let id = Uuid::new_v4();
    let key = format!("{org}/recordings/{id}.wav");
    sqlx::query(
        "INSERT INTO calls (id, org_id, direction, status, from_number, to_number, started_at,
                            recording_status, recording_path, recording_key_id)
         VALUES ($1, $2, 'inbound', 'completed', '+14155550777', '+14155550100', now(),
                 'stored', $3, $4)",
    )
    .bind(id)
    .bind(org.as_uuid())
    .bind(&key)
    .bind(key_id)
    .execute(admin)
    .await
    .expect("call");
    key
}

async fn put(store: &dyn ObjectStore, key: &str, bytes: Vec<u8>) {
    store
        .put(&Path::from(key), bytes.into())
        .await
        .expect("put");
}

async fn get(store: &dyn ObjectStore, key: &str) -> Option<Vec<u8>> {
    match store.get(&Path::from(key)).await {
        Ok(object) => Some(object.bytes().await.expect("bytes").to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

async fn key_id_of(admin: &mut PgConnection, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT recording_key_id FROM calls WHERE recording_path = $1")
        .bind(key)
        .fetch_one(admin)
        .await
        .expect("key id")
}

/// Claims until none is left; the recordings written.
async fn drain(job: &EncryptionJob) -> (usize, usize) {
    let (mut claims, mut written) = (0, 0);
    for _ in 0..200 {
        let batch = job.claim().await.expect("claim");
        if batch.is_empty() {
            return (claims, written);
        }
        for claim in batch {
            let outcome = job.process(&claim).await.expect("encrypt");
            assert!(!outcome.abandoned, "{outcome:?}");
            claims += 1;
            written += outcome.recordings;
        }
    }
    panic!("the encryption job never ran out of clinics");
}

#[tokio::test]
async fn recordings_stored_plain_or_under_an_older_key_are_encrypted_with_the_current_key() {
    let t = TestDb::new().await;
    let [a, b] = demo::seed(&t.db).await.expect("seed");
    let dir = tempfile::tempdir().expect("dir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
    let mut admin = t.admin().await;

    // Clinic a: one recording stored before recordings were encrypted, one whose data key the
    // older key `test1` encrypted, one already under the current key `test2` (its row not yet
    // saying so); clinic b: one stored before.
    let plain_a = stored_call(&mut admin, a.org, None).await;
    put(store.as_ref(), &plain_a, audio(1)).await;
    let older_a = stored_call(&mut admin, a.org, Some("test1")).await;
    let sealed_older =
        envelope::seal_object(&ring(ENCRYPTION_KEYS_OLD), a.org, &older_a, &audio(2))
            .expect("seal");
    put(store.as_ref(), &older_a, sealed_older.clone()).await;
    let current_a = stored_call(&mut admin, a.org, None).await;
    let sealed_current =
        envelope::seal_object(&ring(ENCRYPTION_KEY), a.org, &current_a, &audio(3)).expect("seal");
    put(store.as_ref(), &current_a, sealed_current.clone()).await;
    let plain_b = stored_call(&mut admin, b.org, None).await;
    put(store.as_ref(), &plain_b, audio(4)).await;
    // A stored call whose object is gone: skipped, not an error (the orphan sweep marks it).
    let missing = stored_call(&mut admin, b.org, None).await;

    let (claims, written) = drain(&job(&t.db, store.clone())).await;
    assert_eq!(written, 3, "the plain two and the older key's one");
    assert!(claims > 2, "{claims} claims");

    // Every object is now the current key's, opens with that key alone to the same audio, and
    // holds none of the audio in the clear.
    let only_current = ring(ENCRYPTION_KEY);
    for (org, key, seed) in [
        (a.org, &plain_a, 1),
        (a.org, &older_a, 2),
        (a.org, &current_a, 3),
        (b.org, &plain_b, 4),
    ] {
        let object = get(store.as_ref(), key).await.expect("stored");
        let header = Header::of_object(&object)
            .expect("header")
            .expect("encrypted");
        assert_eq!(header.key_id(), Some("test2"), "{key}");
        assert_eq!(
            envelope::open_object(&only_current, org, key, &object).expect("opens"),
            audio(seed),
            "{key}"
        );
        let sample = &audio(seed)[5000..5016];
        assert!(!object.windows(16).any(|w| w == sample), "{key}");
        assert_eq!(key_id_of(&mut admin, key).await.as_deref(), Some("test2"));
        // Another clinic's keyring place does not open it.
        let other = if org == a.org { b.org } else { a.org };
        assert!(envelope::open_object(&only_current, other, key, &object).is_err());
    }
    // The older key's object kept its chunks: only its data key was encrypted again.
    let rewrapped = get(store.as_ref(), &older_a).await.expect("stored");
    let old_header = Header::of_object(&sealed_older).expect("h").expect("h");
    let new_header = Header::of_object(&rewrapped).expect("h").expect("h");
    assert_eq!(
        rewrapped[new_header.len()..],
        sealed_older[old_header.len()..]
    );
    // The object already current is not written again.
    assert_eq!(
        get(store.as_ref(), &current_a).await.as_deref(),
        Some(&sealed_current[..])
    );
    assert_eq!(key_id_of(&mut admin, &missing).await, None);
    assert_eq!(get(store.as_ref(), &missing).await, None);

    // Read back as the API and the export read it: the audio, its length known up front.
    let read = objects::read(store.as_ref(), voxanne_testkit::keyring(), a.org, &plain_a)
        .await
        .expect("read");
    assert_eq!(read.len, AUDIO_LEN as u64);
    assert!(read.encrypted);
    let chunks: Vec<_> = futures_util::StreamExt::collect(read.chunks).await;
    let bytes: Vec<u8> = chunks
        .into_iter()
        .flat_map(|c| c.expect("chunk").to_vec())
        .collect();
    assert_eq!(bytes, audio(1));

    // A byte damaged in the second chunk: the header opens, the first chunk streams, and the
    // stream then ends with an error instead of other bytes.
    let mut damaged = get(store.as_ref(), &plain_b).await.expect("stored");
    let at = damaged.len() - envelope::CHUNK;
    damaged[at] ^= 1;
    put(store.as_ref(), &plain_b, damaged).await;
    let read = objects::read(store.as_ref(), voxanne_testkit::keyring(), b.org, &plain_b)
        .await
        .expect("the header opens");
    let chunks: Vec<_> = futures_util::StreamExt::collect(read.chunks).await;
    let good: Vec<u8> = chunks
        .iter()
        .take_while(|c| c.is_ok())
        .flat_map(|c| c.as_ref().expect("ok").to_vec())
        .collect();
    assert!(
        chunks.last().is_some_and(|c| c.is_err()),
        "no error at the end"
    );
    assert!(
        good.len() < AUDIO_LEN && audio(4).starts_with(&good),
        "{}",
        good.len()
    );
    // And one moved to another clinic's key fails before anything streams.
    let moved = format!("{}/recordings/{}.wav", b.org, Uuid::new_v4());
    put(
        store.as_ref(),
        &moved,
        get(store.as_ref(), &plain_a).await.expect("a"),
    )
    .await;
    assert!(
        objects::read(store.as_ref(), voxanne_testkit::keyring(), b.org, &moved)
            .await
            .is_err()
    );

    // Done: nothing is claimed again until the key changes.
    assert_eq!(drain(&job(&t.db, store)).await, (0, 0));
}

/// A store that, on its first write, lets the test act before the write goes through.
#[derive(Debug)]
struct Interleaved {
    inner: Arc<dyn ObjectStore>,
    hook: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::sync::oneshot::Receiver<()>,
        )>,
    >,
}

impl std::fmt::Display for Interleaved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Interleaved({})", self.inner)
    }
}

impl Interleaved {
    async fn pause(&self) {
        let hook = self.hook.lock().expect("hook").take();
        if let Some((paused, resume)) = hook {
            paused.send(()).expect("the test waits");
            resume.await.expect("the test resumes");
        }
    }
}

#[async_trait::async_trait]
impl ObjectStore for Interleaved {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.pause().await;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.pause().await;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }
    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[tokio::test]
async fn a_recording_purged_while_the_job_writes_it_again_does_not_come_back() {
    let t = TestDb::new().await;
    let [a, _] = demo::seed(&t.db).await.expect("seed");
    let dir = tempfile::tempdir().expect("dir");
    let inner: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("store"));
    let mut admin = t.admin().await;
    let key = stored_call(&mut admin, a.org, None).await;
    put(inner.as_ref(), &key, audio(7)).await;
    let (paused, on_pause) = tokio::sync::oneshot::channel();
    let (resume, on_resume) = tokio::sync::oneshot::channel();
    let store = Arc::new(Interleaved {
        inner: inner.clone(),
        hook: Mutex::new(Some((paused, on_resume))),
    });
    let job = job(&t.db, store);

    let purge = async {
        on_pause.await.expect("the job writes");
        // The retention purge, as it runs: the row first, then the object.
        sqlx::query(
            "UPDATE calls SET recording_status = 'purged', recording_path = NULL
              WHERE recording_path = $1",
        )
        .bind(&key)
        .execute(&mut admin)
        .await
        .expect("purge");
        inner
            .delete(&Path::from(key.as_str()))
            .await
            .expect("delete");
        resume.send(()).expect("resume");
    };
    let ((), (claims, written)) = tokio::join!(purge, drain(&job));
    assert!(claims > 0);
    assert_eq!(written, 0, "nothing kept");
    assert_eq!(
        get(inner.as_ref(), &key).await,
        None,
        "the purged recording came back"
    );
}
