//! The one place where transitions are committed and where events leave. [`write`] turns a
//! computed [`Change`] into a store transition (sequence numbers, event ids, lease) and applies
//! it; every transition of every saga, a mediator's or an operator's, goes through it.
//! [`Inner::commit`] is the mediator's use of it, and publishes the events once committed.

use uuid::Uuid;

use super::Inner;
use crate::event::{HistoryEvent, SagaEvent};
use crate::fault::FaultPlan;
use crate::state::SagaState;
use crate::store::{Lease, SagaStore, StoreError, Transition};
use crate::transition::Change;

/// Commits `change` to `store` (an insert when `current` is `None`), holding `lease` afterwards
/// (none once the saga is final), and returns the committed state and its events.
pub(crate) async fn write(
    store: &dyn SagaStore,
    current: Option<&SagaState>,
    change: Change,
    lease: Option<Lease<'_>>,
    faults: &FaultPlan,
) -> Result<(SagaState, Vec<HistoryEvent>), StoreError> {
    let mut next = change.state;
    let first_seq = current.map_or(0, |c| c.last_seq) + 1;
    let mut events: Vec<HistoryEvent> = change
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
            at: 0,
            detail: e.detail,
        })
        .collect();
    next.last_seq = first_seq + events.len() as i64 - 1;
    let lease = lease.filter(|_| !next.status.is_final());
    let transition = Transition {
        state: &next,
        expected_token: current.map(|c| c.fencing_token),
        retry_after: change.retry_after,
        lease,
        events: &events,
    };
    faults.crash_point("before_commit");
    let committed = store.apply(&transition).await?;
    faults.crash_point("after_commit");

    let at = committed.at;
    if current.is_none() {
        next.created_at = at;
    }
    next.updated_at = at;
    next.next_attempt_at = change.retry_after.map(|d| at + d.as_millis() as i64);
    next.lease_owner = lease.map(|l| l.owner.to_string());
    next.lease_expires_at = lease.map(|l| at + l.duration.as_millis() as i64);
    for event in &mut events {
        event.at = at;
        tracing::debug!(
            saga_id = %event.saga_id,
            event = event.kind.as_str(),
            step = event.step.as_deref().unwrap_or(""),
            attempt = event.attempt.unwrap_or(0),
            "transition committed"
        );
    }
    Ok((next, events))
}

impl Inner {
    /// Commits a transition of a saga this mediator drives, then publishes its events.
    pub(crate) async fn commit(
        &self,
        current: Option<&SagaState>,
        change: Change,
    ) -> Result<SagaState, StoreError> {
        let lease = Lease {
            owner: &self.config.owner,
            duration: self.config.lease,
        };
        let (next, events) = write(
            self.store.as_ref(),
            current,
            change,
            Some(lease),
            &self.config.faults,
        )
        .await?;
        for event in events {
            // Nobody listening is fine: the history is the record, this is a notification.
            let _ = self.events.send(SagaEvent {
                definition: next.definition.clone(),
                event,
            });
        }
        Ok(next)
    }
}
