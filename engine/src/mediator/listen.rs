//! What the mediator hears on the bus: initiating events, which start sagas.

use std::sync::Arc;

use super::Inner;
use crate::bus::{Filter, Subscription};
use crate::error::EngineError;
use crate::store::StoreError;

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
