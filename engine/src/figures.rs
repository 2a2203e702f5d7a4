//! The figures an operator alerts on, reported through the [`metrics`] facade: whatever recorder
//! the program installs (the `saga worker --metrics` Prometheus endpoint, or any other) receives
//! them, and without one they cost next to nothing. Counters follow what was committed, so they
//! count what is durable, not what was tried; gauges read from the store are set by [`sample`].
//!
//! | name | kind | labels |
//! |---|---|---|
//! | `saga_started_total` | counter | `definition` |
//! | `saga_finished_total` | counter | `definition`, `outcome` (`completed`, `compensated`, `failed`) |
//! | `saga_step_attempt_duration_seconds` | histogram | `definition`, `step`, `phase`, `outcome` (`succeeded`, `failed`) |
//! | `saga_step_retries_total` | counter | `definition`, `step`, `phase` |
//! | `saga_compensations_total` | counter | `definition`, `step` |
//! | `saga_in_flight` | gauge | `definition`, `status` (`running`, `compensating`) |
//! | `saga_outbox_depth` | gauge | |
//! | `saga_outbox_oldest_age_seconds` | gauge | |
//! | `saga_dead_letters_total` | counter | `group` |
//! | `saga_lease_renewal_failures_total` | counter | |
//! | `saga_commit_batch_size` | histogram | |
//! | `saga_commit_duration_seconds` | histogram | |

use std::time::Duration;

use std::collections::BTreeSet;

use metrics::{counter, gauge, histogram};

use crate::event::{EventKind, HistoryEvent};
use crate::state::SagaStatus;
use crate::step::Phase;
use crate::store::{SagaStore, StoreError};

/// Sagas whose first step began (where a worker took a queued saga up, not where it was queued).
pub const STARTED: &str = "saga_started_total";
/// Sagas that reached a final status, by outcome.
pub const FINISHED: &str = "saga_finished_total";
/// How long step and compensation attempts took: a local one as it ran, a participant's from
/// the commit that sent its command to the one that took its reply (database clock), or, when
/// no reply came by its deadline, its whole timeout.
pub const STEP_ATTEMPT_DURATION: &str = "saga_step_attempt_duration_seconds";
/// Attempts started again after a failed one (not those cut off by a crash and run again).
pub const RETRIES: &str = "saga_step_retries_total";
/// Steps undone.
pub const COMPENSATIONS: &str = "saga_compensations_total";
/// Sagas running or compensating in the store, by definition and status.
pub const IN_FLIGHT: &str = "saga_in_flight";
/// Events committed and not yet published.
pub const OUTBOX_DEPTH: &str = "saga_outbox_depth";
/// How long the oldest of them has waited.
pub const OUTBOX_OLDEST_AGE: &str = "saga_outbox_oldest_age_seconds";
/// Messages a consumer group gave up on and moved to the dead letters.
pub const DEAD_LETTERS: &str = "saga_dead_letters_total";
/// Lease renewals that failed (the store could not be written).
pub const LEASE_RENEWAL_FAILURES: &str = "saga_lease_renewal_failures_total";
/// Transitions per write transaction (group commit at work above 1).
pub const COMMIT_BATCH_SIZE: &str = "saga_commit_batch_size";
/// How long each write transaction of transitions took.
pub const COMMIT_DURATION: &str = "saga_commit_duration_seconds";

/// Counts what a committed transition of a `definition` saga recorded; `begun` says it began
/// the saga's first step.
pub(crate) fn committed(definition: &str, events: &[HistoryEvent], begun: bool) {
    if begun {
        counter!(STARTED, "definition" => definition.to_string()).increment(1);
    }
    for event in events {
        let step = || event.step.clone().unwrap_or_default();
        // A retry is an attempt after the first that is not one cut off and run again.
        let retry_of =
            || event.attempt.is_some_and(|a| a > 1) && event.detail.get("resumed").is_none();
        match event.kind {
            EventKind::SagaCompleted => finished(definition, SagaStatus::Completed),
            EventKind::SagaCompensated => finished(definition, SagaStatus::Compensated),
            EventKind::SagaFailed => finished(definition, SagaStatus::Failed),
            EventKind::StepCompensated => counter!(
                COMPENSATIONS,
                "definition" => definition.to_string(),
                "step" => step()
            )
            .increment(1),
            EventKind::StepStarted if retry_of() => retry(definition, step(), Phase::Action),
            EventKind::CompensationStarted if retry_of() => {
                retry(definition, step(), Phase::Compensation)
            }
            _ => {}
        }
    }
}

fn finished(definition: &str, outcome: SagaStatus) {
    counter!(FINISHED, "definition" => definition.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

fn retry(definition: &str, step: String, phase: Phase) {
    counter!(
        RETRIES,
        "definition" => definition.to_string(),
        "step" => step,
        "phase" => phase.as_str()
    )
    .increment(1);
}

/// Records how long an attempt took, and whether it succeeded.
pub(crate) fn attempt(definition: &str, step: &str, phase: Phase, ok: bool, took: Duration) {
    histogram!(
        STEP_ATTEMPT_DURATION,
        "definition" => definition.to_string(),
        "step" => step.to_string(),
        "phase" => phase.as_str(),
        "outcome" => if ok { "succeeded" } else { "failed" }
    )
    .record(took.as_secs_f64());
}

/// Records one write transaction carrying `transitions` transitions.
pub(crate) fn commit(transitions: usize, took: Duration) {
    if transitions > 0 {
        histogram!(COMMIT_BATCH_SIZE).record(transitions as f64);
        histogram!(COMMIT_DURATION).record(took.as_secs_f64());
    }
}

/// Counts a message that consumer `group` moved to the dead letters.
pub(crate) fn dead_letter(group: &str) {
    counter!(DEAD_LETTERS, "group" => group.to_string()).increment(1);
}

/// Counts a lease renewal that failed.
pub(crate) fn lease_renewal_failed() {
    counter!(LEASE_RENEWAL_FAILURES).increment(1);
}

/// Describes every figure to the installed recorder, and sets the counters without labels to
/// zero, so a scrape lists them before anything happened (an alert on a missing series is
/// easy to get wrong). Call it once, after installing the recorder.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(STARTED, "Sagas whose first step began here.");
    describe_counter!(FINISHED, "Sagas that reached a final status, by outcome.");
    describe_histogram!(
        STEP_ATTEMPT_DURATION,
        Unit::Seconds,
        "Step and compensation attempts, by outcome (a participant's: command to reply)."
    );
    describe_counter!(RETRIES, "Attempts started again after a failed one.");
    describe_counter!(COMPENSATIONS, "Steps undone.");
    describe_gauge!(IN_FLIGHT, "Sagas running or compensating in the store.");
    describe_gauge!(OUTBOX_DEPTH, "Events committed and not yet published.");
    describe_gauge!(
        OUTBOX_OLDEST_AGE,
        Unit::Seconds,
        "How long the oldest unpublished event has waited."
    );
    describe_counter!(DEAD_LETTERS, "Messages moved to the dead letters.");
    describe_counter!(LEASE_RENEWAL_FAILURES, "Lease renewals that failed.");
    describe_histogram!(COMMIT_BATCH_SIZE, "Transitions per write transaction.");
    describe_histogram!(
        COMMIT_DURATION,
        Unit::Seconds,
        "How long each write transaction of transitions took."
    );
    counter!(LEASE_RENEWAL_FAILURES).absolute(0);
}

/// Sets the gauges read from `store`: sagas in flight by definition and status (every one of
/// `definitions`, the registered ones, is set, 0 when none is in flight), and the outbox's
/// depth and oldest age. Call it before each scrape: two queries, on the unfinished sagas (by
/// the status index) and on the outbox's head.
pub async fn sample<'a>(
    store: &dyn SagaStore,
    definitions: impl IntoIterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let counts = store.in_flight_counts().await?;
    let mut names: BTreeSet<&str> = definitions.into_iter().collect();
    names.extend(counts.iter().map(|(d, _, _)| d.as_str()));
    for definition in names {
        for status in [SagaStatus::Running, SagaStatus::Compensating] {
            let n = counts
                .iter()
                .find(|(d, s, _)| d == definition && *s == status)
                .map_or(0, |(_, _, n)| *n);
            gauge!(IN_FLIGHT, "definition" => definition.to_string(), "status" => status.as_str())
                .set(n as f64);
        }
    }
    let outbox = store.outbox_stats().await?;
    gauge!(OUTBOX_DEPTH).set(outbox.depth as f64);
    gauge!(OUTBOX_OLDEST_AGE).set(outbox.oldest_age.as_secs_f64());
    Ok(())
}
