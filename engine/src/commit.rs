//! The one place where transitions are committed. [`write`] turns a computed [`Change`] into a
//! store transition (sequence numbers, event ids, lease, outbox) and applies it; every
//! transition of every saga, a mediator's or an operator's, goes through it. Its events, and the
//! commands to participants, are in the outbox of the same transaction; the mediator then hands
//! them to its dispatcher, the one place where events leave.

use uuid::Uuid;

use crate::bus::Envelope;
use crate::event::HistoryEvent;
use crate::fault::FaultPlan;
use crate::state::SagaState;
use crate::store::{Lease, SagaStore, StoreError, Transition};
use crate::transition::Change;

/// A committed transition: the saga as it now is, its history events, and the envelopes that
/// were written to the outbox with it.
pub(crate) struct Written {
    pub state: SagaState,
    pub outbox: Vec<Envelope>,
}

/// Commits `change` to `store` (an insert when `current` is `None`), holding `lease` afterwards
/// (none once the saga is final).
pub(crate) async fn write(
    store: &dyn SagaStore,
    current: Option<&SagaState>,
    change: Change,
    lease: Option<Lease<'_>>,
    faults: &FaultPlan,
) -> Result<Written, StoreError> {
    write_checked(store, current, change, lease, faults, false).await
}

/// [`write`], applied only if the saga's reply deadline has not passed (`before_deadline`).
pub(crate) async fn write_checked(
    store: &dyn SagaStore,
    current: Option<&SagaState>,
    change: Change,
    lease: Option<Lease<'_>>,
    faults: &FaultPlan,
    before_deadline: bool,
) -> Result<Written, StoreError> {
    let mut next = change.state;
    let first_seq = current.map_or(0, |c| c.last_seq) + 1;
    // The commit time is not known before the commit: meanwhile the events (and so the stored
    // envelopes) carry this process's clock. The store takes the commit time for history and
    // outbox rows, and the outbox reads it back from there.
    let now = crate::store::now_ms();
    let events: Vec<HistoryEvent> = change
        .events
        .into_iter()
        .zip(first_seq..)
        .map(|(e, seq)| HistoryEvent {
            seq,
            event_id: Uuid::now_v7(),
            saga_id: next.id,
            kind: e.kind,
            step: e.step,
            attempt: e.attempt,
            at: now,
            detail: e.detail,
        })
        .collect();
    next.last_seq = first_seq + events.len() as i64 - 1;
    let mut outbox: Vec<Envelope> = events
        .iter()
        .map(|e| Envelope {
            traceparent: next.trace_parent.clone(),
            ..Envelope::of(&next.definition, e)
        })
        .collect();
    // Each attempt sent to a participant has a span, which the participant's continues; it
    // ends once the commit says whether the command went out.
    let mut sending = Vec::with_capacity(change.commands.len());
    outbox.extend(change.commands.iter().map(|c| {
        let span = crate::trace::attempt(&next, &c.step, c.phase, c.attempt, "command");
        let envelope = Envelope {
            traceparent: crate::trace::traceparent(&span),
            ..c.envelope(&next.definition)
        };
        sending.push(span);
        envelope
    }));
    // A final saga needs no owner; one awaiting a reply has none until the reply or its
    // deadline comes.
    // A child wait not started yet keeps it: its driver starts the child next.
    let child_to_start = matches!(
        next.awaiting.as_ref().map(|a| &a.wait),
        Some(crate::state::Wait::Child { started: false, .. })
    );
    let lease =
        lease.filter(|_| !next.status.is_final() && (next.awaiting.is_none() || child_to_start));
    let transition = Transition {
        state: &next,
        expected_token: current.map(|c| c.fencing_token),
        retry_after: change.retry_after,
        lease,
        events: &events,
        before_deadline,
        outbox: &outbox,
    };
    faults.crash_point("before_commit").await;
    let applied = store.apply(&transition).await;
    for span in &sending {
        crate::trace::outcome(span, if applied.is_ok() { "sent" } else { "not_sent" });
    }
    drop(sending);
    let committed = applied?;
    faults.crash_point("after_commit").await;
    if faults.commit_unconfirmed() {
        return Err(StoreError::Unconfirmed(next.id));
    }

    // A saga counts as started where its first step begins: at its creation, or where a worker
    // takes it up from the queue (its history then holds only `SagaStarted`).
    let steps_began = events
        .iter()
        .any(|e| e.kind == crate::event::EventKind::StepStarted);
    let begun = steps_began && current.is_none_or(|c| c.last_seq == 1);
    crate::figures::committed(&next.definition, &events, begun);
    let at = committed.at;
    if current.is_none() {
        next.created_at = at;
    }
    next.updated_at = at;
    next.next_attempt_at = change.retry_after.map(|d| at + d.as_millis() as i64);
    next.lease_owner = lease.map(|l| l.owner.to_string());
    next.lease_expires_at = lease.map(|l| at + l.duration.as_millis() as i64);
    for envelope in &mut outbox {
        envelope.occurred_at = at;
        tracing::debug!(
            saga_id = %next.id,
            event = envelope.kind.as_str(),
            step = envelope.step.as_deref().unwrap_or(""),
            attempt = envelope.attempt.unwrap_or(0),
            "transition committed"
        );
    }
    Ok(Written {
        state: next,
        outbox,
    })
}
