//! Where a parallel group runs: the saga's driver starts an attempt of every branch at once,
//! each in its own task, and commits each outcome as it comes (one transition at a time, so
//! they never race), waits out branch backoffs, and returns once the group has settled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::driver::{commit_with_retry, run_attempt};
use super::Inner;
use crate::definition::Definition;
use crate::state::SagaState;
use crate::step::{Phase, StepError};
use crate::store::now_ms;
use crate::transition::{self, Branch, Next};

/// Drives the group `saga` stands at until it settles; returns the saga after, or `None` when
/// the driver must stop (lease lost, store down, shutting down with nothing left running).
pub(crate) async fn run_group(
    inner: &Arc<Inner>,
    def: &Arc<Definition>,
    mut saga: SagaState,
) -> Option<SagaState> {
    let mut running: JoinSet<(usize, Value, Result<Value, StepError>)> = JoinSet::new();
    // Branches with an attempt running here, by step.
    let mut launched: HashMap<usize, ()> = HashMap::new();
    let shutdown = inner.shutdown.subscribe();
    loop {
        if transition::next(&saga) != Next::Group {
            return Some(saga);
        }
        let now = now_ms();
        let mut next_due = None;
        for branch in transition::branches(def, &saga) {
            match branch {
                Branch::Run { step, attempt } if !launched.contains_key(&step) => {
                    if *shutdown.borrow() {
                        continue;
                    }
                    launched.insert(step, ());
                    let (inner, def, snapshot) = (inner.clone(), def.clone(), saga.clone());
                    running.spawn(async move {
                        let input = snapshot.data.clone();
                        let outcome =
                            run_attempt(&inner, &def, &snapshot, step, Phase::Action, attempt)
                                .await;
                        (step, input, outcome)
                    });
                }
                Branch::Due { step, at } if at <= now && !*shutdown.borrow() => {
                    let change = transition::begin_branch(&saga, step, json!({}));
                    saga = commit_with_retry(inner, &saga, change).await?;
                    // Launched on the next round, with the attempt just recorded.
                    next_due = Some(now);
                }
                Branch::Due { at, .. } => {
                    next_due = Some(next_due.map_or(at, |d: i64| d.min(at)));
                }
                Branch::Run { .. } => {}
            }
        }
        if running.is_empty() {
            match next_due {
                _ if *shutdown.borrow() => return None,
                Some(at) => {
                    let wait = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep_until(Instant::now() + wait) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
                // Nothing runs and nothing is due: the group has settled.
                None => return Some(saga),
            }
        }
        let due = next_due.map(|at| {
            Instant::now() + Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0))
        });
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await }, if due.is_some() => continue,
        };
        let Some(joined) = joined else { continue };
        let (step, input, outcome) = match joined {
            Ok(done) => done,
            // A branch's task only ends this way when the driver is being torn down.
            Err(_) => return None,
        };
        launched.remove(&step);
        inner.config.faults.crash_point("after_action").await;
        let change = match outcome {
            Ok(output) => transition::branch_succeeded(def, &saga, step, &input, output),
            Err(error) => transition::branch_failed(def, &saga, step, &error, now_ms()),
        };
        saga = commit_with_retry(inner, &saga, change).await?;
    }
}
