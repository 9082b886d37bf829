//! The OpenAPI document round-trips through a generated client: openapi-python-client (an
//! outside generator, installed by `scripts/ensure-openapi-client`) generates a client from
//! the document, and `tests/generated_client/roundtrip.py` drives a real server with it. The
//! client parses every answer into the models the document declares (an enum spelled
//! differently, a missing required field or a wrong type fails the parse) and raises on any
//! status the document does not declare.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

/// The virtual environment that holds the generator: `$VOXANNE_OPENAPI_CLIENT`, else where
/// `scripts/ensure-openapi-client` puts it by default.
fn generator_env() -> PathBuf {
    let venv = std::env::var_os("VOXANNE_OPENAPI_CLIENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/openapi-client")
        });
    assert!(
        venv.join("bin/openapi-python-client").exists(),
        "the OpenAPI client generator is not installed at {}: run scripts/ensure-openapi-client \
         (scripts/test does)",
        venv.display()
    );
    venv
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("running a command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

#[tokio::test]
async fn a_client_generated_from_the_document_reads_and_writes_through_the_live_api() {
    let venv = generator_env();
    let app = TestApp::spawn().await;
    let [a, _] = app.clinics().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let spec = dir.path().join("openapi.json");
    let document = serde_json::to_vec_pretty(&voxanne_http::openapi()).expect("the document");
    std::fs::write(&spec, document).expect("writing the document");
    let config = dir.path().join("generator.yml");
    // No formatter run afterwards (it is not part of what is tested). A patient's export is a
    // zip archive, which the generator models as the bytes it is when told so (its
    // `content_type_overrides` setting).
    std::fs::write(
        &config,
        "post_hooks: []\ncontent_type_overrides:\n  application/zip: application/octet-stream\n",
    )
    .expect("writing the generator config");

    let generated = run(Command::new(venv.join("bin/openapi-python-client"))
        .args(["generate", "--meta", "none", "--path"])
        .arg(&spec)
        .arg("--output-path")
        .arg(dir.path().join("voxanne_client"))
        .arg("--config")
        .arg(&config));
    // The generator skips what it cannot model and says so; the document must have no such part.
    assert!(
        !generated.contains("Warning"),
        "the generator could not model part of the document:\n{generated}"
    );

    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/generated_client/roundtrip.py");
    let token = app.token(a.owner, Some(a.org));
    let base = app.base.clone();
    // Blocking, off the runtime's thread: the server goes on answering meanwhile.
    let out = tokio::task::spawn_blocking(move || {
        run(Command::new(venv.join("bin/python"))
            .arg(script)
            .arg(base)
            .arg(token)
            .env("PYTHONPATH", dir.path()))
    })
    .await
    .expect("the round trip");
    assert!(out.contains("ok: "), "{out}");
}
