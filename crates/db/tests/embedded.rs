//! The embedded cluster: initialised once, reused, stopped by whoever is responsible for it.

use std::os::unix::fs::PermissionsExt;
use voxanne_db::embedded::{ClusterOptions, EmbeddedCluster};

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("voxanne-embedded-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[test]
fn a_running_cluster_is_reused_and_one_whose_owner_died_is_adopted() {
    let dir = data_dir();
    let options = ClusterOptions { ephemeral: true };
    let first = EmbeddedCluster::start(dir.path(), options).expect("first start");
    assert!(first.started_here());

    // Another process (here: another handle) while the first one lives: reuse, never stop.
    let second = EmbeddedCluster::start(dir.path(), options).expect("second start");
    assert!(!second.started_here());
    second.stop().expect("a no-op");
    assert!(
        first.pg_dir().join("postmaster.pid").exists(),
        "the reuser stopped the server"
    );

    // The owner dies without stopping the server (SIGKILL): the next start adopts it.
    let mut dead = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    std::fs::write(dir.path().join("pg.owner"), dead_pid.to_string()).expect("owner file");
    let third = EmbeddedCluster::start(dir.path(), options).expect("third start");
    assert!(
        third.started_here(),
        "a cluster whose owner is gone must be adopted"
    );
    third.stop().expect("stop");
    assert!(
        !first.pg_dir().join("postmaster.pid").exists(),
        "the server is still running"
    );

    // And a stopped cluster starts again from the same files (no new initdb).
    let version = std::fs::metadata(first.pg_dir().join("PG_VERSION"))
        .expect("PG_VERSION")
        .modified()
        .ok();
    let fourth = EmbeddedCluster::start(dir.path(), options).expect("restart");
    assert!(fourth.started_here());
    assert_eq!(
        std::fs::metadata(fourth.pg_dir().join("PG_VERSION"))
            .expect("PG_VERSION")
            .modified()
            .ok(),
        version
    );
    fourth.stop().expect("stop");
}
