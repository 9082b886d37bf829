//! What every worker does the same way: run a claimed batch at once, and poll in rounds until
//! shutdown.

use crate::JobError;
use std::future::Future;
use std::time::Duration;

/// Runs `process` on every job of `batch` concurrently (it hands the job back with its
/// outcome). A job whose outcome could not be recorded is reported to `unrecorded` and left
/// out: its row keeps its lease, and the stale sweep puts it back in the queue once the lease
/// has run out.
pub(crate) async fn run_batch<J, O, Fut>(
    batch: Vec<J>,
    process: impl Fn(J) -> Fut,
    unrecorded: impl Fn(&J, &JobError),
) -> Vec<(J, O)>
where
    Fut: Future<Output = (J, Result<O, JobError>)>,
{
    let outcomes = futures_util::future::join_all(batch.into_iter().map(process)).await;
    let mut done = Vec::with_capacity(outcomes.len());
    for (job, outcome) in outcomes {
        match outcome {
            Ok(outcome) => done.push((job, outcome)),
            Err(e) => unrecorded(&job, &e),
        }
    }
    done
}

/// Calls `round` until `shutdown` resolves: at once again after a round that did work, after
/// `idle_poll` after one that did none or failed (the failure is logged). A round in flight
/// when `shutdown` resolves is finished; no new one starts.
pub(crate) async fn poll<Fut>(
    worker: &str,
    idle_poll: Duration,
    shutdown: impl Future<Output = ()>,
    mut round: impl FnMut() -> Fut,
) where
    Fut: Future<Output = Result<bool, JobError>>,
{
    tokio::pin!(shutdown);
    loop {
        let worked = match round().await {
            Ok(worked) => worked,
            Err(e) => {
                tracing::error!(error = %e, "{worker} worker round failed");
                false
            }
        };
        let pause = if worked { Duration::ZERO } else { idle_poll };
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            () = tokio::time::sleep(pause) => {}
        }
    }
    tracing::info!("{worker} worker stopped");
}
