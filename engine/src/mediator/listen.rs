//! What the mediator hears on the bus: initiating events, which start sagas.

use std::sync::Arc;

use super::Inner;
use crate::bus::{Envelope, Filter, Subscription};
use crate::error::EngineError;
use crate::participant::{Reply, REPLY};
use crate::state::Awaiting;
use crate::step::Phase;
use crate::store::StoreError;
use crate::transition::{self, Next};

/// Subscribes to the initiating events of the registered triggers, if any. Done when the
/// mediator starts, so no event published after `start()` returns is missed.
pub(crate) fn subscribe(inner: &Inner) -> Option<Subscription> {
    let triggers = inner.registry.triggers();
    (!triggers.is_empty()).then(|| {
        inner
            .bus
            .subscribe(Filter::types(triggers.iter().map(|t| t.event_type.clone())))
    })
}

/// Starts sagas from their initiating events until the mediator stops.
pub(crate) async fn triggers(inner: Arc<Inner>, mut events: Subscription) {
    let triggers = inner.registry.triggers().to_vec();
    while let Some(event) = events.next().await {
        for trigger in triggers.iter().filter(|t| t.event_type == event.kind) {
            let data = match (trigger.map)(&event) {
                Ok(data) => data,
                Err(reason) => {
                    tracing::warn!(event_id = %event.event_id, event = %event.kind, %reason, "initiating event ignored");
                    continue;
                }
            };
            start_from_event(&inner, &trigger.saga, &event, data).await;
        }
    }
}

/// Starts `saga` from an initiating event, retrying while the store is unavailable; a saga that
/// already exists for this event means the event was a duplicate.
async fn start_from_event(
    inner: &Arc<Inner>,
    saga: &str,
    event: &Envelope,
    data: serde_json::Value,
) {
    let mut delay = std::time::Duration::from_millis(50);
    for _ in 0..8 {
        match inner.start(saga, event.event_id, data.clone()).await {
            Ok(id) => {
                tracing::info!(saga_id = %id, event = %event.kind, "saga started by an event");
                return;
            }
            Err(EngineError::Store(StoreError::Duplicate(id))) => {
                tracing::info!(saga_id = %id, event_id = %event.event_id, "duplicate initiating event; the saga already exists");
                return;
            }
            Err(EngineError::Store(error)) => {
                tracing::warn!(event_id = %event.event_id, %error, "starting a saga from an event failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(2));
            }
            Err(error) => {
                tracing::warn!(event_id = %event.event_id, event = %event.kind, %error, "initiating event ignored");
                return;
            }
        }
    }
    tracing::error!(event_id = %event.event_id, "initiating event dropped: the store stayed unavailable");
}

/// Subscribes to participants' replies. Done when the mediator starts, like [`subscribe`].
pub(crate) fn subscribe_replies(inner: &Inner) -> Subscription {
    inner.bus.subscribe(Filter::types([REPLY]))
}

/// Applies participants' replies until the mediator stops. A reply that does not match what its
/// saga awaits (a duplicate, a late one, one for an old attempt or an unknown saga) changes
/// nothing and is logged at warn.
pub(crate) async fn replies(inner: Arc<Inner>, mut events: Subscription) {
    while let Some(event) = events.next().await {
        let reply = match Reply::parse(&event) {
            Ok(reply) => reply,
            Err(reason) => {
                tracing::warn!(event_id = %event.event_id, saga_id = ?event.saga_id, %reason, "malformed reply ignored");
                continue;
            }
        };
        if let Err(error) = apply_reply(&inner, &reply).await {
            tracing::warn!(saga_id = %reply.saga_id, %error, "applying a reply failed; the reply deadline will retry the step");
        }
    }
}

async fn apply_reply(inner: &Arc<Inner>, reply: &Reply) -> Result<(), StoreError> {
    // Retried when the saga changed under us (a concurrent duplicate, the deadline firing).
    for _ in 0..5 {
        let Some(saga) = inner.store.get(reply.saga_id).await? else {
            tracing::warn!(saga_id = %reply.saga_id, step = %reply.step, "reply for an unknown saga ignored");
            return Ok(());
        };
        let Some(def) = inner.registry.get(&saga.definition, saga.version).cloned() else {
            tracing::warn!(saga_id = %saga.id, "reply for a saga whose definition version is not registered here ignored");
            return Ok(());
        };
        let index = def.steps().iter().position(|s| s.name() == reply.step);
        let expected = index.map(|step| Awaiting {
            step,
            phase: reply.phase,
            attempt: reply.attempt,
        });
        if saga.awaiting.is_none() || saga.awaiting != expected {
            tracing::warn!(
                saga_id = %saga.id,
                step = %reply.step,
                attempt = reply.attempt,
                "duplicate, late or unexpected reply ignored"
            );
            return Ok(());
        }
        let mut change = match (&reply.outcome, reply.phase) {
            (Ok(output), Phase::Action) => {
                let spec = &def.steps()[saga.current_step];
                let applied = match &spec.apply {
                    Some(apply) => apply(saga.data.clone(), output.clone()),
                    None => Ok(saga.data.clone()),
                };
                match applied {
                    Ok(data) => transition::succeeded(&def, &saga, Phase::Action, data),
                    Err(error) => transition::failed(&def, &saga, Phase::Action, &error),
                }
            }
            (Ok(_), Phase::Compensation) => {
                transition::succeeded(&def, &saga, Phase::Compensation, saga.data.clone())
            }
            (Err(error), phase) => transition::failed(&def, &saga, phase, error),
        };
        // Taking the saga over, as a claim would: a driver left from before cannot write.
        change.state.fencing_token += 1;
        match inner.commit_checked(Some(&saga), change, true).await {
            Ok(next) => {
                if matches!(transition::next(&next), Next::Begin | Next::Run { .. }) {
                    inner.spawn_driver(next, false);
                }
                return Ok(());
            }
            // Refused: the saga moved on (go round and see), or nothing changed and the reply
            // came after its deadline.
            Err(StoreError::LeaseLost(_)) => {
                let now = inner.store.get(reply.saga_id).await?;
                if now.as_ref().is_some_and(|n| {
                    n.last_seq == saga.last_seq && n.fencing_token == saga.fencing_token
                }) {
                    tracing::warn!(saga_id = %saga.id, step = %reply.step, attempt = reply.attempt, "reply came after its deadline; ignored");
                    return Ok(());
                }
            }
            Err(error) => return Err(error),
        }
    }
    tracing::warn!(saga_id = %reply.saga_id, "saga kept changing; reply left to its deadline");
    Ok(())
}
