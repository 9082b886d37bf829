//! The access writer: the access records of transactions that only read, written in batches
//! (migrations/0030).
//!
//! A read's transaction commits without its records (a read-only transaction: no WAL flush),
//! hands them to the writer and waits. The writer takes whatever has queued meanwhile, from
//! every request and clinic, and writes it with one statement, `app.write_access_records`,
//! that commits on its own; then every waiting transaction's `commit` returns. So a read is
//! never answered before its records are durable, and under load many requests share one
//! writing transaction: the batch grows while the previous one is being written.
//!
//! A batch that fails is written again one transaction at a time (unless the database is out
//! of reach), so one bad record fails its own request and no other.

use crate::access::{Note, Origin};
use crate::DbError;
use sqlx::PgPool;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use voxanne_domain::OrgId;

/// At most this many records in one statement.
const MAX_BATCH: usize = 1000;
/// Transactions that may wait for the writer at once; more wait to be queued.
const QUEUE: usize = 4096;

/// One transaction's records.
struct Submission {
    org: OrgId,
    origin: Origin,
    notes: Vec<Note>,
    done: oneshot::Sender<Result<(), DbError>>,
}

/// What the writer has done, for tests and the benchmark.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    records: AtomicU64,
}

/// The handle to the writer task: cheap to clone; the task ends when the last handle is gone.
#[derive(Clone, Debug)]
pub(crate) struct AccessWriter {
    queue: mpsc::Sender<Submission>,
    counters: Arc<Counters>,
    pool: PgPool,
}

impl AccessWriter {
    /// Starts the writer on the current runtime, writing over `pool` (its own: the writer
    /// never waits behind the requests for a connection).
    pub(crate) fn start(pool: PgPool) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let counters = Arc::new(Counters::default());
        tokio::spawn(run(pool.clone(), receiver, counters.clone()));
        Self {
            queue,
            counters,
            pool,
        }
    }

    /// Writes `notes` of `org` and waits until they are committed.
    pub(crate) async fn write(
        &self,
        org: OrgId,
        origin: Origin,
        notes: Vec<Note>,
    ) -> Result<(), DbError> {
        let (done, answer) = oneshot::channel();
        let submission = Submission {
            org,
            origin,
            notes,
            done,
        };
        let gone = || DbError::AccessLog("the access writer has stopped".into());
        self.queue.send(submission).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Transactions waiting for their records to be written.
    pub(crate) fn waiting(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Batches written so far, and the records in them.
    pub(crate) fn written(&self) -> (u64, u64) {
        (
            self.counters.batches.load(Ordering::Relaxed),
            self.counters.records.load(Ordering::Relaxed),
        )
    }

    pub(crate) async fn close(&self) {
        self.pool.close().await;
    }
}

async fn run(pool: PgPool, mut receiver: mpsc::Receiver<Submission>, counters: Arc<Counters>) {
    while let Some(first) = receiver.recv().await {
        let mut records = first.notes.len();
        let mut batch = vec![first];
        while records < MAX_BATCH {
            match receiver.try_recv() {
                Ok(next) => {
                    records += next.notes.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let result = execute(&pool, &write_sql(&batch)).await;
        match result {
            Ok(()) => {
                counters.batches.fetch_add(1, Ordering::Relaxed);
                counters
                    .records
                    .fetch_add(records as u64, Ordering::Relaxed);
                for submission in batch {
                    let _ = submission.done.send(Ok(()));
                }
            }
            Err(e) if batch.len() == 1 || matches!(e, DbError::Unavailable(_)) => {
                tracing::error!(error = %e, transactions = batch.len(), "access records could not be written; their reads are refused");
                let detail = e.to_string();
                for submission in batch {
                    let _ = submission
                        .done
                        .send(Err(DbError::AccessLog(detail.clone())));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, transactions = batch.len(), "a batch of access records failed; written one transaction at a time");
                for submission in batch {
                    let one = std::slice::from_ref(&submission);
                    let result = execute(&pool, &write_sql(one)).await;
                    if result.is_ok() {
                        counters.batches.fetch_add(1, Ordering::Relaxed);
                        counters
                            .records
                            .fetch_add(submission.notes.len() as u64, Ordering::Relaxed);
                    }
                    let result = result.map_err(|e| {
                        tracing::error!(error = %e, "access records could not be written; the read is refused");
                        DbError::AccessLog(e.to_string())
                    });
                    let _ = submission.done.send(result);
                }
            }
        }
    }
}

/// Sent as simple-protocol text (no bind parameters): one round trip that commits on its own,
/// also through a transaction-mode pooler.
/// A connection that died while idle (the pool does not ping) is replaced once.
async fn execute(pool: &PgPool, sql: &str) -> Result<(), DbError> {
    match sqlx::Executor::execute(pool, sql).await {
        Err(e) if crate::is_connection_lost(&e) => {
            sqlx::Executor::execute(pool, sql).await?;
        }
        result => {
            result?;
        }
    }
    Ok(())
}

/// The call of `app.write_access_records` for `batch`, as literal SQL: like the in-transaction
/// INSERT (access.rs), every value is a uuid, an address, a fixed word, or text of the log's
/// safe alphabets (no quote, no backslash), so nothing needs escaping.
fn write_sql(batch: &[Submission]) -> String {
    let mut columns: [Vec<String>; 10] = Default::default();
    for submission in batch {
        let origin = &submission.origin;
        for note in &submission.notes {
            let patients = (!note.patients.is_empty()).then(|| {
                let list: Vec<String> = note.patients.iter().map(ToString::to_string).collect();
                format!("{{{}}}", list.join(","))
            });
            let values = [
                Some(submission.org.to_string()),
                Some(origin.actor.as_str().to_owned()),
                origin.actor_id.map(|u| u.to_string()),
                Some(note.kind.to_owned()),
                note.id.map(|u| u.to_string()),
                Some(note.action.as_str().to_owned()),
                Some(origin.via.clone()),
                origin.client_addr.map(|a| a.to_string()),
                origin.request_id.clone(),
                patients,
            ];
            for (column, value) in columns.iter_mut().zip(values) {
                column.push(crate::access::literal(value.as_deref()));
            }
        }
    }
    let types = [
        "uuid[]", "text[]", "uuid[]", "text[]", "uuid[]", "text[]", "text[]", "inet[]", "text[]",
        "text[]",
    ];
    let mut sql = String::from("SELECT app.write_access_records(");
    for (i, (column, ty)) in columns.iter().zip(types).enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "ARRAY[{}]::{ty}", column.join(", "));
    }
    sql.push(')');
    sql
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{subject, Action, ActorKind};
    use uuid::Uuid;

    #[test]
    fn a_batch_is_one_call_with_a_column_per_field() {
        let (done, _) = oneshot::channel();
        let mut origin = Origin::new(ActorKind::User, Some(Uuid::nil()), "GET /api/v1/calls/{id}");
        origin.client_addr = Some(std::net::IpAddr::from([127, 0, 0, 1]));
        let patient = Uuid::new_v4();
        let batch = [Submission {
            org: OrgId::from_uuid(Uuid::nil()),
            origin,
            notes: vec![
                Note {
                    kind: subject::CALL,
                    id: None,
                    action: Action::List,
                    patients: vec![patient],
                },
                Note {
                    kind: subject::CONTACT,
                    id: Some(patient),
                    action: Action::Read,
                    patients: vec![],
                },
            ],
            done,
        }];
        let sql = write_sql(&batch);
        assert!(
            sql.starts_with("SELECT app.write_access_records(ARRAY["),
            "{sql}"
        );
        assert_eq!(sql.matches("ARRAY[").count(), 10, "{sql}");
        assert!(
            sql.contains(&format!("ARRAY['{{{patient}}}', NULL]::text[]")),
            "{sql}"
        );
        assert!(
            sql.contains("ARRAY['127.0.0.1', '127.0.0.1']::inet[]"),
            "{sql}"
        );
        assert!(sql.contains("ARRAY['list', 'read']::text[]"), "{sql}");
    }
}
