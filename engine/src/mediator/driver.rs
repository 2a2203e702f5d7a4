//! Where a step runs: one task per saga in flight drives it transition by transition, running
//! each attempt in its own task (so a panic is caught) under its timeout and a concurrency
//! permit, and committing what happened before doing anything else.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::child::ChildError;
use super::Inner;
use crate::definition::Definition;
use crate::state::SagaState;
use crate::step::{idempotency_key, Phase, StepContext, StepError, Work};
use crate::store::StoreError;
use crate::transition::{self, Change, Next};

/// Aborts the wrapped task when dropped, so a step attempt never outlives its driver.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removes the driver from the mediator's in-flight set however the driver ends (returns,
/// panics), so its lease is no longer renewed and the saga can be claimed again.
struct Forget<'a>(&'a Inner, uuid::Uuid);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// Drives one saga until it is final, its lease is lost, or the mediator shuts down. `resumed`
/// says it was claimed from the store rather than started here, so an attempt it finds in
/// flight was cut off and counts as a new attempt when it runs again.
pub(crate) async fn drive(inner: Arc<Inner>, mut saga: SagaState, resumed: bool) {
    let _forget = Forget(&inner, saga.id);
    let Some(def) = inner.registry.get(&saga.definition, saga.version).cloned() else {
        tracing::warn!(
            saga_id = %saga.id,
            definition = %saga.definition,
            version = saga.version,
            "definition version not registered here; leaving the saga untouched"
        );
        release(&inner, &saga).await;
        return;
    };
    // A saga created untraced (queued by a process with no tracer) gets its root here, where
    // no span is current; its next commit stores it.
    if saga.trace_parent.is_none() {
        saga.trace_parent = crate::trace::root(&saga.definition, saga.id, saga.version).1;
    }
    let span = crate::trace::drive(&saga);
    drive_inner(&inner, def, saga, resumed)
        .instrument(span)
        .await;
}

async fn drive_inner(inner: &Arc<Inner>, def: Arc<Definition>, mut saga: SagaState, resumed: bool) {
    let mut shutdown = inner.shutdown.subscribe();
    // A saga handed over just after a commit that scheduled a retry (a participant's failed
    // reply) waits out the stored backoff, measured from that commit.
    let mut due: Option<Instant> = saga
        .next_attempt_at
        .filter(|_| !resumed)
        .map(|at| Instant::now() + Duration::from_millis((at - saga.updated_at).max(0) as u64));
    // A saga woken on a wait takes the signal kept for it, or sees how its child stands.
    let found = match resumed {
        true => {
            let signal = inner.kept_for(&saga).await;
            let child = inner.child_of(&saga).await;
            match (signal, child) {
                (Ok(signal), Ok(child)) => (signal, child),
                (Err(error), _) | (_, Err(error)) => {
                    tracing::warn!(%error, "reading what the saga waits for failed; leaving it for later");
                    release(inner, &saga).await;
                    return;
                }
            }
        }
        false => (None, None),
    };
    let mismatched = transition::mismatch(&def, &saga);
    // A participant's attempt whose deadline passed fails now, timed for its whole timeout.
    let timed_out = saga
        .awaiting
        .as_ref()
        .filter(|a| resumed && mismatched.is_none() && a.wait.is_reply())
        .map(|a| (a.step, a.phase));
    let first = mismatched.or_else(|| {
        if resumed {
            let now = crate::store::now_ms();
            let max = inner.config.max_interruptions;
            let found = transition::Found {
                signal: found.0.as_ref(),
                child: found.1.as_ref(),
            };
            transition::resume(&def, &saga, max, now, found)
        } else {
            None
        }
    });
    if let Some(change) = first {
        let retry_after = change
            .retry_after
            .filter(|_| change.state.awaiting.is_none());
        match commit_with_retry(inner, &saga, change).await {
            Some(next) => saga = next,
            None => return,
        }
        if let Some((step, phase)) = timed_out {
            let spec = &def.steps()[step];
            crate::figures::attempt(def.name(), spec.name(), phase, false, spec.timeout());
        }
        // A timed-out reply that schedules a retry waits out its backoff like any other.
        due = retry_after.map(|d| Instant::now() + d).or(due);
    }
    loop {
        if *shutdown.borrow() {
            release(inner, &saga).await;
            return;
        }
        let change = match transition::next(&saga) {
            // Nothing waits for a reply: the listener continues the saga when it comes, the
            // scheduler when its deadline passes.
            Next::Done => return,
            Next::Await if child_to_start(&saga) => {
                let change = match inner.start_or_undo_child(&def, &saga).await {
                    Ok(()) => transition::child_started(&def, &saga),
                    Err(ChildError::Step(error)) => {
                        let phase = saga.awaiting.as_ref().map_or(Phase::Action, |a| a.phase);
                        let mut change = transition::failed(&def, &saga, phase, &error);
                        change.state.awaiting = None;
                        change
                    }
                    Err(ChildError::Later(error)) => {
                        tracing::warn!(%error, "starting the child saga failed; leaving it for later");
                        release(inner, &saga).await;
                        return;
                    }
                };
                match commit_with_retry(inner, &saga, change).await {
                    Some(next) => saga = next,
                    None => return,
                }
                // A child that ended before its start was recorded told no one: look once.
                if let Ok(Some(child)) = inner.child_of(&saga).await {
                    if let Some(mut change) = transition::child_ended(&def, &saga, Some(&child)) {
                        change.state.fencing_token += 1;
                        match inner.commit(Some(&saga), change).await {
                            Ok(next) => saga = next,
                            Err(_) => return,
                        }
                    }
                }
                inner.waits.due_at(saga.next_attempt_at);
                due = None;
                continue;
            }
            Next::Await => {
                // A signal sent while the wait was being recorded woke no one: look once.
                if let Ok(Some(next)) = inner.take_kept(&def, &saga).await {
                    saga = next;
                    due = None;
                    continue;
                }
                inner.waits.due_at(saga.next_attempt_at);
                return;
            }
            Next::Group => match super::group::run_group(inner, &def, saga.clone()).await {
                Some(next) => {
                    saga = next;
                    due = None;
                    continue;
                }
                None => {
                    release(inner, &saga).await;
                    return;
                }
            },
            Next::Begin => {
                if let Some(at) = due.take() {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = shutdown.changed() => continue,
                    }
                }
                transition::begin(&def, &saga)
            }
            Next::Run {
                step,
                phase,
                attempt,
            } => {
                let outcome = run_attempt(inner, &def, &saga, step, phase, attempt).await;
                // The work is done (its effect applied) but not yet recorded.
                inner
                    .config
                    .faults
                    .crash_point(match phase {
                        Phase::Action => "after_action",
                        Phase::Compensation => "after_compensation",
                    })
                    .await;
                match outcome {
                    Ok(data) => transition::succeeded(&def, &saga, phase, data),
                    Err(error) => transition::failed(&def, &saga, phase, &error),
                }
            }
        };
        let retry_after = change.retry_after;
        match commit_with_retry(inner, &saga, change).await {
            Some(next) => saga = next,
            None => return,
        }
        // Counted from the commit, as the stored due time is, so a retry never runs early.
        due = retry_after.map(|d| Instant::now() + d);
    }
}

/// Whether `saga` waits for a child that its driver must still start (or ask to compensate).
fn child_to_start(saga: &SagaState) -> bool {
    matches!(
        saga.awaiting.as_ref().map(|a| &a.wait),
        Some(crate::state::Wait::Child { started: false, .. })
    )
}

/// Commits a transition, retrying while the database is unavailable. Gives up (returning
/// `None`) when the lease is lost or the database stays down: the lease then expires and the
/// saga is claimed again from its last committed state.
pub(super) async fn commit_with_retry(
    inner: &Inner,
    saga: &SagaState,
    change: Change,
) -> Option<SagaState> {
    let mut delay = Duration::from_millis(50);
    let landed_seq = saga.last_seq + change.events.len() as i64;
    for attempt in 1..=8 {
        match inner.commit(Some(saga), change.clone()).await {
            Ok(next) => return Some(next),
            Err(StoreError::LeaseLost(_)) => {
                inner
                    .refused
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("lease lost to another mediator; stopping work on this saga");
                return None;
            }
            Err(error) => {
                // The commit may have landed all the same (a connection lost during COMMIT):
                // then the stored saga is exactly what it would have written.
                if let Ok(Some(stored)) = inner.store.get(saga.id).await {
                    if stored.last_seq == landed_seq
                        && stored.fencing_token == change.state.fencing_token
                    {
                        tracing::warn!(%error, "commit was not confirmed but had landed; going on");
                        // Its events are in the outbox; publish them before what follows.
                        inner.sweep_outbox();
                        return Some(stored);
                    }
                }
                tracing::error!(%error, attempt, "committing a transition failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!("giving up on this saga until its lease expires");
    None
}

async fn release(inner: &Inner, saga: &SagaState) {
    if let Err(error) = inner.store.release(&inner.config.owner, &[saga.id]).await {
        tracing::warn!(%error, "could not release the lease; it will expire");
    }
}

/// Runs one attempt of a step's action or compensation and says how it went.
pub(super) async fn run_attempt(
    inner: &Inner,
    def: &Definition,
    saga: &SagaState,
    step: usize,
    phase: Phase,
    attempt: u32,
) -> Result<Value, StepError> {
    let Some(spec) = def.step(step) else {
        return Err(StepError::poison(format!("step {step} does not exist")));
    };
    let work = match phase {
        Phase::Action => Some(&spec.action),
        Phase::Compensation => spec.compensation.as_ref(),
    };
    let f = match work {
        Some(Work::Local(f)) => f.clone(),
        // Commands are sent by the transition that starts the attempt; nothing runs here.
        // A timer runs only when its time could not be read from the data (else it waits).
        Some(Work::Timer(delay)) => {
            let error = delay
                .fires_at(&saga.data, 0)
                .err()
                .unwrap_or_else(|| "the timer's time could not be read".into());
            return Err(StepError::poison(error));
        }
        // So are waits: the stored wait is all there is.
        Some(Work::Command(_) | Work::Signal(_) | Work::Child(_)) | None => {
            return Ok(saga.data.clone())
        }
    };
    let ctx = StepContext {
        saga_id: saga.id,
        step: spec.name().to_string(),
        attempt,
        fencing_token: saga.fencing_token,
        idempotency_key: idempotency_key(saga.id, spec.name(), phase),
        data: saga.data.clone(),
        resources: inner.registry.resources().clone(),
    };
    let fault = inner.config.faults.for_attempt(spec.name(), phase, attempt);
    let name = spec.name().to_string();
    let work = async move {
        if let Some(fault) = fault {
            fault.strike(&ctx.step, attempt).await?;
        }
        f(ctx).await
    };
    let span = crate::trace::attempt(saga, &name, phase, attempt, "local");
    let Ok(_permit) = inner.permits.acquire().await else {
        return Err(StepError::retryable("the mediator is shutting down"));
    };
    let started = Instant::now();
    let mut task = AbortOnDrop(tokio::spawn(work.instrument(span.clone())));
    let outcome = tokio::time::timeout(spec.timeout(), &mut task.0).await;
    let result = checked(
        outcome,
        spec.timeout(),
        &name,
        inner.config.max_payload_bytes,
    );
    let ok = result.is_ok();
    crate::trace::outcome(&span, if ok { "succeeded" } else { "failed" });
    drop(span);
    crate::figures::attempt(def.name(), &name, phase, ok, started.elapsed());
    result
}

/// What an attempt's task came to: its data, or why the attempt failed (timed out, panicked,
/// cancelled, its own error, or data over `limit` bytes).
fn checked(
    outcome: Result<
        Result<Result<Value, StepError>, tokio::task::JoinError>,
        tokio::time::error::Elapsed,
    >,
    timeout: Duration,
    name: &str,
    limit: usize,
) -> Result<Value, StepError> {
    let data = match outcome {
        Err(_) => return Err(StepError::timeout(timeout)),
        Ok(Err(join)) if join.is_panic() => {
            let payload = join.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            return Err(StepError::panic(message));
        }
        Ok(Err(_)) => return Err(StepError::retryable("the attempt was cancelled")),
        Ok(Ok(result)) => result?,
    };
    let size = data.to_string().len();
    if size > limit {
        return Err(StepError::invalid_output(format!(
            "`{name}` returned data of {size} bytes, over the limit of {limit} bytes"
        )));
    }
    Ok(data)
}
