//! An audit of step runs: when asked (`Options::record_runs`), every attempt of OrderSaga's local
//! steps is recorded with its start and end time, the process that ran it and the fencing token
//! it ran under. Two runs of the same step whose intervals overlap would mean two mediators
//! worked on one saga at once, which the lease and the fencing token exist to prevent; the
//! multi-worker tests check that they never do.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use saga_engine::{StepContext, StepError};

use super::{Db, ParticipantError};

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS step_runs (
    n             INTEGER PRIMARY KEY AUTOINCREMENT,
    saga_id       TEXT NOT NULL,
    step          TEXT NOT NULL,
    phase         TEXT NOT NULL,
    fencing_token INTEGER NOT NULL,
    worker        INTEGER NOT NULL,  -- process id
    started_us    INTEGER NOT NULL,  -- microseconds since the Unix epoch
    ended_us      INTEGER NOT NULL
);
";

/// One recorded run of a step.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StepRun {
    /// The saga.
    pub saga_id: String,
    /// The step's name.
    pub step: String,
    /// `action` or `compensate`.
    pub phase: String,
    /// The fencing token the run held.
    pub fencing_token: i64,
    /// The process that ran it.
    pub worker: i64,
    /// When it started, in microseconds since the Unix epoch.
    pub started_us: i64,
    /// When it ended.
    pub ended_us: i64,
}

/// The step-run audit.
#[derive(Debug, Clone)]
pub struct StepRuns {
    db: Db,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

impl StepRuns {
    pub(crate) fn new(db: Db) -> Self {
        Self { db }
    }

    /// Runs `work` (the step `ctx` describes, in `phase`) and records how long it ran, whatever
    /// its outcome. A record that cannot be written fails the attempt as retryable: the step's
    /// effect is idempotent, the audit must not have holes.
    pub async fn time<D, T>(
        &self,
        ctx: &StepContext<D>,
        phase: &str,
        work: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        let started_us = now_us();
        let outcome = work.await;
        let run = StepRun {
            saga_id: ctx.saga_id.to_string(),
            step: ctx.step.clone(),
            phase: phase.to_string(),
            fencing_token: ctx.fencing_token,
            worker: i64::from(std::process::id()),
            started_us,
            ended_us: now_us(),
        };
        self.record(&run).await?;
        outcome
    }

    async fn record(&self, run: &StepRun) -> Result<(), ParticipantError> {
        sqlx::query(
            "INSERT INTO step_runs (saga_id, step, phase, fencing_token, worker, started_us, \
             ended_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&run.saga_id)
        .bind(&run.step)
        .bind(&run.phase)
        .bind(run.fencing_token)
        .bind(run.worker)
        .bind(run.started_us)
        .bind(run.ended_us)
        .execute(self.db.pool().await?)
        .await?;
        Ok(())
    }

    /// Every recorded run, by saga, step, phase and start.
    pub async fn all(&self) -> Result<Vec<StepRun>, sqlx::Error> {
        sqlx::query_as(
            "SELECT saga_id, step, phase, fencing_token, worker, started_us, ended_us \
             FROM step_runs ORDER BY saga_id, step, phase, started_us",
        )
        .fetch_all(self.db.pool().await?)
        .await
    }
}
