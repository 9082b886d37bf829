//! Seals the access log (migrations/0028): every few seconds, each clinic's new records are
//! chained onto its hash chain (`app.seal_access_log`), a bounded batch per clinic per
//! statement, until none is left. Several workers may run it at once: a clinic's chain is
//! extended under that clinic's advisory lock, so two sealers never fork it.

use std::future::Future;
use std::time::Duration;
use voxanne_db::{system, Db, DbError};

/// How often and how much.
#[derive(Debug, Clone, Copy)]
pub struct SealConfig {
    pub every: Duration,
    /// Clinics per statement.
    pub orgs: u32,
    /// Records per clinic per statement.
    pub batch: u32,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(5),
            orgs: 50,
            batch: 500,
        }
    }
}

pub struct AccessLogSealer {
    db: Db,
    config: SealConfig,
}

impl AccessLogSealer {
    pub fn new(db: Db, config: SealConfig) -> Self {
        Self { db, config }
    }

    /// Seals until nothing is left unsealed; how many records.
    pub async fn drain(&self) -> Result<i64, DbError> {
        let mut total = 0;
        loop {
            let sealed =
                system::seal_access_log(&self.db, self.config.orgs, self.config.batch).await?;
            total += sealed;
            if sealed == 0 {
                return Ok(total);
            }
        }
    }

    /// Drains every `every` until `stop` resolves. A failure is logged and retried at the
    /// next tick (a record left unsealed waits; none is lost).
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            match self.drain().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(records = n, "access log sealed"),
                Err(e) => tracing::warn!(error = %e, "sealing the access log failed; retried"),
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(self.config.every) => {}
            }
        }
    }
}
