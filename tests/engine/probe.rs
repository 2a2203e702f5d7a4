//! A probe saga for recovery tests: steps `a`, `b`, `c` (each with a compensation) record every
//! call they receive (step, phase, attempt, idempotency key) in a real table, and `b` (or its
//! compensation) can be held at a gate *after* recording, as if the process died after the
//! effect but before the engine recorded it.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use saga::engine::{Definition, Phase, RetryPolicy, SagaDefinition, Step, StepContext, StepError};
use serde::{Deserialize, Serialize};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::SqlitePool;
use tokio::sync::Semaphore;

pub const NAME: &str = "probe";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProbeData {
    pub done: Vec<String>,
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Call {
    pub step: String,
    pub phase: String,
    pub attempt: i64,
    pub key: String,
}

#[derive(Clone)]
pub struct Probe {
    pool: SqlitePool,
}

impl Probe {
    pub async fn open(url: &str) -> Probe {
        let options = SqliteConnectOptions::from_str(url)
            .unwrap()
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePool::connect_with(options).await.unwrap();
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS probe_calls (n INTEGER PRIMARY KEY AUTOINCREMENT, \
             step TEXT NOT NULL, phase TEXT NOT NULL, attempt INTEGER NOT NULL, key TEXT NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        Probe { pool }
    }

    async fn record(
        &self,
        step: &str,
        phase: Phase,
        attempt: u32,
        key: &str,
    ) -> Result<(), StepError> {
        sqlx::query("INSERT INTO probe_calls (step, phase, attempt, key) VALUES (?1, ?2, ?3, ?4)")
            .bind(step)
            .bind(phase.as_str())
            .bind(i64::from(attempt))
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(|e| StepError::retryable(e.to_string()))?;
        Ok(())
    }

    pub async fn calls(&self) -> Vec<Call> {
        sqlx::query_as("SELECT step, phase, attempt, key FROM probe_calls ORDER BY n")
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }

    pub async fn called(&self, step: &str, phase: Phase) -> bool {
        self.calls()
            .await
            .iter()
            .any(|c| c.step == step && c.phase == phase.as_str())
    }
}

/// Where the probe holds: `gate` is awaited after recording the call of `held` (if any).
pub struct Plan {
    pub version: u32,
    pub held: Option<(&'static str, Phase)>,
    pub gate: Arc<Semaphore>,
    pub b_retry: RetryPolicy,
}

impl Plan {
    pub fn open() -> Plan {
        Plan {
            version: 1,
            held: None,
            gate: Arc::new(Semaphore::new(0)),
            b_retry: RetryPolicy::attempts(3)
                .backoff(Duration::from_millis(5), Duration::from_millis(20)),
        }
    }

    pub fn holding(step: &'static str, phase: Phase) -> Plan {
        Plan {
            held: Some((step, phase)),
            ..Plan::open()
        }
    }
}

fn step_fn(
    probe: &Probe,
    plan: &Plan,
    name: &'static str,
    phase: Phase,
) -> impl Fn(StepContext<ProbeData>) -> futures_like::Fut + Send + Sync + 'static {
    let probe = probe.clone();
    let gate = plan.gate.clone();
    let hold = plan.held == Some((name, phase));
    move |mut ctx: StepContext<ProbeData>| {
        let probe = probe.clone();
        let gate = gate.clone();
        Box::pin(async move {
            probe
                .record(name, phase, ctx.attempt, &ctx.idempotency_key)
                .await?;
            if hold {
                let _held = gate.acquire().await;
            }
            if phase == Phase::Action {
                ctx.data.done.push(name.to_string());
            }
            Ok(ctx.data)
        })
    }
}

pub mod futures_like {
    use super::*;
    pub type Fut =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<ProbeData, StepError>> + Send>>;
}

pub fn definition(probe: &Probe, plan: &Plan) -> Definition {
    let mut def = SagaDefinition::<ProbeData>::new(NAME, plan.version);
    for name in ["a", "b", "c"] {
        let mut step = Step::new(name, step_fn(probe, plan, name, Phase::Action))
            .compensate(step_fn(probe, plan, name, Phase::Compensation))
            .retry(
                RetryPolicy::attempts(3)
                    .backoff(Duration::from_millis(5), Duration::from_millis(20)),
            )
            .compensation_retry(
                RetryPolicy::attempts(3)
                    .backoff(Duration::from_millis(5), Duration::from_millis(20)),
            );
        if name == "b" {
            step = step.retry(plan.b_retry.clone());
        }
        def = def.step(step);
    }
    def.build().unwrap()
}

pub fn registry(probe: &Probe, plan: &Plan) -> saga::engine::Registry {
    let mut registry = saga::engine::Registry::new();
    registry.register(definition(probe, plan)).unwrap();
    registry
}
