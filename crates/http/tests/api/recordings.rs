//! The recording pipeline, end to end: a real PostgreSQL, a real HTTP server on loopback
//! serving recordings with injected faults, real files in a temp dir.
use crate::support::recordings::*;
use crate::support::*;

use std::time::{Duration, Instant};
use uuid::Uuid;
use voxanne_jobs::{Job, MediaHosts, Schedule, WorkerConfig, PART_BYTES};

fn stored_files(app: &TestApp) -> Vec<String> {
    fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                out.push(
                    path.strip_prefix(root)
                        .expect("prefix")
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(app.storage.path(), app.storage.path(), &mut out);
    out.sort();
    out
}

/// `GET /calls/{id}/recording` as `token`: the status, the announced length and the body.
async fn fetch_recording(app: &TestApp, id: Uuid, token: &str) -> (u16, Option<String>, Vec<u8>) {
    let r = app
        .client
        .get(format!("{}/api/v1/calls/{id}/recording", app.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("get");
    let length = r
        .headers()
        .get("content-length")
        .map(|v| v.to_str().expect("ascii").to_owned());
    let status = r.status().as_u16();
    (
        status,
        length,
        r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
    )
}

#[tokio::test]
async fn recordings_of_two_clinics_are_stored_under_their_own_prefix_and_served_to_their_clinic_only(
) {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let a_calls = queue(
        &app,
        a.org,
        &[provider.url("ok", "a1"), provider.url("ok", "a2")],
    )
    .await;
    let b_calls = queue(&app, b.org, &[provider.url("ok", "b1")]).await;
    let w = worker(&app, config());
    drain(&app, &w).await;

    for (org, calls) in [(a.org, &a_calls), (b.org, &b_calls)] {
        for id in calls.iter() {
            let (status, path, attempts) = call_state(&app, *id).await;
            assert_eq!(status, "stored");
            assert_eq!(
                path.as_deref(),
                Some(format!("{org}/recordings/{id}.wav").as_str())
            );
            assert_eq!(attempts, 1);
        }
    }
    assert_eq!(stored_files(&app).len(), 3, "{:?}", stored_files(&app));
    assert_eq!(w.metrics().recordings.done.get(), 3);

    let a_token = app.token(a.owner, Some(a.org));
    let b_token = app.token(b.owner, Some(b.org));
    let fetch = |id: Uuid, token: String| {
        let app = &app;
        async move {
            let (status, _, bytes) = fetch_recording(app, id, &token).await;
            (status, bytes)
        }
    };
    let (status, bytes) = fetch(a_calls[0], a_token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, audio_for("/ok/a1.wav"));
    let (status, bytes) = fetch(b_calls[0], b_token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, audio_for("/ok/b1.wav"));
    assert_eq!(
        fetch(a_calls[0], b_token).await.0,
        404,
        "B reads A's recording"
    );
    assert_eq!(
        fetch(b_calls[0], a_token).await.0,
        404,
        "A reads B's recording"
    );
}

#[tokio::test]
async fn a_stored_recording_is_encrypted_for_its_clinic_and_a_copy_elsewhere_does_not_open() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let a_call = queue(&app, a.org, &[provider.url("ok", "a1")]).await[0];
    let b_call = queue(&app, b.org, &[provider.url("ok", "b1")]).await[0];
    let w = worker(&app, config());
    drain(&app, &w).await;
    let audio = audio_for("/ok/a1.wav");
    let a_path = call_state(&app, a_call).await.1.expect("stored");
    let b_path = call_state(&app, b_call).await.1.expect("stored");

    // In storage: ciphertext under the current key, none of the audio in the clear.
    let stored = std::fs::read(app.storage.path().join(&a_path)).expect("read");
    assert!(!stored.windows(16).any(|w| w == &audio[audio.len() - 16..]));
    assert_eq!(
        voxanne_testkit::open_recording(a.org, &a_path, &stored),
        audio
    );
    let mut admin = app.t.admin().await;
    let key_id: Option<String> =
        sqlx::query_scalar("SELECT recording_key_id FROM calls WHERE id = $1")
            .bind(a_call)
            .fetch_one(&mut admin)
            .await
            .expect("key id");
    assert_eq!(key_id.as_deref(), Some("test2"));

    // Served as audio, its exact length announced first.
    let (status, length, bytes) =
        fetch_recording(&app, a_call, &app.token(a.owner, Some(a.org))).await;
    assert_eq!(status, 200);
    assert_eq!(length, Some(audio.len().to_string()));
    assert_eq!(bytes, audio);

    // A's object copied over B's (a mistaken sync, a tampered bucket): B's call finds it, and
    // it does not open there. B gets an error, never A's audio.
    std::fs::copy(
        app.storage.path().join(&a_path),
        app.storage.path().join(&b_path),
    )
    .expect("copy");
    let (status, _, bytes) = fetch_recording(&app, b_call, &app.token(b.owner, Some(b.org))).await;
    assert_eq!(status, 500);
    assert!(
        !bytes.windows(16).any(|w| w == &audio[..16]),
        "A's audio reached B"
    );
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("a JSON error");
    assert_eq!(body["error"]["code"], "internal", "{body}");
}

#[tokio::test]
async fn a_provider_that_fails_twice_then_succeeds_ends_stored_after_retries() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let ids = queue(&app, a.org, &[provider.url("flaky", "x")]).await;
    let w = worker(&app, config());
    drain(&app, &w).await;
    let (status, path, attempts) = call_state(&app, ids[0]).await;
    assert_eq!((status.as_str(), attempts), ("stored", 3));
    assert!(path.is_some());
    assert_eq!(provider.hits.lock().expect("lock")["/flaky/x.wav"], 3);
    assert_eq!(
        (
            w.metrics().recordings.retried.get(),
            w.metrics().recordings.done.get()
        ),
        (2, 1)
    );
    let mut admin = app.t.admin().await;
    let failures: i64 =
        sqlx::query_scalar("SELECT count(*) FROM failed_recording_uploads WHERE call_id = $1")
            .bind(ids[0])
            .fetch_one(&mut admin)
            .await
            .expect("count");
    assert_eq!(failures, 0, "a stored recording keeps no failure record");
}

#[tokio::test]
async fn an_always_failing_provider_ends_failed_with_attempts_counted_and_visible_through_the_api()
{
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let ids = queue(
        &app,
        a.org,
        &[
            provider.url("fail", "x"),
            provider.url("truncate", "y"),
            provider.url("slow", "z"),
        ],
    )
    .await;
    let w = worker(&app, config());
    drain(&app, &w).await;

    let mut admin = app.t.admin().await;
    for (id, expected_error) in ids.iter().zip(["HTTP 500", "truncated", "download failed"]) {
        let (status, path, attempts) = call_state(&app, *id).await;
        assert_eq!((status.as_str(), path, attempts), ("failed", None, 3));
        let (n, error): (i32, String) = sqlx::query_as(
            "SELECT attempts, last_error FROM failed_recording_uploads WHERE call_id = $1",
        )
        .bind(id)
        .fetch_one(&mut admin)
        .await
        .expect("failure record");
        assert_eq!(n, 3);
        assert!(error.contains(expected_error), "{error}");
    }
    assert_eq!(provider.hits.lock().expect("lock")["/fail/x.wav"], 3);
    assert!(
        stored_files(&app).is_empty(),
        "no partial object: {:?}",
        stored_files(&app)
    );
    assert_eq!(
        (
            w.metrics().recordings.failed.get(),
            w.metrics().recordings.retried.get()
        ),
        (3, 6)
    );

    let token = app.token(a.staff, Some(a.org));
    let r = app
        .get_as(&format!("/api/v1/calls/{}", ids[0]), &token)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["recording_status"], "failed");
}

#[tokio::test]
async fn a_worker_dropped_mid_batch_loses_nothing_and_duplicates_nothing_after_stale_cleanup() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let mut ids = queue(
        &app,
        a.org,
        &(0..6)
            .map(|i| provider.url("slowok", &format!("a{i}")))
            .collect::<Vec<_>>(),
    )
    .await;
    ids.extend(
        queue(
            &app,
            b.org,
            &(0..6)
                .map(|i| provider.url("slowok", &format!("b{i}")))
                .collect::<Vec<_>>(),
        )
        .await,
    );

    // The first worker claims everything with a short lease and dies mid-download.
    let first = worker(
        &app,
        WorkerConfig {
            schedule: Schedule {
                lease: Duration::from_millis(800),
                ..config().schedule
            },
            ..config()
        },
    );
    let task = tokio::spawn(async move { first.run_once().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let _ = task.await;
    for id in &ids {
        assert_eq!(call_state(&app, *id).await.0, "processing");
    }
    // A second worker, before the lease runs out, does not take them.
    let second = worker(&app, config());
    assert!(second.run_once().await.expect("round").is_empty());
    tokio::time::sleep(Duration::from_millis(900)).await;
    drain(&app, &second).await;

    for id in &ids {
        let (status, path, attempts) = call_state(&app, *id).await;
        assert_eq!(status, "stored");
        assert!(path.is_some());
        assert_eq!(attempts, 2, "one dead claim, one that finished");
    }
    let files = stored_files(&app);
    assert_eq!(files.len(), ids.len(), "one object per call: {files:?}");
    for id in &ids {
        assert_eq!(
            files.iter().filter(|f| f.contains(&id.to_string())).count(),
            1
        );
    }
}

#[tokio::test]
async fn a_job_run_twice_stores_one_object_and_one_final_state() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let ids = queue(&app, a.org, &[provider.url("ok", "twice")]).await;
    let w = worker(&app, config());
    let claimed = w.claim().await.expect("claim");
    assert_eq!(claimed.len(), 1);
    // Two runs of the same claim (as after a crash between the upload and the commit).
    let first = w.process(&claimed[0]).await.expect("first");
    let second = w.process(&claimed[0]).await.expect("second");
    assert!(
        matches!(first, voxanne_jobs::Outcome::Stored { .. }),
        "{first:?}"
    );
    assert_eq!(second, voxanne_jobs::Outcome::Abandoned);
    assert_eq!(stored_files(&app).len(), 1);
    assert_eq!(call_state(&app, ids[0]).await.0, "stored");
}

#[tokio::test]
async fn a_suspended_clinics_queue_is_not_touched_until_it_is_active_again() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let a_ids = queue(&app, a.org, &[provider.url("ok", "a")]).await;
    let b_ids = queue(
        &app,
        b.org,
        &[provider.url("ok", "b1"), provider.url("ok", "b2")],
    )
    .await;
    let mut admin = app.t.admin().await;
    // One of B's rows was left processing by a dead worker, its lease long gone.
    sqlx::query("UPDATE calls SET recording_status = 'processing', recording_lease_until = now() - interval '1 hour', recording_attempts = 1 WHERE id = $1")
        .bind(b_ids[1])
        .execute(&mut admin)
        .await
        .expect("stale");
    sqlx::query("UPDATE organizations SET status = 'suspended' WHERE id = $1")
        .bind(b.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("suspend");
    let before = app.snapshot(b.org).await;

    let w = worker(&app, config());
    for _ in 0..3 {
        w.run_once().await.expect("round");
    }
    assert_eq!(call_state(&app, a_ids[0]).await.0, "stored");
    assert_eq!(
        app.snapshot(b.org).await,
        before,
        "the suspended clinic's rows changed"
    );
    assert_eq!(
        provider
            .hits
            .lock()
            .expect("lock")
            .keys()
            .filter(|k| k.contains("/b"))
            .count(),
        0
    );

    sqlx::query("UPDATE organizations SET status = 'active' WHERE id = $1")
        .bind(b.org.as_uuid())
        .execute(&mut admin)
        .await
        .expect("reactivate");
    drain(&app, &w).await;
    for id in &b_ids {
        assert_eq!(call_state(&app, *id).await.0, "stored");
    }
}

#[tokio::test]
async fn erasing_a_clinic_removes_its_stored_recordings() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    queue(
        &app,
        a.org,
        &[provider.url("ok", "a1"), provider.url("ok", "a2")],
    )
    .await;
    queue(&app, b.org, &[provider.url("ok", "b1")]).await;
    let w = worker(&app, config());
    drain(&app, &w).await;
    // An object without a row (stored by a job whose commit never happened).
    let stray = app
        .storage
        .path()
        .join(format!("{}/recordings/{}.wav", a.org, Uuid::new_v4()));
    std::fs::write(&stray, b"stray").expect("stray");
    assert_eq!(stored_files(&app).len(), 4);

    let owner = app.token(a.owner, Some(a.org));
    let r = app.delete("/api/v1/organization", &owner).await;
    assert_eq!(r.status, 204);
    let files = stored_files(&app);
    assert!(
        files.iter().all(|f| !f.starts_with(&a.org.to_string())),
        "{files:?}"
    );
    assert_eq!(files.len(), 1, "B's recording stays: {files:?}");
    assert!(files[0].starts_with(&b.org.to_string()));
}

#[tokio::test]
async fn metrics_report_the_queue_depth_by_status_and_the_job_counters() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    queue(
        &app,
        a.org,
        &[provider.url("ok", "1"), provider.url("ok", "2")],
    )
    .await;
    let waiting = queue(&app, b.org, &[provider.url("ok", "3")]).await;
    let processing = queue(&app, b.org, &[provider.url("ok", "4")]).await;
    let mut admin = app.t.admin().await;
    sqlx::query(
        "UPDATE calls SET recording_next_attempt_at = now() + interval '1 hour' WHERE id = $1",
    )
    .bind(waiting[0])
    .execute(&mut admin)
    .await
    .expect("backoff");
    sqlx::query("UPDATE calls SET recording_status = 'processing', recording_lease_until = now() + interval '1 hour' WHERE id = $1")
        .bind(processing[0])
        .execute(&mut admin)
        .await
        .expect("processing");
    let r = app
        .client
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("text");
    // Totals over all clinics: not on the API's address.
    let on_api = app.get("/metrics", None, &[]).await;
    assert_eq!((on_api.status.as_u16(), on_api.code()), (404, "no_route"));
    for (status, n) in [("queued", 2), ("waiting", 1), ("processing", 1)] {
        assert!(
            text.contains(&format!("voxanne_recordings{{status=\"{status}\"}} {n}\n")),
            "{text}"
        );
    }
    for counter in ["processed", "failed", "retried"] {
        assert!(
            text.contains(&format!("voxanne_recordings_{counter}_total 0\n")),
            "{text}"
        );
    }
}

#[tokio::test]
async fn the_orphan_sweep_deletes_objects_without_a_row_and_marks_rows_without_an_object() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let a_ids = queue(
        &app,
        a.org,
        &[provider.url("ok", "a1"), provider.url("ok", "a2")],
    )
    .await;
    let b_ids = queue(&app, b.org, &[provider.url("ok", "b1")]).await;
    // A zero lease: every object is past the grace period at once.
    let w = worker(
        &app,
        WorkerConfig {
            schedule: Schedule {
                lease: Duration::ZERO,
                ..config().schedule
            },
            ..config()
        },
    );
    drain(&app, &w).await;
    let orphan = format!("{}/recordings/{}.wav", a.org, Uuid::new_v4());
    let erased_clinic = format!("{}/recordings/{}.wav", Uuid::new_v4(), Uuid::new_v4());
    for key in [&orphan, &erased_clinic] {
        let file = app.storage.path().join(key);
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(&file, b"orphan").expect("write");
    }
    // B's object disappears from storage.
    let b_path = call_state(&app, b_ids[0]).await.1.expect("path");
    std::fs::remove_file(app.storage.path().join(&b_path)).expect("rm");

    let report = w.sweep_orphans().await.expect("sweep");
    assert_eq!((report.objects_deleted, report.rows_marked), (2, 1));
    let files = stored_files(&app);
    assert_eq!(files.len(), 2, "{files:?}");
    for id in &a_ids {
        assert_eq!(call_state(&app, *id).await.0, "stored");
    }
    assert_eq!(call_state(&app, b_ids[0]).await.0, "failed");
    let again = w.sweep_orphans().await.expect("sweep");
    assert_eq!((again.objects_deleted, again.rows_marked), (0, 0));
}

#[tokio::test]
async fn a_stopping_worker_finishes_its_batch_in_flight_and_claims_no_more() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let urls: Vec<String> = (0..5)
        .map(|i| provider.url("slowok", &format!("s{i}")))
        .collect();
    let ids = queue(&app, a.org, &urls).await;
    let w = worker(
        &app,
        WorkerConfig {
            schedule: Schedule {
                batch: 3,
                ..config().schedule
            },
            ..config()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(async move {
        w.run(async move {
            let _ = stopped.await;
        })
        .await
    });
    // The first batch (3 jobs, 600 ms each) is in flight when the signal comes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the worker stops")
        .expect("no panic");
    let mut states = Vec::new();
    for id in &ids {
        states.push(call_state(&app, *id).await.0);
    }
    states.sort();
    assert_eq!(
        states,
        ["queued", "queued", "stored", "stored", "stored"],
        "in flight finished, nothing else claimed"
    );
    assert_eq!(stored_files(&app).len(), 3);
}

#[tokio::test]
async fn by_default_the_worker_never_connects_to_loopback_or_private_addresses() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    // The same loopback provider, named by IP literal and by host name.
    let literal = provider.url("ok", "literal");
    let by_name = literal
        .replace("127.0.0.1", "localhost")
        .replace("/literal.", "/by-name.");
    let ids = queue(&app, a.org, &[literal, by_name]).await;
    let guarded = WorkerConfig {
        allow_private_addresses: false,
        ..config()
    };
    let w = worker(&app, guarded);
    drain(&app, &w).await;
    for id in ids {
        let (status, path, _) = call_state(&app, id).await;
        assert_eq!((status.as_str(), path), ("failed", None), "call {id}");
    }
    assert!(
        provider.hits.lock().expect("lock").is_empty(),
        "the worker reached a loopback address"
    );
    let mut admin = app.t.admin().await;
    let errors: Vec<String> = sqlx::query_scalar(
        "SELECT last_error FROM failed_recording_uploads WHERE org_id = $1 ORDER BY last_error",
    )
    .bind(a.org.as_uuid())
    .fetch_all(&mut admin)
    .await
    .expect("errors");
    assert_eq!(errors.len(), 2);
    assert!(
        errors.iter().any(|e| e.contains("not a public address")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("no public address")),
        "{errors:?}"
    );
}

/// The Twilio media hosts of these tests: `hosts`, as `host:port`.
fn media_hosts(hosts: &[String]) -> MediaHosts {
    MediaHosts::parse(&hosts.join(",")).expect("media hosts")
}

#[tokio::test]
async fn twilio_credentials_go_only_to_the_listed_media_host_and_no_other_host_gets_any() {
    let app = TestApp::spawn().await;
    let [a, b] = app.clinics().await;
    quiet_demo_queue(&app).await;
    set_twilio(&app, &a, "AC-clinic-a", "token-a").await;
    let twilio = Provider::spawn().await;
    let other = Provider::spawn().await;
    let a_ids = queue(
        &app,
        a.org,
        &[
            twilio.url("ok", "listed"),
            // The same server under another name, and another port: neither is on the list.
            format!("http://{}/ok/other-name.wav", twilio.localhost()),
            other.url("ok", "other-port"),
        ],
    )
    .await;
    let b_ids = queue(&app, b.org, &[twilio.url("ok", "no-integration")]).await;
    let config = WorkerConfig {
        twilio_media_hosts: media_hosts(&[twilio.host()]),
        ..config()
    };
    drain(&app, &worker(&app, config)).await;
    for id in a_ids.iter().chain(&b_ids) {
        assert_eq!(call_state(&app, *id).await.0, "stored");
    }
    assert_eq!(
        twilio.auth_of("/ok/listed.wav"),
        Some(basic("AC-clinic-a", "token-a")),
        "the listed host gets the clinic's own credentials"
    );
    assert_eq!(twilio.auth_of("/ok/other-name.wav"), None);
    assert_eq!(other.auth_of("/ok/other-port.wav"), None);
    assert_eq!(
        twilio.auth_of("/ok/no-integration.wav"),
        None,
        "B has no integration: no credentials"
    );
}

#[tokio::test]
async fn the_default_media_host_list_sends_a_loopback_provider_no_credentials() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    set_twilio(&app, &a, "AC-clinic-a", "token-a").await;
    let provider = Provider::spawn().await;
    let ids = queue(&app, a.org, &[provider.url("ok", "not-twilio")]).await;
    drain(&app, &worker(&app, config())).await;
    assert_eq!(call_state(&app, ids[0]).await.0, "stored");
    assert_eq!(provider.auth_of("/ok/not-twilio.wav"), None);
}

#[tokio::test]
async fn a_listed_host_that_redirects_elsewhere_sends_the_next_host_no_credentials() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    set_twilio(&app, &a, "AC-clinic-a", "token-a").await;
    let twilio = Provider::spawn().await;
    let elsewhere = Provider::spawn().await;
    let ids = queue(
        &app,
        a.org,
        &[
            // To a host off the list.
            format!(
                "{}/redirect/{}/ok/off-list.wav",
                twilio.base,
                elsewhere.host()
            ),
            // To another listed host: still another host, so still no credentials.
            format!(
                "{}/redirect/{}/ok/other-listed.wav",
                twilio.base,
                twilio.localhost()
            ),
            // Within the listed host: they stay.
            format!(
                "{}/redirect/{}/ok/same-host.wav",
                twilio.base,
                twilio.host()
            ),
            // From a host off the list to the listed one: none anywhere.
            format!("{}/redirect/{}/ok/back.wav", elsewhere.base, twilio.host()),
        ],
    )
    .await;
    let config = WorkerConfig {
        twilio_media_hosts: media_hosts(&[twilio.host(), twilio.localhost()]),
        ..config()
    };
    drain(&app, &worker(&app, config)).await;
    for id in &ids {
        assert_eq!(call_state(&app, *id).await.0, "stored");
    }
    let theirs = Some(basic("AC-clinic-a", "token-a"));
    let first_hop = |to: &Provider, path: &str| format!("/redirect/{}{path}", to.host());
    assert_eq!(
        twilio.auth_of(&first_hop(&elsewhere, "/ok/off-list.wav")),
        theirs
    );
    assert_eq!(
        elsewhere.auth_of("/ok/off-list.wav"),
        None,
        "credentials followed a redirect off the list"
    );
    assert_eq!(twilio.auth_of("/ok/other-listed.wav"), None);
    assert_eq!(twilio.auth_of("/ok/same-host.wav"), theirs);
    assert_eq!(
        elsewhere.auth_of(&format!("/redirect/{}/ok/back.wav", twilio.host())),
        None
    );
    assert_eq!(twilio.auth_of("/ok/back.wav"), None);
}

/// Waits until a multipart upload's staging file (`{key}#{n}`) in the test's storage holds at
/// least one part, and returns its name: the recording is being written while it downloads.
async fn staging_file_with_a_part(app: &TestApp) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let staged = stored_files(app).into_iter().find(|f| {
            f.contains('#')
                && std::fs::metadata(app.storage.path().join(f))
                    .is_ok_and(|m| m.len() >= PART_BYTES as u64)
        });
        if let Some(staged) = staged {
            return staged;
        }
        assert!(
            Instant::now() < deadline,
            "nothing written while downloading: {:?}",
            stored_files(app)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_large_recording_is_written_to_storage_while_it_downloads_and_stored_intact() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let size = 20 * 1024 * 1024 + 12_345;
    let ids = queue(
        &app,
        a.org,
        &[provider.big_url("paused-big", size, "large")],
    )
    .await;
    let w = worker(&app, large_config(64 * 1024 * 1024));
    let running = tokio::spawn(async move { w.run_once().await });
    // Paused halfway: the first part is already in storage, not in memory.
    let staged = staging_file_with_a_part(&app).await;
    assert_eq!(stored_files(&app), [staged], "no final object yet");
    provider.release();
    let outcomes = running.await.expect("no panic").expect("round");
    assert_eq!(outcomes.len(), 1);
    let (status, path, _) = call_state(&app, ids[0]).await;
    assert_eq!(status, "stored");
    let path = path.expect("path");
    assert_eq!(
        stored_files(&app),
        [path.as_str()],
        "one object, no staging left"
    );
    let stored = std::fs::read(app.storage.path().join(&path)).expect("read");
    // Encrypted for the clinic: the audio's size plus a header and a tag per 64 KiB chunk.
    let header = voxanne_db::envelope::Header::of_object(&stored)
        .expect("header")
        .expect("encrypted");
    assert_eq!(
        stored.len() as u64,
        header.len() as u64 + voxanne_db::envelope::sealed_len(size as u64)
    );
    let audio = voxanne_testkit::open_recording(a.org, &path, &stored);
    assert_eq!(sha256_hex(&audio), sha256_hex(&big_audio(size)));
}

#[tokio::test]
async fn a_recording_over_the_size_limit_is_abandoned_mid_stream_and_leaves_no_object() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let limit = 8 * 1024 * 1024;
    let size = 12 * 1024 * 1024;
    // No Content-Length: the limit is only found out while streaming, after the first part.
    let streamed = queue(
        &app,
        a.org,
        &[provider.big_url("paused-bigchunked", size, "unsized")],
    )
    .await;
    let w = worker(&app, large_config(limit as u64));
    let running = tokio::spawn({
        let w = w.clone();
        async move { w.run_once().await }
    });
    staging_file_with_a_part(&app).await;
    provider.release();
    running.await.expect("no panic").expect("round");
    // A declared Content-Length over the limit is refused before anything is read.
    let declared = queue(&app, a.org, &[provider.big_url("big", size, "sized")]).await;
    drain(&app, &w).await;
    for id in [streamed[0], declared[0]] {
        let (status, path, _) = call_state(&app, id).await;
        assert_eq!((status.as_str(), path), ("failed", None));
        let error = last_error(&app, id).await;
        assert!(
            error.contains(&format!("larger than {limit} bytes")),
            "{error}"
        );
    }
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
}

#[tokio::test]
async fn a_large_recording_cut_short_ends_failed_as_truncated_and_leaves_no_object() {
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    quiet_demo_queue(&app).await;
    let provider = Provider::spawn().await;
    let size = 12 * 1024 * 1024;
    let ids = queue(
        &app,
        a.org,
        &[provider.big_url("paused-bigtruncate", size, "cut")],
    )
    .await;
    let w = worker(&app, large_config(64 * 1024 * 1024));
    let running = tokio::spawn(async move { w.run_once().await });
    staging_file_with_a_part(&app).await;
    // The provider closes the connection after half of what it promised.
    provider.release();
    running.await.expect("no panic").expect("round");
    let (status, path, _) = call_state(&app, ids[0]).await;
    assert_eq!((status.as_str(), path), ("failed", None));
    let error = last_error(&app, ids[0]).await;
    assert!(
        error.contains(&format!("truncated: {} of {size} bytes", size / 2)),
        "{error}"
    );
    assert!(stored_files(&app).is_empty(), "{:?}", stored_files(&app));
}
