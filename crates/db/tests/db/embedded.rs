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
    let options = ClusterOptions {
        ephemeral: true,
        citus: false,
    };
    let first = EmbeddedCluster::start(dir.path(), options).expect("first start");
    assert!(first.started_here());

    // Another voxanne process uses it too (here: a live process registered as a user): the
    // first one leaves the server up for it and hands it over.
    let mut other = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn");
    std::fs::write(
        dir.path().join("pg.users").join(other.id().to_string()),
        b"",
    )
    .expect("register the other user");
    first.stop().expect("leaving it to the other user");
    assert!(
        first.pg_dir().join("postmaster.pid").exists(),
        "stopped under a process that still uses it"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("pg.owner")).expect("owner"),
        other.id().to_string()
    );

    // That one dies without stopping the server (SIGKILL): the next start adopts it, and
    // stops it when it goes, the dead user's entry notwithstanding.
    other.kill().expect("kill");
    other.wait().expect("wait");
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

#[test]
fn a_data_dir_only_root_can_enter_is_opened_for_the_clusters_account() {
    if !nix::unistd::geteuid().is_root() {
        return; // the cluster runs as the caller: nothing to open
    }
    let dir = tempfile::Builder::new()
        .prefix("voxanne-private-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let cluster = EmbeddedCluster::start(
        dir.path(),
        ClusterOptions {
            ephemeral: true,
            citus: false,
        },
    )
    .expect("a 0700 data dir of root's works");
    let mode = std::fs::metadata(dir.path())
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o701, "passable, not readable, by others");
    cluster.stop().expect("stop");
}
