//! CPU time spent by the server and by the database during a run, from `/proc`: where a
//! request's cost goes (the server's own work against the database's), per request. Less
//! noisy than throughput on a shared machine, since it counts work done, not time waited.

/// Clock ticks of `/proc/<pid>/stat`: Linux reports them in `USER_HZ`, which is 100 on
/// every architecture's user-space ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields after the command name (which may hold spaces and parentheses) of
/// `/proc/<pid>/stat`: `state` is the first of them, the third field of the line.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    // `state` is a letter: 0 in its place keeps the indexes of the line's fields.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// Index in [`stat_fields`] of the line's field `n` (1-based, as in proc(5)).
fn field(fields: &[u64], n: usize) -> u64 {
    fields.get(n - 3).copied().unwrap_or(0)
}

/// The process's user and system time so far, in seconds (all its threads).
pub fn process_seconds(pid: u32) -> f64 {
    stat_fields(pid).map_or(0.0, |f| (field(&f, 14) + field(&f, 15)) as f64) / TICKS_PER_SECOND
}

/// The CPU time of a PostgreSQL cluster so far, in seconds: the postmaster's own, that of
/// the backends it has reaped (its children's times), and that of every live child. A
/// backend that ends during a run moves from the last to the second: the difference of two
/// readings counts it once.
pub fn cluster_seconds(postmaster: u32) -> f64 {
    let Some(own) = stat_fields(postmaster) else {
        return 0.0;
    };
    let mut ticks = field(&own, 14) + field(&own, 15) + field(&own, 16) + field(&own, 17);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(f) = stat_fields(pid) {
            if field(&f, 4) == u64::from(postmaster) {
                ticks += field(&f, 14) + field(&f, 15);
            }
        }
    }
    ticks as f64 / TICKS_PER_SECOND
}

/// The postmaster of the backend `backend` (its parent).
pub fn parent(backend: u32) -> Option<u32> {
    stat_fields(backend).and_then(|f| u32::try_from(field(&f, 4)).ok())
}

/// The CPU time of the server and of the database over a run, in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spent {
    pub server: f64,
    pub database: f64,
}

/// Reads the CPU time of `server` (if any) and of the cluster of `postmaster` around `run`.
pub fn around<T, E>(
    server: Option<u32>,
    postmaster: u32,
    run: impl FnOnce() -> Result<T, E>,
) -> Result<(T, Spent), E> {
    let server_seconds = || server.map_or(0.0, process_seconds);
    let (s0, d0) = (server_seconds(), cluster_seconds(postmaster));
    let value = run()?;
    let (s1, d1) = (server_seconds(), cluster_seconds(postmaster));
    Ok((
        value,
        Spent {
            server: s1 - s0,
            database: d1 - d0,
        },
    ))
}
