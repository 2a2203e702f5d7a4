//! What the mediator hears on the bus: initiating events, which start sagas.

use std::sync::Arc;

use super::Inner;
use crate::bus::{Filter, Subscription};
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
            match inner.start(&trigger.saga, event.event_id, data).await {
                Ok(id) => {
                    tracing::info!(saga_id = %id, event = %event.kind, "saga started by an event")
                }
                Err(EngineError::Store(StoreError::Duplicate(id))) => {
                    tracing::info!(saga_id = %id, event_id = %event.event_id, "duplicate initiating event; the saga already exists")
                }
                Err(error) => {
                    tracing::warn!(event_id = %event.event_id, event = %event.kind, %error, "initiating event ignored")
                }
            }
        }
    }
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
        match inner.commit(Some(&saga), change).await {
            Ok(next) => {
                if matches!(transition::next(&next), Next::Begin | Next::Run { .. }) {
                    inner.spawn_driver(next, false);
                }
                return Ok(());
            }
            Err(StoreError::LeaseLost(_)) => continue,
            Err(error) => return Err(error),
        }
    }
    tracing::warn!(saga_id = %reply.saga_id, "saga kept changing; reply left to its deadline");
    Ok(())
}
